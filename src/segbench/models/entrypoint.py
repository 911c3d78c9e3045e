"""Models from Python code: ``"package.module:factory"``.

The factory is called without arguments and returns either a :class:`ModelCard` or a pair
``(network, fields)``: an ``nn.Module`` with its final weights and a dict of card fields, the
keys of a card file (see :mod:`segbench.models.torchscript`; ``name`` defaults to the factory's
name). The module is imported from ``sys.path`` like any other.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from torch import nn

from segbench.errors import ModelError
from segbench.models.card import ModelCard
from segbench.models.torchscript import card_from_fields

FORM = "package.module:factory"


def resolve(spec: str) -> Any:
    """The object ``spec`` ("package.module:attr.attr") names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelError(f"entry point {spec!r} is not of the form {FORM!r}; write it that way")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"entry point {spec!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); "
            "install its package or add its folder to PYTHONPATH"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(
                f"entry point {spec!r}: {module_name!r} has no attribute {attr!r}; check the name "
                "after the colon"
            )
        obj = getattr(obj, part)
    return obj


def card_from_entry_point(spec: str) -> ModelCard:
    """Call the factory ``spec`` names and turn what it returns into a :class:`ModelCard`."""
    factory = resolve(spec)
    if not callable(factory):
        raise ModelError(f"entry point {spec!r} is a {type(factory).__name__}, not a callable")
    try:
        result = factory()
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"entry point {spec!r} raised {type(exc).__name__}: {exc}; fix the factory"
        ) from exc
    if isinstance(result, ModelCard):
        return result
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and isinstance(result[0], nn.Module)
        and isinstance(result[1], Mapping)
    ):
        net, fields = result
        default_name = spec.rpartition(":")[2]
        return card_from_fields(fields, lambda: net, f"entry point {spec!r}", default_name)
    raise ModelError(
        f"entry point {spec!r} returned {type(result).__name__}; a factory must return a "
        "segbench ModelCard or a pair (nn.Module, dict of card fields)"
    )
