"""One interface for whatever segments a case: a :class:`Segmenter` per profile.

Every Segmenter answers the same call, ``segment(volume) -> Prediction``: a label map in RAS on
the input's grid (as :func:`segbench.inputs.volumes.load_volume` orders it), with logits and
stage times where it has them. Three kinds, built in one place (:func:`build_segmenter`):

* :class:`BackendSegmenter`: segbench's own pipeline (preprocess, sliding window, postprocess)
  on a torch or onnxruntime backend; logits and stage times.
* :class:`PipelineSegmenter`: the user's ``factory(**options)`` (called once per session,
  untimed), which returns ``segment(image: nibabel.Nifti1Image) -> Nifti1Image | ndarray``, a
  label map on the image's grid; timed per run, warm.
* :class:`CommandSegmenter`: the user's program, one process per run: ``{input}`` is the case
  as NIfTI (written once per case, untimed), ``{output}`` the label map it writes; timed wall
  time includes process start and model load (cold).

What a deployment returns is checked (:func:`deployment_labels`) outside the timed part: the
input's shape and affine, integer labels of its class map. A deployment that fails raises a
:class:`DeploymentError`: one line naming the case, the profile and the fix; the session goes on
with the other cases.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import nibabel as nib
import numpy as np
from nibabel import orientations as ornts

from segbench.errors import SegbenchError
from segbench.inputs.volumes import GRID_TOL_MM, Volume, mask_image, to_original_orientation
from segbench.models import ModelCard
from segbench.pipeline.backends import Backend
from segbench.pipeline.inference import Progress
from segbench.pipeline.predict import Prediction, StageTimes, label_dtype, predict_volume
from segbench.scoring.gates import GateResult
from segbench.settings.config import Profile
from segbench.settings.labels import ClassPairing

if TYPE_CHECKING:
    from segbench.bench.paired import RoleRuns

DEFAULT_TIMEOUT_S = 600.0
STDERR_LINES = 5  # of a failed command, shown in its message


class DeploymentError(SegbenchError):
    """The user's pipeline or command failed on a case: the message names the case, the
    profile and the fix."""


class Segmenter(Protocol):
    """Whatever segments a case for one profile (reference or a candidate)."""

    @property
    def kind(self) -> str:
        """``"torch"`` | ``"onnx"`` (segbench's pipeline) | ``"pipeline"`` | ``"command"``."""
        ...

    @property
    def cold(self) -> bool:
        """Each run includes process start and model load."""
        ...

    @property
    def staged(self) -> bool:
        """Its StageTimes are preprocess / inference / postprocess (else: the total only)."""
        ...

    def prepare(self, case_id: str, volume: Volume) -> None:
        """Untimed, before a case's runs: load the factory, write the case's input file."""
        ...

    def segment(self, volume: Volume, progress: Progress | None = None) -> Prediction:
        """One timed run: the label map in RAS on ``volume``'s grid."""
        ...

    def describe(self) -> dict[str, Any] | None:
        """What a saved run records of a deployment (None for segbench's own pipeline)."""
        ...


@dataclass
class BackendSegmenter:
    """segbench's own pipeline on a torch or onnxruntime backend (logits kept); its stage times
    are read from ``clock`` (seconds)."""

    card: ModelCard
    backend: Backend
    profile: Profile
    cold: bool = False
    staged: bool = True
    clock: Callable[[], float] = time.perf_counter

    @property
    def kind(self) -> str:
        return self.profile.kind

    def prepare(self, case_id: str, volume: Volume) -> None:
        return None

    def segment(self, volume: Volume, progress: Progress | None = None) -> Prediction:
        return predict_volume(
            volume,
            self.card,
            self.backend,
            self.profile.pipeline,
            keep_logits=True,
            progress=progress,
            clock=self.clock,
        )

    def describe(self) -> dict[str, Any] | None:
        return None


# what a deployment returns --------------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    """Names a deployment in messages: ``candidate ort-whole (pipeline my.mod:make)``."""

    role: str
    spec: str

    def error(self, case: str, problem: str, fix: str) -> DeploymentError:
        return DeploymentError(f"{case}: {self.role} ({self.spec}) {problem}. Fix: {fix}")


def case_image(volume: Volume) -> nib.Nifti1Image:
    """The case as a deployment gets it: float32 HU in the stored voxel order, with the
    original affine, in memory (the same values segbench's own pipeline reads)."""
    data = to_original_orientation(volume.array, volume).reshape(volume.original.shape)
    image = nib.Nifti1Image(data.astype(np.float32, copy=False), volume.original.affine)
    image.set_qform(volume.original.affine, code=1)
    image.set_sform(volume.original.affine, code=1)
    return image


def _as_array(result: Any, volume: Volume, who: Who, case: str) -> np.ndarray:
    """The label map's voxels on the input's stored grid (shape and, for an image, affine)."""
    shape = tuple(volume.original.shape[:3])
    fix_grid = (
        "return (or write) the label map on the input's grid: resample back with nearest "
        "neighbour to the input's shape and affine"
    )
    if isinstance(result, nib.Nifti1Image | nib.Nifti2Image):
        if tuple(result.shape[:3]) != shape:
            problem = f"gave a mask of shape {result.shape}, the input is {shape}"
            raise who.error(case, problem, fix_grid)
        gap = float(np.abs(result.affine - volume.original.affine).max())
        if gap > GRID_TOL_MM:
            raise who.error(
                case,
                f"gave a mask whose affine differs from the input's by {gap:.4g} mm",
                fix_grid,
            )
        data = np.asanyarray(result.dataobj)
    elif isinstance(result, np.ndarray):
        data = result
    else:
        raise who.error(
            case,
            f"returned a {type(result).__name__}, not a label map",
            "return a nibabel.Nifti1Image or a numpy array of integer labels",
        )
    if data.ndim > 3 and all(n == 1 for n in data.shape[3:]):
        data = data.reshape(data.shape[:3])
    if tuple(data.shape) != shape:
        raise who.error(case, f"gave a mask of shape {data.shape}, the input is {shape}", fix_grid)
    return data


def _all_allowed(data: np.ndarray, allowed: np.ndarray) -> bool:
    """Every value of ``data`` (within ``0..allowed.size-1``) is allowed; slab by slab, so no
    index array of the whole volume is made."""
    if allowed.all():
        return True
    return all(bool(allowed[data[i].astype(np.intp)].all()) for i in range(data.shape[0]))


def deployment_labels(
    result: Any, volume: Volume, names: Mapping[int, str], who: Who, case: str
) -> np.ndarray:
    """Check a deployment's label map and return it in RAS (uint8/uint16): the input's shape
    (and affine, for an image), finite integer labels, each a value of ``names`` (its class
    map). Any problem is a :class:`DeploymentError` naming ``case`` and ``who``."""
    data = _as_array(result, volume, who, case)
    fix_map = (
        'map every label the deployment writes in the profile\'s "labels" (value: class name) '
        "in benchmarks.json, or fix its label numbering"
    )
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            raise who.error(case, "gave non-integer labels (an interpolated mask?)", fix_map)
    elif data.dtype.kind not in "iub":
        raise who.error(case, f"gave labels of type {data.dtype}", "write integer labels")
    low, high = (float(data.min(initial=0)), float(data.max(initial=0)))
    allowed = np.zeros(max(names, default=0) + 1, dtype=bool)
    allowed[list(names)] = True
    if low < 0 or high >= allowed.size or not _all_allowed(data, allowed):
        present = np.unique(data)
        outside = [int(v) for v in present if v < 0 or v >= allowed.size or not allowed[int(v)]]
        shown = ", ".join(map(str, outside[:8])) + (" ..." if len(outside) > 8 else "")
        raise who.error(
            case,
            f"gave label value(s) {shown} outside its class map (values {min(names)}.."
            f"{max(names)}, {len(names) - 1} classes)",
            fix_map,
        )
    labels = data.astype(label_dtype(allowed.size), copy=False)
    return np.ascontiguousarray(ornts.apply_orientation(labels, volume.to_canonical))


def _prediction(labels: np.ndarray, volume: Volume, seconds: float, kind: str) -> Prediction:
    """A deployment's run: its label map and wall time (no stages, no logits)."""
    return Prediction(
        mask=mask_image(labels, volume),
        labels=labels,
        times=StageTimes(0.0, seconds, 0.0),
        provider=kind,
        network_shape=(0, 0, 0),
    )


# the user's factory ---------------------------------------------------------------------------


def load_factory(spec: str, base: Path, who: Who) -> Callable[..., Any]:
    """Import ``"package.module:factory"`` or ``"path/to/file.py:factory"`` (relative to
    ``base``) and return the factory; a :class:`DeploymentError` (case ``*``) says what is
    missing."""
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py") or "/" in target or os.sep in target:
            path = Path(target) if Path(target).is_absolute() else base / target
            if not path.is_file():
                raise who.error(
                    "*",
                    f"names the file {path}, which does not exist",
                    'fix the path in "pipeline" (relative to benchmarks.json\'s folder)',
                )
            folder = str(path.parent.resolve())
            if folder not in sys.path:
                sys.path.insert(0, folder)  # as `python file.py` would: its siblings import
            module_spec = importlib.util.spec_from_file_location(f"segbench_user_{path.stem}", path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except DeploymentError:
        raise
    except ModuleNotFoundError as exc:
        raise who.error(
            "*",
            f"cannot be imported: {exc}",
            "install the package that provides it in this environment, or name a file "
            '("path/to/file.py:factory")',
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise who.error(
            "*", f"raised {type(exc).__name__} while importing: {exc}", "fix the module"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise who.error(
            "*",
            f"names {attr!r}, which {target} does not define (or is not callable)",
            f"name a function of {target} after the colon",
        )
    return factory


def _with_case(error: DeploymentError, case: str) -> DeploymentError:
    text = str(error)
    return DeploymentError(case + text[1:] if text.startswith("*") else text)


@dataclass
class PipelineSegmenter:
    """The user's ``factory(**options)``, called once (untimed, on the first case); the
    callable it returns segments each case, timed, warm."""

    factory: str
    options: Mapping[str, Any]
    base: Path
    names: Mapping[int, str]
    who: Who
    kind: str = "pipeline"
    cold: bool = False
    staged: bool = False
    _segment: Callable[[nib.Nifti1Image], Any] | None = field(default=None, repr=False)
    _error: DeploymentError | None = field(default=None, repr=False)
    _case: tuple[str, nib.Nifti1Image] | None = field(default=None, repr=False)

    def _load(self) -> Callable[[nib.Nifti1Image], Any]:
        if self._error is not None:
            raise self._error
        if self._segment is None:
            try:
                made = load_factory(self.factory, self.base, self.who)(**self.options)
            except DeploymentError as exc:
                self._error = exc
                raise
            except Exception as exc:  # the user's factory raised
                self._error = self.who.error(
                    "*",
                    f"factory raised {type(exc).__name__}: {exc}",
                    'fix the factory or its "options" in benchmarks.json',
                )
                raise self._error from None
            if not callable(made):
                self._error = self.who.error(
                    "*",
                    f"factory returned a {type(made).__name__}, not a callable",
                    "return segment(image) -> label map from the factory",
                )
                raise self._error
            self._segment = made
        return self._segment

    def prepare(self, case_id: str, volume: Volume) -> None:
        try:
            self._load()
        except DeploymentError as exc:
            raise _with_case(exc, case_id) from None
        if self._case is None or self._case[0] != case_id:
            self._case = (case_id, case_image(volume))

    def segment(self, volume: Volume, progress: Progress | None = None) -> Prediction:
        assert self._case is not None, "prepare() the case first"
        case, image = self._case
        run = self._load()
        t0 = time.perf_counter()
        try:
            result = run(image)
        except Exception as exc:  # the user's pipeline raised on this case
            raise self.who.error(
                case, f"raised {type(exc).__name__}: {exc}", "fix the pipeline for this input"
            ) from None
        seconds = time.perf_counter() - t0
        labels = deployment_labels(result, volume, self.names, self.who, case)
        return _prediction(labels, volume, seconds, self.kind)

    def describe(self) -> dict[str, Any] | None:
        return {"kind": "pipeline", "pipeline": self.factory, "timing": "warm"}


# the user's command ---------------------------------------------------------------------------


def _tail(text: bytes, lines: int = STDERR_LINES) -> str:
    last = text.decode("utf-8", errors="replace").strip().splitlines()[-lines:]
    return " | ".join(line.strip() for line in last) or "(nothing on stderr)"


def run_command(
    argv: list[str], timeout_s: float, cwd: Path | None = None
) -> tuple[int | None, bytes]:
    """Run ``argv`` (in ``cwd``) in its own process group; ``(exit code, stderr)``, exit code
    ``None`` when it ran past ``timeout_s`` (then the whole group is killed)."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return None, err
    return proc.returncode, err


@dataclass
class CommandSegmenter:
    """The user's program, one process per run: ``{input}`` (the case as NIfTI, written once
    per case, untimed) -> ``{output}`` (the label map it writes). The timed wall time includes
    process start and model load (cold)."""

    argv: tuple[str, ...]
    timeout_s: float
    names: Mapping[int, str]
    who: Who
    cwd: Path | None = None  # benchmarks.json's folder
    kind: str = "command"
    cold: bool = True
    staged: bool = False
    _folder: Path | None = field(default=None, repr=False)
    _case: str | None = field(default=None, repr=False)

    def prepare(self, case_id: str, volume: Volume) -> None:
        if self._case == case_id and self._folder is not None:
            return
        self.close()
        self._folder = Path(tempfile.mkdtemp(prefix="segbench-command-"))
        weakref.finalize(self, shutil.rmtree, self._folder, True)  # the last case's, at exit
        nib.save(case_image(volume), self._folder / "input.nii.gz")
        self._case = case_id

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
        self._folder = self._case = None

    def segment(self, volume: Volume, progress: Progress | None = None) -> Prediction:
        assert self._folder is not None and self._case is not None, "prepare() the case first"
        case, inp, out = self._case, self._folder / "input.nii.gz", self._folder / "output.nii.gz"
        out.unlink(missing_ok=True)
        argv = [
            a.replace("{input}", str(inp))
            .replace("{output}", str(out))
            .replace("{python}", sys.executable)
            for a in self.argv
        ]
        t0 = time.perf_counter()
        try:
            code, err = run_command(argv, self.timeout_s, self.cwd)
        except OSError as exc:
            raise self.who.error(
                case, f"cannot start {argv[0]!r}: {exc}", "install it or give its full path"
            ) from None
        seconds = time.perf_counter() - t0
        if code is None:
            raise self.who.error(
                case,
                f"ran past its timeout of {self.timeout_s:g} s and was killed; "
                f"stderr: {_tail(err)}",
                'raise "timeout_s" in benchmarks.json or find why it hangs',
            )
        if code != 0:
            raise self.who.error(
                case, f"exited with code {code}; stderr: {_tail(err)}", "fix the command"
            )
        if not out.is_file():
            raise self.who.error(
                case,
                "exited 0 but wrote no label map to {output}",
                "write the label map (NIfTI) to the path given for {output}",
            )
        try:
            result = nib.load(out)
        except Exception as exc:
            raise self.who.error(
                case, f"wrote an unreadable {{output}} ({exc})", "write a NIfTI label map"
            ) from None
        labels = deployment_labels(result, volume, self.names, self.who, case)
        return _prediction(labels, volume, seconds, self.kind)

    def describe(self) -> dict[str, Any] | None:
        return {"kind": "command", "command": list(self.argv), "timing": "cold"}


# the one builder ------------------------------------------------------------------------------


def profile_names(profile: Profile, card: ModelCard) -> dict[int, str]:
    """A profile's class map: its ``labels``, else the model's classes."""
    if profile.labels:
        return {0: "background"} | {int(v): n for v, n in profile.labels.items()}
    return dict(enumerate(card.class_names))


def build_segmenter(
    slot: str,
    profile: Profile,
    card: ModelCard,
    backend: Backend | None,
    base: Path,
) -> Segmenter:
    """The Segmenter of ``profile`` (its ``slot``: ``"reference"`` or a candidate's):
    segbench's pipeline on ``backend``, the user's factory or the user's command."""
    role = "reference" if slot == "reference" else "candidate " + slot.partition(":")[2]
    role = role.strip()
    names = profile_names(profile, card)
    if profile.factory is not None:
        who = Who(role, f"pipeline {profile.factory}")
        return PipelineSegmenter(profile.factory, dict(profile.options), base, names, who)
    if profile.command is not None:
        who = Who(role, f"command {profile.command[0]}")
        timeout = profile.timeout_s if profile.timeout_s is not None else DEFAULT_TIMEOUT_S
        return CommandSegmenter(profile.command, timeout, names, who, base)
    if backend is None:
        raise ValueError(f"{slot}: a {profile.kind} profile needs a backend")
    return BackendSegmenter(card, backend, profile)


# what the paired run records of a segmenter ------------------------------------------------------


def stage_medians(runs: RoleRuns, segmenter: Segmenter) -> dict[str, float]:
    """The extra_info's ``stages_s``: every stage for segbench's pipeline, the total alone for
    a deployment (its stages are its own)."""
    if not runs.times:
        return {}
    stages = runs.stage_medians()
    return stages if segmenter.staged else {"total": stages["total"]}


def deployment_info(segmenter: Segmenter, pairing: ClassPairing | None) -> dict[str, Any]:
    """The extra_info keys of a deployment (``deployment``: kind, what ran, ``timing`` warm or
    cold) and of classes paired by name (``class_pairing``); none for segbench's pipeline with
    the model's numbering."""
    info: dict[str, Any] = {}
    described = segmenter.describe()
    if described is not None:
        info["deployment"] = described
    if pairing is not None and not pairing.identity:
        info["class_pairing"] = {
            "names": {str(i): n for i, n in enumerate(pairing.names)},
            "reference_only": list(pairing.reference_only),
            "candidate_only": list(pairing.candidate_only),
        }
    return info


def relabel(
    reference: np.ndarray, candidate: np.ndarray, pairing: ClassPairing
) -> tuple[np.ndarray, np.ndarray]:
    """Both label maps in the pairing's common numbering (as they are when it is the
    identity)."""
    if pairing.identity:
        return reference, candidate
    dtype = label_dtype(len(pairing.names))

    def lut(table: tuple[int, ...]) -> np.ndarray:
        return np.array([max(v, 0) for v in table], dtype=dtype)

    ref = np.take(lut(pairing.reference_to_common), reference, mode="clip")
    cand = np.take(lut(pairing.candidate_to_common), candidate, mode="clip")
    return ref, cand


FIX_DEPLOYMENT = (
    " Fix: the deployment's own code changes the masks: compare its preprocessing (spacing, "
    "interpolation order, clip and normalisation constants, axis order), its inference (whole "
    "volume or windows, padding) and its resampling back with the reference's, starting with "
    "the classes named; if the change is intended, lower the thresholds for this case under "
    '"cases" in benchmarks.json.'
)


def with_pairing_note(
    gate: GateResult,
    pairing: ClassPairing,
    logits: np.ndarray | None,
    deployment: bool = False,
) -> GateResult:
    """The Dice gate's message with what a deployment changes: the classes present on one
    side only (scored where they have voxels, never dropped), without candidate logits the
    logit difference ``n/a``, and for a failing ``deployment`` its own fix."""
    notes = []
    if pairing.reference_only or pairing.candidate_only:
        ref = ", ".join(pairing.reference_only) or "none"
        cand = ", ".join(pairing.candidate_only) or "none"
        notes.append(f"classes of one side only: reference only {ref}; candidate only {cand}")
    if logits is None:
        notes.append("logit difference n/a (the candidate gives no logits)")
    if not notes:
        return gate
    head, fix, tail = gate.message.partition(" Fix:")
    if deployment and fix:
        fix, tail = FIX_DEPLOYMENT, ""
    message = f"{head} {'; '.join(notes)}.{fix}{tail}"
    return replace(gate, message=message)
