"""Sliding-window inference with nnU-Net semantics, over any predictor callable.

Layout: the image is ``(C, X, Y, Z)`` float32; a predictor maps a batch ``(B, C, *patch)`` to
logits ``(B, K, *patch)`` (numpy in, numpy out), so the PyTorch and ONNX Runtime backends share
this code. Windows are placed as nnU-Net places them, weighted by a Gaussian importance map
(sigma = patch / 8, scaled to a maximum of 10, zeros replaced by the smallest non-zero value),
and the accumulated logits are divided by the summed weights. Volumes smaller than the patch
are padded symmetrically with zeros (the normalised background) and cropped back afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache

import numpy as np
from scipy import ndimage

Predictor = Callable[[np.ndarray], np.ndarray]
Shape3 = tuple[int, int, int]
Progress = Callable[[int, int], None]  # progress(done, total): sliding-window windows done


@lru_cache(maxsize=8)
def _gaussian(patch_size: Shape3, sigma_scale: float, value_scaling_factor: float) -> np.ndarray:
    tmp = np.zeros(patch_size, dtype=np.float32)
    tmp[tuple(p // 2 for p in patch_size)] = 1.0
    sigmas = [p * sigma_scale for p in patch_size]
    gmap = ndimage.gaussian_filter(tmp, sigmas, order=0, mode="constant", cval=0.0)
    gmap /= gmap.max() / value_scaling_factor
    gmap[gmap == 0] = gmap[gmap != 0].min()
    gmap.flags.writeable = False
    return gmap


def compute_gaussian(
    patch_size: Sequence[int], sigma_scale: float = 1.0 / 8, value_scaling_factor: float = 10.0
) -> np.ndarray:
    """nnU-Net's importance map for ``patch_size``: float32, read-only, maximum
    ``value_scaling_factor``, strictly positive everywhere (cached per patch size)."""
    p = tuple(int(x) for x in patch_size)
    return _gaussian((p[0], p[1], p[2]), float(sigma_scale), float(value_scaling_factor))


def compute_steps(
    image_size: Sequence[int], patch_size: Sequence[int], step_size: float
) -> list[list[int]]:
    """Window start offsets per axis, as nnU-Net's ``compute_steps_for_sliding_window``.

    ``step_size`` is the fraction of the patch between window starts (0.5 = 50 % overlap);
    the first window starts at 0 and the last ends at the image border.
    """
    if not 0 < step_size <= 1:
        raise ValueError(f"step_size must be in (0, 1], got {step_size!r}")
    steps: list[list[int]] = []
    for size, patch in zip(image_size, patch_size, strict=True):
        if size < patch:
            raise ValueError(f"image size {tuple(image_size)} is smaller than patch {patch_size}")
        num = math.ceil((size - patch) / (patch * step_size)) + 1
        actual = (size - patch) / (num - 1) if num > 1 else 99999999999
        steps.append([round(actual * i) for i in range(num)])
    return steps


def count_windows(image_size: Sequence[int], patch_size: Sequence[int], step_size: float) -> int:
    """How many windows :func:`sliding_window` runs for an image of ``image_size``."""
    padded = [max(int(s), int(p)) for s, p in zip(image_size, patch_size, strict=True)]
    return math.prod(len(axis) for axis in compute_steps(padded, patch_size, step_size))


def _windows(steps: list[list[int]], patch: Shape3) -> Iterator[tuple[slice, slice, slice]]:
    for sx in steps[0]:
        for sy in steps[1]:
            for sz in steps[2]:
                yield (slice(sx, sx + patch[0]), slice(sy, sy + patch[1]), slice(sz, sz + patch[2]))


def pad_to_patch(
    image: np.ndarray, patch_size: Sequence[int]
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Pad a ``(C, X, Y, Z)`` image symmetrically with zeros to at least ``patch_size``.

    Returns the padded image and the slicer that crops a ``(K, ...)`` result back.
    """
    pads = [(0, 0)]
    for size, patch in zip(image.shape[1:], patch_size, strict=True):
        extra = max(0, patch - size)
        pads.append((extra // 2, extra - extra // 2))
    crops = (
        slice(before, before + size)
        for (before, _), size in zip(pads[1:], image.shape[1:], strict=True)
    )
    slicer = (slice(None), *crops)
    if all(p == (0, 0) for p in pads):
        return image, slicer
    return np.pad(image, pads, mode="constant", constant_values=0), slicer


def fit_patch(
    image_size: Sequence[int], patch_size: Sequence[int], total_stride: Sequence[int]
) -> Shape3:
    """The window for an image smaller than the patch on some axis: on that axis the image size
    rounded up to a multiple of the network's total stride, elsewhere the patch itself.

    nnU-Net pads such an image to the whole patch; a window fitted to the image sees the same
    voxels with less zero padding and costs a fraction of the FLOPs (a 30-slice CT at 3 mm under
    a 112-slice patch: a quarter). The logits near the border differ from nnU-Net's, so the
    reference and the candidate profile must both fit or both pad.
    """
    fitted = [
        min(patch, math.ceil(size / stride) * stride)
        for size, patch, stride in zip(image_size, patch_size, total_stride, strict=True)
    ]
    return (fitted[0], fitted[1], fitted[2])


def sliding_window(
    image: np.ndarray,
    predictor: Predictor,
    patch_size: Sequence[int],
    num_classes: int,
    step_size: float = 0.5,
    use_gaussian: bool = True,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> np.ndarray:
    """Predict logits ``(K, X, Y, Z)`` float32 for a ``(C, X, Y, Z)`` float32 image.

    Every window has exactly ``patch_size`` (so it is divisible by the network's total stride
    when the patch is); each predictor call gets up to ``batch_size`` windows. ``progress``,
    when given, is called as ``progress(done, total)`` windows before the first and after each
    predictor call (inside the timed inference: keep it cheap).
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (C, X, Y, Z), got shape {image.shape}")
    patch: Shape3 = (int(patch_size[0]), int(patch_size[1]), int(patch_size[2]))
    padded, crop = pad_to_patch(image, patch)
    spatial = padded.shape[1:]
    weight = compute_gaussian(patch) if use_gaussian else np.ones(patch, dtype=np.float32)
    logits = np.zeros((num_classes, *spatial), dtype=np.float32)
    weights = np.zeros(spatial, dtype=np.float32)
    windows = list(_windows(compute_steps(spatial, patch, step_size), patch))
    if progress is not None:
        progress(0, len(windows))
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        batch = np.stack([padded[(slice(None), *w)] for w in chunk])
        out = predictor(np.ascontiguousarray(batch, dtype=np.float32))
        if out.shape != (len(chunk), num_classes, *patch):
            raise ValueError(
                f"predictor returned shape {out.shape}, "
                f"expected {(len(chunk), num_classes, *patch)}"
            )
        if not out.flags.writeable:
            out = out.copy()
        for w, pred in zip(chunk, out, strict=True):
            pred *= weight  # in place: no window-sized temporary (757 MB for ts-fast's 118 classes)
            logits[(slice(None), *w)] += pred
            weights[w] += weight
        del batch, out, pred  # free this output before the next window's is made, not after
        if progress is not None:
            progress(start + len(chunk), len(windows))
    logits /= weights
    return logits[crop]
