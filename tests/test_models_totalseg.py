"""segbench.models.totalseg: TotalSegmentator's installed weights by name, found in fake
TotalSegmentator homes (the tiny nnU-Net folders of nnunet_folders under TotalSegmentator's
dataset and trainer names)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nnunet_folders import (
    TINY_FEATURES,
    TINY_KERNELS_ZYX,
    TINY_PATCH_ZYX,
    TINY_STRIDES_ZYX,
    make_dataset,
    make_plans,
    tiny_net,
    write_folder,
)

from segbench.errors import ModelError
from segbench.models import get_card, is_valid_model_name, load_network, parse_model_name
from segbench.models.totalseg import MODELS, PARTS, weights_dir

ENV = ("TOTALSEG_WEIGHTS_PATH", "TOTALSEG_HOME_DIR")


@pytest.fixture(autouse=True)
def _no_totalseg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def install(results: Path, name: str = "fast") -> Path:
    """A tiny network as TotalSegmentator's ``name`` model under its weights folder."""
    model = MODELS[name]
    plans = make_plans(
        model.dataset,
        TINY_FEATURES,
        TINY_KERNELS_ZYX,
        TINY_STRIDES_ZYX,
        TINY_PATCH_ZYX,
        [model.resample_mm] * 3,
    )
    trainer = model.folder.split("/")[1]
    return write_folder(results, model.dataset, plans, make_dataset(3), tiny_net(), trainer=trainer)


def _same_weights(card_name: str) -> None:
    loaded = load_network(get_card(card_name)).state_dict()
    expected = tiny_net().state_dict()
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in loaded)


def test_fast_from_totalseg_home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = install(tmp_path / "home" / "nnunet" / "results")
    assert folder.name == "nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres"
    assert folder.parent.name == "Dataset297_TotalSegmentator_total_3mm_1559subj"
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    card = get_card("totalsegmentator:fast")
    assert card.name == "totalsegmentator-fast"
    assert card.spacing == (3.0, 3.0, 3.0)
    assert card.tile_step == 0.5  # TotalSegmentator uses 0.8 only for the 1.5 mm total parts
    _same_weights("totalsegmentator:fast")


def test_weights_path_wins_over_home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path / "weights")
    (tmp_path / "empty_home").mkdir()
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "empty_home"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "weights"))
    assert weights_dir() == (tmp_path / "weights", "$TOTALSEG_WEIGHTS_PATH")
    _same_weights("totalsegmentator:fast")


def test_default_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    install(tmp_path / ".totalsegmentator" / "nnunet" / "results")
    assert weights_dir()[0] == tmp_path / ".totalsegmentator" / "nnunet" / "results"
    assert get_card("totalsegmentator:fast#tile_step=0.8").tile_step == 0.8  # options apply


def test_a_part_of_the_total_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = install(tmp_path / "w", "total_organs")
    assert folder.name == "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "w"))
    card = get_card("totalsegmentator:total_organs")
    assert card.spacing == (1.5, 1.5, 1.5) and card.tile_step == 0.8
    assert PARTS == (
        "total_organs",
        "total_vertebrae",
        "total_cardiac",
        "total_muscles",
        "total_ribs",
    )


@pytest.mark.parametrize(("name", "task"), [("fast", "total_fast"), ("total_ribs", "total")])
def test_missing_weights_name_the_download_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, task: str
) -> None:
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    with pytest.raises(ModelError) as info:
        get_card(f"totalsegmentator:{name}")
    message = str(info.value)
    assert f"totalseg_download_weights -t {task}" in message
    assert str(tmp_path / "home" / "nnunet" / "results" / MODELS[name].dataset) in message
    assert "$TOTALSEG_HOME_DIR" in message and "does not exist" in message


def test_missing_trainer_lists_what_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "w" / MODELS["fast"].dataset / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    other.mkdir(parents=True)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "w"))
    with pytest.raises(ModelError, match="holds nnUNetTrainer__nnUNetPlans__3d_fullres"):
        get_card("totalsegmentator:fast")


def test_names() -> None:
    assert is_valid_model_name("totalsegmentator:fast")
    assert is_valid_model_name("totalsegmentator:total_cardiac#trust")
    assert parse_model_name("totalsegmentator:fast#fold=0,trust") == (
        "totalsegmentator",
        {"name": "fast", "fold": 0, "trust_checkpoint": True},
    )
    for bad in ("totalsegmentator:", "totalsegmentator:total", "totalsegmentator:fast#x=1"):
        assert not is_valid_model_name(bad)
    with pytest.raises(ModelError, match=r"'total' is five networks.*total_organs"):
        get_card("totalsegmentator:total")
