"""The gate functions and benchmarks.json validation (no pipeline runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segbench.errors import ConfigError
from segbench.scoring.gates import check_dice, check_speedup
from segbench.scoring.metrics import LogitDiff, compute_dice
from segbench.scoring.stats import PairSample
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
    ok = check_speedup(
        "c", PairSample.from_ratios([2.0, 2.1]), (2.0, 1.0), Gates(speedup_min=1.5), "min"
    )
    assert ok.gate.passed
    bad = check_speedup(
        "c", PairSample.from_ratios([1.2, 1.2]), (1.2, 1.0), Gates(speedup_min=1.5), "median"
    )
    assert not bad.gate.passed
    for part in ("1.20x [1.20, 1.20]", "reference 1.200 s", "candidate 1.000 s", "median", "1.5x"):
        assert part in bad.gate.message, part
    assert "Fix:" in bad.gate.message
    # a run saved without pairs: the latencies' ratio
    old = check_speedup("c", PairSample(()), (1.2, 1.0), Gates(speedup_min=1.5), "min")
    assert not old.gate.passed and "1.20x (reference / candidate latency" in old.gate.message


def test_committed_benchmarks_json_is_valid() -> None:
    cfg = load_config(ROOT / "benchmarks.json")
    assert cfg.reference.backend.value == "torch"
    assert cfg.candidate.backend.value == "onnx"
    assert cfg.timing.warmup_rounds >= 1 and cfg.timing.max_rounds > cfg.timing.rounds >= 3
    assert cfg.gates.suite_speedup_drop_max <= 0.1 and not cfg.gates.inconclusive_fails


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


def test_spinning_is_an_onnx_switch_off_by_default() -> None:
    assert parse_config({}).candidate.spinning is False
    cfg = parse_config({"profiles": {"candidate": {"spinning": True}}})
    assert cfg.candidate.spinning and cfg.settings()["profiles"]["candidate"]["spinning"] is True
    with pytest.raises(ConfigError, match=r"profiles\.candidate\.spinning.*true or false"):
        parse_config({"profiles": {"candidate": {"spinning": "yes"}}}, "bench.json")
    with pytest.raises(ConfigError, match=r"profiles\.reference\.spinning' is set.*drop spinning"):
        parse_config({"profiles": {"reference": {"spinning": False}}}, "bench.json")


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


def test_suite_gate_is_not_a_case_key() -> None:
    with pytest.raises(ConfigError, match=r"cases\.a\.nii\.gz\.suite_speedup_drop_max"):
        parse_config({"cases": {"a.nii.gz": {"suite_speedup_drop_max": 0.1}}}, "bench.json")
    assert (
        parse_config({"gates": {"suite_speedup_drop_max": 0.1}}).gates.suite_speedup_drop_max == 0.1
    )
