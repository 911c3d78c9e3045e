"""The session state, a plugin object registered as ``segbench-session``: options, gate settings,
cases, the runtime (built lazily, once: the first case imports torch), the paired runs and the
case records of the table."""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from segbench.bench.allocator import configure_malloc
from segbench.errors import ConfigError, SegbenchError
from segbench.inputs.cases import Case, Skipped, builtin_cases, discover, folder_cases
from segbench.plugin.collection import CASE_ARG, Collection, parametrize
from segbench.plugin.fingerprint import fingerprint, machine_facts
from segbench.plugin.interrupts import interrupted_line
from segbench.plugin.options import Options
from segbench.plugin.outputs import check_json_target
from segbench.plugin.progress import Terminal, announcer
from segbench.plugin.terminal import ordered, write_summary
from segbench.results.baseline import load_baselines
from segbench.results.decision import suite_gates
from segbench.results.escape import terminal as escape_terminal
from segbench.results.record import CaseRecord, record_key
from segbench.results.runs import machine_label
from segbench.scoring.gates import GateResult
from segbench.settings.config import load_config
from segbench.settings.kinds import ROLES, candidate_slot
from segbench.settings.providers import check_precisions_here

if TYPE_CHECKING:
    from segbench.bench.paired import PairedRun
    from segbench.bench.runtime import Runtime

SESSION_NAME = "segbench-session"
SKIPPED_LINES = 20  # files left out of --segbench-data named in the header, then "+N more"


def find_cases(options: Options) -> tuple[list[Case], list[Skipped]]:
    """The session's cases and the files of ``--segbench-data`` left out; no case at all is a
    :class:`ConfigError` that says why."""
    if options.data is None:
        if options.glob:
            raise ConfigError(
                f"--segbench-glob={options.glob} without --segbench-data: the glob selects "
                "files of a data folder. Fix: pass --segbench-data=DIR too, or drop the glob"
            )
        cases = builtin_cases(options.suite, options.shared_data)
        if not cases:
            raise ConfigError(
                f"no cases: --segbench-suite={options.suite} and no --segbench-data "
                "(nor the shared example CT ct/example_ct_sm.nii.gz). Fix: pass "
                "--segbench-data=DIR with your CT volumes, or --segbench-suite=quick"
            )
        return cases, []
    found = discover(options.data, options.glob)
    if not found.cases:
        folder_cases(options.data, options.glob)  # raises, naming what was left out
    return found.cases, found.skipped


def skipped_lines(data: Path, skipped: list[Skipped], limit: int = SKIPPED_LINES) -> list[str]:
    """The header's lines on the files of ``--segbench-data`` left out, with why."""
    if not skipped:
        return []
    count = f"{len(skipped)} file{'s' if len(skipped) != 1 else ''}"
    lines = [f"segbench: {count} left out of --segbench-data={data}:"]
    lines += [f"  {s.path}: {s.reason}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  +{len(skipped) - limit} more")
    return lines


def profile_key(name: str | None) -> str:
    """The key of a candidate's profile in ``benchmarks.json``."""
    return "profiles.candidate" if name is None else f"profiles.candidates.{name}"


class SegbenchSession:
    """Session state: options, gate settings, cases, the runtime (built lazily, once), the
    paired runs and the case records."""

    def __init__(self, config: pytest.Config) -> None:
        self.options = Options.from_config(config)
        self.malloc = configure_malloc(self.options.malloc)  # before any volume or window
        try:
            check_json_target(getattr(config.option, "benchmark_json", None))
            self.bench = self.options.apply(load_config(self.options.config_path))
            check_precisions_here(
                (f"{self.bench.source}: {profile_key(name)}.precision", p.precision, p.provider)
                for name, p in self.bench.candidate_profiles.items()
            )
            self.cases, self.skipped = find_cases(self.options)
            self.baselines = (
                {}
                if self.options.baseline is None
                else load_baselines(self.options.baseline, self.malloc, machine_facts(self.bench))
            )
        except SegbenchError as exc:
            raise pytest.UsageError(str(exc)) from exc
        self.by_id = {c.id: c for c in self.cases}
        self.collection = Collection([c.id for c in self.cases])
        self._runtime: Runtime | None = None
        self._runtime_error: Exception | None = None
        self._pairs: dict[str, PairedRun] = {}
        self.suite_gates: list[GateResult] = []  # one per candidate with a baseline
        self.infos: dict[str, dict[str, Mapping[str, Any]]] = {}  # case -> role -> extra_info
        self.errors: dict[str, str] = {}  # cases whose paired run could not be built
        self.case_errors: dict[str, str] = {}  # case -> the test that reported its SegbenchError
        self.worker_records: dict[str, CaseRecord] = {}  # of pytest-xdist workers
        self.worker_class_names: dict[str, str] | None = None
        self.terminal = Terminal(config, self.options.progress)
        self.interrupted = False  # Ctrl-C: see segbench.plugin.interrupts
        self.unfinished: list[str] = []  # benchmarks it cut short, left out of the saved run

    @property
    def runtime(self) -> Runtime:
        if self._runtime_error is not None:
            raise self._runtime_error
        if self._runtime is None:
            try:
                from segbench.bench.gpu import check_providers
                from segbench.bench.runtime import build_runtime
                from segbench.models import get_card

                self._runtime = build_runtime(
                    get_card(self.options.model),
                    self.bench,
                    self.options.cache_dir,
                    onnx=self.options.onnx,
                    injection=self.options.injection,
                    announce=announcer(self.terminal),
                )
                check_providers(self._runtime, self.options.require_gpu)
            except Exception as exc:  # every case fails with the same message, once built
                self._runtime_error = exc
                raise
        return self._runtime

    def case(self, case_id: str) -> Case:
        return self.by_id[case_id]

    def pair(self, case: Case) -> PairedRun:
        if case.id not in self._pairs:
            from segbench.bench.paired import PairedRun

            runtime = self.runtime
            cache = self.options.cache_dir
            image, _ = case.files(cache, announce=announcer(self.terminal))
            truth, names = case.ground_truth(cache, runtime.card.class_names)
            pair = PairedRun.load(
                case.id,
                image,
                truth,
                runtime,
                self.bench,
                self.bench.gates_for(case.id),
                max_voxels=self.options.max_voxels,
                baseline=None if self.bench.candidates else self.baselines.get(case.id),
                baselines={
                    candidate_slot(name): found
                    for name in self.bench.candidates
                    if (found := self.baselines.get(record_key(case.id, name))) is not None
                },
                truth_names=names,
                truth_source=self.recorded_truth(case, truth),
            )
            pair.observer = self.terminal.case(case.id)
            self._pairs[case.id] = pair
        return self._pairs[case.id]

    def recorded_truth(self, case: Case, truth: Path | None) -> str | None:
        """How a saved run names ``case``'s ground truth: relative to ``--segbench-data`` (a
        TotalSegmentator case: its masks folder), ``<suite>:<file>`` for a phantom, or the
        absolute path with ``--segbench-record-paths=absolute``."""
        if truth is None:
            return None
        source = case.masks if case.masks is not None else truth
        if self.options.record_paths == "absolute":
            return os.path.abspath(source)
        if case.phantom is not None:
            return f"{self.options.suite}:{truth.name}"
        data = self.options.data
        if data is not None:
            try:
                return Path(os.path.abspath(source)).relative_to(os.path.abspath(data)).as_posix()
            except ValueError:
                pass
        return source.name

    def release(self, case: Case) -> None:
        self._pairs.pop(case.id, None)

    # the case records ------------------------------------------------------------------------
    def record(self, key: str, infos: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep a scored case's extra_info, by role, for the table (``key``: the case id, or
        :func:`~segbench.results.record.record_key` of a named candidate)."""
        self.infos[key] = {role: dict(info) for role, info in infos.items()}

    def records(self) -> list[CaseRecord]:
        """The table's rows: this process's cases and those reported by xdist workers."""
        records = {key: CaseRecord.from_named(i) for key, i in self.infos.items()}
        records.update(
            {case: CaseRecord.failed_to_run(case, err) for case, err in self.errors.items()}
        )
        records.update(self.worker_records)
        return ordered(records, [c.id for c in self.cases])

    def class_names(self) -> dict[str, str] | None:
        if self._runtime is not None:
            return {str(i): n for i, n in enumerate(self._runtime.card.class_names)}
        return self.worker_class_names

    # hooks of the session object ------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        """Where the cases and the gates come from, and every file of ``--segbench-data`` left
        out, with why."""
        data = self.options.data
        where = f"--segbench-suite={self.options.suite}" if data is None else f"{data}"
        count = f"{len(self.cases)} case{'s' if len(self.cases) != 1 else ''}"
        lines = [f"segbench: {count} from {where}; gates from {self.bench.source}"]
        lines += [] if data is None else skipped_lines(data, self.skipped)
        return [escape_terminal(line) for line in lines]  # file names: escaped

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if CASE_ARG in metafunc.fixturenames:
            parametrize(metafunc, [c.id for c in self.cases], list(self.bench.candidates))

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        """Mark and order the per-volume tests before every other plugin selects (-k, -m,
        pytest-split); afterwards bring back the candidates set aside before the split (see
        :mod:`segbench.plugin.collection`)."""
        self.collection.before_select(items)
        result = yield
        self.collection.after_split(config, items)
        return result

    def before_split(self, items: list[pytest.Item]) -> None:
        self.collection.before_split(items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_benchmark_update_json(
        self, config: pytest.Config, output_json: dict[str, Any]
    ) -> None:
        """Add the ``"segbench"`` block, and the machine to each case's extra_info (a merged
        run keeps, per case, the machine that measured it)."""
        coll = self.collection
        output_json["segbench"] = fingerprint(
            config,
            self.options,
            self.bench,
            self.malloc,
            self._runtime,
            coll.suite if coll.suite is not None else [c.id for c in self.cases],
            coll.selected,
        )
        machine = machine_label(output_json.get("machine_info"))
        for bench in output_json.get("benchmarks") or []:
            info = bench.get("extra_info") if isinstance(bench, dict) else None
            if isinstance(info, dict) and info.get("role") in ROLES:
                info.setdefault("machine", machine)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: send the records to the controller
            workeroutput["segbench_infos"] = self.infos
            workeroutput["segbench_errors"] = self.errors
            workeroutput["segbench_class_names"] = self.class_names()
            return
        self.suite_gates = suite_gates(
            [r for r in self.records() if record_key(*r.key) in self.infos],
            self.bench.gates,
        )
        if any(not g.passed for g in self.suite_gates) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist's controller: collect a finished worker's records."""
        output = getattr(node, "workeroutput", {})
        for key, infos in output.get("segbench_infos", {}).items():
            self.worker_records[key] = CaseRecord.from_named(infos)
        for case, err in output.get("segbench_errors", {}).items():
            self.worker_records[case] = CaseRecord.failed_to_run(case, err)
        if output.get("segbench_class_names"):
            self.worker_class_names = output["segbench_class_names"]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.interrupted:
            finished = len({r.case for r in self.records()})
            json_path = getattr(terminalreporter.config.option, "benchmark_json", None)
            json_name = getattr(json_path, "name", json_path)
            line = interrupted_line(self.unfinished, finished, json_name)
            terminalreporter.write_line(line, yellow=True)
        rows = self.records()
        if not rows:
            return
        write_summary(
            terminalreporter,
            rows,
            model=self.options.model,
            bench=self.bench,
            class_names=self.class_names(),
            baseline=self.options.baseline,
            malloc=self.malloc,
            suite_gates=self.suite_gates,
            injection=self.options.injection,
        )


def session_of(config: pytest.Config) -> SegbenchSession:
    plugin = config.pluginmanager.get_plugin(SESSION_NAME)
    assert isinstance(plugin, SegbenchSession)
    return plugin
