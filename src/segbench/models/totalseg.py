"""TotalSegmentator's installed weights by name: ``totalsegmentator:fast`` and friends.

TotalSegmentator (github.com/wasserth/TotalSegmentator) keeps each task's network as an nnU-Net
v2 results folder under its weights directory, found as its ``config.get_weights_dir`` does:
``$TOTALSEG_WEIGHTS_PATH`` when set, else ``$TOTALSEG_HOME_DIR/nnunet/results``, else
``~/.totalsegmentator/nnunet/results`` (``/tmp/.totalsegmentator/...`` when the home folder is
``/``, as in some containers). A name here resolves to ``<weights>/<dataset>/<trainer>
__nnUNetPlans__3d_fullres`` and is built by :func:`segbench.models.nnunet.card_from_nnunet_folder`
with fold 0 and TotalSegmentator's prediction settings (``python_api.totalsegmentator``,
``nnunet.nnUNet_predict_image``): no test-time mirroring (segbench never mirrors) and its tile
step, 0.8 for the 1.5 mm ``total`` parts and nnU-Net's 0.5 otherwise (the fast 3 mm and
fastest 6 mm models included). The network runs at its plans' spacing, which for these models
is TotalSegmentator's resampling target (3, 6 or 1.5 mm).

Nothing is downloaded here: missing weights are a :class:`~segbench.errors.ModelError` that
names the folder looked in and TotalSegmentator's own download command.

The 1.5 mm ``total`` task is five networks whose masks TotalSegmentator merges; each is one
model here (``total_organs``, ``total_vertebrae``, ``total_cardiac``, ``total_muscles``,
``total_ribs``), with its own label numbering (TotalSegmentator's ``class_map_5_parts``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segbench.errors import ModelError

if TYPE_CHECKING:
    from segbench.models.card import ModelCard

PLANS = "nnUNetPlans"
CONFIGURATION = "3d_fullres"
_FAST_TRAINER = "nnUNetTrainer_4000epochs_NoMirroring"
_PARTS_TRAINER = "nnUNetTrainerNoMirroring"


@dataclass(frozen=True)
class TotalSegModel:
    """One TotalSegmentator network: its nnU-Net dataset and trainer folder, TotalSegmentator's
    resampling target and tile step, and the ``totalseg_download_weights -t`` task fetching it."""

    task_id: int
    dataset: str
    trainer: str
    resample_mm: float
    tile_step: float
    download_task: str

    @property
    def folder(self) -> str:
        return f"{self.dataset}/{self.trainer}__{PLANS}__{CONFIGURATION}"


MODELS: dict[str, TotalSegModel] = {
    "fast": TotalSegModel(
        297,
        "Dataset297_TotalSegmentator_total_3mm_1559subj",
        _FAST_TRAINER,
        3.0,
        0.5,
        "total_fast",
    ),
    "fastest": TotalSegModel(
        298,
        "Dataset298_TotalSegmentator_total_6mm_1559subj",
        _FAST_TRAINER,
        6.0,
        0.5,
        "total_fast",
    ),
    "total_organs": TotalSegModel(
        291,
        "Dataset291_TotalSegmentator_part1_organs_1559subj",
        _PARTS_TRAINER,
        1.5,
        0.8,
        "total",
    ),
    "total_vertebrae": TotalSegModel(
        292,
        "Dataset292_TotalSegmentator_part2_vertebrae_1532subj",
        _PARTS_TRAINER,
        1.5,
        0.8,
        "total",
    ),
    "total_cardiac": TotalSegModel(
        293,
        "Dataset293_TotalSegmentator_part3_cardiac_1559subj",
        _PARTS_TRAINER,
        1.5,
        0.8,
        "total",
    ),
    "total_muscles": TotalSegModel(
        294,
        "Dataset294_TotalSegmentator_part4_muscles_1559subj",
        _PARTS_TRAINER,
        1.5,
        0.8,
        "total",
    ),
    "total_ribs": TotalSegModel(
        295,
        "Dataset295_TotalSegmentator_part5_ribs_1559subj",
        _PARTS_TRAINER,
        1.5,
        0.8,
        "total",
    ),
}
PARTS = tuple(name for name in MODELS if name.startswith("total_"))


def check_name(name: str) -> TotalSegModel:
    """The model a ``totalsegmentator:NAME`` names, or a ModelError listing the names."""
    if name in MODELS:
        return MODELS[name]
    why = (
        "'total' is five networks whose masks TotalSegmentator merges; name one part"
        if name == "total"
        else f"unknown TotalSegmentator model {name!r}"
    )
    raise ModelError(
        f"totalsegmentator:{name}: {why}; choose one of {', '.join(MODELS)} "
        f"(the 1.5 mm 'total' parts are {', '.join(PARTS)})"
    )


def weights_dir(environ: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """TotalSegmentator's weights folder and where it came from, as TotalSegmentator finds it."""
    env = os.environ if environ is None else environ
    if "TOTALSEG_WEIGHTS_PATH" in env:
        return Path(env["TOTALSEG_WEIGHTS_PATH"]), "$TOTALSEG_WEIGHTS_PATH"
    if "TOTALSEG_HOME_DIR" in env:
        home, origin = Path(env["TOTALSEG_HOME_DIR"]), "$TOTALSEG_HOME_DIR/nnunet/results"
    else:
        user_home = Path("/tmp") if str(Path.home()) == "/" else Path.home()  # as TotalSegmentator
        home = user_home / ".totalsegmentator"
        origin = "the default ~/.totalsegmentator/nnunet/results"
    return home / "nnunet" / "results", origin


def model_folder(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """The nnU-Net results folder of ``totalsegmentator:NAME``; ModelError when it is missing."""
    model = check_name(name)
    root, origin = weights_dir(environ)
    folder = root / model.folder
    if folder.is_dir():
        return folder
    present = sorted(p.name for p in (root / model.dataset).glob("*") if p.is_dir())
    if present:
        found = f" ({root / model.dataset} holds {', '.join(present)})"
    elif not root.is_dir():
        found = f" ({root} does not exist)"
    else:
        found = ""
    raise ModelError(
        f"totalsegmentator:{name}: TotalSegmentator's weights are not installed: {folder} is "
        f"missing{found}; weights folder from {origin}. Download them with TotalSegmentator "
        f"(pip install TotalSegmentator): totalseg_download_weights -t {model.download_task} "
        "(segbench downloads nothing), or set TOTALSEG_WEIGHTS_PATH or TOTALSEG_HOME_DIR to "
        "where they are"
    )


def card(name: str, environ: Mapping[str, str] | None = None, **options: Any) -> ModelCard:
    """The card of ``totalsegmentator:NAME``; ``options`` are the ``nnunet:`` loader's
    (fold, checkpoint, configuration, tile_step, trust_checkpoint), over TotalSegmentator's."""
    from segbench.models.nnunet import card_from_nnunet_folder

    model = check_name(name)
    settings: dict[str, Any] = {"fold": 0, "tile_step": model.tile_step, **options}
    nnunet_card = card_from_nnunet_folder(model_folder(name, environ), **settings)
    return replace(nnunet_card, name=f"totalsegmentator-{name}")
