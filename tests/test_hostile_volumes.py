"""Hostile volumes, patterns and names (round 3): a case whose resampled grid (or an absurd
patch) cannot fit in memory is refused from its header, before any voxel is read; a bad
``--segbench-glob`` is a usage error naming the option; a 240-character case name fits in the
cache's file names and keeps its id whole."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import run_pytest, tiny_card

from segbench.bench.paired import PairedRun
from segbench.bench.runtime import Runtime
from segbench.cachefiles import fit_name
from segbench.errors import ConfigError, InputError
from segbench.inputs.cases import discover, glob_regex
from segbench.inputs.masks import label_map_from_masks
from segbench.inputs.volumes import canonical_grid, load_volume
from segbench.models.card import ModelCard
from segbench.pipeline.footprint import GIB, case_footprint, check_case_memory
from segbench.settings.config import load_config
from segbench.settings.pipeline import PipelineSettings

CARD = tiny_card(num_classes=3)  # 3 mm, patch (32, 32, 32)


def lazy_volume(shape: tuple[int, int, int], zooms: tuple[float, float, float]) -> nib.Nifti1Image:
    """A volume of ``shape`` that holds no memory (one int16 broadcast to every voxel): only
    decoding it (a float32 copy) would allocate."""
    data = np.broadcast_to(np.int16(-1000), shape)
    return nib.Nifti1Image(data, np.diag([*zooms, 1.0]))


def load(image: nib.Nifti1Image, card: ModelCard = CARD) -> PairedRun:
    """The paired run's loading of ``image`` (in memory: load_volume takes one) for ``card``."""
    config = load_config(None)
    runtime = Runtime(card, {}, {}, None, "export", None)
    return PairedRun.load("case", image, None, runtime, config, config.gates)  # type: ignore[arg-type]


def refused_before_reading(image: nib.Nifti1Image, card: ModelCard = CARD) -> str:
    """PairedRun.load refuses ``image``; the refusal allocated under 16 MB."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            load(image, card)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB allocated before the refusal"
    message = str(info.value)
    assert "\n" not in message and "Fix: " in message
    return message


def test_grid_that_resamples_past_memory_is_refused_before_reading() -> None:
    """400^3 at 20 mm is inside the voxel limit; at the model's 3 mm it is 2667^3 voxels."""
    message = refused_before_reading(lazy_volume((400, 400, 400), (20.0, 20.0, 20.0)))
    assert "needs about" in message and "GiB for one run" in message
    assert "(400, 400, 400) voxels at 20x20x20 mm resample to (2667, 2667, 2667)" in message
    assert "GiB is available" in message
    assert "check the voxel size in the header" in message


def test_absurd_patch_is_refused_before_reading() -> None:
    """An nnU-Net plan's patch of 2048^3 pads a small volume to 2048^3 x 3 classes."""
    card = tiny_card(num_classes=3, patch_size=(2048, 2048, 2048))
    message = refused_before_reading(lazy_volume((40, 36, 20), (3.0, 3.0, 3.0)), card)
    assert "the window (2048, 2048, 2048) of model 'tiny' pads its grid (40, 36, 20)" in message
    assert "the plan's patch_size (2048, 2048, 2048)" in message


def test_a_case_that_fits_is_loaded() -> None:
    data = np.full((40, 36, 20), -1000, np.int16)
    image = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
    pair = load(image)
    assert pair.volume.shape == (40, 36, 20)


def test_footprint_figures_and_the_limit() -> None:
    """The estimate is the module's formula; the limit is the memory available (injected)."""
    need = case_footprint((40, 36, 20), (3.0, 3.0, 3.0), CARD, [PipelineSettings()])
    assert need.grid == (40, 36, 20) and need.padded == (40, 36, 32)
    v, g, p, w = 40 * 36 * 20, 40 * 36 * 20, 40 * 36 * 32, 32**3
    assert need.bytes == 4 * (v + g + p * 5 + 1 * 4 * w) + g + v
    batched = case_footprint(
        (40, 36, 20), (3.0, 3.0, 3.0), CARD, [PipelineSettings(), PipelineSettings(batch_size=4)]
    )
    assert batched.bytes == need.bytes + 3 * 4 * 4 * w  # the larger of the two profiles
    check_case_memory("x", (40, 36, 20), (3.0, 3.0, 3.0), CARD, [], available=need.bytes)
    with pytest.raises(InputError, match=r"x: needs about 0\.0 GiB .* only 0\.0 GiB"):
        check_case_memory("x", (40, 36, 20), (3.0, 3.0, 3.0), CARD, [], available=need.bytes - 1)
    assert need.gib == need.bytes / GIB


def test_canonical_grid_follows_the_reorientation() -> None:
    affine = np.array([[0, 0, -2.0, 0], [0.5, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), affine)
    volume = load_volume(image, expect_ct=False)
    assert canonical_grid((4, 5, 6), affine) == (volume.shape, volume.spacing)


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("[z-a]*.nii.gz", "is not a valid pattern (bad character range z-a"),
        ("/data/*.nii.gz", "is an absolute path"),
        ("../other/*.nii.gz", "leaves the data folder (..)"),
    ],
)
def test_bad_glob_is_a_config_error(tmp_path: Path, pattern: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        discover(tmp_path, pattern)
    message = str(info.value)
    assert message.startswith(f"--segbench-glob={pattern} ") and words in message
    assert "Fix: " in message


def test_brackets_match_literally_in_brackets() -> None:
    assert glob_regex("[[]x*").match("[x1.nii.gz")
    assert glob_regex("[!a]b.nii").match("cb.nii") and not glob_regex("[!a]b.nii").match("ab.nii")


def test_bad_glob_is_a_usage_error_in_a_session(tmp_path: Path) -> None:
    out = run_pytest(
        tmp_path, "--collect-only", f"--segbench-data={tmp_path}", "--segbench-glob=[z-a]"
    )
    assert out.returncode == 4, out.stdout[-2000:] + out.stderr[-2000:]
    assert "--segbench-glob=[z-a] is not a valid pattern" in out.stderr
    assert "Traceback" not in out.stderr


def test_long_names_fit_the_file_system() -> None:
    assert fit_name("scan", ".nii.gz") == "scan.nii.gz"
    long = "c" * 240
    name = fit_name(long, ".nii.gz")
    assert len(name.encode()) <= 150 and name.startswith("c" * 100) and name.endswith(".nii.gz")
    assert fit_name(long + "x", ".nii.gz") != name  # the hash keeps two long names apart
    wide = fit_name("é" * 200, ".png")  # two bytes a character: cut on a character
    assert len(wide.encode()) <= 150 and wide.encode().decode() == wide


def test_long_case_folder_gets_a_short_cache_name(tmp_path: Path) -> None:
    folder = tmp_path / "data" / ("s" * 240) / "segmentations"
    folder.mkdir(parents=True)
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), folder / "class_1.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.int16), np.eye(4)), folder.parent / "ct.nii.gz")
    out, names = label_map_from_masks(folder, CARD.class_names, tmp_path / "cache")
    assert out is not None and out.is_file() and len(out.name) <= 150
    assert names == {1: "class_1"}
    found = discover(tmp_path / "data")
    # the case id stays whole, only the cache's file name is short
    assert [c.id for c in found.cases] == ["s" * 240]
