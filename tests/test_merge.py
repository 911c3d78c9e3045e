"""``segbench merge`` and ``segbench gate`` on small synthetic shards: what merges, what is
refused (and the message), and the gate decision of a merged run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from saved_runs import SUITE, make_run, run_cli, shard, write

from segbench.results.decision import gate_decision
from segbench.results.merge import MergeError, differences, merge_shards
from segbench.results.runs import load_run


@pytest.fixture
def shards(tmp_path: Path) -> tuple[Path, Path]:
    a = write(tmp_path / "shard-1.json", shard(SUITE[:2], 1, node="ci-1"))
    b = write(tmp_path / "shard-2.json", shard(SUITE[2:], 2, node="ci-2"))
    return a, b


def test_merge_keeps_cases_dice_and_machines(tmp_path: Path, shards: tuple[Path, Path]) -> None:
    whole = load_run(write(tmp_path / "whole.json", make_run()))
    out = tmp_path / "merged.json"
    # shards given in any order: the merged run is in suite order
    code, text = run_cli("merge", shards[1], shards[0], "-o", out)
    assert code == 0, text
    assert "merged 2 shards, 3 cases into" in text and "group 2/2" in text
    merged = load_run(out)
    assert [r.case for r in merged.rows] == [r.case for r in whole.rows]
    for m, w in zip(merged.rows, whole.rows, strict=True):
        assert m.mean_dice == w.mean_dice and m.class_dice == w.class_dice
        assert m.gates == w.gates and m.reference_s == w.reference_s
    assert [r.machine for r in merged.rows] == [
        "ci-1 (Test CPU, 2 CPUs, Python 3.11.7)",
        "ci-1 (Test CPU, 2 CPUs, Python 3.11.7)",
        "ci-2 (Test CPU, 2 CPUs, Python 3.11.7)",
    ]
    assert merged.machine == "2 machines (per case below)"
    block = json.loads(out.read_text())["segbench"]
    assert [s["file"] for s in block["merged_from"]] == ["shard-2.json", "shard-1.json"]
    assert block["missing_groups"] == [] and block["cases"] == SUITE
    data = json.loads(out.read_text())
    assert {b["extra_info"]["shard"] for b in data["benchmarks"]} == {
        "shard-1.json",
        "shard-2.json",
    }
    assert data["machine_info"]["node"] == "ci-2"  # the first shard's, for pytest-benchmark


def test_report_compare_and_gate_read_a_merged_run(
    tmp_path: Path, shards: tuple[Path, Path]
) -> None:
    out = tmp_path / "merged.json"
    assert run_cli("merge", *shards, "-o", out)[0] == 0
    code, text = run_cli("report", out, "--out", tmp_path / "rep", "--no-plots")
    assert code == 0 and "| machine | gates |" in text and "| ci-2 (Test CPU" in text
    whole = write(tmp_path / "whole.json", make_run())
    code, text = run_cli("compare", whole, out)
    assert code == 0 and "No threshold crossed in 3 common cases." in text
    code, text = run_cli("gate", out)
    assert code == 0, text
    assert "segbench: synthetic model, torch (reference) vs onnx (candidate)" in text
    assert "total (3 cases)" in text and "all ok" in text
    assert (
        "over the interleaved pairs (reference run, candidate round), 3 to 3 pairs per case "
        "after 2 warm-up(s), with its 95% interval; seconds: min of the rounds; gates from "
        "benchmarks.json"
    ) in text
    assert (
        "shard-2.json (group 2/2) on ci-2 (Test CPU, 2 CPUs, Python 3.11.7): scan_c.nii.gz" in text
    )
    assert text.rstrip().endswith("segbench gate: passed (3 cases, 0 not ok)")


def _refused(tmp_path: Path, a: dict[str, Any], b: dict[str, Any]) -> str:
    pa, pb = write(tmp_path / "shard-1.json", a), write(tmp_path / "shard-2.json", b)
    with pytest.raises(MergeError) as info:
        merge_shards([pa, pb])
    message = str(info.value)
    assert "Fix:" in message
    code, _ = run_cli("merge", pa, pb, "-o", tmp_path / "merged.json")
    assert code == 2 and not (tmp_path / "merged.json").exists()
    return message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model", "ts-fast"),
        ("weights_sha256", "00" * 32),
        ("onnx.sha256", "11" * 32),
        ("config.timing.rounds", 5),
        ("config.gates.dice_min", 0.98),
        ("versions.torch", "2.12.0+cpu"),
        ("versions.onnxruntime", "1.31.0"),
        ("options.injection", "slowdown=0.3"),
    ],
)
def test_mismatched_settings_are_refused(tmp_path: Path, key: str, value: Any) -> None:
    b = shard(SUITE[2:], 2)
    target = b["segbench"]["settings"]
    *parents, leaf = key.split(".")
    for part in parents:
        target = target[part]
    old = target[leaf]
    target[leaf] = value
    message = _refused(tmp_path, shard(SUITE[:2], 1), b)
    assert f"settings.{key}: shard-1.json has {old!r}, shard-2.json has {value!r}" in message
    assert message.startswith("shards ran with different settings")


def test_unknown_settings_of_a_shard_without_cases_are_not_compared(tmp_path: Path) -> None:
    b = shard(SUITE[2:], 2)
    b["segbench"]["settings"].update(model=None, weights_sha256=None, onnx=None, card=None)
    assert differences(shard([], 1)["segbench"]["settings"], b["segbench"]["settings"]) == []
    a = write(tmp_path / "a.json", shard(SUITE[:2], 1))
    merged = merge_shards([a, write(tmp_path / "b.json", b)])
    assert merged["segbench"]["settings"]["weights_sha256"] == "ab" * 32


def test_duplicate_case_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, shard(SUITE[:2], 1), shard(SUITE[1:], 2))
    assert (
        "the same case is in two shards: phantom_b_s2.nii.gz (in shard-1.json and "
        "shard-2.json)" in message
    )


def test_same_file_twice_is_refused(tmp_path: Path, shards: tuple[Path, Path]) -> None:
    with pytest.raises(MergeError, match="given twice"):
        merge_shards([shards[0], shards[1], shards[0]])


def test_other_commit_splits_and_suites_are_refused(tmp_path: Path) -> None:
    b = shard(SUITE[2:], 2)
    b["commit_info"] = {**b["commit_info"], "id": "fedcba9876543210"}
    assert "shards come from different commits" in _refused(tmp_path, shard(SUITE[:2], 1), b)
    message = _refused(tmp_path, shard(SUITE[:2], 1), shard(SUITE[2:], 2, splits=3))
    assert "shards of different --splits" in message
    b = shard(SUITE[2:], 2)
    b["segbench"]["suite"] = [*SUITE, "extra.nii.gz"]
    message = _refused(tmp_path, shard(SUITE[:2], 1), b)
    assert "split different suites (cases in one only: extra.nii.gz)" in message


def test_run_without_segbench_block_is_refused(tmp_path: Path) -> None:
    old = write(tmp_path / "old.json", make_run())
    code, _ = run_cli("merge", old, "-o", tmp_path / "m.json")
    assert code == 2
    with pytest.raises(Exception, match=r'old\.json: has no "segbench" block.*Fix:'):
        merge_shards([old])


def test_gate_fails_on_a_failed_gate_and_a_missing_role(tmp_path: Path) -> None:
    data = shard(SUITE, None, failed_dice=("scan_c.nii.gz",))
    data["benchmarks"] = [
        b
        for b in data["benchmarks"]
        if not (b["extra_info"]["case"] == SUITE[1] and b["extra_info"]["role"] == "candidate")
    ]
    path = write(tmp_path / "run.json", data)
    code, text = run_cli("gate", path)
    assert code == 1
    assert "MISSING candidate" in text and "FAIL dice" in text and "2 failed" in text
    assert "FAILED: phantom_b_s2.nii.gz: no candidate benchmark" in text
    assert "FAILED: scan_c.nii.gz: failed the dice gate" in text
    assert text.rstrip().endswith("segbench gate: FAILED (3 cases, 2 not ok)")


def test_gate_fails_when_a_shard_is_missing(tmp_path: Path, shards: tuple[Path, Path]) -> None:
    out = tmp_path / "merged.json"
    code, _ = run_cli("merge", shards[0], "-o", out)
    assert code == 0  # merging what is there works; the gate is what fails
    decision = gate_decision(load_run(out))
    assert not decision.passed
    assert decision.problems[0].startswith("1 case(s) of the suite have no benchmark")
    assert "scan_c.nii.gz" in decision.problems[0]
    assert "pytest-split group(s) 2 were not merged" in decision.problems[1]
    code, text = run_cli("gate", out)
    assert code == 1 and "scan_c.nii.gz" in text and "MISSING" in text


def test_missing_group_without_cases_is_a_note(tmp_path: Path) -> None:
    # three shards for three cases ran: group 3 got no case and saved no file
    a = write(tmp_path / "s1.json", shard(SUITE[:2], 1, splits=3))
    b = write(tmp_path / "s2.json", shard(SUITE[2:], 2, splits=3))
    out = tmp_path / "merged.json"
    assert run_cli("merge", a, b, "-o", out)[0] == 0
    decision = gate_decision(load_run(out))
    assert decision.passed and "group(s) 3 were not merged" in decision.notes[0]


def test_gate_on_a_run_saved_without_segbench_block(tmp_path: Path) -> None:
    code, text = run_cli("gate", write(tmp_path / "old.json", make_run()))
    assert (
        code == 0 and "the timed pairs, with its 95% interval; seconds: min of the rounds" in text
    )
    data = make_run(failed_dice=("phantom_a_s1.nii.gz",))
    assert run_cli("gate", write(tmp_path / "bad.json", copy.deepcopy(data)))[0] == 1


def test_gate_applies_the_suite_speedup_gate_of_a_baseline_run(
    tmp_path: Path, shards: tuple[Path, Path]
) -> None:
    out = tmp_path / "merged.json"
    assert run_cli("merge", *shards, "-o", out)[0] == 0
    data = json.loads(out.read_text())
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info["role"] == "candidate":  # each case now 25 % below its baseline speed-up
            info["baseline_speedup"] = (info["reference_s"] / info["candidate_s"]) / 0.75
    write(out, data)
    code, text = run_cli("gate", out)
    assert code == 1, text
    assert "suite: regressed: speed-up 0.75 (no interval: a case has one pair)" in text
    assert "suite_speedup_drop_max 5%" in text
