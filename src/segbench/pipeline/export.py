"""Export a network to ONNX once, check it, verify it against PyTorch, and cache it on disk.

The cache key is the SHA-256 of the weights plus the torch version and the opset, so a session
exports at most once and a retrained model never reuses a stale file.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from segbench.cachefiles import (
    clean_stale_temps,
    read_entry,
    sha256_file,
    write_atomic,
    write_entry,
    write_meta,
)
from segbench.errors import ModelError
from segbench.models.card import ModelCard, state_digest

DEFAULT_OPSET = 17

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float  # torch vs onnxruntime logits on the verification input
    cached: bool


def cache_key(net: nn.Module, opset: int) -> str:
    text = f"{state_digest(net)}|torch={torch.__version__}|opset={opset}|exporter=torchscript"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def verification_input(card: ModelCard) -> np.ndarray:
    """A small seeded input: twice the total stride per axis."""
    shape = (1, card.in_channels, *(2 * s for s in card.total_stride))
    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def check_onnx_matches(path: Path, card: ModelCard) -> None:
    """Refuse an ONNX file that is not ONNX or whose input/output do not fit ``card``."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(
            f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc}); "
            "pass the .onnx exported from this model (or let segbench export it)"
        ) from exc
    problems = []
    for kind, values, channels in (
        ("input", model.graph.input, card.in_channels),
        ("output", model.graph.output, card.num_classes),
    ):
        if len(values) == 0:
            problems.append(f"it has no {kind}")
            continue
        dims = values[0].type.tensor_type.shape.dim
        if len(dims) != 5:
            problems.append(f"its {kind} has rank {len(dims)}, expected 5 (B, C, X, Y, Z)")
        elif not dims[1].HasField("dim_value") or dims[1].dim_value <= 0:
            name = dims[1].dim_param if dims[1].HasField("dim_param") else "unknown"
            problems.append(
                f"its {kind} channel count is symbolic ({name!r}), expected the fixed {channels}"
            )
        elif dims[1].dim_value != channels:
            problems.append(f"its {kind} has {dims[1].dim_value} channels, expected {channels}")
    if problems:
        raise ModelError(
            f"{path} does not match model {card.name!r}: "
            + "; ".join(problems)
            + ". Export the ONNX file from the same checkpoint, or choose the matching "
            "--segbench-model"
        )


def max_abs_diff(net: nn.Module, path: Path, card: ModelCard) -> float:
    """Max absolute logit difference, torch vs onnxruntime (CPU), on :func:`verification_input`."""
    import onnxruntime as ort

    x = verification_input(card)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    if out.shape != ref.shape:
        raise ModelError(
            f"{path}: output shape {out.shape} differs from PyTorch's {ref.shape}; "
            "export the ONNX file from the same model"
        )
    return float(np.abs(out - ref).max())


def export_onnx(
    net: nn.Module,
    card: ModelCard,
    cache_dir: Path,
    opset: int = DEFAULT_OPSET,
    tolerance: float = 1e-3,
    announce: Callable[[str], None] | None = None,
) -> ExportResult:
    """Return a verified ONNX export of ``net`` from ``cache_dir``, exporting it if needed.
    An export (not a cache hit) is announced first: logged on ``segbench.export`` (INFO) and
    passed to ``announce`` when given."""
    net = net.eval()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{card.name}-{cache_key(net, opset)}.onnx"
    clean_stale_temps(cache_dir)
    meta = read_entry(path)
    if meta is not None:
        return ExportResult(path, float(meta["max_abs_diff"]), cached=True)
    message = f"exporting {card.name} to ONNX (opset {opset}) into {cache_dir}..."
    log.info(message)
    if announce is not None:
        announce(message)
    x = torch.from_numpy(verification_input(card))
    diff = 0.0

    def write(tmp: Path) -> None:
        nonlocal diff
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (x,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={
                    "image": {0: "batch", 2: "x", 3: "y", 4: "z"},
                    "logits": {0: "batch", 2: "x", 3: "y", 4: "z"},
                },
            )
        onnx.checker.check_model(str(tmp))
        diff = max_abs_diff(net, tmp, card)
        if diff > tolerance:
            raise ModelError(
                f"ONNX export of {card.name!r} disagrees with PyTorch: max |logit diff| {diff:.3g} "
                f"> {tolerance}; try another opset (now {opset})"
            )

    write_atomic(path, write)
    write_meta(path, {"max_abs_diff": diff, "opset": opset, "torch": torch.__version__})
    return ExportResult(path, diff, cached=False)


def to_float16(path: Path, out_dir: Path) -> Path:
    """A float16 copy of an ONNX file, cached in ``out_dir`` by the source's digest.

    Weights and activations become float16; the input and output stay float32
    (``keep_io_types``), so the backend interface and the sliding window are unchanged. Made
    by onnxruntime's own converter (``onnxruntime.transformers.float16``) and checked with
    ``onnx.checker``. Whether it is faster depends on the device: GPUs (tensor cores) gain,
    a CPU without float16 kernels loses (see the performance figures in docs/results/).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    digest = sha256_file(Path(path))[:12]
    out = Path(out_dir) / f"{Path(path).stem}-fp16-{digest}.onnx"
    clean_stale_temps(out.parent)
    if read_entry(out) is not None:
        return out
    try:
        model = onnx.load(str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # values clamped to the float16 range
            half = convert_float_to_float16(model, keep_io_types=True)
        OnnxModel(half).topological_sort()  # the converter appends the input casts at the end
        onnx.checker.check_model(half)
    except Exception as exc:  # the converter raises its own types
        raise ModelError(
            f"{path}: cannot convert it to float16 ({type(exc).__name__}: {exc}); "
            "use precision fp32 for this model"
        ) from exc
    return write_entry(out, lambda tmp: onnx.save(half, str(tmp)), {"source": str(path)})
