"""bf16 candidates and the CPU's instruction sets: ``"precision": "bf16"`` in a profile (OpenVINO's
inference precision hint), its refusal where the provider or the CPU cannot run it, the
``/proc/cpuinfo`` flags parser, the flags in a saved run and their comparison, and (where
OpenVINO and a bf16 CPU are here) a real bf16 session."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import TINY_GRID, run_pytest
from saved_runs import SUITE, make_run, run_cli, shard, write

from segbench.errors import ConfigError
from segbench.results.baseline import load_baselines
from segbench.results.compare import compare_runs
from segbench.results.markdown import render_report
from segbench.results.mismatch import RunsNotComparable, run_differences
from segbench.results.runs import parse_run
from segbench.results.table import summary_table
from segbench.settings.config import BenchConfig, Profile, parse_config
from segbench.settings.cpu import CPU_FLAGS, flags_text, has_bf16, parse_cpu_flags, read_cpu_flags
from segbench.settings.kinds import BackendKind
from segbench.settings.providers import (
    CPU_EP,
    OPENVINO_EP,
    PRECISION_HINT,
    available_providers,
    check_precision,
    check_precisions_here,
    session_providers,
)

PLAIN = [CPU_EP]
OPENVINO = [OPENVINO_EP, CPU_EP]

# /proc/cpuinfo of three machines (the first processor's block, flags cut to what matters
# around the recorded ones)
ZEN4 = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 17
model name	: AMD EPYC 9R14 96-Core Processor
flags		: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 bmi2 avx512f avx512dq \
avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi avx512_vnni avx512_bitalg avx512_vpopcntdq
bugs		: sysret_ss_attrs spectre_v1
"""
SAPPHIRE_RAPIDS = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8488C
flags		: fpu sse2 avx avx2 avx512f avx512dq avx512_bf16 avx512_vnni avx_vnni amx_bf16 \
avx512_fp16 amx_tile amx_int8 arch_capabilities
"""
OLD_XEON = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) CPU E5-2680 v2 @ 2.80GHz
flags		: fpu vme sse sse2 ssse3 sse4_1 sse4_2 popcnt aes avx f16c rdrand
"""
MACOS_LIKE = "machdep.cpu.brand_string: Apple M2\nhw.ncpu: 8\n"

ZEN4_FLAGS = parse_cpu_flags(ZEN4)
SPR_FLAGS = parse_cpu_flags(SAPPHIRE_RAPIDS)
OLD_FLAGS = parse_cpu_flags(OLD_XEON)


# ---- the flags parser -------------------------------------------------------------------------


def test_zen4_has_avx512_bf16_and_vnni_but_no_amx() -> None:
    assert ZEN4_FLAGS == {
        "avx2": True,
        "avx512f": True,
        "avx512_bf16": True,
        "avx512_vnni": True,
        "amx_tile": False,
        "amx_bf16": False,
        "amx_int8": False,
    }
    assert has_bf16(ZEN4_FLAGS) is True
    assert flags_text(ZEN4_FLAGS) == "avx2 avx512f avx512_bf16 avx512_vnni"


def test_sapphire_rapids_has_amx() -> None:
    assert SPR_FLAGS is not None and all(SPR_FLAGS.values())
    assert has_bf16(SPR_FLAGS) is True
    assert flags_text(SPR_FLAGS).endswith("amx_tile amx_bf16 amx_int8")
    # AMX alone (a hypervisor hiding AVX512_BF16) still runs bf16
    assert has_bf16({**SPR_FLAGS, "avx512_bf16": False}) is True


def test_an_old_xeon_has_none_of_them() -> None:
    assert OLD_FLAGS == dict.fromkeys(CPU_FLAGS, False)  # avx alone is not avx2
    assert has_bf16(OLD_FLAGS) is False
    assert flags_text(OLD_FLAGS).startswith("none of avx2, avx512f")


def test_no_flags_line_is_unknown_not_none(tmp_path: Path) -> None:
    assert parse_cpu_flags(MACOS_LIKE) is None and parse_cpu_flags("") is None
    assert has_bf16(None) is None and flags_text(None) == "unknown"
    assert read_cpu_flags(tmp_path / "no-cpuinfo") is None
    (tmp_path / "cpuinfo").write_text(SAPPHIRE_RAPIDS)
    assert read_cpu_flags(tmp_path / "cpuinfo") == SPR_FLAGS
    # a flag a later version records is shown too
    assert flags_text({"avx2": True, "avx10_1": True}) == "avx2 avx10_1"


# ---- the config and the providers --------------------------------------------------------------

BF16 = {"backend": "onnx", "provider": "openvino", "precision": "bf16"}


def test_bf16_is_accepted_on_an_openvino_onnx_profile() -> None:
    cfg = parse_config({"profiles": {"candidates": {"ov": {"provider": "openvino"}, "bf": BF16}}})
    assert cfg.candidates["bf"].precision == "bf16"
    assert cfg.candidates["ov"].precision == "fp32"
    assert cfg.settings()["profiles"]["candidates"]["bf"]["precision"] == "bf16"


@pytest.mark.parametrize(
    ("profile", "match"),
    [
        (
            {"backend": "torch", "precision": "bf16"},
            r"reference\.precision' is 'bf16', which only an onnx profile supports",
        ),
        (
            {"backend": "onnx", "precision": "bf16"},
            r"candidate\.precision' is 'bf16', which runs on the OpenVINO execution provider "
            r"only .* provider is 'auto'",
        ),
        (
            {"backend": "onnx", "provider": "cpu", "precision": "bf16"},
            r"provider is 'cpu'; set provider to openvino",
        ),
        (
            {**BF16, "provider_options": {"precision": "FP32"}},
            r"provider_options\.precision' \('FP32'\) is set beside the profile's precision",
        ),
        (
            {
                **BF16,
                "provider_options": {"load_config": '{"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}'},
            },
            r"sets CPU\.INFERENCE_PRECISION_HINT to 'f32' but the profile's precision is 'bf16'",
        ),
        (
            {
                "backend": "onnx",
                "provider": "openvino",
                "provider_options": {
                    "load_config": '{"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}'
                },
            },
            r"to 'bf16' but the profile's precision is 'fp32'.*set \"precision\"",
        ),
        (
            {**BF16, "provider_options": {"load_config": "{CPU"}},
            r"load_config' is not a JSON object \('\{CPU'\), so the bf16 hint cannot be added",
        ),
    ],
)
def test_bf16_where_it_cannot_be_said_is_a_config_error(
    profile: dict[str, Any], match: str
) -> None:
    role = "reference" if profile.get("backend") == "torch" else "candidate"
    with pytest.raises(ConfigError, match=match) as err:
        parse_config({"profiles": {role: profile}}, "b.json")
    assert "b.json" in str(err.value) and "Fix" in str(err.value)


def test_bf16_sets_openvinos_precision_hint_in_load_config() -> None:
    plan = session_providers("openvino", None, OPENVINO, precision="bf16", cpu_flags=ZEN4_FLAGS)
    name, options = plan.providers[0]
    assert name == OPENVINO_EP
    assert json.loads(options["load_config"]) == {"CPU": {PRECISION_HINT: "bf16"}}
    # a load_config of the user's keeps its other keys; device_type names the device
    given = {"load_config": '{"CPU": {"NUM_STREAMS": "1"}}', "device_type": "CPU"}
    plan = session_providers("openvino", given, OPENVINO, precision="bf16", cpu_flags=SPR_FLAGS)
    loaded = json.loads(plan.providers[0][1]["load_config"])
    assert loaded == {"CPU": {"NUM_STREAMS": "1", PRECISION_HINT: "bf16"}}
    # fp32 leaves the options alone (the provider's own default is f32)
    plan = session_providers("openvino", None, OPENVINO, cpu_flags=OLD_FLAGS)
    assert plan.providers[0] == OPENVINO_EP
    # a load_config that names a file is left to onnxruntime-openvino in an fp32 profile
    plan = session_providers("openvino", {"load_config": "ov.json"}, OPENVINO)
    assert plan.providers[0] == (OPENVINO_EP, {"load_config": "ov.json"})


def test_bf16_without_openvino_names_the_extra() -> None:
    with pytest.raises(ConfigError) as err:
        check_precision("bf16", "openvino", PLAIN, ZEN4_FLAGS, "b.json: profiles.candidate")
    text = str(err.value)
    assert text.startswith("b.json: profiles.candidate is 'bf16', which needs the OpenVINO")
    assert "segbench[openvino]" in text and "lacks OpenVINOExecutionProvider" in text
    assert "CPU has" not in text and "Fix:" in text


def test_bf16_on_a_cpu_without_bf16_names_its_flags() -> None:
    with pytest.raises(ConfigError) as err:
        session_providers("openvino", None, OPENVINO, precision="bf16", cpu_flags=OLD_FLAGS)
    text = str(err.value)
    assert "a CPU with AVX512_BF16 or AMX" in text
    assert "this CPU has neither avx512_bf16 nor amx_bf16 (its flags: none of avx2" in text
    assert "lacks OpenVINOExecutionProvider" not in text


def test_bf16_missing_both_names_both() -> None:
    no_bf16 = {**ZEN4_FLAGS, "avx512_bf16": False}
    with pytest.raises(ConfigError) as err:
        check_precision("bf16", "openvino", PLAIN, no_bf16)
    text = str(err.value)
    assert "lacks OpenVINOExecutionProvider (it has: CPUExecutionProvider)" in text
    assert "its flags: avx2 avx512f avx512_vnni" in text


def test_what_can_run_passes() -> None:
    check_precision("bf16", "openvino", OPENVINO, ZEN4_FLAGS)
    check_precision("bf16", "openvino", OPENVINO, SPR_FLAGS)
    check_precision("bf16", "openvino", OPENVINO, None)  # flags unknown: OpenVINO decides
    for precision in ("fp32", "fp16"):
        check_precision(precision, "cpu", PLAIN, OLD_FLAGS)


def test_the_session_check_reads_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import segbench.settings.providers as providers

    calls: list[str] = []
    monkeypatch.setattr(providers, "available_providers", lambda: calls.append("ort") or PLAIN)
    monkeypatch.setattr(providers, "read_cpu_flags", lambda: OLD_FLAGS)
    check_precisions_here([("x", "fp32", "cpu"), ("y", "fp16", "auto")])
    assert calls == []  # no bf16 profile: onnxruntime is not even asked
    with pytest.raises(ConfigError, match=r"^z is 'bf16'.*lacks.*neither avx512_bf16"):
        check_precisions_here([("x", "fp32", "cpu"), ("z", "bf16", "openvino")])


def _bf16_runs_here() -> bool:
    return OPENVINO_EP in available_providers() and bool(has_bf16(read_cpu_flags()))


BF16_SKIP = (
    "bf16 needs onnxruntime-openvino (pip install segbench[openvino]) and a CPU with "
    "AVX512_BF16 or AMX"
)


# ---- the flags in a saved run ------------------------------------------------------------------


def test_the_fingerprint_holds_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import segbench.plugin.fingerprint as fingerprint

    facts = fingerprint.machine_facts(BenchConfig())
    assert facts["cpu_flags"] == (read_cpu_flags() or "unknown")
    assert "openvino" not in facts  # no profile runs on OpenVINO
    monkeypatch.setattr(fingerprint, "read_cpu_flags", lambda: SPR_FLAGS)
    assert fingerprint.machine_facts(BenchConfig())["cpu_flags"] == SPR_FLAGS
    monkeypatch.setattr(fingerprint, "read_cpu_flags", lambda: None)
    assert fingerprint.machine_facts(BenchConfig())["cpu_flags"] == "unknown"
    ov = BenchConfig(candidates={"ov": Profile(BackendKind.ONNX, provider="openvino")})
    found = fingerprint.machine_facts(ov)["openvino"]
    if OPENVINO_EP in available_providers():
        assert set(found) == {"inference_precision", "capabilities"}
        assert found["inference_precision"] in ("f32", "bf16", "f16")
    else:
        assert found == "unknown"


def on(data: dict[str, Any], flags: Any, openvino: str | None = None) -> dict[str, Any]:
    """``data`` as saved on a machine with ``flags`` (and OpenVINO's default precision)."""
    data = copy.deepcopy(data)
    data.setdefault("segbench", {"format": 1})["machine"] = {"cpu_flags": flags}
    if openvino is not None:
        data["segbench"]["machine"]["openvino"] = {
            "inference_precision": openvino,
            "capabilities": "FP32",
        }
    return data


def full_run() -> dict[str, Any]:
    return shard(list(SUITE), None)


def test_compare_names_a_change_of_instruction_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = on(full_run(), ZEN4_FLAGS), on(full_run(), SPR_FLAGS)
    with pytest.raises(RunsNotComparable) as info:
        compare_runs(parse_run(old), parse_run(new))
    assert [d.label for d in info.value.refused] == ["CPU instruction sets"]
    code, _ = run_cli(
        "compare", write(tmp_path / "old.json", old), write(tmp_path / "new.json", new)
    )
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "CPU instruction sets 'avx2 avx512f avx512_bf16 avx512_vnni' vs "
        "'avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16 amx_int8'" in err
    )
    assert "same CPU type and instruction sets" in err


def test_compare_names_a_change_of_openvinos_precision() -> None:
    old, new = on(full_run(), ZEN4_FLAGS, "f32"), on(full_run(), ZEN4_FLAGS, "bf16")
    found = run_differences(parse_run(old), parse_run(new))
    assert [(d.text(), d.refuses) for d in found] == [
        ("OpenVINO's default inference precision 'f32' vs 'bf16'", True)
    ]


def test_same_flags_and_runs_without_them_still_compare() -> None:
    same = run_differences(
        parse_run(on(full_run(), ZEN4_FLAGS)), parse_run(on(full_run(), ZEN4_FLAGS))
    )
    assert same == []
    saved_before = parse_run(full_run())  # no "machine" facts at all
    assert saved_before.cpu_flags == ()
    for other in (on(full_run(), SPR_FLAGS), on(full_run(), "unknown")):
        assert run_differences(saved_before, parse_run(other)) == []
        assert run_differences(parse_run(other), saved_before) == []
        compare_runs(saved_before, parse_run(other))
    assert (
        run_differences(parse_run(on(full_run(), "unknown")), parse_run(on(full_run(), OLD_FLAGS)))
        == []
    )


def test_a_merged_run_keeps_each_shards_flags(tmp_path: Path) -> None:
    from segbench.results.merge import merge_shards

    half = len(SUITE) // 2
    a = write(tmp_path / "a.json", on(shard(list(SUITE[:half]), 1), ZEN4_FLAGS))
    b = write(tmp_path / "b.json", on(shard(list(SUITE[half:]), 2), SPR_FLAGS))
    merged = parse_run(merge_shards([a, b]))
    assert merged.cpu_flags == tuple(sorted([flags_text(ZEN4_FLAGS), flags_text(SPR_FLAGS)]))
    alone = parse_run(
        merge_shards([a, write(tmp_path / "c.json", on(shard(list(SUITE[half:]), 2), ZEN4_FLAGS))])
    )
    assert alone.cpu_flags == (flags_text(ZEN4_FLAGS),)


def test_a_baseline_of_other_instruction_sets_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("segbench.results.baseline.current_cpu", lambda: None)
    base = write(tmp_path / "base.json", on(full_run(), ZEN4_FLAGS, "f32"))
    here = {"cpu_flags": ZEN4_FLAGS, "openvino": {"inference_precision": "f32"}}
    assert load_baselines(base, None, here)  # the same machine
    with pytest.raises(ConfigError) as err:
        load_baselines(base, None, {"cpu_flags": SPR_FLAGS})
    text = str(err.value)
    assert "base.json" in text and "CPU instruction sets" in text and "amx_bf16" in text
    assert "Fix: save a baseline on this runner type" in text
    with pytest.raises(ConfigError, match="OpenVINO's default inference precision 'f32'"):
        load_baselines(
            base, None, {"cpu_flags": ZEN4_FLAGS, "openvino": {"inference_precision": "bf16"}}
        )
    # a baseline saved before (no flags) and a machine without /proc/cpuinfo load
    assert load_baselines(write(tmp_path / "old.json", full_run()), None, here)
    assert load_baselines(base, None, {"cpu_flags": "unknown"})


# ---- the precision in the record, the table and the report ----------------------------------


def _with_precision(precision: str | None) -> dict[str, Any]:
    data = make_run()
    for bench in data["benchmarks"]:
        if precision is not None:
            bench["extra_info"]["precision"] = precision
        else:
            bench["extra_info"].pop("precision", None)
    return data


def test_the_table_and_report_say_bf16() -> None:
    rows = list(parse_run(_with_precision("bf16")).rows)
    assert rows[0].precision == "bf16" and rows[0].roles["candidate"].precision == "bf16"
    table = summary_table(rows, "torch", "onnx")
    assert table.splitlines()[0].split()[2] == "precision"
    assert "bf16" in table.splitlines()[2]
    report = render_report(rows, "t", run=parse_run(on(_with_precision("bf16"), ZEN4_FLAGS)))
    assert "| precision |" in report and "| bf16 |" in report
    assert "onnx (CPUExecutionProvider, bf16)" in report
    assert "- CPU instruction sets: avx2 avx512f avx512_bf16 avx512_vnni" in report
    # fp32 runs, and runs saved before, keep their table
    for plain in (_with_precision("fp32"), _with_precision(None)):
        rows = list(parse_run(plain).rows)
        assert "precision" not in summary_table(rows, "torch", "onnx")
        assert "| precision |" not in render_report(rows, "t")


# ---- a real bf16 session ------------------------------------------------------------------------


@pytest.mark.skipif(_bf16_runs_here(), reason="this machine runs bf16: no refusal to show")
def test_a_bf16_session_is_refused_before_anything_runs(tmp_path: Path) -> None:
    config = tmp_path / "bf16.json"
    config.write_text(json.dumps({"profiles": {"candidate": BF16}}))
    out = run_pytest(
        tmp_path, "--benchmark-only", "--segbench-suite=quick", f"--segbench-config={config}"
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "profiles.candidate.precision is 'bf16', which needs the OpenVINO execution" in text
    assert "Traceback" not in text and "passed" not in text


@pytest.mark.skipif(not _bf16_runs_here(), reason=BF16_SKIP)
def test_bf16_runs_in_bf16_close_to_fp32(tiny_onnx: Path) -> None:
    from segbench.pipeline.backends import OrtBackend

    path = tiny_onnx
    batch = np.random.default_rng(0).standard_normal((1, 1, 32, 32, 32)).astype(np.float32)
    fp32 = OrtBackend(path, provider="openvino", threads=1)(batch)
    bf16_backend = OrtBackend(path, provider="openvino", threads=1, precision="bf16")
    assert bf16_backend.precision == "bf16"
    bf16 = bf16_backend(batch)
    diff = float(np.abs(bf16 - fp32).max())
    assert 0 < diff < 0.5 * float(np.abs(fp32).max())  # bf16 rounds: close, not equal


@pytest.mark.slow
@pytest.mark.skipif(not _bf16_runs_here(), reason=BF16_SKIP)
def test_a_bf16_session_records_bf16(tmp_path: Path) -> None:
    from segbench.inputs.phantoms import PhantomSpec, default_cache_dir, ensure_phantom

    (tmp_path / "data").mkdir()
    image, _ = ensure_phantom(PhantomSpec(TINY_GRID, 7), default_cache_dir())
    shutil.copy(image, tmp_path / "data" / image.name)
    config = tmp_path / "bf16.json"
    candidates = {"ov": {"backend": "onnx", "provider": "openvino"}, "ov-bf16": BF16}
    config.write_text(
        json.dumps(
            {
                "gates": {"speedup_min": 0.0, "dice_min": 0.9, "class_dice_min": 0.0},
                "timing": {"rounds": 1, "max_rounds": 1, "warmup_rounds": 0},
                "profiles": {"candidates": candidates},
            }
        )
    )
    out = run_pytest(
        tmp_path,
        "--benchmark-only",
        f"--segbench-data={tmp_path / 'data'}",
        f"--segbench-config={config}",
        f"--benchmark-json={tmp_path / 'run.json'}",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    run = parse_run(json.loads((tmp_path / "run.json").read_text()))
    assert {r.candidate: r.precision for r in run.rows} == {"ov": "fp32", "ov-bf16": "bf16"}
    assert {r.provider for r in run.rows} == {OPENVINO_EP}
    assert run.cpu_flags == (flags_text(read_cpu_flags()),)
    assert run.openvino_precisions  # what OpenVINO's CPU plugin reported
    assert "precision" in out.stdout  # the table's column
