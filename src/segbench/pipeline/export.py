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
from segbench.models.card import ModelCard, Shape3, state_digest

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


ONNX_FIX = (
    "Export the ONNX file from the same checkpoint (one float32 input (B, C, x, y, z), batch and "
    "spatial axes dynamic, as segbench's own export), or choose the matching --segbench-model"
)


def _dims(value: onnx.ValueInfoProto) -> list[int | str] | None:
    """The dims of a tensor's shape: an int where fixed, the symbol (or "?") where not; None
    when the file records no shape at all."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim
    ]


def _tensor_problems(
    kind: str, value: onnx.ValueInfoProto, channels: int, window: Shape3, fit: bool, batch: int
) -> list[str]:
    """What keeps the first input or output of an ONNX graph from carrying a batch of
    ``batch`` windows of ``window`` voxels with ``channels`` channels, float32 in and out."""
    elem = value.type.tensor_type.elem_type
    float_types = (
        (onnx.TensorProto.FLOAT,)
        if kind == "input"
        else (
            onnx.TensorProto.FLOAT,
            onnx.TensorProto.FLOAT16,
            onnx.TensorProto.DOUBLE,
            onnx.TensorProto.BFLOAT16,
        )
    )
    problems = []
    if elem not in float_types:
        name = onnx.TensorProto.DataType.Name(elem) if elem else "undefined"
        feeds = "segbench feeds float32 windows" if kind == "input" else "logits are float"
        problems.append(f"its {kind} {value.name!r} is {name.lower()}, {feeds}")
    dims = _dims(value)
    if dims is None:
        return problems
    if len(dims) != 5:
        return [*problems, f"its {kind} has rank {len(dims)}, expected 5 (B, C, X, Y, Z)"]
    if isinstance(dims[1], str):
        problems.append(
            f"its {kind} channel count is symbolic ({dims[1]!r}), expected the fixed {channels}"
        )
    elif dims[1] != channels:
        problems.append(f"its {kind} has {dims[1]} channels, expected {channels}")
    if isinstance(dims[0], int) and (dims[0] != 1 or batch > 1):
        sends = "one window" if batch == 1 else f"1 to {batch} windows (batch_size)"
        problems.append(
            f"its {kind} has a fixed batch of {dims[0]}, segbench sends {sends} at a time"
        )
    spatial = dims[2:]
    fixed = [(d, w) for d, w in zip(spatial, window, strict=True) if isinstance(d, int)]
    if fixed and (fit or any(d != w for d, w in fixed)):
        sizes = "windows fitted to each volume (fit_patch)" if fit else f"windows of {window}"
        problems.append(f"its {kind} has the fixed size {tuple(spatial)}, segbench sends {sizes}")
    return problems


def graph_problems(
    model: onnx.ModelProto, card: ModelCard, fit: bool = False, batch: int = 1
) -> list[str]:
    """Why the ONNX ``model`` cannot serve ``card``'s sliding window (none: it can, as far
    as the graph's declared inputs and outputs tell): required inputs other than the image,
    input and output types, ranks, channel counts, a fixed batch or window size."""
    weights = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in weights]
    outputs = list(model.graph.output)
    if outputs and _dims(outputs[0]) is None:  # no declared shape: infer it
        try:
            outputs = list(onnx.shape_inference.infer_shapes(model).graph.output)
        except Exception:  # shape inference is best effort here
            pass
    problems = []
    if not inputs:
        problems.append("it has no input")
    elif len(inputs) > 1:
        names = ", ".join(repr(v.name) for v in inputs)
        problems.append(f"it needs {len(inputs)} inputs ({names}), segbench feeds one, the image")
    if not outputs:
        problems.append("it has no output")
    window = card.patch_size
    if inputs:
        problems += _tensor_problems("input", inputs[0], card.in_channels, window, fit, batch)
    if outputs:
        problems += _tensor_problems("output", outputs[0], card.num_classes, window, fit, batch)
    return problems


def smoke_input(model: onnx.ModelProto, card: ModelCard) -> np.ndarray:
    """A seeded float32 batch of one the graph accepts: its fixed window (checked to be the
    card's patch) or else twice the network's total stride per axis."""
    weights = {init.name for init in model.graph.initializer}
    first = next(v for v in model.graph.input if v.name not in weights)
    dims = _dims(first) or []
    spatial = [
        d if isinstance(d, int) and d > 0 else 2 * s
        for d, s in zip(dims[2:], card.total_stride, strict=False)
    ]
    shape = (1, card.in_channels, *(spatial or [2 * s for s in card.total_stride]))
    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def smoke_run(path: Path, model: onnx.ModelProto, card: ModelCard) -> None:
    """One small batch through onnxruntime (CPU), untimed, before anything else runs: what the
    graph's declarations do not show (an operator that fails, an output of another shape) is
    refused here, naming the file, instead of after the reference's runs."""
    import onnxruntime as ort

    x = smoke_input(model, card)
    expected = (1, card.num_classes, *x.shape[2:])
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        out = np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])
    except Exception as exc:  # onnxruntime raises its own exception types
        detail = (str(exc).strip().splitlines() or [repr(exc)])[0][:300]
        raise ModelError(
            f"{path}: onnxruntime cannot run it on a {x.shape} float32 window "
            f"({type(exc).__name__}: {detail}). {ONNX_FIX}"
        ) from exc
    if out.shape != expected:
        raise ModelError(
            f"{path}: a {x.shape} window gives logits of shape {out.shape}, expected {expected} "
            f"for model {card.name!r}. {ONNX_FIX}"
        )


def check_onnx_matches(
    path: Path, card: ModelCard, fit: bool = False, batch: int = 1, run: bool = False
) -> None:
    """Refuse an ONNX file that is not ONNX or cannot serve ``card``'s sliding window (see
    :func:`graph_problems`; ``fit``: some profile fits the window to small volumes, ``batch``:
    the largest batch of windows a profile sends), and with ``run`` also one that fails on a
    small window (:func:`smoke_run`), before any case runs."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(
            f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc}); "
            "pass the .onnx exported from this model (or let segbench export it)"
        ) from exc
    problems = graph_problems(model, card, fit, batch)
    if problems:
        raise ModelError(
            f"{path} does not match model {card.name!r}: " + "; ".join(problems) + f". {ONNX_FIX}"
        )
    if run:
        smoke_run(path, model, card)


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
