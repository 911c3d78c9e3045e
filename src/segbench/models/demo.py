"""The embedded demo model: a small nnU-Net-style 3D U-Net trained on segbench's phantoms.

Weights and their card are package data, ``segbench/models/weights/`` (made by
``python scripts/train_demo.py`` in the repository), so an installed segbench carries them;
``$SEGBENCH_DEMO_DIR`` points elsewhere.
"""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path

from segbench.errors import ModelError
from segbench.models.card import ModelCard
from segbench.models.normalization import CTNormalization
from segbench.models.unet import PlainConvUNet

FEATURES = (8, 16, 32, 64)
STRIDES = ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2))
WEIGHTS_NAME = "demo_unet.pt"
CARD_NAME = "demo_unet.json"


def package_dir() -> Path:
    """The folder of the demo weights inside the installed package (``models/weights``)."""
    folder = files("segbench.models").joinpath("weights")
    if not isinstance(folder, Path):
        raise ModelError(
            f"the demo weights {folder} are inside an archive, not a folder. Fix: install "
            "segbench as files (pip install segbench, not a zipped import)"
        )
    return folder


def default_dir() -> Path:
    """``$SEGBENCH_DEMO_DIR`` when set, else the package's own demo weights."""
    env = os.environ.get("SEGBENCH_DEMO_DIR")
    if env:
        return Path(env)
    return package_dir()


def build(num_classes: int) -> PlainConvUNet:
    return PlainConvUNet(1, FEATURES, STRIDES, num_classes)


def card(directory: Path | None = None) -> ModelCard:
    folder = Path(directory) if directory is not None else default_dir()
    meta_path = folder / CARD_NAME
    if not meta_path.is_file():
        raise ModelError(
            f"demo model card {meta_path} is missing. Fix: reinstall segbench (its wheel carries "
            "segbench/models/weights/), run `python scripts/train_demo.py` in the segbench "
            "repository, or set SEGBENCH_DEMO_DIR to the folder holding it"
        )
    try:
        meta = json.loads(meta_path.read_text())
        norm = meta["normalization"]
        classes = tuple(meta["class_names"])
        return ModelCard(
            name="demo",
            build=lambda: build(len(classes)),
            spacing=tuple(meta["spacing"]),
            patch_size=tuple(meta["patch_size"]),
            total_stride=(8, 8, 8),
            normalization=CTNormalization(**norm),
            class_names=classes,
            tile_step=float(meta["tile_step"]),
            weights=folder / WEIGHTS_NAME,
            weights_sha256=str(meta["weights_sha256"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"demo model card {meta_path} is malformed ({type(exc).__name__}: {exc}); "
            "restore it from git or retrain with `python scripts/train_demo.py`"
        ) from exc
