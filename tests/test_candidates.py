"""Several named candidates in one session (benchmarks.json's ``profiles.candidates``): the
config, the tests' ids and order, a real suite run with two candidates, and the readers of saved
runs (merge, gate, compare, report, export-gab) on a synthetic two-candidate run."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import TINY_GRID, run_pytest
from saved_runs import CASES, SUITE, make_run, run_cli, shard, write

from segbench.errors import ConfigError
from segbench.inputs.phantoms import PhantomSpec, default_cache_dir, ensure_phantom
from segbench.results.compare import compare_runs
from segbench.results.decision import fastest_candidate, gate_decision
from segbench.results.record import CaseRecord
from segbench.results.runs import load_run, parse_run
from segbench.settings.config import parse_config

TWO = {"ort-all": {"graph_level": "all"}, "ort-basic": {"graph_level": "basic"}}


# config ----------------------------------------------------------------------------------------


def test_candidates_are_parsed_by_name() -> None:
    cfg = parse_config({"profiles": {"candidates": {**TWO, "ov_1": {"provider": "openvino"}}}})
    assert list(cfg.candidates) == ["ort-all", "ort-basic", "ov_1"]
    assert cfg.candidates["ort-basic"].graph_level == "basic"
    assert cfg.candidates["ov_1"].provider == "openvino"
    assert cfg.candidates["ov_1"].backend.value == "onnx"  # the default candidate profile
    assert list(cfg.candidate_profiles) == ["ort-all", "ort-basic", "ov_1"]
    profiles = cfg.settings()["profiles"]
    assert set(profiles) == {"reference", "candidates"}
    assert profiles["candidates"]["ort-basic"]["graph_level"] == "basic"


def test_single_candidate_keeps_its_settings_layout() -> None:
    cfg = parse_config({"profiles": {"candidate": {"graph_level": "basic"}}})
    assert cfg.candidates == {} and list(cfg.candidate_profiles) == [None]
    assert set(cfg.settings()["profiles"]) == {"reference", "candidate"}


@pytest.mark.parametrize(
    ("profiles", "match"),
    [
        ({"candidate": {}, "candidates": TWO}, r"profiles\.candidates' is set together with"),
        ({"candidates": {"ORT": {}}}, r"profiles\.candidates\.ORT' is not a valid candidate"),
        ({"candidates": {"ort cpu": {}}}, r"profiles\.candidates\.ort cpu' is not a valid"),
        ({"candidates": {}}, r"profiles\.candidates' must be a non-empty object"),
        ({"candidates": ["ort"]}, r"profiles\.candidates' must be a non-empty object"),
        ({"candidates": {"a": {"threads": 0}}}, r"profiles\.candidates\.a\.threads"),
        ({"candidates": {"a": {"colour": 1}}}, r"profiles\.candidates\.a\.colour' is unknown"),
    ],
)
def test_bad_candidates_are_config_errors(profiles: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        parse_config({"profiles": profiles}, "b.json")
    assert "b.json" in str(err.value) and "Fix" in str(err.value)


# a real session --------------------------------------------------------------------------------

CASE = "phantom_tiny3mm_ras_s007.nii.gz"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder of one tiny phantom; a two-candidate and a one-candidate gate file."""
    root = tmp_path_factory.mktemp("candidates")
    (root / "data").mkdir()
    image, _ = ensure_phantom(PhantomSpec(TINY_GRID, 7), default_cache_dir())
    shutil.copy(image, root / "data" / image.name)
    gates = {"speedup_min": 0.0}
    (root / "two.json").write_text(json.dumps({"gates": gates, "profiles": {"candidates": TWO}}))
    (root / "one.json").write_text(json.dumps({"gates": gates}))
    return root


def listed(stdout: str) -> list[str]:
    return re.findall(r"test_regression\.py::(test_\w+\[[^\]]+\])", stdout)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("one.json", [f"test_reference[{CASE}]", f"test_candidate[{CASE}]"]),
        (
            "two.json",
            [
                f"test_reference[{CASE}]",
                f"test_candidate[{CASE}-ort-all]",
                f"test_candidate[{CASE}-ort-basic]",
            ],
        ),
    ],
)
def test_candidate_tests_are_parametrised_by_name(
    work: Path, config: str, expected: list[str]
) -> None:
    out = run_pytest(
        work,
        "--collect-only",
        "-q",
        f"--segbench-data={work / 'data'}",
        f"--segbench-config={work / config}",
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert listed(out.stdout) == expected


@pytest.mark.skipif(importlib.util.find_spec("pytest_split") is None, reason="no pytest-split")
def test_a_shard_keeps_a_case_with_all_its_candidates(work: Path) -> None:
    args = [f"--segbench-data={work / 'data'}", f"--segbench-config={work / 'two.json'}"]
    found = []
    for group in (1, 2):
        out = run_pytest(work, "--collect-only", "-q", "--splits=2", f"--group={group}", *args)
        assert out.returncode in (0, 5), out.stdout[-2000:]
        found.append(listed(out.stdout))
    assert sorted(len(tests) for tests in found) == [0, 3]


@pytest.mark.slow
def test_two_candidates_in_one_session(work: Path) -> None:
    out = run_pytest(
        work,
        "--benchmark-only",
        "--segbench-rounds=1",
        "--segbench-warmup=0",
        f"--segbench-data={work / 'data'}",
        f"--segbench-config={work / 'two.json'}",
        "--benchmark-json=run.json",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "3 passed" in out.stdout
    assert "torch (reference) vs 2 candidates (ort-all, ort-basic)" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith(CASE)]
    assert [line.split()[1] for line in rows] == ["ort-all", "ort-basic"]
    assert all(line.rstrip().endswith("ok") for line in rows)
    assert "fastest candidate at passing Dice: ort-" in out.stdout
    threads = re.search(r"threads: reference (\d+), ort-all (\d+), ort-basic (\d+)", out.stdout)
    assert threads is not None and len(set(threads.groups())) == 1

    data = json.loads((work / "run.json").read_text())
    infos = [b["extra_info"] for b in data["benchmarks"]]
    cands = [i for i in infos if i["role"] == "candidate"]
    assert [i["candidate_name"] for i in cands] == ["ort-all", "ort-basic"]
    assert all(i["provider"] == "CPUExecutionProvider" for i in cands)
    assert len({i["threads"] for i in infos}) == 1
    assert [b["name"] for b in data["benchmarks"]] == [
        f"reference[{CASE}]",
        f"candidate[{CASE}-ort-all]",
        f"candidate[{CASE}-ort-basic]",
    ]
    run = load_run(work / "run.json")
    assert [r.key for r in run.rows] == [(CASE, "ort-all"), (CASE, "ort-basic")]
    assert run.rows[0].roles["reference"] is not None and run.rows[1].passed
    code, text = run_cli("gate", work / "run.json")
    assert code == 0, text
    assert f"{CASE}  ort-basic" in text and "fastest candidate at passing Dice" in text


# saved runs with two candidates -----------------------------------------------------------------


def two_candidates(
    data: dict[str, Any], slower_b: float = 1.0, b_fails_dice: str | None = None
) -> dict[str, Any]:
    """``data`` (make_run's layout) with two named candidates per case: ``a`` as the candidate
    was, ``b`` ``slower_b`` times slower (and failing the Dice gate on ``b_fails_dice``)."""
    out = copy.deepcopy(data)
    benches = []
    for bench in out["benchmarks"]:
        info = bench["extra_info"]
        if info["role"] != "candidate":
            benches.append(bench)
            continue
        case = info["case"]
        for name in ("a", "b"):
            new = copy.deepcopy(bench)
            new["name"] = f"candidate[{case}-{name}]"
            extra = new["extra_info"]
            extra["candidate_name"] = name
            if name == "b":
                extra["candidate_s"] *= slower_b
                extra["latency_s"] *= slower_b
                extra["speedup"] = extra["reference_s"] / extra["candidate_s"]
                if case == b_fails_dice:
                    extra["gates"]["dice"] = False
            benches.append(new)
    out["benchmarks"] = benches
    return out


def test_a_saved_run_has_a_row_per_case_and_candidate() -> None:
    run = parse_run(two_candidates(make_run(), slower_b=2.0))
    assert [r.key for r in run.rows] == [(c[0], n) for c in CASES for n in ("a", "b")]
    a, b = run.rows[0], run.rows[1]
    assert a.reference_s == b.reference_s == 2.5  # one reference benchmark, shared
    assert b.candidate_s == pytest.approx(2.5) and b.speedup == pytest.approx(1.0)
    assert a.label == f"{CASES[0][0]}  a" and run.candidates == ["a", "b"]
    assert "fastest candidate at passing Dice: a (" in fastest_candidate(run.rows)


def test_fastest_candidate_leaves_out_a_candidate_failing_dice() -> None:
    run = parse_run(two_candidates(make_run(), slower_b=0.5, b_fails_dice=CASES[1][0]))
    line = fastest_candidate(run.rows)
    assert line.startswith("fastest candidate at passing Dice: a (") and "b 0" not in line
    assert "(failed Dice: b)" in line


def test_old_single_candidate_rows_have_no_name() -> None:
    run = parse_run(make_run())
    assert all(r.candidate is None and r.label == r.case for r in run.rows)
    info = {"case": "x", "role": "candidate", "mean_dice": 1.0}
    assert CaseRecord.from_named({"candidate": info}).key == ("x", None)


def _two_shards(tmp_path: Path, **kw: Any) -> tuple[Path, Path]:
    def one(cases: list[str], group: int) -> dict[str, Any]:
        data = two_candidates(shard(cases, group, node=f"ci-{group}"), **kw)
        data["segbench"]["settings"]["config"]["profiles"] = {"candidates": {"a": {}, "b": {}}}
        return data

    return (
        write(tmp_path / "s1.json", one(SUITE[:2], 1)),
        write(tmp_path / "s2.json", one(SUITE[2:], 2)),
    )


def test_merge_and_gate_a_two_candidate_run(tmp_path: Path) -> None:
    merged = tmp_path / "merged.json"
    assert run_cli("merge", *_two_shards(tmp_path), "-o", merged)[0] == 0
    run = load_run(merged)
    assert [r.key for r in run.rows] == [(c, n) for c in SUITE for n in ("a", "b")]
    assert gate_decision(run).passed
    code, text = run_cli("gate", merged)
    assert code == 0 and f"{SUITE[0]}  b" in text and "2 candidates (a, b)" in text

    data = json.loads(merged.read_text())  # a candidate b lost on one case: the gate fails
    data["benchmarks"] = [
        b
        for b in data["benchmarks"]
        if (b["extra_info"].get("candidate_name"), b["extra_info"]["case"]) != ("b", SUITE[2])
    ]
    problems = gate_decision(parse_run(data)).problems
    assert problems == (f"{SUITE[2]}: no benchmark of candidate(s) b",)


def test_gate_applies_the_suite_speedup_gate_per_candidate(tmp_path: Path) -> None:
    data = two_candidates(make_run())
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("candidate_name") == "b":  # b: 25 % below its baseline on every case
            info["baseline_speedup"] = info["speedup"] / 0.75
        elif info["role"] == "candidate":
            info["baseline_speedup"] = info["speedup"]
    decision = gate_decision(parse_run(data))
    assert [p[:40] for p in decision.problems] == ["b: suite: regressed: speed-up 0.75 (no i"]
    assert [n[:40] for n in decision.notes] == ["a: suite: unchanged: speed-up 1.00 (no i"]


def test_compare_matches_rows_by_case_and_candidate(tmp_path: Path) -> None:
    old = parse_run(two_candidates(make_run()), tmp_path / "old.json")
    new = parse_run(two_candidates(make_run(), slower_b=1.5), tmp_path / "new.json")
    comparison = compare_runs(old, new, force=True)
    assert len(comparison.changes) == 6
    regressed = [c.case for c in comparison.regressions]
    assert regressed == [f"{c[0]}  b" for c in CASES]
    only = parse_run(make_run(), tmp_path / "single.json")
    single = compare_runs(only, new, force=True)
    assert single.changes == () and len(single.only_new) == 6


def test_report_and_export_name_the_candidates(tmp_path: Path) -> None:
    path = write(tmp_path / "run.json", two_candidates(make_run(), slower_b=2.0))
    code, text = run_cli("report", path, "--out", tmp_path / "report", "--no-plots")
    assert code == 0, text
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"{CASES[0][0]}  b" in report and "fastest candidate at passing Dice: a" in report
    code, text = run_cli("export-gab", path, "-o", tmp_path / "gab.json")
    assert code == 0, text
    names = [e["name"] for f in tmp_path.glob("gab-*.json") for e in json.loads(f.read_text())]
    case = CASES[0][0]
    assert f"{case} [a] - candidate latency" in names
    assert f"{case} [b] - speed-up" in names and f"{case} [b] - mean Dice" in names
    assert names.count(f"{case} - reference latency (own rounds)") == 1
    assert len(names) == len(set(names))


def test_unset_threads_take_the_session_count() -> None:
    torch = pytest.importorskip("torch")
    from segbench.bench.runtime import session_threads, with_threads

    cfg = parse_config({"profiles": {"candidates": {"a": {}, "b": {"threads": 1}}}})
    count = session_threads()
    assert count == torch.get_num_threads() >= 1
    assert with_threads(cfg.candidates["a"], 7).threads == 7
    assert with_threads(cfg.candidates["b"], 7).threads == 1  # set in the file: kept


def test_threads_line_names_each_backend() -> None:
    from segbench.plugin.terminal import threads_text

    data = two_candidates(make_run())
    for bench in data["benchmarks"]:
        bench["extra_info"]["threads"] = 3 if bench["extra_info"]["role"] == "reference" else 2
    rows = parse_run(data).rows
    assert threads_text(rows) == "; threads: reference 3, a 2, b 2"
    assert threads_text(parse_run(make_run()).rows) == ""
