"""A TorchScript (``torch.jit``) or ``torch.export`` file plus a small model card file.

The card file is JSON or TOML (by suffix) with these keys; per-axis values are in segbench's
``(X, Y, Z)`` RAS order, the network's input is ``(B, C, X, Y, Z)``::

    spacing = [3.0, 3.0, 3.0]          # target voxel size, mm
    patch_size = [128, 112, 112]       # sliding-window patch, divisible by total_stride
    total_stride = [32, 16, 16]        # the network's total down-sampling per axis
    class_names = ["background", "liver"]
    tile_step = 0.5                    # optional, default 0.5
    in_channels = 1                    # optional, default 1
    name = "my-model"                  # optional, default the model file's stem

    [normalization]                    # nnU-Net CTNormalization constants
    lower = -1000.0
    upper = 1000.0
    mean = 0.0
    std = 300.0

``.pt2`` files are loaded with ``torch.export.load(...).module()`` (export them with dynamic batch
and spatial dimensions: segbench feeds patches and a small verification input), anything else
with ``torch.jit.load``. Both are read on CPU and only when the card's network is built.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbench.errors import ModelError
from segbench.models.card import ModelCard, read_mapping
from segbench.models.normalization import CTNormalization

REQUIRED_KEYS = ("spacing", "patch_size", "total_stride", "normalization", "class_names")
OPTIONAL_KEYS = ("tile_step", "in_channels", "name")
NORMALIZATION_KEYS = ("lower", "upper", "mean", "std")
EXPORT_SUFFIX = ".pt2"


def _triple(value: Any, key: str, source: str, cast: Callable[[Any], Any]) -> tuple[Any, Any, Any]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ModelError(f"{source}: {key!r} is {value!r}; give three numbers in (X, Y, Z) order")
    out = tuple(cast(v) for v in value)
    pairs = zip(out, value, strict=True)
    if any(not math.isfinite(v) or v <= 0 or (cast is int and v != w) for v, w in pairs):
        raise ModelError(f"{source}: {key!r} is {value!r}; give three positive values")
    return (out[0], out[1], out[2])


def _check_keys(
    data: Mapping[str, Any],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    where: str,
    source: str,
) -> None:
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise ModelError(
            f"{source}: unknown key {unknown[0]!r}{where} (all unknown: {unknown}); the keys are "
            f"{', '.join(required + optional)}: fix the spelling or remove it"
        )
    missing = [k for k in required if k not in data]
    if missing:
        raise ModelError(
            f"{source}: missing key {missing[0]!r}{where} (all missing: {missing}); add it"
        )


def card_from_fields(
    fields: Mapping[str, Any],
    build: Callable[[], nn.Module],
    source: str | Path,
    default_name: str,
) -> ModelCard:
    """Validate card fields (the card-file keys above) and make the :class:`ModelCard`."""
    src = str(source)
    if not isinstance(fields, Mapping):
        raise ModelError(f"{src}: the model card is a {type(fields).__name__}, not a table/object")
    _check_keys(fields, REQUIRED_KEYS, OPTIONAL_KEYS, "", src)
    norm = fields["normalization"]
    if not isinstance(norm, Mapping):
        raise ModelError(f"{src}: 'normalization' must be a table with {NORMALIZATION_KEYS}")
    _check_keys(norm, NORMALIZATION_KEYS, (), " in 'normalization'", src)
    classes = fields["class_names"]
    if (
        not isinstance(classes, list | tuple)
        or len(classes) < 2
        or not all(isinstance(c, str) for c in classes)
    ):
        raise ModelError(
            f"{src}: 'class_names' is {classes!r}; give a list of at least two names, "
            "background first"
        )
    tile_step = fields.get("tile_step", 0.5)
    if (
        not isinstance(tile_step, int | float)
        or isinstance(tile_step, bool)
        or not (0 < tile_step <= 1)
    ):
        raise ModelError(f"{src}: 'tile_step' is {tile_step!r}; give a number in (0, 1]")
    in_channels = fields.get("in_channels", 1)
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise ModelError(f"{src}: 'in_channels' is {in_channels!r}; give a positive int")
    name = fields.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ModelError(f"{src}: 'name' is {name!r}; give a non-empty string")
    try:
        normalization = CTNormalization(**{k: float(norm[k]) for k in NORMALIZATION_KEYS})
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{src}: 'normalization' {dict(norm)} is invalid ({exc}); need finite numbers with "
            "lower < upper and std > 0"
        ) from exc
    return ModelCard(
        name=name,
        build=build,
        spacing=_triple(fields["spacing"], "spacing", src, float),
        patch_size=_triple(fields["patch_size"], "patch_size", src, int),
        total_stride=_triple(fields["total_stride"], "total_stride", src, int),
        normalization=normalization,
        class_names=tuple(classes),
        tile_step=float(tile_step),
        in_channels=in_channels,
    )


def read_card_file(path: str | Path) -> dict[str, Any]:
    """The card file's contents (JSON, or TOML for ``.toml``), not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model card file {path} is missing; write it (see segbench docs)")
    return read_mapping(
        lambda: _parse_card(path),
        lambda error: (
            f"{path}: cannot parse the model card ({error}); write valid JSON, or "
            "TOML with a .toml suffix"
        ),
        lambda kind: f"{path}: the model card is a {kind}, not an object",
    )


def _parse_card(path: Path) -> Any:
    """JSON, or TOML for a ``.toml`` suffix (tomllib, or tomli before Python 3.11)."""
    if path.suffix.lower() != ".toml":
        return json.loads(path.read_text())
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ModelError(
                f"{path}: reading TOML needs Python >= 3.11 or the tomli package; "
                "install tomli or write the card as JSON"
            ) from exc
    with open(path, "rb") as fh:
        return tomllib.load(fh)


class ExportedModule(nn.Module):
    """Holds a ``torch.export`` module, whose train/eval mode was fixed when it was exported
    (calling its ``eval()`` raises), so that segbench can call ``.eval()`` on it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def train(self, mode: bool = True) -> ExportedModule:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(x)
        return out


def load_module(path: str | Path) -> nn.Module:
    """A TorchScript (``torch.jit.load``) or ``.pt2`` (``torch.export.load``) module, on CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} is missing; pass an existing .pt or .pt2 file")
    exported = path.suffix.lower() == EXPORT_SUFFIX
    try:
        if exported:
            return ExportedModule(torch.export.load(str(path)).module())
        with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; still supported
            warnings.simplefilter("ignore", DeprecationWarning)
            module: nn.Module = torch.jit.load(str(path), map_location="cpu")
        return module
    except Exception as exc:
        how = "torch.export.load" if exported else "torch.jit.load"
        raise ModelError(
            f"{path}: {how} cannot read it ({type(exc).__name__}: {exc}); save TorchScript with "
            "torch.jit.save (any suffix but .pt2) or an ExportedProgram with torch.export.save "
            "(suffix .pt2)"
        ) from exc


def card_from_torchscript(model_path: str | Path, card_path: str | Path) -> ModelCard:
    """A :class:`ModelCard` for a TorchScript / ``.pt2`` file and its card file."""
    model_path, card_path = Path(model_path), Path(card_path)
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} is missing; pass an existing .pt or .pt2 file")
    fields = read_card_file(card_path)
    return card_from_fields(fields, lambda: load_module(model_path), card_path, model_path.stem)
