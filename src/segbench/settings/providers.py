"""ONNX Runtime execution providers: which ones a session asks for, their options and threads.

A profile names one :class:`Provider`; :func:`session_providers` turns it (with its
``provider_options`` and ``threads``) into the ``providers`` list of an
``onnxruntime.InferenceSession``, the device that IO binding puts tensors on, and whether IO
binding is on by default. It is pure (the available providers are passed in), so it is tested
without the execution providers installed. :func:`check_ran_on` refuses a session that onnxruntime
quietly moved to another provider.

The OpenVINO and CUDA / TensorRT builds of onnxruntime (``onnxruntime-openvino``,
``onnxruntime-gpu``) install the same import name, ``onnxruntime``, as the plain package: only one
of them can be installed at a time.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from segbench.errors import ConfigError, ModelError
from segbench.settings.cpu import flags_text, has_bf16, read_cpu_flags

CPU_EP = "CPUExecutionProvider"
OPENVINO_EP = "OpenVINOExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"


class Provider(str, enum.Enum):
    AUTO = "auto"  # TensorRT / CUDA when onnxruntime-gpu sees a GPU, else the CPU
    CPU = "cpu"
    OPENVINO = "openvino"
    CUDA = "cuda"
    TENSORRT = "tensorrt"


# Provider options by name and kind of value, from onnxruntime's execution provider pages
# (ORT 1.20-1.24). Options that take a pointer (a CUDA stream, an OpenCL context, allocator
# functions) cannot come from a JSON file and are left out. The lists are checked here, not left
# to onnxruntime, because onnxruntime answers an option it does not know by dropping the whole
# provider and running the session on the CPU (a warning on stderr, no error).
_OPENVINO_OPTIONS = {
    "device_type": str,  # CPU, GPU, NPU, GPU.0, HETERO:GPU,CPU, ...
    "precision": str,  # FP32, FP16, ACCURACY (deprecated since ORT 1.23 for load_config)
    "num_of_threads": int,  # set from the profile's threads (deprecated since ORT 1.23)
    "num_streams": int,
    "cache_dir": str,
    "load_config": str,
    "enable_qdq_optimizer": bool,
    "disable_dynamic_shapes": bool,
    "enable_opencl_throttling": bool,
    "model_priority": str,
    "reshape_input": str,
    "layout": str,
    "enable_causallm": bool,
    "device_id": str,  # removed in later releases: device_type "GPU.1" selects the device
    "enable_npu_fast_compile": bool,  # removed in later releases
}
_CUDA_OPTIONS = {
    "device_id": int,
    "gpu_mem_limit": int,
    "arena_extend_strategy": str,
    "cudnn_conv_algo_search": str,
    "do_copy_in_default_stream": bool,
    "cudnn_conv_use_max_workspace": bool,
    "cudnn_conv1d_pad_to_nc1d": bool,
    "enable_cuda_graph": bool,
    "enable_skip_layer_norm_strict_mode": bool,
    "use_tf32": bool,
    "prefer_nhwc": bool,
    "use_ep_level_unified_stream": bool,
    "tunable_op_enable": bool,
    "tunable_op_tuning_enable": bool,
    "tunable_op_max_tuning_duration_ms": int,
    "fuse_conv_bias": bool,
    "sdpa_kernel": int,
}
_TENSORRT_OPTIONS = {
    "device_id": int,
    "trt_max_workspace_size": int,
    "trt_max_partition_iterations": int,
    "trt_min_subgraph_size": int,
    "trt_fp16_enable": bool,
    "trt_bf16_enable": bool,
    "trt_int8_enable": bool,
    "trt_int8_calibration_table_name": str,
    "trt_int8_use_native_calibration_table": bool,
    "trt_dla_enable": bool,
    "trt_dla_core": int,
    "trt_dump_subgraphs": bool,
    "trt_engine_cache_enable": bool,
    "trt_engine_cache_path": str,
    "trt_engine_cache_prefix": str,
    "trt_engine_decryption_enable": bool,
    "trt_engine_decryption_lib_path": str,
    "trt_force_sequential_engine_build": bool,
    "trt_context_memory_sharing_enable": bool,
    "trt_layer_norm_fp32_fallback": bool,
    "trt_timing_cache_enable": bool,
    "trt_timing_cache_path": str,
    "trt_force_timing_cache": bool,
    "trt_detailed_build_log": bool,
    "trt_build_heuristics_enable": bool,
    "trt_sparsity_enable": bool,
    "trt_builder_optimization_level": int,
    "trt_auxiliary_streams": int,
    "trt_tactic_sources": str,
    "trt_extra_plugin_lib_paths": str,
    "trt_profile_min_shapes": str,
    "trt_profile_max_shapes": str,
    "trt_profile_opt_shapes": str,
    "trt_cuda_graph_enable": bool,
    "trt_dump_ep_context_model": bool,
    "trt_ep_context_file_path": str,
    "trt_ep_context_embed_mode": int,
    "trt_weight_stripped_engine_enable": bool,
    "trt_onnx_model_folder_path": str,
    "trt_engine_hw_compatible": bool,
    "trt_op_types_to_exclude": str,
}

_GPU_FIX = (
    'pip uninstall onnxruntime && pip install "segbench[gpu]" (onnxruntime-gpu; it installs the '
    "same import name onnxruntime, so the plain package goes first)"
)
_OPENVINO_FIX = (
    'pip uninstall onnxruntime && pip install "segbench[openvino]" (onnxruntime-openvino; it '
    "installs the same import name onnxruntime, so the plain package goes first)"
)


@dataclass(frozen=True)
class ProviderSpec:
    """One :class:`Provider`: its onnxruntime providers in priority order (the first is the one
    asked for, the rest run what it cannot), the IO-binding device, whether IO binding is on by
    default, its options by kind, the option that takes the thread count, and the install fix."""

    ort_names: tuple[str, ...]
    device: str
    io_binding: bool
    options: Mapping[str, type]
    thread_option: str | None
    fix: str


SPECS: dict[Provider, ProviderSpec] = {
    Provider.CPU: ProviderSpec((CPU_EP,), "cpu", False, {}, None, 'pip install "segbench[cpu]"'),
    Provider.OPENVINO: ProviderSpec(
        (OPENVINO_EP, CPU_EP), "cpu", False, _OPENVINO_OPTIONS, "num_of_threads", _OPENVINO_FIX
    ),
    Provider.CUDA: ProviderSpec((CUDA_EP, CPU_EP), "cuda", True, _CUDA_OPTIONS, None, _GPU_FIX),
    Provider.TENSORRT: ProviderSpec(
        (TENSORRT_EP, CUDA_EP, CPU_EP), "cuda", True, _TENSORRT_OPTIONS, None, _GPU_FIX
    ),
}

ProviderEntry = str | tuple[str, dict[str, str]]


class SessionProviders(NamedTuple):
    """What :func:`session_providers` chose: ``providers`` for ``InferenceSession``, the device
    of IO binding (``cpu`` or ``cuda``), IO binding's default and the provider asked for."""

    providers: list[ProviderEntry]
    device: str
    io_binding: bool
    provider: Provider

    @property
    def requested(self) -> str:
        """The onnxruntime name of the provider that must run the session."""
        first = self.providers[0]
        return first if isinstance(first, str) else first[0]


def parse_provider(value: Any, where: str = "provider", source: str = "<arguments>") -> Provider:
    """``value`` as a :class:`Provider`; anything else is a ConfigError naming the choices."""
    try:
        return Provider(value)
    except ValueError:
        raise ConfigError(
            f"{source}: key {where!r} must be one of {[p.value for p in Provider]}, got "
            f"{value!r}. Fix the key in {source}"
        ) from None


def device_of(ort_name: str) -> str:
    """The IO-binding device of an onnxruntime provider: ``cuda`` for CUDA and TensorRT (and
    other GPU providers), ``cpu`` for the CPU and OpenVINO, whose tensors live in host memory."""
    return "cpu" if ort_name in (CPU_EP, OPENVINO_EP) else "cuda"


def check_options(
    provider: Provider | str,
    options: Mapping[str, Any] | None,
    where: str = "provider_options",
    source: str = "<arguments>",
) -> dict[str, str]:
    """``options`` validated for ``provider`` and written as onnxruntime wants them (strings,
    ``True``/``False`` for flags). Unknown names and values of the wrong kind are ConfigErrors."""
    provider = parse_provider(provider, source=source)
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(
            f"{source}: key {where!r} must be an object, got {type(options).__name__}. "
            f"Fix the key in {source}"
        )
    if options and provider is Provider.AUTO:
        raise ConfigError(
            f"{source}: key {where!r} is set ({', '.join(sorted(options))}) but provider is "
            f"'auto', which may pick any provider. Fix: set provider to the one the options are "
            f"for ({', '.join(p.value for p in SPECS)})"
        )
    known = SPECS[provider].options if provider in SPECS else {}
    out: dict[str, str] = {}
    for name, value in options.items():
        key = f"{where}.{name}"
        if name not in known:
            valid = ", ".join(sorted(known)) or "none"
            raise ConfigError(
                f"{source}: key {key!r} is not an option of provider {provider.value!r} "
                f"(valid: {valid}). Fix the key in {source}"
            )
        out[name] = _option_value(value, known[name], key, source)
    return out


def _option_value(value: Any, kind: type, key: str, source: str) -> str:
    if kind is bool:
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "0", "1"):
            return "True" if value.lower() in ("true", "1") else "False"
        problem = "must be true or false"
    elif kind is int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        problem = "must be a non-negative integer"
    else:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return str(value)
        problem = "must be a string"
    raise ConfigError(f"{source}: key {key!r} {problem}, got {value!r}. Fix the key in {source}")


def thread_options(
    provider: Provider | str, options: Mapping[str, str], threads: int | None
) -> dict[str, str]:
    """``options`` with the profile's ``threads`` written into the provider's own thread option
    (OpenVINO's ``num_of_threads``), so that PyTorch (``torch.set_num_threads``), the CPU provider
    (``intra_op_num_threads``, set on the session) and OpenVINO all use the same count. A
    different count already in ``options`` is a ConfigError: the profile's ``threads`` rules."""
    spec = SPECS.get(Provider(provider))
    out = dict(options)
    if spec is None or spec.thread_option is None or threads is None:
        return out
    given = out.get(spec.thread_option)
    if given is not None and given != str(threads):
        raise ConfigError(
            f"provider_options.{spec.thread_option} is {given} but threads is {threads}; "
            f"each backend runs with the profile's threads. Fix: drop "
            f"provider_options.{spec.thread_option} and set threads"
        )
    out[spec.thread_option] = str(threads)
    return out


def session_providers(
    provider: Provider | str,
    options: Mapping[str, Any] | None,
    available: Sequence[str],
    *,
    threads: int | None = None,
    gpu: bool = True,
    precision: str = "fp32",
    cpu_flags: Mapping[str, bool] | None = None,
) -> SessionProviders:
    """The providers list for ``InferenceSession``, the IO-binding device and IO binding's
    default, for ``provider`` given onnxruntime's ``available`` providers.

    ``auto`` keeps segbench's original choice: TensorRT and CUDA when listed and ``gpu`` (a GPU
    is present: onnxruntime-gpu lists them without one), then the CPU. An explicit provider that
    ``available`` lacks is a ConfigError naming the package to install; the providers after the
    first run only the nodes it cannot (TensorRT's CUDA only where onnxruntime-gpu has it).
    ``precision`` ``bf16`` is checked against ``available`` and ``cpu_flags`` (see
    :func:`check_precision`; ``None``: not known) and set as OpenVINO's precision hint (see
    :func:`precision_options`)."""
    provider = parse_provider(provider)
    check_precision(precision, provider, available, cpu_flags)
    opts = thread_options(provider, check_options(provider, options), threads)
    opts = precision_options(provider, opts, precision)
    if provider is Provider.AUTO:
        gpus = [p for p in (TENSORRT_EP, CUDA_EP) if p in available and gpu]
        chosen: list[ProviderEntry] = [*gpus, CPU_EP]
        device = "cuda" if gpus else "cpu"
        return SessionProviders(chosen, device, device == "cuda", provider)
    spec = SPECS[provider]
    first, *rest = spec.ort_names
    if first not in available:
        raise ConfigError(
            f"provider {provider.value!r} needs onnxruntime's {first}, which the installed "
            f"onnxruntime lacks (it has: {', '.join(available) or 'none'}). Fix: {spec.fix}"
        )
    entries: list[ProviderEntry] = [(first, opts) if opts else first]
    for name in rest:
        if name == CPU_EP or name in available:
            shared = {"device_id": opts["device_id"]} if "device_id" in opts else {}
            entries.append((name, shared) if name == CUDA_EP and shared else name)
    return SessionProviders(entries, spec.device, spec.io_binding, provider)


def available_providers() -> list[str]:
    """onnxruntime's available providers (onnxruntime imported here, not at module level)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError(
            f'onnxruntime cannot be imported ({exc}). Fix: pip install "segbench[cpu]" (or '
            '"segbench[gpu]", "segbench[openvino]")'
        ) from exc
    return list(ort.get_available_providers())


def gpu_present() -> bool:
    """Whether PyTorch sees a CUDA device (``auto`` uses GPU providers only then)."""
    import torch

    return bool(torch.cuda.is_available())


def plan_providers(
    provider: Provider | str,
    options: Mapping[str, Any] | None,
    threads: int | None = None,
    precision: str = "fp32",
) -> SessionProviders:
    """:func:`session_providers` for this machine's onnxruntime, GPU and CPU flags."""
    auto = parse_provider(provider) is Provider.AUTO
    return session_providers(
        provider,
        options,
        available_providers(),
        threads=threads,
        gpu=auto and gpu_present(),
        precision=precision,
        cpu_flags=read_cpu_flags() if precision == "bf16" else None,
    )


def check_ran_on(plan: SessionProviders, actual: str, model: object) -> None:
    """Refuse a session that runs on ``actual`` although ``plan`` asked for another provider:
    onnxruntime moves a session whose provider fails to start (missing CUDA / TensorRT libraries,
    a bad option) to the next one with only a warning. ``auto`` is allowed to fall back."""
    if plan.provider is Provider.AUTO or actual == plan.requested:
        return
    spec = SPECS[plan.provider]
    raise ModelError(
        f"{model}: provider {plan.provider.value!r} was asked for but onnxruntime runs the "
        f"session on {actual} ({plan.requested} failed to start; onnxruntime's message is above "
        f"on stderr). Fix: install what {plan.requested} needs ({spec.fix}; for CUDA and "
        "TensorRT, the CUDA / cuDNN / TensorRT libraries) or set provider to 'auto' or 'cpu'"
    )


# OpenVINO's inference precision: a key of its device properties, set through the provider
# option ``load_config`` (JSON: {device: {key: value}}); "f32" is the EP's own default on a CPU
PRECISION_HINT = "INFERENCE_PRECISION_HINT"
_HINTS = {"fp32": "f32", "bf16": "bf16"}  # a profile's precision -> OpenVINO's hint


def check_precision(
    precision: str,
    provider: Provider | str,
    available: Sequence[str],
    cpu_flags: Mapping[str, bool] | None,
    where: str = "precision",
) -> None:
    """Refuse ``precision`` ``bf16`` where it cannot run: it needs the OpenVINO execution provider
    (``provider`` openvino, listed in onnxruntime's ``available``) and a CPU with AVX512_BF16 or
    AMX-BF16 (``cpu_flags``, see :mod:`segbench.settings.cpu`; ``None``, not known, is let
    through). The ConfigError names everything that is missing."""
    if precision != "bf16":
        return
    provider = parse_provider(provider)
    missing: list[str] = []
    if provider is not Provider.OPENVINO:
        missing.append(f"provider is {provider.value!r}, not 'openvino'")
    elif OPENVINO_EP not in available:
        missing.append(
            f"the installed onnxruntime lacks {OPENVINO_EP} (it has: "
            f"{', '.join(available) or 'none'})"
        )
    if has_bf16(cpu_flags) is False:
        missing.append(
            f"this CPU has neither avx512_bf16 nor amx_bf16 (its flags: {flags_text(cpu_flags)})"
        )
    if missing:
        raise ConfigError(
            f"{where} is 'bf16', which needs the OpenVINO execution provider "
            '(pip install "segbench[openvino]") and a CPU with AVX512_BF16 or AMX; '
            + "; ".join(missing)
            + ". Fix: run the bf16 candidate where both are (install onnxruntime-openvino in "
            "place of onnxruntime), or set precision to fp32"
        )


def check_precisions_here(profiles: Iterable[tuple[str, str, str | Provider]]) -> None:
    """:func:`check_precision` on this machine (onnxruntime's providers, ``/proc/cpuinfo``) for
    each ``(where, precision, provider)`` of a session's profiles, before anything runs;
    onnxruntime is imported only when a profile asks for bf16."""
    wanted = [(where, p, provider) for where, p, provider in profiles if p == "bf16"]
    if not wanted:
        return
    available, flags = available_providers(), read_cpu_flags()
    for where, precision, provider in wanted:
        check_precision(precision, provider, available, flags, where)


def precision_options(
    provider: Provider | str,
    options: Mapping[str, str],
    precision: str,
    where: str = "provider_options",
    source: str = "<arguments>",
) -> dict[str, str]:
    """``options`` with OpenVINO's inference precision hint for ``precision`` ``bf16`` written
    into ``load_config`` (kept with the rest of a ``load_config`` given, under the device of
    ``device_type``, default CPU). A hint in ``load_config`` that contradicts the profile's
    precision (bf16 asked in a fp32 profile, or the reverse) or OpenVINO's own ``precision``
    option beside bf16 is a ConfigError: the profile's precision is what the record says ran."""
    out = dict(options)
    if parse_provider(provider, source=source) is not Provider.OPENVINO:
        return out
    device = out.get("device_type", "CPU")
    config = _load_config(out.get("load_config"))
    if config is None:  # a file path (older onnxruntime-openvino), not JSON: left as it is
        if precision == "bf16":
            raise ConfigError(
                f"{source}: key '{where}.load_config' is not a JSON object "
                f"({out['load_config']!r}), so the bf16 hint cannot be added to it. Fix: write "
                'its settings inline as JSON, {"CPU": {"KEY": "value"}}'
            )
        return out
    entry = config.get(device)
    given = entry.get(PRECISION_HINT) if isinstance(entry, dict) else None
    want = _HINTS.get(precision)
    if given is not None and want is not None and str(given).lower() != want:
        raise ConfigError(
            f"{source}: key '{where}.load_config' sets {device}.{PRECISION_HINT} to {given!r} "
            f"but the profile's precision is {precision!r}; the record would name the wrong "
            f'precision. Fix: drop {PRECISION_HINT} from load_config and set "precision" '
            "(fp32 or bf16) in the profile"
        )
    if precision != "bf16":
        return out
    if "precision" in out:
        raise ConfigError(
            f"{source}: key '{where}.precision' ({out['precision']!r}) is set beside the "
            "profile's precision 'bf16'. Fix: drop provider_options.precision"
        )
    config[device] = {**(entry if isinstance(entry, dict) else {}), PRECISION_HINT: "bf16"}
    out["load_config"] = json.dumps(config, sort_keys=True)
    return out


def _load_config(text: str | None) -> dict[str, Any] | None:
    """OpenVINO's ``load_config`` option decoded: ``{}`` when not given, ``None`` when it is not
    a JSON object (onnxruntime-openvino also takes the path of a JSON file)."""
    if text is None:
        return {}
    try:
        config = json.loads(text)
    except ValueError:
        return None
    return config if isinstance(config, dict) else None
