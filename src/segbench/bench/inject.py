"""Injected regressions of the candidate, to show (and measure) that each gate catches its kind.

``--segbench-inject KIND=VALUE`` (repeatable) wraps the candidate in one of these:

- ``delay=S``: S seconds more per predictor call (a fixed slowdown);
- ``slowdown=F``: every predictor call takes (1 + F) times as long (F=0.3: 30 % slower);
- ``perturb=F``: the weights of the ONNX graph's last convolution get seeded Gaussian noise of
  F times their standard deviation (a stale or wrongly exported ONNX file);
- ``shift=N``: each window's logits land N voxels off along the first axis (a pipeline bug in
  the window placement on one side);
- ``no-gaussian``: the candidate's windows are averaged without the Gaussian importance map;
- ``erode=CLASS``, ``drop=CLASS``, ``grow=CLASS:PCT``: the candidate's mask, before it is scored
  (not timed), has that class's boundary moved one voxel inwards, the class removed, or the
  class grown by PCT % of its volume (default 5) (:func:`edit_mask`).

The speed-up gate is meant for ``delay`` and ``slowdown``, the Dice gate for ``perturb``,
``shift`` and ``no-gaussian``, the agreement gates (NSD, vanished classes, volume) for the mask
edits.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from segbench.cachefiles import clean_stale_temps, write_atomic
from segbench.errors import SegbenchError
from segbench.pipeline.backends import Backend
from segbench.settings.config import Profile
from segbench.settings.injection import Injection, MaskEdit


class InjectedBackend:
    """The candidate backend with an injected slowdown and/or shifted window output. The
    inner call is timed with ``clock`` and the extra time spent in ``sleep`` (seconds; tests
    pass a scripted clock)."""

    def __init__(
        self,
        inner: Backend,
        injection: Injection,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.injection = injection
        self.kind = inner.kind
        self.clock, self.sleep = clock, sleep

    @property
    def provider(self) -> str:
        return self.inner.provider

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        start = self.clock()
        out = self.inner(batch)
        if self.injection.shift:
            out = shift_first_axis(out, self.injection.shift)
        extra = self.injection.delay + self.injection.slowdown * (self.clock() - start)
        if extra > 0:
            self.sleep(extra)
        return out


def shift_first_axis(logits: np.ndarray, voxels: int) -> np.ndarray:
    """Move window logits ``(B, K, X, Y, Z)`` by ``voxels`` along X, repeating the edge."""
    shifted = np.empty_like(logits)
    shifted[:, :, voxels:] = logits[:, :, :-voxels]
    shifted[:, :, :voxels] = logits[:, :, :1]
    return shifted


def candidate_profile(profile: Profile, injection: Injection) -> Profile:
    return replace(profile, use_gaussian=False) if injection.no_gaussian else profile


def perturb_onnx(path: Path, scale: float, out_dir: Path, seed: int = 0) -> Path:
    """A copy of the ONNX file whose last Conv's weights get ``scale`` x std Gaussian noise."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    if not convs:
        raise ValueError(f"{path}: no Conv node to perturb")
    weight_name = convs[-1].input[1]
    inits = {init.name: init for init in model.graph.initializer}
    if weight_name not in inits:
        raise ValueError(f"{path}: the last Conv's weights {weight_name!r} are not an initializer")
    weights = numpy_helper.to_array(inits[weight_name])
    rng = np.random.default_rng(seed)
    noisy = weights + rng.standard_normal(weights.shape).astype(weights.dtype) * (
        scale * float(weights.std())
    )
    inits[weight_name].CopyFrom(numpy_helper.from_array(noisy.astype(weights.dtype), weight_name))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    out = out_dir / f"{path.stem}-perturb{scale:g}-s{seed}-{digest}.onnx"
    clean_stale_temps(out_dir)
    return write_atomic(out, lambda tmp: onnx.save(model, str(tmp)))


def resolve_class(edit: MaskEdit, class_names: Sequence[str]) -> int:
    """The label ``edit`` names (a class name or a label number of the model), or a
    :class:`SegbenchError` naming the option and the model's classes."""
    if edit.target.isdigit() and 0 < int(edit.target) < len(class_names):
        return int(edit.target)
    if edit.target in class_names[1:]:
        return list(class_names).index(edit.target)
    shown = ", ".join(class_names[1:6]) + (", ..." if len(class_names) > 6 else "")
    raise SegbenchError(
        f"--segbench-inject {edit.describe()}: {edit.target!r} is not a class of the model "
        f"({shown}; labels 1-{len(class_names) - 1}). Fix: name one of its classes"
    )


def edit_mask(
    labels: np.ndarray, edit: MaskEdit, class_names: Sequence[str], spacing: Sequence[float]
) -> np.ndarray:
    """A copy of the label map ``(X, Y, Z)`` (voxel size ``spacing`` mm) with ``edit`` applied
    to its class: ``erode`` sets the class's surface voxels (a background neighbour along an
    axis) to background, ``drop`` sets the whole class to background, ``grow`` gives the class
    the ``percent`` % of its voxel count that are nearest to it (in mm) among the background
    voxels (other classes keep theirs). A class absent from the map is left as it is."""
    from scipy import ndimage

    from segbench.scoring.surface import label_boxes, surface, widen

    label = resolve_class(edit, class_names)
    out = labels.copy()
    box = label_boxes((labels == label).astype(np.uint8)).get(1)
    if box is None:
        return out
    if edit.kind == "drop":
        out[out == label] = 0
        return out
    if edit.kind == "erode":
        crop = widen([box], labels.shape)
        mask = out[crop] == label
        out[crop][surface(mask)] = 0
        return out
    count = round(int((labels == label).sum()) * edit.percent / 100.0)
    reach = 2 + int(np.ceil(max(b.stop - b.start for b in box) * edit.percent / 100.0))
    crop = widen([box], labels.shape, margin=reach)
    view = out[crop]
    mask = view == label
    dist = ndimage.distance_transform_edt(~mask, sampling=spacing)
    outside = np.flatnonzero((view == 0).ravel())
    nearest = outside[np.argsort(dist.ravel()[outside], kind="stable")[:count]]
    view[np.unravel_index(nearest, mask.shape)] = label
    return out
