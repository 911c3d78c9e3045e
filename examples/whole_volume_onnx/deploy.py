"""A whole-volume ONNX deployment of segbench's demo model, written as a user would write one.

This is the kind of pipeline segbench's candidate kinds ``pipeline`` and ``command`` are for:
not segbench's sliding window with a swapped runtime, but the user's own code end to end:

1. canonical orientation (nibabel's closest RAS),
2. order-1 resampling to the model's spacing (3 mm),
3. clip and z-score with the model's constants, hard-coded (from the demo model's card,
   ``segbench/models/weights/demo_unet.json``),
4. the array in z, y, x order (as SimpleITK and most deployment code hold volumes), padded to
   a multiple of the network's stride (8) with the volume's minimum,
5. ONE whole-volume ONNX Runtime run (no sliding window, no Gaussian weighting) of an ONNX
   file exported with dynamic spatial axes,
6. argmax, crop, nearest resampling back, the original orientation.

Steps 4 and 5 differ from the network's training recipe (patches of 64^3 over x, y, z), so
the masks differ from the reference's where the network sees more context or another axis
order: exactly what segbench measures. ``make_segmenter`` is the factory a profile names
(``"pipeline": "deploy.py:make_segmenter"``); ``segment_cli.py`` is the same as a command.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

# the demo model's card: spacing (mm), CT clip window and z-score constants, total stride
SPACING = (3.0, 3.0, 3.0)
CLIP = (-883.5, 597.35)
MEAN, STD = -284.55, 475.66
STRIDE = 8


def export_dynamic_onnx(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Export segbench's demo network to ONNX with dynamic spatial axes (the legacy TorchScript
    exporter, ``dynamo=False``), once: cached by the weights' digest. Nothing is downloaded."""
    from segbench.models import get_card
    from segbench.models.demo import WEIGHTS_NAME, default_dir

    weights = default_dir() / WEIGHTS_NAME  # the cache key: the weights file's digest
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    folder = Path(cache_dir or Path.home() / ".cache" / "segbench-example")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"demo-whole-volume-{digest}.onnx"
    if path.is_file():
        return path  # no torch needed once exported
    import torch

    from segbench.models import load_network

    net = load_network(get_card("demo")).eval()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on instance norm
        torch.onnx.export(
            net,
            (torch.zeros(1, 1, 32, 32, 32),),
            str(tmp),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {2: "d", 3: "h", 4: "w"}, "logits": {2: "d", 3: "h", 4: "w"}},
        )
    os.replace(tmp, path)
    return path


def preprocess(image: nib.Nifti1Image, axes: str) -> tuple[np.ndarray, nib.Nifti1Image, tuple]:
    """Canonical orientation, order-1 resampling to SPACING, clip and z-score, the network's
    axis order, padded to a multiple of STRIDE with the minimum. Returns the network input
    ``(1, 1, a, b, c)``, the canonical image and the unpadded shape."""
    canonical = nib.as_closest_canonical(image)
    data = np.asarray(canonical.dataobj, dtype=np.float32)
    zooms = canonical.header.get_zooms()[:3]
    factors = [z / s for z, s in zip(zooms, SPACING, strict=True)]
    data = ndimage.zoom(data, factors, order=1)
    data = (np.clip(data, *CLIP) - MEAN) / STD
    if axes == "zyx":
        data = data.transpose(2, 1, 0)
    shape = data.shape
    pad = [(0, -n % STRIDE) for n in shape]
    data = np.pad(data, pad, constant_values=float(data.min()))
    return data[np.newaxis, np.newaxis].astype(np.float32), canonical, shape


def make_segmenter(
    onnx_path: str | None = None,
    threads: int | None = None,
    axes: str = "xyz",
    cache_dir: str | None = None,
) -> Callable[[nib.Nifti1Image], nib.Nifti1Image]:
    """The factory: load the ONNX file once (exported on first use), return ``segment``.

    ``axes`` is the array order the network gets: ``"xyz"`` (the demo model's own) or ``"zyx"``
    (a deployment that kept SimpleITK's order and fed it as is)."""
    import onnxruntime as ort

    if axes not in ("xyz", "zyx"):
        raise ValueError(f"axes must be 'xyz' or 'zyx', got {axes!r}")
    path = Path(onnx_path) if onnx_path else export_dynamic_onnx(cache_dir)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def segment(image: nib.Nifti1Image) -> nib.Nifti1Image:
        net_input, canonical, shape = preprocess(image, axes)
        logits = session.run(None, {"image": net_input})[0][0]  # ONE whole-volume run
        labels = np.argmax(logits, axis=0).astype(np.uint8)[: shape[0], : shape[1], : shape[2]]
        if axes == "zyx":
            labels = labels.transpose(2, 1, 0)
        target = canonical.shape[:3]
        # nearest resampling back to the canonical grid, then the input's own orientation
        index = [
            np.minimum((np.arange(t) * n / t + 0.5 * n / t).astype(np.intp), n - 1)
            for t, n in zip(target, labels.shape, strict=True)
        ]
        labels = labels[np.ix_(*index)]
        back = nib.orientations.ornt_transform(
            nib.orientations.io_orientation(canonical.affine),
            nib.orientations.io_orientation(image.affine),
        )
        data = nib.orientations.apply_orientation(labels, back)
        return nib.Nifti1Image(np.ascontiguousarray(data), image.affine)

    return segment
