"""The installed package is the product: the wheel, installed outside the checkout, runs the
main job in a user's project whose suite file is one import line.

The wheel is built with ``pip wheel --no-deps`` and installed with ``--no-deps`` into a fresh
venv in a temporary folder; its dependencies (torch, onnxruntime, ...) come from this
environment through a ``.pth`` file, so nothing is downloaded again. The checkout's ``src/``
is never on the user's ``sys.path``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

from segbench.inputs.phantoms import GridSpec, PhantomSpec, default_cache_dir, ensure_phantom

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
USER_SUITE = "from segbench.suite import test_candidate, test_reference\n"
MAIN_SUBSET = "lung192x208"  # one built-in case of the quick suite: the smallest grid
TINY = GridSpec("wheel3mm", (60, 56, 48), (3.0, 3.0, 3.0), "RAS")  # one 64^3 window
GATE_FILE = {
    "$comment": "a user's gate file (distinctive class_dice_min, checked in the summary)",
    "gates": {"speedup_min": 0.0, "class_dice_min": 0.987},
    "timing": {"rounds": 1, "warmup_rounds": 0, "max_rounds": 1, "estimator": "min"},
}
FAST = ("--segbench-rounds=1", "--segbench-warmup=0", f"--segbench-cache-dir={default_cache_dir()}")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _clean_env() -> dict[str, str]:
    """This environment without the checkout on PYTHONPATH nor segbench's own variables."""
    drop = {"PYTHONPATH", "SEGBENCH_DEMO_DIR", "SEGBENCH_SHARED_DATA"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _setuptools_here() -> bool:
    """setuptools >= 68 (the build requirement) in this environment: build without isolation."""
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy: the build's egg-info and build/ stay out of the checkout
    source = out / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    isolation = ["--no-build-isolation"] if _setuptools_here() else []
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(out), "."]
    built = _run(cmd, source, _clean_env())
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (path,) = out.glob("segbench-*.whl")
    return path


@pytest.fixture(scope="module")
def user_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A venv outside the checkout with only the wheel installed (dependencies by .pth)."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], ROOT)
    assert made.returncode == 0, made.stderr
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        venv,
        _clean_env(),
    ).stdout.strip()
    install = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    done = _run([*install, "--no-deps", "--no-index", str(wheel)], venv, _clean_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # only now this environment's packages: pip must not see (nor touch) its segbench
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "_segbench_test_deps.pth").write_text("\n".join(sorted(here)) + "\n")
    return {"python": python, "purelib": Path(purelib), "env": _clean_env()}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project: the one-line suite file and a gate file, nothing else."""
    proj = tmp_path_factory.mktemp("user-project")
    (proj / "test_ct_suite.py").write_text(USER_SUITE)
    (proj / "benchmarks.json").write_text(json.dumps(GATE_FILE, indent=1))
    return proj


@pytest.fixture(scope="module")
def main_job(user_env: dict[str, Any], project: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(user_env["python"]), "-m", "pytest", "--benchmark-only", "-k", MAIN_SUBSET]
    return _run([*cmd, *FAST, "--benchmark-json=run.json"], project, user_env["env"])


def test_wheel_carries_the_demo_model_and_the_suite(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "segbench/models/weights/demo_unet.pt",
        "segbench/models/weights/demo_unet.json",
        "segbench/suite.py",
        "segbench/py.typed",
    ):
        assert name in names, f"{name} is not in {wheel.name}"


def test_imported_segbench_is_the_wheels(user_env: dict[str, Any]) -> None:
    code = (
        "import sys, segbench; from segbench.models import demo; "
        "print(segbench.__file__); print(demo.card().weights); print('\\n'.join(sys.path))"
    )
    out = _run([str(user_env["python"]), "-c", code], user_env["purelib"], user_env["env"])
    assert out.returncode == 0, out.stderr[-3000:]
    module, weights, *path = out.stdout.splitlines()
    assert Path(module) == user_env["purelib"] / "segbench" / "__init__.py"
    assert Path(weights).is_relative_to(user_env["purelib"])
    assert str(ROOT / "src") not in path


def test_user_project_runs_the_main_job(main_job: subprocess.CompletedProcess[str]) -> None:
    out = main_job
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "2 passed" in out.stdout, out.stdout[-3000:]
    assert "segbench: demo model" in out.stdout


def _params_strings(params: Any) -> list[str]:
    if isinstance(params, dict):
        return [s for v in params.values() for s in _params_strings(v)]
    if isinstance(params, list | tuple):
        return [s for v in params for s in _params_strings(v)]
    return [params] if isinstance(params, str) else []


def test_saved_run_is_serializable_and_has_no_absolute_paths(
    main_job: subprocess.CompletedProcess[str], project: Path
) -> None:
    assert main_job.returncode == 0, main_job.stdout[-3000:]
    text = (project / "run.json").read_text()
    assert "UNSERIALIZABLE" not in text
    benchmarks = json.loads(text)["benchmarks"]
    assert len(benchmarks) == 2
    for bench in benchmarks:
        for value in _params_strings(bench.get("params")):
            assert not os.path.isabs(value), f"absolute path in params: {value}"
        truth = bench["extra_info"]["ground_truth"]["file"]  # a phantom's: the suite's name
        assert truth.startswith(f"quick:phantom_{MAIN_SUBSET}"), truth
    assert str(default_cache_dir()) not in text and str(project) not in text


def test_data_option_forms_apply_the_same_gate_file(
    user_env: dict[str, Any], project: Path, tmp_path: Path
) -> None:
    data = tmp_path / "scans"  # outside the project, as a user's data usually is
    data.mkdir()
    image, _ = ensure_phantom(PhantomSpec(TINY, 5), default_cache_dir())
    (data / "tiny.nii.gz").write_bytes(image.read_bytes())
    cmd = [str(user_env["python"]), "-m", "pytest", "--benchmark-only", *FAST]
    gate_file = str((project / "benchmarks.json").resolve())
    for form in (["--segbench-data", str(data)], [f"--segbench-data={data}"]):
        out = _run([*cmd, *form], project, user_env["env"])
        text = out.stdout + out.stderr
        usage_error = out.returncode == 4 and "--segbench-data=" in text
        if form[0] == "--segbench-data" and usage_error:
            continue  # refused with the fix: the = form
        assert out.returncode == 0, text[-3000:]
        assert f"gates from {gate_file}" in text, (form, text[-2000:])
