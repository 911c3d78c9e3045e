"""The gate functions and benchmarks.json validation (no pipeline runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segbench.errors import ConfigError
from segbench.scoring.gates import BaselineSpeedup, check_dice, check_speedup, check_suite_speedup
from segbench.scoring.metrics import LogitDiff, compute_dice
from segbench.settings.config import BenchConfig, Gates, load_config, parse_config

NAMES = ("background", "spleen", "kidney", "liver")
ROOT = Path(__file__).resolve().parents[1]


def _maps(flip: int) -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((40, 40, 40), dtype=np.uint8)
    ref[:20] = 3  # liver: 32000 voxels
    ref[30:32, :10, :10] = 1  # spleen: 200 voxels
    cand = ref.copy()
    cand[:flip] = 0
    return ref, cand


def test_dice_gate_passes_identical_masks() -> None:
    ref, _ = _maps(0)
    result = check_dice("case.nii.gz", compute_dice(ref, ref), Gates(), NAMES)
    assert result.passed
    assert "Fix:" not in result.message


def test_dice_gate_failure_message_names_everything() -> None:
    ref, cand = _maps(4)  # liver loses 20 %
    result = check_dice(
        "case.nii.gz",
        compute_dice(ref, cand),
        Gates(),
        NAMES,
        LogitDiff(max_abs=3.5, mean_abs=0.01),
    )
    assert not result.passed
    msg = result.message
    for part in (
        "case.nii.gz",
        "liver",
        "0.8889",
        "dice_min 0.995",
        "class_dice_min 0.99",
        "25600 cand",
        "max |logit diff| 3.5",
        "10.000% of voxels changed label",
    ):
        assert part in msg, (part, msg)
    assert msg.rstrip().endswith("benchmarks.json.")
    assert "Fix:" in msg


def test_class_gate_ignores_small_classes_only() -> None:
    ref, cand = _maps(0)
    cand[30:32, :10, :5] = 0  # spleen (200 voxels) loses half
    dice = compute_dice(ref, cand)
    loose = Gates(dice_min=0.0, class_dice_min=0.95, min_class_voxels=1000)
    strict = Gates(dice_min=0.0, class_dice_min=0.95, min_class_voxels=100)
    assert check_dice("c", dice, loose, NAMES).passed
    failed = check_dice("c", dice, strict, NAMES)
    assert not failed.passed and "failed for spleen" in failed.message


def test_speedup_gate() -> None:
    ok = check_speedup("c", 2.0, 1.0, Gates(speedup_min=1.5), "min")
    assert ok.passed
    bad = check_speedup("c", 1.2, 1.0, Gates(speedup_min=1.5), "median")
    assert not bad.passed
    for part in ("1.20x", "reference 1.200 s", "candidate 1.000 s", "median", "1.5x", "Fix:"):
        assert part in bad.message


def test_committed_benchmarks_json_is_valid() -> None:
    cfg = load_config(ROOT / "benchmarks.json")
    assert cfg.reference.backend.value == "torch"
    assert cfg.candidate.backend.value == "onnx"
    assert cfg.timing.warmup_rounds >= 2


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"gate": {}}, "'gate'"),
        ({"gates": {"dice_minimum": 0.9}}, "gates.dice_minimum"),
        ({"gates": {"dice_min": 1.5}}, "gates.dice_min"),
        ({"gates": {"speedup_min": "fast"}}, "gates.speedup_min"),
        ({"timing": {"rounds": 0}}, "timing.rounds"),
        ({"timing": {"estimator": "mean"}}, "timing.estimator"),
        ({"profiles": {"candidate": {"backend": "tensorflow"}}}, "profiles.candidate.backend"),
        ({"profiles": {"reference": {"resample_order": 5}}}, "profiles.reference.resample_order"),
        ({"cases": {"a.nii.gz": {"speedup": 2}}}, "cases.a.nii.gz.speedup"),
        ({"cases": []}, "'cases'"),
    ],
)
def test_bad_config_names_key_and_file(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "bench.json")
    assert key in str(err.value) and "bench.json" in str(err.value)


def test_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"b\.json: not valid JSON"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.json")


def test_case_overrides_inherit_defaults(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(
        json.dumps({"gates": {"speedup_min": 1.3}, "cases": {"x.nii.gz": {"dice_min": 0.9}}})
    )
    cfg = load_config(path)
    assert cfg.gates_for("x.nii.gz") == Gates(dice_min=0.9, speedup_min=1.3)
    assert cfg.gates_for("y.nii.gz") == Gates(speedup_min=1.3)
    assert BenchConfig().gates == Gates()


def test_speedup_gate_against_a_baseline() -> None:
    gates = Gates(speedup_min=1.0, speedup_drop_max=0.15)  # per case; the default is 0.3
    base = BaselineSpeedup(1.40, "base.json")
    same = check_speedup("c", 1.38, 1.0, gates, "min", base)
    assert same.passed and "baseline 1.40x (base.json)" in same.message
    # a candidate 30 % slower: 1.40 / 1.3 = 1.08x, still above speedup_min but 23 % below
    slow = check_speedup("c", 1.40, 1.30, gates, "min", base)
    assert not slow.passed
    for part in ("a drop of 23%", "speedup_drop_max 15%", "floor 1.19x", "Fix:", "baseline run"):
        assert part in slow.message, part
    faster = check_speedup("c", 2.0, 1.0, gates, "min", base)
    assert faster.passed and "a gain of 43%" in faster.message


def test_speedup_drop_max_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"gates\.speedup_drop_max"):
        parse_config({"gates": {"speedup_drop_max": 1.5}}, "bench.json")
    assert parse_config({"gates": {"speedup_drop_max": 0.1}}).gates.speedup_drop_max == 0.1


def test_profile_switches_parse() -> None:
    cfg = parse_config(
        {
            "profiles": {
                "candidate": {"fit_patch": True, "mem_arena": False},
                "reference": {"fit_patch": True},
            }
        }
    )
    assert cfg.candidate.fit_patch and cfg.candidate.pipeline.fit_patch
    assert cfg.reference.pipeline.fit_patch and not cfg.candidate.mem_arena
    with pytest.raises(ConfigError, match=r"profiles\.candidate\.mem_arena"):
        parse_config({"profiles": {"candidate": {"mem_arena": "no"}}}, "bench.json")


def test_precision_is_validated_and_onnx_only() -> None:
    assert parse_config({}).candidate.precision == "fp32"
    cfg = parse_config({"profiles": {"candidate": {"precision": "fp16"}}})
    assert (
        cfg.candidate.precision == "fp16"
        and cfg.settings()["profiles"]["candidate"]["precision"] == "fp16"
    )
    with pytest.raises(ConfigError, match=r"profiles\.candidate\.precision.*'int4'"):
        parse_config({"profiles": {"candidate": {"precision": "int4"}}}, "bench.json")
    with pytest.raises(ConfigError, match=r"profiles\.reference\.precision.*only an onnx"):
        parse_config({"profiles": {"reference": {"precision": "fp16"}}}, "bench.json")


def test_suite_speedup_gate_takes_the_geometric_mean() -> None:
    # one case jumping by a fifth (seen between two processes) does not fail the suite ...
    noisy = {"a": (1.14, 1.45), "b": (1.40, 1.31), "c": (1.38, 1.31), "d": (1.41, 1.25)}
    result = check_suite_speedup(noisy, 0.15)
    assert result is not None and result.passed and "Fix:" not in result.message
    # ... a candidate 30 % slower on every case does
    slow = {c: (s / 1.3, b) for c, (s, b) in noisy.items()}
    bad = check_suite_speedup(slow, 0.15)
    assert bad is not None and not bad.passed and bad.name == "suite_speedup"
    for part in (
        "0.77 x the baseline's",
        "over 4 cases",
        "suite_speedup_drop_max 15%",
        "floor 0.85",
        "lowest: a 0.88x vs 1.45x",
        "Fix:",
    ):
        assert part in bad.message, part
    assert check_suite_speedup({}, 0.15) is None


def test_suite_gate_is_not_a_case_key() -> None:
    with pytest.raises(ConfigError, match=r"cases\.a\.nii\.gz\.suite_speedup_drop_max"):
        parse_config({"cases": {"a.nii.gz": {"suite_speedup_drop_max": 0.1}}}, "bench.json")
    assert (
        parse_config({"gates": {"suite_speedup_drop_max": 0.1}}).gates.suite_speedup_drop_max == 0.1
    )
