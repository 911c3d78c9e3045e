"""What OpenVINO's CPU plugin reports about this machine: its default inference precision and
its optimisation capabilities (``BF16``, ``FP32``, ``INT8``, ...), read through OpenVINO's C API
in the library onnxruntime-openvino ships (``onnxruntime/capi/libopenvino_c.so``), so no
``openvino`` Python package is needed.

The default precision is the CPU plugin's (``bf16`` on a CPU with AVX512_BF16 or AMX), not what
onnxruntime's OpenVINO execution provider runs: the provider asks for ``f32`` unless a profile's
``precision`` is ``bf16`` (see :func:`segbench.settings.providers.precision_options`). A run
records it because it says what OpenVINO makes of the CPU.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

log = logging.getLogger("segbench")

PROPERTIES = ("INFERENCE_PRECISION_HINT", "OPTIMIZATION_CAPABILITIES")


def _library() -> Path | None:
    """onnxruntime-openvino's OpenVINO C library, or ``None`` (another onnxruntime build)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    capi = Path(onnxruntime.__file__).parent / "capi"
    found = sorted(capi.glob("libopenvino_c.so*")) + sorted(capi.glob("openvino_c.dll"))
    return found[0] if found else None


def openvino_cpu_info() -> dict[str, str] | None:
    """``{"inference_precision": "bf16", "capabilities": "BF16 FP32 INT8 ..."}`` as OpenVINO's
    CPU plugin reports them, or ``None`` where onnxruntime-openvino is not installed or its
    library does not answer (logged, never raised: the run goes on without it)."""
    path = _library()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        lib.ov_core_create.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.ov_core_get_property.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_char_p),
        ]
        lib.ov_core_free.argtypes = [ctypes.c_void_p]
        lib.ov_free.argtypes = [ctypes.c_char_p]
        core = ctypes.c_void_p()
        if lib.ov_core_create(ctypes.byref(core)) != 0:
            return None
        try:
            values = {}
            for key in PROPERTIES:
                value = ctypes.c_char_p()
                status = lib.ov_core_get_property(core, b"CPU", key.encode(), ctypes.byref(value))
                values[key] = value.value.decode() if status == 0 and value.value else "unknown"
                if status == 0 and value.value:
                    lib.ov_free(value)
        finally:
            lib.ov_core_free(core)
    except (OSError, AttributeError) as exc:
        log.info("OpenVINO's CPU properties could not be read from %s: %s", path, exc)
        return None
    return {
        "inference_precision": values["INFERENCE_PRECISION_HINT"],
        "capabilities": values["OPTIMIZATION_CAPABILITIES"],
    }
