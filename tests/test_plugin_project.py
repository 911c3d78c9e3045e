"""The plugin in a user's project: the space form of a path option must not move pytest's
rootdir, the header names where cases and gates come from and every file left out, a glob
selects cases, and a session without cases is a usage error."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import run_pytest, write_nifti

from segbench.inputs.cases import Skipped
from segbench.plugin.rootdir import space_forms
from segbench.plugin.session import skipped_lines

SUITE_LINE = "from segbench.suite import test_candidate, test_reference\n"


def _project(root: Path) -> Path:
    """A user's project: pyproject.toml with pytest settings, a gate file, the suite file."""
    proj = root / "project"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nsegbench_rounds = "1"\nsegbench_warmup = "0"\n'
    )
    (proj / "benchmarks.json").write_text(json.dumps({"gates": {"speedup_min": 0.0}}))
    (proj / "test_ct_suite.py").write_text(SUITE_LINE)
    return proj


def _data(folder: Path) -> Path:
    """A data folder of one small volume."""
    folder.mkdir(parents=True)
    write_nifti(folder / "scan.nii.gz", shape=(8, 7, 6))
    return folder


def test_space_form_outside_the_project_is_a_usage_error_with_the_fix(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    data = _data(tmp_path / "scans")  # beside the project: the common parent is tmp_path
    space = ["--segbench-data", str(data)]
    out = run_pytest(proj, "--collect-only", *space, suite=None, settings=False)
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout[-2000:] + out.stderr
    err = " ".join(out.stderr.split())
    assert f"--segbench-data {data}: pytest chose its rootdir ({tmp_path})" in err
    assert str(proj / "benchmarks.json") in err
    assert f"[tool.pytest.ini_options] of {proj / 'pyproject.toml'}" in err
    assert err.rstrip().endswith(f"Fix: write --segbench-data={data}")
    # the = form runs with the project's settings
    out = run_pytest(proj, "--collect-only", f"--segbench-data={data}", suite=None, settings=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert f"gates from {proj / 'benchmarks.json'}" in out.stdout
    assert f"rootdir: {proj}" in out.stdout


def test_space_form_inside_the_project_runs_as_the_equals_form(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    _data(proj / "data" / "scans")
    outs = [
        run_pytest(proj, "--collect-only", *form, suite=None, settings=False)
        for form in (["--segbench-data", "data/scans"], ["--segbench-data=data/scans"])
    ]
    for out in outs:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr
        assert f"gates from {proj / 'benchmarks.json'}" in out.stdout
        assert f"rootdir: {proj}" in out.stdout and "configfile: pyproject.toml" in out.stdout
        assert "<Function test_reference[scan.nii.gz]>" in out.stdout
    tree = [o.stdout.split("collected 2 items")[1].split("====")[0] for o in outs]
    assert tree[0] == tree[1]


def test_space_forms_name_only_segbench_options_with_existing_paths(tmp_path: Path) -> None:
    args = ["--segbench-data", str(tmp_path), "--segbench-suite", "none", "-k", str(tmp_path)]
    args += ["--segbench-onnx", str(tmp_path / "missing.onnx"), "--", "--segbench-config", "."]
    assert space_forms(args) == [("--segbench-data", str(tmp_path))]


def test_header_names_every_file_left_out(tmp_path: Path) -> None:
    data = _data(tmp_path / "data")
    (data / "notes.txt").write_text("not a volume")
    os.symlink(tmp_path / "nowhere.nii.gz", data / "gone.nii.gz")
    (data / "chest").mkdir()
    write_nifti(data / "chest" / "a.nii.gz", shape=(8, 7, 6))
    out = run_pytest(
        tmp_path, "--collect-only", f"--segbench-data={data}", "--segbench-glob=chest/*"
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    lines = out.stdout.splitlines()
    assert f"segbench: 1 case from {data}; gates from " in out.stdout
    start = lines.index(f"segbench: 3 files left out of --segbench-data={data}:")
    assert lines[start + 1].startswith("  gone.nii.gz: dangling symlink to ")
    assert lines[start + 2].startswith("  notes.txt: matches no rule")
    assert lines[start + 3] == "  scan.nii.gz: does not match --segbench-glob=chest/*"
    assert "<Function test_reference[chest/a.nii.gz]>" in out.stdout
    assert "[scan.nii.gz]" not in out.stdout


def test_skipped_lines_are_capped() -> None:
    skipped = [Skipped(f"f{i:02d}.txt", "matches no rule") for i in range(25)]
    lines = skipped_lines(Path("/d"), skipped)
    assert lines[0] == "segbench: 25 files left out of --segbench-data=/d:"
    assert lines[1] == "  f00.txt: matches no rule" and len(lines) == 1 + 20 + 1
    assert lines[-1] == "  +5 more"
    assert skipped_lines(Path("/d"), []) == []


def test_no_cases_is_a_usage_error(tmp_path: Path, plugin_session: Any) -> None:
    empty = tmp_path / "no-shared-data"
    empty.mkdir()
    result = plugin_session(
        "--collect-only", "--segbench-suite=none", f"--segbench-shared-data={empty}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:]
    result.stderr.fnmatch_lines(
        [
            "*no cases: --segbench-suite=none and no --segbench-data*",
        ]
    )
    assert "Fix: pass --segbench-data=DIR" in result.stderr.str()
    result = plugin_session("--collect-only", "--segbench-glob=*.nii.gz")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--segbench-glob=*.nii.gz without --segbench-data" in result.stderr.str()
