"""segbench.settings.providers: the execution provider a profile asks for, its options and
threads, and the OpenVINO / CUDA / TensorRT runs where those providers are installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import tiny_card

from segbench.errors import ConfigError, ModelError
from segbench.settings.config import Profile, parse_config
from segbench.settings.providers import (
    CPU_EP,
    CUDA_EP,
    OPENVINO_EP,
    TENSORRT_EP,
    Provider,
    available_providers,
    check_options,
    check_ran_on,
    device_of,
    gpu_present,
    session_providers,
    thread_options,
)

PLAIN = [CPU_EP]  # onnxruntime
OPENVINO = [OPENVINO_EP, CPU_EP]  # onnxruntime-openvino
GPU = [TENSORRT_EP, CUDA_EP, CPU_EP]  # onnxruntime-gpu


# ---- session_providers: pure, the available providers passed in --------------------------------


def test_auto_keeps_the_original_choice() -> None:
    assert session_providers("auto", None, PLAIN) == ([CPU_EP], "cpu", False, Provider.AUTO)
    assert session_providers("auto", {}, GPU, gpu=True)[:3] == (GPU, "cuda", True)
    # onnxruntime-gpu lists CUDA and TensorRT without a GPU: auto stays on the CPU then
    assert session_providers("auto", None, GPU, gpu=False)[:3] == ([CPU_EP], "cpu", False)
    # auto never picks OpenVINO: it is asked for by name
    assert session_providers("auto", None, OPENVINO)[:3] == ([CPU_EP], "cpu", False)


def test_explicit_providers_give_their_list_device_and_io_binding() -> None:
    assert session_providers("cpu", None, GPU)[:3] == ([CPU_EP], "cpu", False)
    assert session_providers(Provider.OPENVINO, None, OPENVINO)[:3] == (OPENVINO, "cpu", False)
    assert session_providers("cuda", None, GPU)[:3] == ([CUDA_EP, CPU_EP], "cuda", True)
    assert session_providers("tensorrt", None, GPU)[:3] == (GPU, "cuda", True)
    # TensorRT without the CUDA provider listed: the CPU runs what TensorRT cannot
    assert session_providers("tensorrt", None, [TENSORRT_EP, CPU_EP]).providers == [
        TENSORRT_EP,
        CPU_EP,
    ]


def test_options_go_to_their_provider_as_strings() -> None:
    plan = session_providers(
        "openvino", {"precision": "FP32", "num_of_threads": 3, "device_type": "CPU"}, OPENVINO
    )
    assert plan.providers == [
        (OPENVINO_EP, {"precision": "FP32", "num_of_threads": "3", "device_type": "CPU"}),
        CPU_EP,
    ]
    assert plan.requested == OPENVINO_EP
    trt = session_providers(
        "tensorrt",
        {"trt_fp16_enable": True, "trt_engine_cache_enable": "1", "trt_engine_cache_path": "/c"},
        GPU,
    )
    assert trt.providers[0] == (
        TENSORRT_EP,
        {
            "trt_fp16_enable": "True",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": "/c",
        },
    )
    # device_id picks the GPU of TensorRT and of its CUDA fallback alike
    assert session_providers("tensorrt", {"device_id": 1}, GPU).providers[1] == (
        CUDA_EP,
        {"device_id": "1"},
    )
    assert session_providers("cuda", {"device_id": 1}, GPU).providers == [
        (CUDA_EP, {"device_id": "1"}),
        CPU_EP,
    ]


@pytest.mark.parametrize(
    ("provider", "package"),
    [
        ("openvino", "segbench[openvino]"),
        ("cuda", "segbench[gpu]"),
        ("tensorrt", "segbench[gpu]"),
    ],
)
def test_a_missing_provider_names_the_extra_to_install(provider: str, package: str) -> None:
    with pytest.raises(ConfigError) as err:
        session_providers(provider, None, PLAIN)
    msg = str(err.value)
    assert provider in msg and package in msg and "pip uninstall onnxruntime" in msg
    assert "it has: CPUExecutionProvider" in msg


def test_openvino_is_missing_from_onnxruntime_gpu_and_cuda_from_openvino() -> None:
    with pytest.raises(ConfigError, match=r"segbench\[openvino\]"):
        session_providers("openvino", None, GPU)
    with pytest.raises(ConfigError, match=r"segbench\[gpu\]"):
        session_providers("cuda", None, OPENVINO)


# ---- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "options", "problem"),
    [
        ("openvino", {"num_threads": 2}, "provider_options.num_threads' is not an option of"),
        ("cuda", {"trt_fp16_enable": True}, "not an option of provider 'cuda'"),
        ("tensorrt", {"precision": "FP16"}, "not an option of provider 'tensorrt'"),
        ("cpu", {"device_id": 0}, "(valid: none)"),
        ("auto", {"device_id": 0}, "provider is 'auto'"),
        ("cuda", {"device_id": -1}, "must be a non-negative integer"),
        ("cuda", {"device_id": True}, "must be a non-negative integer"),
        ("tensorrt", {"trt_fp16_enable": 2}, "must be true or false"),
        ("openvino", {"device_type": ["CPU"]}, "must be a string"),
        ("openvino", ["precision"], "must be an object"),
    ],
)
def test_bad_options_are_refused(provider: str, options: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_options(provider, options, "p.provider_options", "bench.json")
    msg = str(err.value)
    assert problem in msg and msg.startswith("bench.json: key ")


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"valid: .*num_of_threads.*precision"):
        check_options("openvino", {"threads": 2})


def test_an_unknown_provider_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"'openvino', 'cuda', 'tensorrt'\], got 'rocm'"):
        session_providers("rocm", None, GPU)


# ---- threads ------------------------------------------------------------------------------------


def test_threads_go_to_openvino_num_of_threads() -> None:
    plan = session_providers("openvino", None, OPENVINO, threads=2)
    assert plan.providers[0] == (OPENVINO_EP, {"num_of_threads": "2"})
    assert thread_options("openvino", {"num_of_threads": "2"}, 2) == {"num_of_threads": "2"}
    assert thread_options("openvino", {"num_of_threads": "4"}, None) == {"num_of_threads": "4"}
    # the CPU provider takes the count as the session's intra_op_num_threads, not an option
    assert thread_options("cpu", {}, 2) == {}
    assert session_providers("cpu", None, PLAIN, threads=2).providers == [CPU_EP]


def test_a_different_openvino_thread_count_is_refused() -> None:
    with pytest.raises(ConfigError, match="num_of_threads is 4 but threads is 2"):
        session_providers("openvino", {"num_of_threads": 4}, OPENVINO, threads=2)


# ---- the provider that ran ----------------------------------------------------------------------


def test_a_silent_fallback_of_an_explicit_provider_is_an_error() -> None:
    plan = session_providers("openvino", None, OPENVINO)
    check_ran_on(plan, OPENVINO_EP, "m.onnx")
    with pytest.raises(ModelError, match=r"m.onnx: provider 'openvino' .* on CPUExecutionProvider"):
        check_ran_on(plan, CPU_EP, "m.onnx")
    # auto may fall back (the original behaviour: a warning)
    check_ran_on(session_providers("auto", None, GPU, gpu=True), CPU_EP, "m.onnx")


def test_device_of() -> None:
    assert [device_of(p) for p in (CPU_EP, OPENVINO_EP, CUDA_EP, TENSORRT_EP)] == [
        "cpu",
        "cpu",
        "cuda",
        "cuda",
    ]


# ---- benchmarks.json ----------------------------------------------------------------------------


def test_config_reads_provider_and_options() -> None:
    cfg = parse_config(
        {
            "profiles": {
                "candidate": {
                    "provider": "openvino",
                    "provider_options": {"precision": "FP32"},
                    "threads": 2,
                }
            }
        },
        "bench.json",
    )
    assert cfg.candidate.provider == "openvino"
    assert cfg.candidate.provider_options == {"precision": "FP32"}
    assert cfg.settings()["profiles"]["candidate"]["provider_options"] == {"precision": "FP32"}
    assert cfg.reference.provider == "auto" and cfg.reference.provider_options == {}
    hash(cfg.candidate)  # a Profile stays hashable with its options dict


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        (
            {"provider": "openvino", "provider_options": {"nthreads": 1}},
            "provider_options.nthreads",
        ),
        ({"provider": "rocm"}, "profiles.candidate.provider' must be one of"),
        ({"provider_options": {"device_id": 0}}, "provider is 'auto'"),
        ({"provider": "cpu", "provider_options": 3}, "must be an object"),
        ({"backend": "torch", "provider": "cpu"}, "candidate.provider' is set, which only an onnx"),
        ({"backend": "torch", "provider_options": {}}, "candidate.provider_options' is set"),
    ],
)
def test_config_refuses_bad_provider_settings(candidate: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"profiles": {"candidate": candidate}}, "bench.json")
    assert problem in str(err.value) and str(err.value).startswith("bench.json: ")


def test_profile_defaults_to_auto() -> None:
    from segbench.settings.kinds import BackendKind

    assert Profile(BackendKind.ONNX).provider == "auto"


# ---- OrtBackend ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_path(tiny_onnx: Path) -> Path:
    pytest.importorskip("onnxruntime")
    return tiny_onnx


@pytest.fixture(scope="module")
def batch_and_cpu_logits(onnx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    from segbench.pipeline.backends import OrtBackend

    batch = np.random.default_rng(0).standard_normal((1, 1, 32, 32, 32)).astype(np.float32)
    return batch, OrtBackend(onnx_path, provider="cpu")(batch)


def test_ort_backend_cpu_provider(onnx_path: Path) -> None:
    from segbench.pipeline.backends import OrtBackend

    backend = OrtBackend(onnx_path, provider="cpu", threads=1)
    assert backend.provider == CPU_EP
    assert backend.device == "cpu" and backend.io_binding is False


def _missing_provider() -> str:
    """A provider that this onnxruntime lacks (OpenVINO, else CUDA)."""
    available = available_providers()
    for provider, name in (("openvino", OPENVINO_EP), ("cuda", CUDA_EP)):
        if name not in available:
            return provider
    pytest.skip("onnxruntime has both OpenVINO and CUDA here")


def test_ort_backend_refuses_a_provider_that_is_not_installed(onnx_path: Path) -> None:
    from segbench.pipeline.backends import OrtBackend

    provider = _missing_provider()
    extra = {"openvino": "openvino", "cuda": "gpu"}[provider]
    with pytest.raises(ConfigError, match=rf"segbench\[{extra}\]"):
        OrtBackend(onnx_path, provider=provider)


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_ort_backend_refuses_a_silent_fallback(
    onnx_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime runs a session on the CPU when the provider asked for cannot start."""
    import segbench.pipeline.backends as backends

    provider = _missing_provider()

    def claims_it(provider: str, options: Any, threads: Any, precision: str = "fp32") -> Any:
        return session_providers(provider, options, [*GPU, OPENVINO_EP], threads=threads)

    monkeypatch.setattr(backends, "plan_providers", claims_it)
    with pytest.raises(ModelError, match=f"provider '{provider}' was asked for but onnxruntime"):
        backends.OrtBackend(onnx_path, provider=provider)


def _skip_unless(provider: str, needs_gpu: bool, reason: str) -> None:
    name = {"openvino": OPENVINO_EP, "cuda": CUDA_EP, "tensorrt": TENSORRT_EP}[provider]
    if name not in available_providers() or (needs_gpu and not gpu_present()):
        pytest.skip(reason)


def test_openvino_runs_and_matches_the_cpu_provider(
    onnx_path: Path, batch_and_cpu_logits: tuple[np.ndarray, np.ndarray]
) -> None:
    from segbench.pipeline.backends import OrtBackend

    _skip_unless(
        "openvino", False, "onnxruntime-openvino not installed: pip install segbench[openvino]"
    )
    batch, cpu = batch_and_cpu_logits
    backend = OrtBackend(onnx_path, provider="openvino", threads=1)
    assert backend.provider == OPENVINO_EP
    assert backend.device == "cpu" and backend.io_binding is False
    out = backend(batch)
    assert out.shape == cpu.shape and out.dtype == np.float32
    assert float(np.abs(out - cpu).max()) < 1e-3
    # IO binding on host memory works too (the original code bound OpenVINO to "cuda")
    bound = OrtBackend(onnx_path, provider="openvino", io_binding=True)(batch)
    assert float(np.abs(bound - cpu).max()) < 1e-3


@pytest.mark.parametrize(("provider", "tolerance"), [("cuda", 1e-3), ("tensorrt", 1e-2)])
def test_gpu_providers_run_and_match_the_cpu_provider(
    onnx_path: Path,
    batch_and_cpu_logits: tuple[np.ndarray, np.ndarray],
    provider: str,
    tolerance: float,
) -> None:
    from segbench.pipeline.backends import OrtBackend

    _skip_unless(provider, True, "needs a CUDA GPU and onnxruntime-gpu: pip install segbench[gpu]")
    batch, cpu = batch_and_cpu_logits
    backend = OrtBackend(onnx_path, provider=provider)
    assert backend.provider == {"cuda": CUDA_EP, "tensorrt": TENSORRT_EP}[provider]
    assert backend.device == "cuda" and backend.io_binding is True
    # TensorRT may run float32 convolutions in TF32: a looser bound
    assert float(np.abs(backend(batch) - cpu).max()) < tolerance


def test_the_runner_passes_the_profile_provider_to_the_backend(tmp_path: Path) -> None:
    from segbench.bench.runtime import build_runtime
    from segbench.settings.config import BenchConfig
    from segbench.settings.kinds import BackendKind

    profile = Profile(BackendKind.ONNX, threads=1, provider="openvino")
    config = BenchConfig(candidate=profile)
    if OPENVINO_EP not in available_providers():
        with pytest.raises(ConfigError, match=r"segbench\[openvino\]"):
            build_runtime(tiny_card(), config, tmp_path)
        return
    runtime = build_runtime(tiny_card(), config, tmp_path)
    assert runtime.backends["candidate"].provider == OPENVINO_EP
