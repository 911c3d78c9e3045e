"""``segbench compare`` refuses runs measured differently (unless --force), injected runs say so
in gate/report/compare, the two reference latencies are labelled, and the PNGs stay readable
(at most 4,000 px wide at 7 and at 118 classes, colours banded by the gate thresholds)."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from saved_runs import SUITE, make_run, run_cli, shard, write

from segbench.results.compare import compare_runs
from segbench.results.mismatch import RunsNotComparable, run_differences
from segbench.results.runs import parse_run
from segbench.settings.config import Gates

BANNER = (
    "INJECTED: slowdown=0.5 - this run was deliberately made worse; its verdict is not the code's"
)


def full_run(**run_kw: Any) -> dict[str, Any]:
    """A saved run of the whole synthetic suite with its segbench block (settings)."""
    return shard(list(SUITE), None, **run_kw)


def injected(data: dict[str, Any], what: str = "slowdown=0.5") -> dict[str, Any]:
    """``data`` as if run with --segbench-inject: the fingerprint and each candidate say so."""
    data = copy.deepcopy(data)
    data["segbench"]["settings"]["options"]["injection"] = what
    for bench in data["benchmarks"]:
        if bench["extra_info"]["role"] == "candidate":
            bench["extra_info"]["injected"] = what
    return data


def _compare(tmp_path: Path, old: dict[str, Any], new: dict[str, Any], *args: str) -> Any:
    return run_cli(
        "compare", write(tmp_path / "old.json", old), write(tmp_path / "new.json", new), *args
    )


# refusal --------------------------------------------------------------------------------------


def test_injected_against_normal_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = _compare(tmp_path, full_run(), injected(full_run(slow_candidate=1.5)))
    err = capsys.readouterr().err
    assert code == 2 and text == ""
    assert "were measured differently" in err
    assert "injected: none vs slowdown=0.5" in err
    assert "old.json" in err and "new.json" in err and "Fix:" in err and "--force" in err


def test_one_round_against_three_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = full_run()
    new["segbench"]["settings"]["config"]["timing"].update(rounds=1, warmup_rounds=0)
    code, _ = _compare(tmp_path, full_run(), new)
    err = capsys.readouterr().err
    assert code == 2
    assert "rounds 3 vs 1" in err and "warm-up rounds 2 vs 0" in err


def test_other_cpu_is_refused_and_every_difference_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = injected(full_run())
    new["machine_info"]["cpu"]["brand_raw"] = "AMD EPYC 7763 64-Core Processor"
    settings = new["segbench"]["settings"]
    settings["options"]["malloc"] = "steady"
    settings["config"]["timing"]["estimator"] = "median"
    old = full_run()
    old["segbench"]["settings"]["options"]["malloc"] = "default"
    code, _ = _compare(tmp_path, old, new)
    err = capsys.readouterr().err
    assert code == 2
    for needle in (
        "CPU 'Test CPU' vs 'AMD EPYC 7763 64-Core Processor'",
        "injected: none vs slowdown=0.5",
        "malloc 'default' vs 'steady'",
        "estimator 'min' vs 'median'",
    ):
        assert needle in err, needle


def test_model_and_weights_are_refused() -> None:
    old, new = full_run(), full_run()
    new["segbench"]["settings"].update(model="other", weights_sha256="00" * 32)
    with pytest.raises(RunsNotComparable) as info:
        compare_runs(parse_run(old), parse_run(new))
    assert [d.label for d in info.value.refused] == ["model", "weights"]
    assert f"weights '{'ab' * 6}...' vs '{'00' * 6}...'" in str(info.value)


def test_versions_and_gates_only_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = full_run()
    new["segbench"]["settings"]["versions"]["torch"] = "2.14.0+cpu"
    new["segbench"]["settings"]["config"]["gates"]["dice_min"] = 0.995
    code, text = _compare(tmp_path, full_run(), new)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: version of torch '2.13.0+cpu' vs '2.14.0+cpu'" in err
    assert "warning: gate dice_min 0.99 vs 0.995" in err
    assert "settings that differ (latencies still compare; old vs new):" in text
    assert "FORCED" not in text and "No threshold crossed in 3 common cases." in text


def test_a_baseline_saved_with_more_pairs_still_compares() -> None:
    """The pair budget (--segbench-budget=60 for a sharper baseline) adds pairs for the
    speed-up gates only: pytest-benchmark's rounds, hence the latencies, are unchanged."""
    old, new = full_run(), full_run()
    timing = old["segbench"]["settings"]["config"].setdefault("timing", {})
    timing.update(budget_s=60.0, max_rounds=24, precision=0.01)
    new_timing = new["segbench"]["settings"]["config"].setdefault("timing", {})
    new_timing.update(budget_s=15.0, max_rounds=12, precision=0.03)
    found = run_differences(parse_run(old), parse_run(new))
    assert [(d.text(), d.refuses) for d in found] == [
        ("pair budget 60.0 vs 15.0", False),
        ("max pairs 24 vs 12", False),
        ("pair precision 0.01 vs 0.03", False),
    ]
    compare_runs(parse_run(old), parse_run(new))  # not refused


def test_a_setting_one_run_did_not_record_is_not_refused() -> None:
    old, new = full_run(), full_run()
    new["segbench"]["settings"]["options"]["malloc"] = "steady"  # old lacks the key
    found = run_differences(parse_run(old), parse_run(new))
    assert [(d.text(), d.refuses) for d in found] == [("malloc absent vs 'steady'", False)]


def test_runs_without_a_segbench_block_are_checked_on_their_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = make_run()
    for bench in new["benchmarks"]:
        if bench["extra_info"]["role"] == "candidate":
            bench["extra_info"]["injected"] = "slowdown=0.5"
    code, _ = _compare(tmp_path, make_run(), new)
    assert code == 2 and "injected: none vs slowdown=0.5" in capsys.readouterr().err
    code, text = _compare(tmp_path, make_run(), make_run())
    assert code == 0 and "only its CPU, model, estimator and injection were checked" in text


def test_force_compares_and_says_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = injected(full_run(slow_candidate=1.5))
    new["segbench"]["settings"]["config"]["timing"]["rounds"] = 1
    code, text = _compare(tmp_path, full_run(), new, "--force")
    assert code == 1  # the injected slowdown crosses --max-slowdown
    lines = text.splitlines()
    assert lines[0] == "# segbench: run comparison - FORCED"
    forced = next(line for line in lines if line.startswith("**FORCED:"))
    assert "rounds 3 vs 1" in forced and "injected: none vs slowdown=0.5" in forced
    assert f"**new run {BANNER}**" in text
    assert "FORCED: the runs were measured differently" in lines[-1]
    assert "INJECTED (new run): not the code's verdict." in lines[-1]
    assert "FORCED past: rounds 3 vs 1" in capsys.readouterr().err


# injected runs in gate and report ----------------------------------------------------------


def test_gate_on_an_injected_run_that_passes_says_so(tmp_path: Path) -> None:
    path = write(tmp_path / "inj.json", injected(full_run()))
    code, text = run_cli("gate", path)
    lines = text.rstrip().splitlines()
    assert code == 0
    assert lines[0] == BANNER
    assert lines[-1] == f"segbench gate: passed (3 cases, 0 not ok) - {BANNER}"
    code, text = run_cli("gate", write(tmp_path / "normal.json", full_run()))
    assert code == 0 and "INJECTED" not in text


def test_report_of_an_injected_run_says_so_first(tmp_path: Path) -> None:
    path = write(tmp_path / "inj.json", injected(full_run()))
    code, text = run_cli("report", path, "--out", tmp_path / "rep", "--no-plots")
    lines = text.splitlines()
    assert code == 0
    assert lines[0] == "# segbench report: synthetic model, inj (INJECTED: slowdown=0.5)"
    assert lines[2] == f"**{BANNER}**"
    code, text = run_cli("export-gab", path, "--kind", "smaller")
    assert code == 0 and "INJECTED: slowdown=0.5" in text


# the two reference latencies ----------------------------------------------------------------


def test_both_reference_figures_are_labelled(tmp_path: Path) -> None:
    data = full_run()
    for bench in data["benchmarks"]:  # the reference test's own rounds ran 1.5x slower
        info = bench["extra_info"]
        if info["role"] == "reference":
            info["latency_s"] *= 1.5
    path = write(tmp_path / "run.json", data)
    run = parse_run(data)
    row = run.rows[0]
    assert row.reference_s == pytest.approx(2.5) and row.reference_own_s == pytest.approx(3.75)
    assert row.roles["reference"].latency_source == "gate"
    code, text = run_cli("report", path, "--out", tmp_path / "rep", "--no-plots")
    assert code == 0
    assert "| phantom_a_s1.nii.gz | 64x64x40 | 2.500 | 1.250 | 2.00x | 3.750 |" in text
    # the stage table says which figure the table shows beside the stages' total
    assert "| 2.500 | 2.500 (paired, gate) [3.750 own rounds] |" in text
    assert "| 1.250 | 1.250 (min of own rounds) |" in text
    code, text = run_cli("gate", path)
    assert "torch s (paired, gate)" in text and "reference s (own rounds)" in text
    code, text = run_cli("compare", path, path)
    assert "| subject | reference s (paired, gate) | candidate s |" in text


def test_worst_classes_say_which_are_too_small_to_gate(tmp_path: Path) -> None:
    data = full_run()
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info["role"] == "candidate" and info["case"] == "phantom_a_s1.nii.gz":
            info["class_dice"] = {"1": 0.90, "2": 0.94, "3": 0.999}
            info["gated_class_dice_min"] = 0.92  # class 1 (0.90) was too small to gate
    code, text = run_cli(
        "report", write(tmp_path / "r.json", data), "--no-plots", "--out", tmp_path
    )
    assert code == 0
    assert "| label 1 | 1 | 0.90000 | phantom_a_s1.nii.gz | 1 of 3 (1 too small to gate) |" in text
    assert "| label 2 | 2 | 0.94000 | phantom_a_s1.nii.gz | 1 of 2 |" in text
    assert "class_dice_min 0.95, applied to classes with at least 1000 voxels" in text


# plots -----------------------------------------------------------------------------------------


def many_classes(n_classes: int, n_cases: int = 3, seed: int = 0) -> dict[str, Any]:
    """``full_run`` with ``n_classes`` classes of random Dice per case (some absent)."""
    rnd = random.Random(seed)
    data = full_run()
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info["role"] == "candidate":
            dice = {
                str(c): round(1 - rnd.random() ** 6 * 0.03, 6)
                for c in range(1, n_classes + 1)
                if rnd.random() > 0.1
            }
            info["class_dice"] = dice
            info["mean_dice"] = sum(dice.values()) / len(dice)
    extra = []
    for k in range(n_cases - len(SUITE)):
        for bench in data["benchmarks"][:2]:
            bench = copy.deepcopy(bench)
            bench["extra_info"]["case"] = bench["group"] = f"extra_case_{k:02d}.nii.gz"
            extra.append(bench)
    data["benchmarks"] += extra
    return data


@pytest.mark.parametrize(("n_classes", "n_cases"), [(7, 3), (118, 3), (118, 40)])
def test_pngs_are_at_most_4000_px_wide(tmp_path: Path, n_classes: int, n_cases: int) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    path = write(tmp_path / "run.json", many_classes(n_classes, n_cases))
    code, text = run_cli("report", path, "--out", tmp_path / "rep")
    assert code == 0
    for name in ("latency.png", "speedup_vs_voxels.png", "class_dice.png"):
        height, width = imread(tmp_path / "rep" / name).shape[:2]
        assert 300 <= width <= 4000, (name, width)
        assert height <= 8000, (name, height)
    assert f"## Worst classes ({min(12, n_classes)} of " in text


def test_disagreement_png_of_118_labels_fits_and_names_the_differing_classes(
    tmp_path: Path,
) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from segbench.results.disagreement import _legend_labels, plot_disagreement

    rng = np.random.default_rng(0)
    ct = rng.normal(40.0, 30.0, (60, 50, 6)).astype(np.float32)
    reference = rng.integers(0, 119, ct.shape).astype(np.uint8)
    candidate = reference.copy()
    candidate[:10, :10, 3] = 117
    path = tmp_path / "d.png"
    names = ["background", *(f"organ_{i}" for i in range(1, 119))]
    assert plot_disagreement(ct, reference, candidate, path, "t", class_names=names) == 3
    assert imread(path).shape[1] <= 4000
    named, differing, more = _legend_labels(
        reference[..., 3], candidate[..., 3], candidate[..., 3] != reference[..., 3]
    )
    assert 117 in named and 117 in differing and more == 118 - len(named)


def test_dice_colours_have_their_edges_at_the_gate_thresholds() -> None:
    pytest.importorskip("matplotlib")
    from segbench.results.plots import dice_bands

    gates = Gates(dice_min=0.995, class_dice_min=0.98)
    edges, colors, names = dice_bands(gates)
    assert 0.98 in edges and 0.995 in edges and edges == sorted(edges)
    assert len(colors) == len(names) == len(edges) - 1

    def band(dice: float) -> str:
        return names[int(np.searchsorted(edges, dice, side="right")) - 1]

    assert band(0.97).startswith("< class_dice_min 0.98")
    assert band(0.99).startswith("< dice_min 0.995")
    # a passing class is never in the warning colours (before: a passing run all orange)
    for dice in (0.995, 0.9971, 0.9995, 1.0):
        assert band(dice).startswith(">="), dice
    # thresholds out of order or equal still make an ascending scale
    edges, colors, _ = dice_bands(Gates(dice_min=0.99, class_dice_min=0.99))
    assert edges == sorted(set(edges)) and len(colors) == len(edges) - 1
