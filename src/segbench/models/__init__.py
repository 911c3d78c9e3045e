"""Model sources. :func:`get_card` resolves a name given to ``--segbench-model``."""

from __future__ import annotations

from segbench.errors import ModelError
from segbench.models import demo, tsfast
from segbench.models.card import ModelCard, load_network, state_digest

BUILTIN = ("demo", "ts-fast")


def get_card(name: str) -> ModelCard:
    """The card of a built-in model: ``demo`` (trained, embedded) or ``ts-fast`` (random
    weights)."""
    if name == "demo":
        return demo.card()
    if name == "ts-fast":
        return tsfast.card()
    raise ModelError(f"unknown model {name!r}; choose one of {', '.join(BUILTIN)}")


__all__ = ["BUILTIN", "ModelCard", "get_card", "load_network", "state_digest"]
