"""One CT volume through one backend: preprocess -> sliding window -> postprocess, timed.

The same code runs for the reference and the candidate; only the predictor differs, so Dice
between them measures the backends (and any setting deliberately changed in a profile).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from segbench.cachefiles import same_file, write_atomic
from segbench.errors import ConfigError, InputError
from segbench.inputs.phantoms import default_cache_dir
from segbench.inputs.volumes import NIFTI_SUFFIXES, ImageLike, Volume, load_volume, mask_image
from segbench.models import ModelCard, get_card, load_network
from segbench.pipeline.backends import Backend
from segbench.pipeline.export import export_onnx
from segbench.pipeline.factory import build_backend
from segbench.pipeline.footprint import check_case_memory
from segbench.pipeline.inference import Progress, count_windows, fit_patch, sliding_window
from segbench.pipeline.preprocess import resample, resampled_shape
from segbench.scoring.metrics import slabs
from segbench.settings.config import Profile
from segbench.settings.kinds import BackendKind
from segbench.settings.pipeline import PipelineSettings


@dataclass(frozen=True)
class StageTimes:
    """Wall seconds per stage of one run."""

    preprocess: float
    inference: float
    postprocess: float

    @property
    def total(self) -> float:
        return self.preprocess + self.inference + self.postprocess

    def as_dict(self) -> dict[str, float]:
        return {
            "preprocess": self.preprocess,
            "inference": self.inference,
            "postprocess": self.postprocess,
            "total": self.total,
        }


@dataclass
class Prediction:
    """A run's result. ``labels`` are RAS on the input grid; ``logits`` (K, x, y, z) on the
    network grid are kept only when asked for."""

    mask: nib.Nifti1Image
    labels: np.ndarray
    times: StageTimes
    provider: str
    network_shape: tuple[int, int, int]
    logits: np.ndarray | None = field(default=None, repr=False)
    window: tuple[int, int, int] | None = None  # the sliding window's size
    windows: int = 0  # how many windows ran


def preprocess(volume: Volume, card: ModelCard, settings: PipelineSettings) -> np.ndarray:
    """Resample to the card's spacing and CT-normalise: ``(C=1, x, y, z)`` float32."""
    shape = resampled_shape(volume.shape, volume.spacing, card.spacing)
    data = resample(volume.array, shape, order=settings.resample_order)
    if data is volume.array:
        data = data.copy()
    return card.normalization.apply(data)[np.newaxis]


def label_dtype(num_classes: int) -> type[np.integer]:
    return np.uint8 if num_classes <= 256 else np.uint16


def argmax_labels(logits: np.ndarray) -> np.ndarray:
    """The class per voxel of ``(K, X, Y, Z)`` logits, as ``np.argmax(axis=0)`` (the first
    maximum wins), in the smallest unsigned dtype for K classes.

    Computed slab by slab along X: numpy's argmax over a leading axis copies the whole K x grid
    array first (593 MB for ts-fast's 118 classes on a 512 x 512 x 112 CT), which a slab avoids;
    it is also about twice as fast there.
    """
    labels = np.empty(logits.shape[1:], dtype=label_dtype(logits.shape[0]))
    for s in slabs(logits.shape):
        labels[s] = np.argmax(logits[:, s], axis=0)
    return labels


def predict_volume(
    volume: Volume,
    card: ModelCard,
    backend: Backend,
    settings: PipelineSettings | None = None,
    keep_logits: bool = False,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Prediction:
    """Run the whole pipeline on a loaded volume with ``backend`` as the predictor;
    ``progress(done, total)`` is called per sliding window (see :func:`sliding_window`). The
    stage times are read from ``clock`` (seconds; tests pass a scripted one)."""
    settings = settings or PipelineSettings()
    t0 = clock()
    net_input = preprocess(volume, card, settings)
    t1 = clock()
    patch = (
        fit_patch(net_input.shape[1:], card.patch_size, card.total_stride)
        if settings.fit_patch
        else card.patch_size
    )
    step = settings.tile_step if settings.tile_step is not None else card.tile_step
    logits = sliding_window(
        net_input,
        backend,
        patch,
        card.num_classes,
        step_size=step,
        use_gaussian=settings.use_gaussian,
        batch_size=settings.batch_size,
        progress=progress,
    )
    t2 = clock()
    labels = argmax_labels(logits)
    labels = resample(labels, volume.shape, order=0)
    mask = mask_image(labels, volume)
    t3 = clock()
    return Prediction(
        mask=mask,
        labels=labels,
        times=StageTimes(t1 - t0, t2 - t1, t3 - t2),
        provider=backend.provider,
        network_shape=net_input.shape[1:],
        logits=logits if keep_logits else None,
        window=patch,
        windows=count_windows(net_input.shape[1:], patch, step),
    )


def backend_kind(kind: BackendKind | str) -> BackendKind:
    """``kind`` as a :class:`BackendKind`, or a :class:`ConfigError` listing the choices."""
    try:
        return BackendKind(kind)
    except ValueError:
        choices = ", ".join(b.value for b in BackendKind)
        raise ConfigError(
            f"backend {kind!r} is not supported. Fix: choose one of {choices}"
        ) from None


def check_output_path(output: str | Path, inputs: Sequence[str | Path | None] = ()) -> Path:
    """Refuse, before any work, a mask path that cannot be written or would replace an input.

    The name must end in .nii or .nii.gz, must not be a folder, must not be any of ``inputs``
    (compared by the file itself: another spelling, a symlink or a hard link of an input is
    refused too), and its folder must exist and be writable."""
    out = Path(output)
    if not str(out).endswith(NIFTI_SUFFIXES):
        raise InputError(out, "is not a .nii or .nii.gz name", "name the mask file .nii.gz")
    if out.is_dir():
        raise InputError(out, "is a folder, not a file name", "name the mask file .nii.gz")
    for item in inputs:
        if item is None:
            continue
        src = Path(item)
        if same_file(out, src):
            raise InputError(
                out,
                f"is the input {src} itself; writing the mask there would destroy the image",
                "write the mask to another file (e.g. add _seg to the name)",
            )
    parent = out.parent
    if not parent.is_dir():
        raise InputError(
            out,
            f"its folder {parent} does not exist" + (" (it is a file)" if parent.exists() else ""),
            f"create {parent} first, or choose another output path",
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(out, f"its folder {parent} is not writable", "choose a writable folder")
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(out, "exists and is read-only", "remove it or choose another name")
    return out


def make_backend(card: ModelCard, kind: BackendKind | str, cache_dir: str | None = None) -> Backend:
    """A default backend of ``kind`` for ``card`` (ONNX exported once into ``cache_dir``)."""
    kind = backend_kind(kind)
    net = load_network(card)
    profile = Profile(kind)
    folder = Path(cache_dir) if cache_dir else default_cache_dir() / "onnx"
    onnx = export_onnx(net, card, folder).path if profile.backend is BackendKind.ONNX else None
    return build_backend(profile, net, onnx, folder, torch_device="cpu")


def predict(
    image: ImageLike,
    model: ModelCard | str = "demo",
    backend: Backend | BackendKind | str = BackendKind.TORCH,
    settings: PipelineSettings | None = None,
    output: str | Path | None = None,
    progress: Progress | None = None,
) -> nib.Nifti1Image:
    """Segment ``image`` (a NIfTI path or image, or a folder of DICOM slices): a mask with the
    input's exact shape and affine (for a DICOM series, the grid
    :mod:`segbench.inputs.dicom` reads), also saved to ``output`` (.nii or .nii.gz) when given."""
    if output is not None:
        source = image.get_filename() if isinstance(image, nib.Nifti1Image) else image
        check_output_path(output, [source])
    card = get_card(model) if isinstance(model, str) else model
    runner = make_backend(card, backend) if isinstance(backend, str | BackendKind) else backend
    volume = load_volume(
        image,
        check_grid=lambda shape, spacing, source: check_case_memory(
            source, shape, spacing, card, [settings or PipelineSettings()]
        ),
    )
    mask = predict_volume(volume, card, runner, settings, progress=progress).mask
    if output is not None:
        save_mask(mask, Path(output))
    return mask


def save_mask(mask: nib.Nifti1Image, output: Path) -> None:
    """Write ``mask`` to a temporary file beside ``output``, then move it into place: a failed
    write never leaves a truncated file under ``output``'s name."""
    suffix = ".nii.gz" if str(output).endswith(".nii.gz") else ".nii"
    # a name of this process (not mkstemp's 0600 file): the mask gets the usual permissions
    write_atomic(output, lambda tmp: nib.save(mask, tmp), ext=suffix)
