"""Model sources. :func:`get_card` resolves a name given to ``--segbench-model``.

Accepted names (:data:`MODEL_FORMS`):

- ``demo``: the embedded, trained demo model; ``ts-fast``: TotalSegmentator's fast architecture
  with random weights (:data:`BUILTIN`, the plain names);
- ``nnunet:PATH`` or ``nnunet:PATH#fold=1,checkpoint=checkpoint_best.pth,configuration=3d_fullres,
  tile_step=0.5,trust``: an nnU-Net v2 trainer folder (:mod:`segbench.models.nnunet`; ``trust``
  allows unpickling a checkpoint that ``weights_only`` loading refuses);
- ``torchscript:MODEL.pt:CARD.json`` (or ``.pt2`` for torch.export, ``.toml`` cards); with
  ``torchscript:MODEL.pt`` alone the card is ``MODEL.json`` or ``MODEL.toml`` next to it
  (:mod:`segbench.models.torchscript`);
- ``entrypoint:package.module:factory`` (:mod:`segbench.models.entrypoint`);
- ``totalsegmentator:NAME[#options]``: TotalSegmentator's installed weights by name (``fast``,
  ``fastest``, or one part of the 1.5 mm ``total`` task such as ``total_organs``), found where
  TotalSegmentator keeps them and loaded as ``nnunet:`` folders with TotalSegmentator's
  prediction settings (:mod:`segbench.models.totalseg`); the options are ``nnunet:``'s.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segbench.errors import ModelError
from segbench.models import totalseg

if TYPE_CHECKING:
    from segbench.models.card import ModelCard, load_network, state_digest

BUILTIN = ("demo", "ts-fast")
SCHEMES = ("nnunet", "torchscript", "entrypoint", "totalsegmentator")
MODEL_FORMS = (
    *BUILTIN,
    "nnunet:PATH[#fold=N,checkpoint=NAME,configuration=NAME,tile_step=X,trust]",
    "torchscript:MODEL.pt[2][:CARD.json|.toml]",
    "entrypoint:package.module:factory",
    f"totalsegmentator:{'|'.join(totalseg.MODELS)}[#same options as nnunet:]",
)
_NNUNET_OPTIONS = ("fold", "checkpoint", "configuration", "tile_step", "trust")


def _unknown(name: str, why: str = "") -> ModelError:
    return ModelError(
        f"unknown model {name!r}{why}; choose one of {', '.join(BUILTIN)}, or a model source: "
        + "; ".join(MODEL_FORMS[len(BUILTIN) :])
    )


def _nnunet_options(name: str, fragment: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in fragment.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in _NNUNET_OPTIONS or (key != "trust" and not sep):
            raise ModelError(
                f"model {name!r}: bad option {item!r} after '#'; options are "
                f"{', '.join(_NNUNET_OPTIONS)} (e.g. #fold=1,trust)"
            )
        value = value.strip()
        if key == "trust":
            if value.lower() not in ("", "1", "true", "yes"):
                raise ModelError(f"model {name!r}: write 'trust' (or trust=1), got {item!r}")
            options["trust_checkpoint"] = True
        elif key == "fold":
            options["fold"] = int(value) if value.isdigit() else value
        elif key == "tile_step":
            try:
                options["tile_step"] = float(value)
            except ValueError as exc:
                raise ModelError(f"model {name!r}: tile_step {value!r} is not a number") from exc
        else:
            options[key] = value
    return options


def parse_model_name(name: str) -> tuple[str, dict[str, Any]]:
    """Split a model name into its source (a BUILTIN name or a scheme) and that source's
    arguments, checking the syntax only (no file is read)."""
    if name in BUILTIN:
        return name, {}
    scheme, sep, rest = name.partition(":")
    if not sep or scheme not in SCHEMES:
        raise _unknown(name)
    if not rest:
        raise _unknown(name, f" (nothing after '{scheme}:')")
    if scheme == "nnunet":
        path, _, fragment = rest.partition("#")
        if not path:
            raise _unknown(name, " (no folder before '#')")
        return scheme, {"path": path, **_nnunet_options(name, fragment)}
    if scheme == "totalsegmentator":
        task, _, fragment = rest.partition("#")
        totalseg.check_name(task)
        return scheme, {"name": task, **_nnunet_options(name, fragment)}
    if scheme == "torchscript":
        model, sep, card = rest.rpartition(":")
        if not sep:
            model, card = rest, ""
        if not model:
            raise _unknown(name, " (no model file)")
        return scheme, {"model_path": model, "card_path": card}
    module, sep, factory = rest.partition(":")
    if not sep or not module or not factory:
        raise _unknown(name, " (an entry point is package.module:factory)")
    return scheme, {"spec": rest}


def is_valid_model_name(name: str) -> bool:
    """True for a built-in name or a syntactically valid model source (files are not checked)."""
    try:
        parse_model_name(name)
    except ModelError:
        return False
    return True


def _sibling_card(model_path: str) -> Path:
    model = Path(model_path)
    for suffix in (".json", ".toml"):
        candidate = model.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"no model card next to {model}: neither {model.with_suffix('.json')} nor "
        f"{model.with_suffix('.toml')} exists; write one or pass torchscript:MODEL:CARD"
    )


def get_card(name: str) -> ModelCard:
    """The card of a model name (see the module docstring for the accepted forms)."""
    source, args = parse_model_name(name)
    if source == "demo":
        from segbench.models import demo

        return demo.card()
    if source == "ts-fast":
        from segbench.models import tsfast

        return tsfast.card()
    if source == "nnunet":
        from segbench.models.nnunet import card_from_nnunet_folder

        return card_from_nnunet_folder(**args)
    if source == "totalsegmentator":
        return totalseg.card(**args)
    if source == "torchscript":
        from segbench.models.torchscript import card_from_torchscript

        card_path = args["card_path"] or _sibling_card(args["model_path"])
        return card_from_torchscript(args["model_path"], card_path)
    from segbench.models.entrypoint import card_from_entry_point

    return card_from_entry_point(args["spec"])


__all__ = [
    "BUILTIN",
    "MODEL_FORMS",
    "SCHEMES",
    "ModelCard",
    "get_card",
    "is_valid_model_name",
    "load_network",
    "parse_model_name",
    "state_digest",
]


_CARD_NAMES = ("ModelCard", "load_network", "state_digest")


def __getattr__(name: str) -> Any:
    """The card's names (:mod:`segbench.models.card`, which needs torch), imported on first use:
    model names are parsed without torch."""
    if name in _CARD_NAMES:
        value = getattr(importlib.import_module("segbench.models.card"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'segbench.models' has no attribute {name!r}")
