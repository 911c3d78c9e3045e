"""Hostile saved runs, gate files and names, round 3: a gate that fails closed, names escaped
for their destination, run files written atomically, malformed runs refused in one line."""

from __future__ import annotations

import copy
import errno
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import FakeReporter, attached_terminal, run_pytest
from saved_runs import SUITE, make_run, run_cli, shard, write

from segbench.cachefiles import UnsafeWriteError, temp_path, write_atomic, write_text_atomic
from segbench.results.decision import gate_decision, run_gates
from segbench.results.escape import terminal
from segbench.results.runs import RunFileError, parse_run

NOISY = ([1.0, 2.0, 1.3], [1.6, 1.1, 1.9], [0.9, 1.7, 1.2])  # pairs too noisy to settle
NOISY_BASE = ([1.5, 1.2, 1.8], [1.3, 1.9, 1.2], [1.1, 1.6, 1.4])


def noisy_run(inconclusive_fails: bool) -> dict[str, Any]:
    """A run whose every case passed and whose suite verdict against its baseline is
    inconclusive, saved with ``gates.inconclusive_fails`` as given."""
    data = make_run()
    cands = [b for b in data["benchmarks"] if b["extra_info"]["role"] == "candidate"]
    for bench, pairs, base in zip(cands, NOISY, NOISY_BASE, strict=True):
        bench["extra_info"].update(
            pair_speedups=pairs, baseline_pair_speedups=base, verdict="inconclusive"
        )
        bench["extra_info"]["gates"] = {"dice": True, "speedup": True}
    data["segbench"] = {
        "format": 1,
        "settings": {"config": {"gates": {"inconclusive_fails": inconclusive_fails}}},
    }
    return data


def test_inconclusive_fails_reaches_the_gate_decision(tmp_path: Path) -> None:
    lenient = parse_run(noisy_run(False))
    assert not run_gates(lenient).inconclusive_fails
    decision = gate_decision(lenient)
    assert decision.passed and any("inconclusive" in n for n in decision.notes), decision
    strict = parse_run(noisy_run(True))
    assert run_gates(strict).inconclusive_fails
    decision = gate_decision(strict)
    assert not decision.passed, decision
    assert any("suite: inconclusive" in p and "too noisy" in p for p in decision.problems)
    code, _ = run_cli("gate", str(write(tmp_path / "strict.json", noisy_run(True))))
    assert code == 1
    code, _ = run_cli("gate", str(write(tmp_path / "lenient.json", noisy_run(False))))
    assert code == 0


# helpers -----------------------------------------------------------------------------------


def cand(data: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """The extra_info of the ``index``-th candidate benchmark of a run."""
    return [b for b in data["benchmarks"] if b["extra_info"]["role"] == "candidate"][index][
        "extra_info"
    ]


def gate_exit(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``segbench gate`` on ``data``: the exit code and what it printed (stdout + stderr)."""
    capsys.readouterr()
    code, out = run_cli("gate", str(write(tmp_path / "run.json", data)))
    return code, out + capsys.readouterr().err


def one_line_refusal(code: int, text: str, *needles: str) -> None:
    """Exit 2 and one line on stderr that names the file, the key and the fix."""
    assert code == 2, text
    lines = [line for line in text.splitlines() if line.startswith("segbench ")]
    assert len(lines) == 1, text
    assert "run.json" in lines[0] and "Fix:" in lines[0], text
    for needle in needles:
        assert needle in lines[0], text


# 1. the gate fails closed ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None, [], {}])
def test_gate_results_that_are_not_booleans_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: Any
) -> None:
    data = make_run()
    cand(data)["gates"]["dice"] = value
    code, text = gate_exit(tmp_path, data, capsys)
    one_line_refusal(code, text, "extra_info.gates.dice", "true or false")


def test_a_record_reads_a_non_boolean_gate_as_failed() -> None:
    """The session's own records (not validated files) fail closed too."""
    from segbench.results.record import CaseRecord

    row = CaseRecord.from_extra_info("c", {"candidate": {"gates": {"dice": "false"}}})
    assert row.failed_gates == ["dice"] and not row.passed


@pytest.mark.parametrize("role", ["candidate", "reference"])
def test_a_case_recorded_twice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], role: str
) -> None:
    data = make_run()
    first = next(b for b in data["benchmarks"] if b["extra_info"]["role"] == role)
    failing = copy.deepcopy(first)
    if role == "candidate":
        failing["extra_info"]["gates"] = {"dice": False, "speedup": False}
    data["benchmarks"].insert(0, failing)  # a failing duplicate ahead of the passing one
    code, text = gate_exit(tmp_path, data, capsys)
    one_line_refusal(code, text, f"second {role} benchmark", "phantom_a_s1.nii.gz")


def test_a_named_candidate_recorded_twice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_run()
    cand(data)["candidate_name"] = "ort-cpu"
    data["benchmarks"].append(copy.deepcopy(data["benchmarks"][1]))
    code, text = gate_exit(tmp_path, data, capsys)
    one_line_refusal(code, text, "second ort-cpu benchmark")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("inconclusive_fails", "true"),
        ("inconclusive_fails", 1),
        ("dice_min", "0.9"),
        ("class_nsd_tolerance_mm", 2.0),
        ("class_nsd_tolerance_mm", {"liver": "2"}),
    ],
)
def test_saved_gate_thresholds_of_the_wrong_kind_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any
) -> None:
    data = noisy_run(True)
    data["segbench"]["settings"]["config"]["gates"][key] = value
    code, text = gate_exit(tmp_path, data, capsys)
    one_line_refusal(code, text, f"segbench.settings.config.gates.{key}")


def test_a_saved_mapping_of_class_tolerances_reads() -> None:
    data = noisy_run(True)
    data["segbench"]["settings"]["config"]["gates"]["class_nsd_tolerance_mm"] = {"liver": 2.0}
    assert parse_run(data).rows


def test_an_unchanged_run_still_passes_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = gate_exit(tmp_path, make_run(), capsys)
    assert code == 0, text
    code, text = gate_exit(tmp_path, make_run(failed_dice=("scan_c.nii.gz",)), capsys)
    assert code == 1, text


# 2. names are escaped for where they are printed -------------------------------------------

HOSTILE_NAMES = [
    "x.nii.gz\n::error file=a.py::pwned",  # a workflow command on a line of its own
    "::add-mask::secret",  # a workflow command at the start of a table row
    "red\x1b[31m\x1b]0;title\x07.nii.gz",  # ANSI colour and a window-title sequence
    "row\r| forged | row |",  # a carriage return and table pipes
    "bidi\u202egnp.exe",  # a right-to-left override
]


def _workflow_command(line: str) -> bool:
    return line.strip().startswith("::")


def _renamed(name: str) -> dict[str, Any]:
    data = make_run()
    for bench in data["benchmarks"][:2]:
        bench["extra_info"]["case"] = name
    return data


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_terminal_escape_keeps_a_name_on_one_inert_line(name: str) -> None:
    text = terminal(name)
    assert len(text.splitlines()) == 1 and "\x1b" not in text and "\r" not in text
    assert "::" not in text and "\u202e" not in text and "\x07" not in text
    assert terminal("phantom_a_s1.nii.gz") == "phantom_a_s1.nii.gz"  # plain names unchanged


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_gate_output_escapes_case_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    data = _renamed(name)
    data["segbench"] = {"format": 1, "suite": [name, "missing::error::x.nii.gz"]}
    code, text = gate_exit(tmp_path, data, capsys)
    assert code == 1, text  # the second case of the suite is missing
    assert not any(_workflow_command(line) for line in text.splitlines()), text
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    widths = {len(line) for line in text.splitlines() if line.startswith("-----")}
    assert len(widths) == 1  # the table's rules and rows stay aligned: no forged row


def test_session_table_and_progress_escape_names() -> None:
    from segbench.results.record import CaseRecord
    from segbench.results.table import summary_table

    rows = [parse_run(_renamed(n)).rows[0] for n in HOSTILE_NAMES]
    rows.append(CaseRecord.failed_to_run("\x1b[2J::error::x", "boom"))
    table = summary_table(rows, "torch\x1b[5m", "::warning::onnx")
    assert len(table.splitlines()) == len(rows) + 4
    assert "\x1b" not in table and not any(_workflow_command(x) for x in table.splitlines())

    reporter = FakeReporter(tty=False)
    terminal_ = attached_terminal(reporter, mode="on")
    observer = terminal_.case(HOSTILE_NAMES[0])
    assert observer is not None
    observer.start("candidate", "round", 1, 3)
    terminal_.announce("exporting \x1b[31mred\n::error::x")
    text = "".join(reporter.out)
    assert "\x1b" not in text and not any(_workflow_command(x) for x in text.splitlines())


def test_session_summary_escapes_model_and_candidate_names() -> None:
    from types import SimpleNamespace

    from segbench.plugin.terminal import write_summary
    from segbench.settings.config import BenchConfig
    from segbench.settings.injection import Injection

    lines: list[str] = []
    reporter = SimpleNamespace(
        write_sep=lambda sep, text: lines.append(text),
        write_line=lines.append,
        config=SimpleNamespace(_benchmarksession=None),
    )
    rows = [parse_run(_renamed(HOSTILE_NAMES[2])).rows[0]]
    write_summary(
        reporter,
        rows,
        model="demo\n::error::model",
        bench=BenchConfig(),
        class_names={"1": "liver\x1b[31m"},
        baseline="base\r::add-mask::x.json",
        malloc="system",
        suite_gates=[],
        injection=Injection(),
    )
    text = "\n".join(lines)
    assert "\x1b" not in text and "\r" not in text
    assert not any(_workflow_command(x) for x in text.splitlines()), text


def test_report_markdown_escapes_names_models_and_machine_fields(tmp_path: Path) -> None:
    data = _renamed("a|b\n# heading <script>x</script>.nii.gz")
    for bench in data["benchmarks"]:
        bench["extra_info"]["model"] = "# Owned <img src=x onerror=alert(1)>"
    data["machine_info"]["cpu"]["brand_raw"] = "[click](javascript:alert(1))"
    data["benchmarks"][2]["extra_info"]["machine"] = "<b>m</b>"
    run_path = write(tmp_path / "evil`name.json", data)
    code, _ = run_cli("report", str(run_path), "--out", str(tmp_path / "r"), "--no-plots")
    assert code == 0
    text = (tmp_path / "r" / "report.md").read_text()
    for bad in ("<img", "<script", "<b>", "](javascript:", "[click]"):  # each escaped
        assert not re.search(r"(?<!\\)" + re.escape(bad), text), bad
    assert not re.search(r"^\s*#+ *(Owned|heading)", text, re.MULTILINE)
    assert text.startswith("# segbench report: \\# Owned \\<img")
    tables = re.findall(r"(?:^\|.*\n)+", text, re.MULTILINE)
    assert len(tables) == 3  # cases, worst classes, stage times: no row forged or split
    for table in tables:
        cells = {len(re.findall(r"(?<!\\)\|", line)) for line in table.splitlines()}
        assert len(cells) == 1, table
    assert "``evil`name.json``" in text  # the file name as a code span that holds its backtick


def test_compare_and_merge_output_escape_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(tmp_path / "old.json", _renamed("::error::x\n<b>.nii.gz"))
    new_data = _renamed("::error::x\n<b>.nii.gz")
    new_data["machine_info"]["cpu"]["brand_raw"] = "Other\x1b[31m CPU"
    new = write(tmp_path / "new.json", new_data)
    code, out = run_cli("compare", str(old), str(new))
    text = out + capsys.readouterr().err
    assert code == 2 and "\x1b" not in text, text  # refused: another CPU type
    code, out = run_cli("compare", str(old), str(old))
    assert code == 0 and "<b>" not in out
    assert not any(_workflow_command(x) for x in out.splitlines()), out
    a = write(tmp_path / "s1.json", shard(SUITE[:2], 1, node="ci\n::error::node"))
    b = write(tmp_path / "s2.json", shard(SUITE[2:], 2, node="ci-2\x1b[31m"))
    code, out = run_cli("merge", str(a), str(b), "-o", str(tmp_path / "m.json"))
    assert code == 0 and "\x1b" not in out, out
    assert not any(_workflow_command(x) for x in out.splitlines()), out
    code, text = gate_exit(tmp_path, json.loads((tmp_path / "m.json").read_text()), capsys)
    assert code == 0 and "\x1b" not in text, text
    assert not any(_workflow_command(x) for x in text.splitlines()), text


# 3. no run file lost -----------------------------------------------------------------------


def _full_disk(tmp: Path, data: bytes = b"") -> None:
    """A write that fills the disk part-way: a cut file, then ENOSPC."""
    with open(tmp, "wb") as f:
        f.write(b'{"truncat')
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text('{"good": true}')
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, _full_disk)
    assert target.read_text() == '{"good": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary left
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def test_temporary_names_are_unique() -> None:
    final = Path("/x/mask.nii.gz")
    names = {temp_path(final, ".nii.gz") for _ in range(50)}
    assert len(names) == 50 and all(n.name.endswith(".tmp.nii.gz") for n in names)


def test_a_symlink_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "out" / "report.md"
    link.parent.mkdir()
    link.symlink_to(victim)
    with pytest.raises(UnsafeWriteError, match="is a symlink"):
        write_text_atomic(link, "overwritten")
    assert victim.read_text() == "precious" and link.is_symlink()


def test_a_path_outside_the_output_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeWriteError, match="outside the output folder"):
        write_text_atomic(folder / "sub" / "report.md", "x", inside=folder)
    assert not (tmp_path / "elsewhere" / "report.md").exists()


@pytest.mark.parametrize("planted", ["report.md", "latency.png"])
def test_report_out_refuses_a_planted_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
) -> None:
    pytest.importorskip("matplotlib")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / planted).symlink_to(victim)
    run_path = write(tmp_path / "run.json", make_run())
    code, _ = run_cli("report", str(run_path), "--out", str(folder))
    err = capsys.readouterr().err
    assert code == 2 and "is a symlink" in err and "Fix:" in err, err
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in folder.iterdir()) == [planted]  # nothing written before


def test_benchmark_json_is_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-benchmark opens --benchmark-json with open(path, "wb") at the session's end
    (truncating the file first); the plugin's save_json writes it atomically instead."""
    from types import SimpleNamespace

    from pytest_benchmark.session import BenchmarkSession

    from segbench.plugin import savejson

    assert "save_json" in vars(BenchmarkSession)  # the method the plugin replaces
    target = tmp_path / "run.json"
    target.write_text('{"benchmarks": []}')
    errors: list[str] = []
    bench = SimpleNamespace(
        json=target,
        logger=SimpleNamespace(error=errors.append, info=lambda *a, **k: None),
    )
    session = SimpleNamespace(config=SimpleNamespace(_benchmarksession=bench), exitstatus=0)
    savejson.install(session)  # type: ignore[arg-type]
    monkeypatch.setattr(Path, "write_bytes", _full_disk)
    bench.save_json({"benchmarks": [1]})
    assert target.read_text() == '{"benchmarks": []}'  # the good file is intact
    assert session.exitstatus == pytest.ExitCode.INTERNAL_ERROR
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Fix:" in errors[0]
    monkeypatch.undo()
    session.exitstatus = 0
    bench.save_json({"benchmarks": [1]})
    assert json.loads(target.read_text()) == {"benchmarks": [1]} and session.exitstatus == 0


def test_benchmark_json_survives_a_full_disk_in_a_pytest_session(tmp_path: Path) -> None:
    """A whole pytest session with pytest-benchmark and the segbench plugin: a run file that
    cannot be written leaves the previous one whole, and the session says so."""
    (tmp_path / "test_tiny.py").write_text("def test_tiny(benchmark):\n    benchmark(len, 'x')\n")
    (tmp_path / "conftest.py").write_text(FULL_DISK_CONFTEST)
    target = tmp_path / "run.json"
    out = run_pytest(
        tmp_path,
        str(tmp_path / "test_tiny.py"),
        f"--benchmark-json={target}",
        suite=None,
        settings=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    good = target.read_text()
    assert json.loads(good)["benchmarks"]
    env_out = run_pytest(
        tmp_path,
        str(tmp_path / "test_tiny.py"),
        f"--benchmark-json={target}",
        "--full-disk",
        suite=None,
        settings=False,
        timeout=300,
    )
    assert env_out.returncode == 3, env_out.stdout[-2000:] + env_out.stderr[-2000:]
    assert "No space left on device" in env_out.stdout + env_out.stderr
    assert target.read_text() == good


FULL_DISK_CONFTEST = """
import errno
import pathlib


def pytest_addoption(parser):
    parser.addoption("--full-disk", action="store_true")


def pytest_configure(config):
    if config.getoption("full_disk"):
        def full(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        pathlib.Path.write_bytes = full
"""


# 4. malformed saved runs, baselines and gate files -----------------------------------------


def _set(data: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    """``data`` with the value at ``where`` (``cand.latency_s``, ``ref.stats``, ``top.x``,
    ``block.x``) replaced."""
    scope, _, key = where.partition(".")
    if scope == "cand":
        cand(data)[key] = value
    elif scope == "ref":
        ref = data["benchmarks"][0]
        (ref if key == "stats" else ref["extra_info"])[key] = value
    elif scope == "block":
        data.setdefault("segbench", {"format": 1})[key] = value
    else:
        data[key] = value
    return data


MALFORMED = [  # (where, value, what the one line names)
    ("cand.latency_s", math.nan, "extra_info.latency_s: must be a finite number"),
    ("cand.candidate_s", math.inf, "extra_info.candidate_s: must be a finite number"),
    ("cand.reference_s", -1.0, "extra_info.reference_s: must be >= 0"),
    ("cand.reference_s", "1.0", "extra_info.reference_s: must be a number, not str"),
    ("cand.latency_s", 10**400, "must be a number in range, not an integer of 401 digits"),
    ("cand.shape", [10**30, 2, 2], "extra_info.shape[0]: must be an integer"),
    ("cand.class_dice", [0.9], "extra_info.class_dice: must be a mapping, not a list"),
    ("cand.gates", ["dice"], "extra_info.gates: must be a mapping, not a list"),
    ("cand.stages_s", {"total": "fast"}, "extra_info.stages_s.total: must be a number"),
    ("cand.pair_speedups", [1.2, None], "extra_info.pair_speedups[1]: is null"),
    ("cand.pair_speedups", {"a": 1}, "extra_info.pair_speedups: must be a list"),
    ("cand.case", ["a"], "extra_info.case: must be a string, not a list"),
    ("cand.case", "x" * 5000, "extra_info.case: is a string of 5000 characters"),
    ("ref.stats", [1.0], "benchmarks[0].stats: must be a mapping, not a list"),
    ("top.machine_info", ["node"], "machine_info: must be a mapping, not a list"),
    ("top.commit_info", "abc", "commit_info: must be a mapping"),
    ("block.settings", [], "segbench.settings: must be a mapping, not a list"),
    ("block.merged_from", [{}], "segbench.merged_from[0]: must be a record of one merged shard"),
    ("block.merged_from", [None], "segbench.merged_from[0]: is null"),
    ("block.suite", "abc", "segbench.suite: must be a list"),
    ("block.shard", {"splits": "two", "group": 1}, "segbench.shard.splits: must be an integer"),
    ("block.missing_groups", [1.5], "segbench.missing_groups[0]: must be an integer"),
]


@pytest.mark.parametrize(("where", "value", "needle"), MALFORMED)
def test_malformed_runs_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, value: Any, needle: str
) -> None:
    data = _set(make_run(), where, value)
    for command in ("gate", "report"):
        capsys.readouterr()
        path = write(tmp_path / "run.json", data)
        args = ["--out", str(tmp_path / "r"), "--no-plots"] if command == "report" else []
        code, _ = run_cli(command, str(path), *args)
        one_line_refusal(code, capsys.readouterr().err, needle)


def test_a_nan_latency_is_not_replaced_by_stats_min() -> None:
    data = _set(make_run(), "ref.latency_s", math.nan)
    with pytest.raises(RunFileError, match="latency_s: must be a finite number"):
        parse_run(data)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
        ('{"benchmarks": [' + "[" * 40 + "]" * 40 + "]}", "nests deeper than 32 levels"),
        ('{"benchmarks": [], "x": ' + "9" * 5000 + "}", "an integer of more than 4300 digits"),
    ],
)
def test_deep_nesting_and_huge_integers_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    code, _ = run_cli("gate", str(write(tmp_path / "run.json", text)))
    one_line_refusal(code, capsys.readouterr().err, needle)


def test_an_oversized_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from segbench.results import runs

    monkeypatch.setattr(runs, "MAX_RUN_BYTES", 100)
    code, _ = run_cli("gate", str(write(tmp_path / "run.json", make_run())))
    one_line_refusal(code, capsys.readouterr().err, "more than the 100 a saved run may have")


def test_merge_and_compare_refuse_malformed_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.json", make_run())
    bad = write(tmp_path / "run.json", _set(make_run(), "cand.speedup", "fast"))
    code, _ = run_cli("compare", str(good), str(bad))
    one_line_refusal(code, capsys.readouterr().err, "extra_info.speedup: must be a number")
    a = write(tmp_path / "a.json", shard(SUITE[:2], 1))
    data = shard(SUITE[2:], 2)
    data["segbench"]["settings"] = ["model"]
    b = write(tmp_path / "run.json", data)
    code, _ = run_cli("merge", str(a), str(b), "-o", str(tmp_path / "m.json"))
    one_line_refusal(code, capsys.readouterr().err, "segbench.settings: must be a mapping")
    assert not (tmp_path / "m.json").exists()


def test_a_malformed_baseline_is_a_usage_error(tmp_path: Path) -> None:
    from segbench.errors import SegbenchError
    from segbench.results.baseline import current_cpu, load_baselines

    bad = write(tmp_path / "base.json", _set(make_run(), "cand.gates", {"speedup": "yes"}))
    with pytest.raises(SegbenchError, match=r"gates\.speedup: must be true or false") as info:
        load_baselines(bad)
    assert len(str(info.value).splitlines()) == 1
    data = _set(make_run(), "block.settings", None)
    data["machine_info"]["cpu"]["brand_raw"] = current_cpu()
    nulls = write(tmp_path / "nulls.json", data)
    assert load_baselines(nulls)  # a block without settings reads (no malloc recorded)
    out = run_pytest(tmp_path, f"--segbench-baseline={bad}", "--collect-only", "-q", timeout=300)
    assert out.returncode == 4, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "gates.speedup: must be true or false" in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"gates": ' * 5000 + "1" + "}" * 5000, "nests too deeply"),
        ('{"gates": {"dice_min": ' + "9" * 5000 + "}}", "cannot be read"),
    ],
)
def test_a_malformed_benchmarks_json_is_a_config_error(
    tmp_path: Path, text: str, needle: str
) -> None:
    from segbench.errors import ConfigError
    from segbench.settings.config import load_config

    path = tmp_path / "benchmarks.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle) as info:
        load_config(path)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("a|b", "a\\|b"),
        ("# h", "\\# h"),
        ("<img src=x onerror=alert(1)>", "\\<img src=x onerror=alert(1)\\>"),
        ("[x](javascript:alert(1))", "\\[x\\](javascript:alert(1))"),
        ("$\\href{x}$", "\\$\\\\href\\{x\\}\\$"),
        ("line\nbreak\r", "line\\nbreak\\r"),
        ("phantom_a_s1.nii.gz", "phantom_a_s1.nii.gz"),
    ],
)
def test_markdown_escape(name: str, escaped: str) -> None:
    from segbench.results.escape import markdown, markdown_code

    assert markdown(name) == escaped
    assert markdown_code("a`b") == "``a`b``" and markdown_code("`a") == "`` `a ``"
