"""The user's own deployment as a profile (``"pipeline"``, ``"command"``, ``"labels"``): the
config, classes paired by name, one clear line per case for each kind of bad deployment, the
paired run and a real suite session whose saved run the CLI reads."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import ROOT, TINY_GRID, run_pytest, tiny_card, write_nifti
from saved_runs import run_cli

from segbench.bench.paired import PairedRun
from segbench.bench.runtime import Runtime
from segbench.bench.segmenters import (
    CommandSegmenter,
    DeploymentError,
    PipelineSegmenter,
    Who,
    build_segmenter,
    relabel,
)
from segbench.errors import ConfigError
from segbench.inputs.phantoms import PhantomSpec, default_cache_dir, ensure_phantom
from segbench.inputs.volumes import Volume, load_volume
from segbench.results.runs import load_run
from segbench.scoring.metrics import compute_dice
from segbench.settings.config import BenchConfig, Gates, Profile, Timing, parse_config
from segbench.settings.kinds import BackendKind
from segbench.settings.labels import pair_classes, parse_labels

EXAMPLE = ROOT / "examples" / "whole_volume_onnx"
CASE = "ct.nii.gz"

# a deployment that thresholds HU: 1 (bone-ish) above 200, 2 (soft tissue) in -100..200
FACTORIES = """
import numpy as np
import nibabel as nib

def make(high=1, soft=2):
    def segment(image):
        data = np.asarray(image.dataobj)
        out = np.zeros(data.shape, np.uint8)
        out[(data > -100) & (data <= 200)] = soft
        out[data > 200] = high
        return nib.Nifti1Image(out, image.affine)
    return segment

def as_array(shape=None, value=1, shift=0.0):
    def segment(image):
        data = np.zeros(shape or image.shape, np.int16)
        data[..., :2] = value
        if shift:
            affine = image.affine.copy()
            affine[0, 3] += shift
            return nib.Nifti1Image(data, affine)
        return data
    return segment

def broken():
    raise RuntimeError("model file not found: /models/whole.onnx")

def not_callable():
    return 42
"""


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    (tmp_path / "deploy_fx.py").write_text(FACTORIES)
    return tmp_path


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    return load_volume(write_nifti(tmp_path / CASE, shape=(20, 18, 12), zooms=(3.0, 3.0, 3.0)))


def names(n: int = 3) -> dict[int, str]:
    return dict(enumerate(["background", "bone", "soft"][:n]))


def pipeline(spec: str, base: Path, **options: Any) -> PipelineSegmenter:
    return PipelineSegmenter(
        spec, options, base, names(), Who("candidate mine", f"pipeline {spec}")
    )


def command(argv: list[str], timeout_s: float = 60.0) -> CommandSegmenter:
    return CommandSegmenter(tuple(argv), timeout_s, names(), Who("candidate cli", "command x"))


def refused(segmenter: Any, volume: Volume) -> str:
    with pytest.raises(DeploymentError) as err:
        segmenter.prepare(CASE, volume)
        segmenter.segment(volume)
    text = str(err.value)
    assert text.startswith(f"{CASE}: candidate ") and "Fix: " in text
    assert "\n" not in text  # one line
    return text


# config -------------------------------------------------------------------------------------


def test_pipeline_and_command_profiles_are_parsed(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1}}))
    cfg = parse_config(
        {
            "profiles": {
                "reference": {"command": ["ts", "-i", "{input}", "-o", "{output}"]},
                "candidates": {
                    "mine": {"pipeline": "pkg.mod:make", "options": {"axes": "zyx"}},
                    "nn": {"pipeline": "x.py:f", "labels": "dataset.json"},
                    "lab": {"command": ["seg", "{output}"], "timeout_s": 5, "labels": {"1": "x"}},
                },
            }
        },
        str(tmp_path / "benchmarks.json"),
    )
    assert cfg.reference.kind == "command" and cfg.reference.command == (
        "ts",
        "-i",
        "{input}",
        "-o",
        "{output}",
    )
    mine, nn, lab = cfg.candidates.values()
    assert (mine.kind, mine.factory, mine.options) == ("pipeline", "pkg.mod:make", {"axes": "zyx"})
    assert nn.labels == {"0": "background", "1": "liver"}
    assert (lab.kind, lab.timeout_s, lab.labels) == ("command", 5.0, {"0": "background", "1": "x"})
    settings = cfg.settings()["profiles"]
    assert settings["candidates"]["mine"]["pipeline"] == "pkg.mod:make"
    assert settings["reference"]["kind"] == "command"
    assert len(cfg.digest()) == 64


@pytest.mark.parametrize(
    ("profile", "match"),
    [
        ({"pipeline": "m:f", "command": ["x", "{output}"]}, r"\.command' is set together"),
        ({"pipeline": "m:f", "backend": "onnx"}, r"\.backend' is not a key of a pipeline"),
        ({"pipeline": "m:f", "graph_level": "all"}, r"\.graph_level' is not a key"),
        ({"pipeline": "module_only"}, r"\.pipeline' must be"),
        ({"pipeline": "m:f", "options": [1]}, r"\.options' must be an object"),
        ({"command": ["x", "-i", "{input}"]}, r"\.command' must be a list of strings with"),
        ({"command": "x {output}"}, r"\.command' must be a list"),
        ({"command": ["x", "{output}"], "timeout_s": 0}, r"\.timeout_s' must be a number"),
        ({"command": ["x", "{output}"], "options": {}}, r"\.options' is not a key of a command"),
        ({"pipeline": "m:f", "labels": {"1": "a", "2": "a"}}, r"names the class 'a' twice"),
        ({"pipeline": "m:f", "labels": {"x": [1]}}, r"neither value: name nor name: value"),
        ({"pipeline": "m:f", "labels": "missing.json"}, r"does not exist"),
    ],
)
def test_bad_deployment_profiles_are_config_errors(profile: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        parse_config({"profiles": {"candidate": profile}}, "b.json")
    assert "b.json" in str(err.value) and "Fix" in str(err.value)


# labels by name -----------------------------------------------------------------------------


def test_label_maps_are_read_in_each_form(tmp_path: Path) -> None:
    assert parse_labels({"1": "spleen", "2": "liver"}, "b.json", "k") == {
        0: "background",
        1: "spleen",
        2: "liver",
    }
    (tmp_path / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "liver": 2, "spleen": 1}, "channel_names": {}})
    )
    assert parse_labels("dataset.json", "b.json", "k", tmp_path)[2] == "liver"
    (tmp_path / "map.json").write_text(json.dumps({"total": {"1": "spleen", "5": "liver"}}))
    assert parse_labels(str(tmp_path / "map.json"), "b.json", "k") == {
        0: "background",
        1: "spleen",
        5: "liver",
    }


def test_classes_are_paired_by_name_and_one_sided_classes_reported() -> None:
    reference = {0: "background", 1: "spleen", 2: "liver", 3: "aorta"}
    candidate = {0: "background", 1: "Liver", 2: "spleen", 7: "lung"}
    pairing = pair_classes(reference, candidate)
    assert pairing.names == ("background", "spleen", "liver", "aorta", "lung")
    assert pairing.reference_only == ("aorta",) and pairing.candidate_only == ("lung",)
    ref = np.array([0, 1, 1, 2, 2, 3, 0, 0], np.uint8)
    cand = np.array([0, 2, 2, 1, 1, 0, 7, 0], np.uint8)  # spleen/liver swapped numbers, + lung
    a, b = relabel(ref, cand, pairing)
    dice = {c.label: c.dice for c in compute_dice(a, b).per_class}
    assert dice[1] == 1.0 and dice[2] == 1.0  # spleen and liver agree by name
    assert dice[3] == 0.0 and dice[4] == 0.0  # aorta (reference only), lung (candidate only)
    assert pair_classes(reference, reference).identity


# the kinds ------------------------------------------------------------------------------------


def test_a_pipeline_segments_on_the_input_grid(factories: Path, volume: Volume) -> None:
    seg = pipeline("deploy_fx.py:make", factories)
    seg.prepare(CASE, volume)
    pred = seg.segment(volume)
    assert pred.labels.shape == volume.shape and pred.logits is None
    expected = np.where(volume.array > 200, 1, np.where(volume.array > -100, 2, 0))
    assert np.array_equal(pred.labels, expected)
    assert pred.times.total > 0 and seg.describe() == {
        "kind": "pipeline",
        "pipeline": "deploy_fx.py:make",
        "timing": "warm",
    }


def test_a_command_segments_on_the_input_grid(factories: Path, volume: Volume) -> None:
    script = factories / "cli.py"
    script.write_text(
        "import sys, nibabel as nib\n"
        f"sys.path.insert(0, {str(factories)!r})\n"
        "from deploy_fx import make\n"
        "nib.save(make()(nib.load(sys.argv[1])), sys.argv[2])\n"
    )
    seg = command(["{python}", str(script), "{input}", "{output}"])
    seg.prepare(CASE, volume)
    pred = seg.segment(volume)
    expected = np.where(volume.array > 200, 1, np.where(volume.array > -100, 2, 0))
    assert np.array_equal(pred.labels, expected)
    assert seg.cold and seg.describe() == {
        "kind": "command",
        "command": ["{python}", str(script), "{input}", "{output}"],
        "timing": "cold",
    }
    seg.close()


# bad deployments: one line naming the case, the candidate and the fix --------------------------


@pytest.mark.parametrize(
    ("spec", "options", "match"),
    [
        ("no_such_module_xyz:make", {}, "cannot be imported: No module named 'no_such_module_xyz'"),
        ("missing.py:make", {}, "names the file .*missing.py, which does not exist"),
        ("deploy_fx.py:nope", {}, "names 'nope', which deploy_fx.py does not define"),
        ("deploy_fx.py:broken", {}, "factory raised RuntimeError: model file not found"),
        ("deploy_fx.py:not_callable", {}, "factory returned a int, not a callable"),
        ("deploy_fx.py:make", {"colour": 1}, "factory raised TypeError"),
        ("deploy_fx.py:as_array", {"shape": (5, 5, 5)}, r"mask of shape \(5, 5, 5\), the input"),
        ("deploy_fx.py:as_array", {"shift": 6.0}, "affine differs from the input's by 6 mm"),
        ("deploy_fx.py:as_array", {"value": 9}, r"label value\(s\) 9 outside its class map"),
    ],
)
def test_a_bad_pipeline_is_one_line_per_case(
    factories: Path, volume: Volume, spec: str, options: dict[str, Any], match: str
) -> None:
    seg = pipeline(spec, factories, **options)
    text = refused(seg, volume)
    assert "candidate mine (pipeline " in text
    assert re.search(match, text), text
    # the same error again for the next case (the factory is not retried)
    other = load_volume(write_nifti(factories / "b.nii.gz", shape=(10, 10, 10)))
    if "factory" in match or "import" in match or "file" in match or "define" in match:
        with pytest.raises(DeploymentError, match=r"^b.nii.gz: candidate mine"):
            seg.prepare("b.nii.gz", other)


@pytest.mark.parametrize(
    ("code", "match"),
    [
        (
            "sys.stderr.write('loading\\nCUDA out of memory\\n'); sys.exit(3)",
            "exited with code 3; stderr: loading | CUDA out of memory",
        ),
        ("pass", r"exited 0 but wrote no label map to \{output\}"),
        ("open(sys.argv[2], 'w').write('junk')", r"wrote an unreadable \{output\}"),
    ],
)
def test_a_bad_command_is_one_line_per_case(
    tmp_path: Path, volume: Volume, code: str, match: str
) -> None:
    script = tmp_path / "cli.py"
    script.write_text(f"import sys\n{code}\n")
    text = refused(command([sys.executable, str(script), "{input}", "{output}"]), volume)
    assert "candidate cli (command x)" in text
    assert re.search(match, text), text


def test_a_hanging_command_is_killed_at_its_timeout(tmp_path: Path, volume: Volume) -> None:
    script = tmp_path / "hang.py"
    script.write_text(
        "import sys, time\nsys.stderr.write('warming up\\n'); sys.stderr.flush()\ntime.sleep(120)\n"
    )
    start = time.monotonic()
    text = refused(command([sys.executable, str(script), "{output}"], timeout_s=2), volume)
    assert time.monotonic() - start < 60  # killed, not waited for
    assert "ran past its timeout of 2 s and was killed; stderr: warming up" in text
    assert "timeout_s" in text


def test_a_missing_program_is_one_line(volume: Volume) -> None:
    text = refused(command(["no-such-segmenter-xyz", "{output}"]), volume)
    assert "cannot start 'no-such-segmenter-xyz'" in text


def test_a_command_mask_of_another_grid_is_refused(tmp_path: Path, volume: Volume) -> None:
    script = tmp_path / "cli.py"
    script.write_text(
        "import sys, numpy as np, nibabel as nib\n"
        "img = nib.load(sys.argv[1])\n"
        "nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), img.affine), sys.argv[2])\n"
    )
    text = refused(command([sys.executable, str(script), "{input}", "{output}"]), volume)
    assert "gave a mask of shape (4, 4, 4), the input is (20, 18, 12)" in text


def test_an_injection_into_a_deployment_is_refused(tmp_path: Path) -> None:
    from segbench.bench.runtime import build_runtime
    from segbench.errors import SegbenchError
    from segbench.models import get_card
    from segbench.settings.injection import Injection

    config = parse_config({"profiles": {"candidates": {"mine": {"pipeline": "m:f"}}}}, "b.json")
    with pytest.raises(SegbenchError, match="candidate mine is your deployment") as err:
        build_runtime(get_card("demo"), config, tmp_path, injection=Injection(slowdown=1.5))
    assert "Fix: inject into an onnx candidate" in str(err.value)
    runtime = build_runtime(get_card("demo"), config, tmp_path)  # not injected: built
    assert runtime.segmenter("candidate:mine").kind == "pipeline" and runtime.onnx_path is None


# the paired run with deployments --------------------------------------------------------------


def test_a_paired_run_scores_a_pipeline_by_class_name(factories: Path, tmp_path: Path) -> None:
    """Reference: a pipeline numbering bone 1, soft 2. Candidate: the same masks numbered soft 1,
    bone 2 with its labels saying so: Dice 1 by name; logit difference n/a; timed pairs."""
    image = write_nifti(tmp_path / CASE, shape=(20, 18, 12), zooms=(3.0, 3.0, 3.0))
    card = tiny_card()
    ref = Profile(BackendKind.TORCH, factory="deploy_fx.py:make", labels={"1": "bone", "2": "soft"})
    cand = Profile(
        BackendKind.ONNX,
        factory="deploy_fx.py:make",
        options={"high": 2, "soft": 1},
        labels={"1": "soft", "2": "bone"},
    )
    profiles = {"reference": ref, "candidate": cand}
    segmenters = {s: build_segmenter(s, p, card, None, factories) for s, p in profiles.items()}
    runtime = Runtime(
        card,
        {},
        profiles,
        None,
        "export",
        None,
        segmenters=segmenters,
        names={s: {int(k): v for k, v in (p.labels or {}).items()} for s, p in profiles.items()},
    )
    config = BenchConfig(timing=Timing(rounds=2, warmup_rounds=1, max_rounds=2))
    pair = PairedRun.load(CASE, image, None, runtime, config, Gates(speedup_min=0.0))
    pair.measure("reference", None)
    pair.measure("candidate", None)
    evaluation = pair.evaluate(timed=True, slot="candidate")
    assert evaluation.dice.mean == 1.0 and evaluation.logits is None
    assert all(g.passed for g in evaluation.gates), [g.message for g in evaluation.gates]
    assert "logit difference n/a" in evaluation.gates[0].message
    failing = PairedRun.load(CASE, image, None, runtime, config, Gates(dice_min=1.01))
    failing.measure("candidate", None)
    message = failing.evaluate(timed=False, slot="candidate").gates[0].message
    assert "Fix: the deployment's own code changes the masks" in message
    assert "re-export the ONNX file" not in message
    assert evaluation.check is not None and evaluation.check.pairs.n == 2
    info = pair.extra_info("candidate")
    assert info["deployment"]["kind"] == "pipeline" and info["stages_s"].keys() == {"total"}
    assert info["class_pairing"]["names"] == {"0": "background", "1": "bone", "2": "soft"}


# a real session ---------------------------------------------------------------------------------

PHANTOM = "phantom_tiny3mm_ras_s007.nii.gz"
PERMUTED = '''
import sys
import numpy as np
import nibabel as nib
sys.path.insert(0, {example!r})
from builtin_wrapper import make_segmenter

def make(order):
    """segbench's own ONNX path with the classes renumbered: order[i] is class i's new value."""
    segment = make_segmenter()
    lut = np.array(order, np.uint8)

    def renumbered(image):
        mask = segment(image)
        return nib.Nifti1Image(lut[np.asarray(mask.dataobj)], mask.affine)

    return renumbered
'''


@pytest.mark.slow
def test_a_session_with_deployments_goes_on_past_a_broken_one(tmp_path: Path) -> None:
    """One tiny phantom; candidates: the example's whole-volume command (cold), segbench's own
    ONNX path as a pipeline with its classes renumbered (labels by name), and a pipeline whose
    factory raises. The broken one fails with one line; the others pass; the saved run is read
    by gate, report and compare."""
    (tmp_path / "data").mkdir()
    image, _ = ensure_phantom(PhantomSpec(TINY_GRID, 7), default_cache_dir())
    shutil.copy(image, tmp_path / "data" / image.name)
    (tmp_path / "renumber.py").write_text(PERMUTED.format(example=str(EXAMPLE)))
    (tmp_path / "broken.py").write_text(FACTORIES)
    classes = ["spleen", "kidney", "liver", "lung", "aorta", "spine"]
    order = [0, 6, 5, 4, 3, 2, 1]
    config = {
        # the whole-volume example loses Dice by design: this session tests that it runs
        "gates": {
            "speedup_min": 0.0,
            "dice_min": 0.0,
            "class_dice_min": 0.0,
            "nsd_min": 0.0,
            "hd95_max_mm": 1e6,
            "volume_diff_max_pct": 1e6,
            "vanished_max": 6,
        },
        "timing": {"rounds": 1, "warmup_rounds": 0, "max_rounds": 1},
        "profiles": {
            "candidates": {
                "whole-cli": {
                    "command": [
                        "{python}",
                        str(EXAMPLE / "segment_cli.py"),
                        "-i",
                        "{input}",
                        "-o",
                        "{output}",
                    ],
                    "timeout_s": 300,
                },
                "renumbered": {
                    "pipeline": "renumber.py:make",
                    "options": {"order": order},
                    "labels": {str(order[i + 1]): n for i, n in enumerate(classes)},
                },
                "broken": {"pipeline": "broken.py:broken"},
            }
        },
    }
    (tmp_path / "benchmarks.json").write_text(json.dumps(config))
    out = run_pytest(
        tmp_path,
        "--benchmark-only",
        f"--segbench-data={tmp_path / 'data'}",
        f"--segbench-config={tmp_path / 'benchmarks.json'}",
        "--benchmark-json=run.json",
    )
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-4000:]
    assert "1 failed, 3 passed" in out.stdout, text[-4000:]
    line = (
        f"{PHANTOM}: candidate broken (pipeline broken.py:broken) factory raised RuntimeError: "
        "model file not found: /models/whole.onnx. Fix: fix the factory"
    )
    assert line in out.stdout
    rows = {r.split()[1]: r for r in out.stdout.splitlines() if r.startswith(PHANTOM)}
    assert rows["whole-cli"].rstrip().endswith("ok") and "(cold)" in rows["whole-cli"]
    assert rows["renumbered"].rstrip().endswith("ok")

    data = json.loads((tmp_path / "run.json").read_text())
    infos = {b["extra_info"].get("candidate_name"): b["extra_info"] for b in data["benchmarks"]}
    assert infos["renumbered"]["mean_dice"] >= 0.9999  # segbench's own path, renumbered
    assert infos["renumbered"]["max_abs_logit_diff"] is None
    assert infos["whole-cli"]["deployment"]["timing"] == "cold"
    assert infos["whole-cli"]["stages_s"].keys() == {"total"}
    run = load_run(tmp_path / "run.json")
    assert {r.candidate for r in run.rows} == {"whole-cli", "renumbered"}
    code, gate = run_cli("gate", tmp_path / "run.json")
    assert code == 1 and f"{PHANTOM}: no benchmark of candidate(s) broken" in gate, gate
    assert "(cold)" in gate and "renumbered  60x56x48" in gate
    code, report = run_cli("report", tmp_path / "run.json", f"--out={tmp_path / 'rep'}")
    assert code == 0, report
    code, compared = run_cli("compare", tmp_path / "run.json", tmp_path / "run.json")
    assert code == 0, compared
    code, merged = run_cli("merge", "-o", tmp_path / "merged.json", tmp_path / "run.json")
    assert code == 0, merged
    assert {r.candidate for r in load_run(tmp_path / "merged.json").rows} == {
        "whole-cli",
        "renumbered",
    }
