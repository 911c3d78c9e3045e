"""The agreement gates in a plugin session (the main job, ``--benchmark-only``) on a tiny
phantom: each fails on its injected mask edit, and an unchanged run passes them and saves the
figures with the noise floors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import TINY_GRID, run_pytest

from segbench.inputs.phantoms import PhantomSpec, default_cache_dir, ensure_phantom

CASE = "phantom_tiny3mm_ras_s007.nii.gz"
AGREEMENT_GATES = ("nsd", "hd95", "volume", "vanished")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    image, _ = ensure_phantom(PhantomSpec(TINY_GRID, 7), default_cache_dir())
    folder = tmp_path_factory.mktemp("scans")
    shutil.copy(image, folder / image.name)
    return folder


def session(tiny: Path, tmp_path: Path, *extra: str) -> tuple[int, str, dict[str, bool]]:
    """The main job on the tiny phantom (speed-up gate out of the way): exit code, output and
    the candidate's saved gate results."""
    saved = tmp_path / "run.json"
    out = run_pytest(
        tmp_path,
        "--benchmark-only",
        f"--segbench-data={tiny}",
        "--segbench-rounds=2",
        "--segbench-speedup-min=0.01",
        f"--benchmark-json={saved}",
        *extra,
    )
    benches = json.loads(saved.read_text())["benchmarks"]
    (cand,) = [b["extra_info"] for b in benches if b["extra_info"].get("role") == "candidate"]
    return out.returncode, out.stdout + out.stderr, cand


@pytest.mark.slow
def test_unchanged_run_passes_and_saves_the_figures(tiny: Path, tmp_path: Path) -> None:
    code, text, cand = session(tiny, tmp_path)
    assert code == 0, text[-3000:]
    assert all(cand["gates"][g] for g in AGREEMENT_GATES), cand["gates"]
    agreement = cand["agreement"]
    assert set(agreement["noise_floor"]) == {"reference", "candidate"}
    assert agreement["vanished"] == [] and agreement["seconds"] >= 0
    assert min(c["nsd"] for c in agreement["classes"].values()) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize(
    ("injection", "gate", "words"),
    [
        ("erode=liver", "nsd", "normalised surface Dice lowest liver"),
        ("drop=spleen", "vanished", "1 class(es) vanished from the candidate's mask: spleen"),
        ("grow=liver:5", "volume", "volume difference largest liver +4.99 %"),
    ],
)
def test_mask_edit_fails_its_gate(
    tiny: Path, tmp_path: Path, injection: str, gate: str, words: str
) -> None:
    code, text, cand = session(tiny, tmp_path, f"--segbench-inject={injection}")
    assert code == 1
    assert cand["gates"][gate] is False and cand["injected"] == injection
    assert any(
        line.startswith("FAILED") and f"test_candidate[{CASE}]" in line
        for line in text.splitlines()
    )
    assert words in text and "Fix:" in text
