"""The regression suite run end to end in a subprocess, with and without injected regressions.

Each gate has a run here that shows it failing: an ONNX file with perturbed weights fails the
Dice gate; an injected candidate slowdown fails the speed-up gate; the unchanged run passes. The
runs use ``--benchmark-only``, the main job, so they also show that the gates run there.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import TINY_GRID, phantom_folder, run_suite

from segbench.inputs.phantoms import GridSpec, PhantomSpec
from segbench.models import get_card, load_network
from segbench.pipeline.export import export_onnx

SMALL = GridSpec("small3mm", (96, 80, 64), (3.0, 3.0, 3.0), "LPS")
CASE = "phantom_small3mm_lps_s007.nii.gz"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small phantom (3 mm, 96 x 80 x 64, LPS) as a user data folder."""
    return phantom_folder(PhantomSpec(SMALL, 7), tmp_path_factory)


Session = Callable[..., pytest.RunResult]  # the plugin_session fixture


def main_job(data_dir: Path, rounds: int = 2) -> list[str]:
    """The arguments of the main job on ``data_dir`` (as :func:`helpers.run_suite` gives)."""
    return ["--benchmark-only", "--segbench-data", str(data_dir), "--segbench-rounds", str(rounds)]


def failed_candidate(stdout: str) -> bool:
    return any(
        line.startswith("FAILED") and f"test_candidate[{CASE}]" in line
        for line in stdout.splitlines()
    )


@pytest.mark.slow
def test_unchanged_run_passes_and_prints_table(data_dir: Path, plugin_session: Session) -> None:
    result = plugin_session(*main_job(data_dir), "--segbench-speedup-min", "0.8")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*segbench: demo model, torch (reference) vs onnx (candidate)*",
            f"{CASE}*96x80x64*ok*",
            "total (1 cases)*all ok*",
        ]
    )


@pytest.mark.slow
def test_perturbed_onnx_fails_dice_gate(data_dir: Path, tmp_path: Path) -> None:
    card = get_card("demo")
    net = load_network(card)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith("seg."):  # the last 1x1 conv: mean Dice drops ~0.02
                param.add_(torch.randn(param.shape, generator=gen) * 0.1)
    bad = export_onnx(net, card, tmp_path / "onnx").path
    out = run_suite(data_dir, tmp_path, "--segbench-onnx", str(bad), "--segbench-speedup-min", "0")
    assert out.returncode == 1, out.stdout[-3000:]
    assert failed_candidate(out.stdout)
    assert "mean Dice" in out.stdout and "(gate dice_min" in out.stdout
    assert "of voxels changed label" in out.stdout and "Fix: the candidate" in out.stdout
    png = tmp_path / "reports" / f"{CASE}-disagreement.png"
    assert "Worst slice" in out.stdout and str(png) in out.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.stat().st_size > 10_000
    assert "FAIL dice" in out.stdout


@pytest.mark.slow
def test_slow_candidate_fails_speedup_gate(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A relative slowdown: every candidate window takes 16 times as long, whatever the load. A
    # fixed delay (2 s) did not fail the gate when a busy machine slowed the reference's one
    # window 14-fold (2.06 s against 0.15 s quiet); a load slows both sides of a pair alike,
    # so the ratio stays below 0.8 unless the candidate alone were 13 times faster than PyTorch.
    tiny = phantom_folder(PhantomSpec(TINY_GRID, 7), tmp_path_factory)
    out = run_suite(
        tiny,
        tmp_path,
        "--segbench-inject=slowdown=15",
        "--segbench-busy-max=1",  # the test's verdict, not the machine's load
        "--segbench-speedup-min",
        "0.8",
        "--segbench-warmup",
        "1",
        "--segbench-rounds",
        "1",
    )
    assert out.returncode == 1, out.stdout[-3000:]
    assert any(
        line.startswith("FAILED") and "test_candidate[phantom_tiny3mm" in line
        for line in out.stdout.splitlines()
    )
    assert "speed-up" in out.stdout and "gate speedup_min 0.8x" in out.stdout
    assert "FAIL speedup" in out.stdout


@pytest.mark.slow
def test_window_shift_on_one_side_fails_dice_gate(data_dir: Path, tmp_path: Path) -> None:
    """A pipeline bug on the candidate side: each window's logits land one voxel off."""
    out = run_suite(
        data_dir,
        tmp_path,
        "--segbench-inject=shift=1",
        "--segbench-speedup-min=0",
        "--segbench-rounds=1",
        "--segbench-warmup=0",
    )
    assert out.returncode == 1, out.stdout[-3000:]
    assert failed_candidate(out.stdout) and "FAIL dice" in out.stdout
    assert "INJECTED into the candidate: shift=1" in out.stdout


@pytest.mark.slow
def test_slowdown_against_a_baseline_fails_speedup_gate(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A candidate four times as slow keeps a speed-up above speedup_min 0.05 here, but falls
    more than speedup_drop_max below the saved run of the same machine."""
    tiny = phantom_folder(PhantomSpec(TINY_GRID, 7), tmp_path_factory)
    base = tmp_path / "base.json"
    # tiny runs (0.1 s) are noisy, and a busy machine's load changes between the two sessions:
    # six pairs after two warm-ups, and a slowdown (0.25 of the baseline) far past the 30 %
    # threshold, make the verdict clear (twice as slow, the verdict was flaky under load)
    fast = ["--segbench-speedup-min=0.05", "--segbench-warmup=2", "--segbench-rounds=6"]
    fast.append("--segbench-busy-max=1")  # the test's verdict, not the machine's load
    first = run_suite(tiny, tmp_path, *fast, f"--benchmark-json={base}")
    assert first.returncode == 0, first.stdout[-3000:]
    out = run_suite(
        tiny, tmp_path, *fast, f"--segbench-baseline={base}", "--segbench-inject=slowdown=3.0"
    )
    assert out.returncode == 1, out.stdout[-3000:]
    assert "FAIL speedup" in out.stdout and "gate speedup_drop_max 30%" in out.stdout
    assert "regressed (gate speedup_drop_max 30%)" in out.stdout
    assert "FAIL suite_speedup: suite: regressed: speed-up 0." in out.stdout
    assert f"baseline {base}" in out.stdout


def test_empty_data_folder_is_a_usage_error(tmp_path: Path, plugin_session: Session) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = plugin_session(*main_job(empty))
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(["*holds no .nii or .nii.gz files*"])


@pytest.mark.slow
def test_bad_volume_fails_only_its_own_cases(data_dir: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    good = next(data_dir.iterdir())
    shutil.copy(good, mixed / good.name)
    (mixed / "broken.nii.gz").write_bytes(good.read_bytes()[:5000])  # truncated download
    out = run_suite(mixed, tmp_path, "--segbench-speedup-min", "0", "--segbench-rounds", "1")
    assert out.returncode == 1, out.stdout[-3000:]
    # the reference test reports the case's error; its candidate test is skipped, naming it
    assert "2 passed, 1 skipped, 1 error" in out.stdout, out.stdout[-3000:]
    assert "broken.nii.gz" in out.stdout and "Fix:" in out.stdout
    table = out.stdout.split("segbench: demo model")[1]
    assert "broken.nii.gz" in table and "ERROR" in table and "ok" in table


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--segbench-rounds", "0"], "must be >= 1"),
        (["--segbench-dice-min", "1.5"], "must be in [0, 1]"),
        (["--segbench-suite", "all"], "choose one of quick, seed20, none"),
        (["--segbench-model", "unet9"], "unknown model 'unet9'"),
        (["--segbench-inject=slow=2"], "unknown injection 'slow=2'"),
        (["--segbench-baseline=missing.json"], "missing.json: does not exist"),
        (["--segbench-model", "totalsegmentator:total"], "name one part"),
    ],
)
def test_bad_options_are_usage_errors(
    data_dir: Path, plugin_session: Session, args: list[str], expected: str
) -> None:
    result = plugin_session(*main_job(data_dir), *args)
    assert result.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.USAGE_ERROR)
    assert expected in result.stdout.str() + result.stderr.str()


def test_bad_benchmarks_json_names_key_and_file(
    data_dir: Path, tmp_path: Path, plugin_session: Session
) -> None:
    bad = tmp_path / "bench.json"
    bad.write_text('{"gates": {"dice_minimum": 0.9}}')
    result = plugin_session(*main_job(data_dir), "--segbench-config", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "gates.dice_minimum" in result.stderr.str() and str(bad) in result.stderr.str()
