"""Where the benchmark cases come from: generated phantoms, the shared real CT, a user folder.

A case is one CT volume. Phantoms are generated lazily, at a case's first use, into the cache
folder, and reused afterwards. A user folder (``--segbench-data``) is searched recursively
(:func:`discover`); its layouts:

- any ``.nii`` / ``.nii.gz`` file; ``<case>_seg.nii(.gz)`` beside a case (a file or a DICOM
  series folder) is that case's ground truth, not a case of its own;
- a folder directly holding DICOM files: one series, one case;
- TotalSegmentator's layout: ``<case>/ct.nii.gz`` beside ``<case>/segmentations/`` of binary
  masks ``<class name>.nii.gz``; the ground truth is the label map of the masks whose names
  are the model's class names (:func:`segbench.inputs.masks.label_map_from_masks`);
- nnU-Net's raw layout: ``imagesTs/<case>_0000.nii.gz`` with ``labelsTs/<case>.nii.gz`` (and
  ``imagesTr`` / ``labelsTr``, any ``images<X>`` / ``labels<X>`` pair).

A case's id is the posix path, relative to the data folder, of the file (with its suffix) or of
the folder (a DICOM series, a TotalSegmentator case) that holds it: ``scan.nii.gz``,
``s0001``, ``Dataset001/imagesTs/case_0000.nii.gz``. It is the same on every machine, and for a
flat folder it is the file name, as before. Every file or folder left out is listed, with why.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from segbench.errors import ConfigError
from segbench.inputs.dicom import is_dicom_folder
from segbench.inputs.phantoms import LABELS, PhantomSpec, ensure_phantom, phantom_set
from segbench.inputs.volumes import NIFTI_SUFFIXES

SUITES = ("quick", "seed20", "none")
TRUTH_SUFFIX = "_seg"
SHARED_CT = Path("ct") / "example_ct_sm.nii.gz"
TS_IMAGE_STEMS = ("ct",)  # TotalSegmentator: <case>/ct.nii.gz
TS_MASKS = "segmentations"  # ... and <case>/segmentations/<class>.nii.gz
NNUNET_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")  # <case>_0000
NNUNET_IMAGES = re.compile(r"^images(?P<split>.*)$")  # imagesTr, imagesTs -> labelsTr, ...
GZIP_MAGIC = b"\x1f\x8b"
NIFTI_HEADER_SIZES = (348, 540)  # sizeof_hdr of NIfTI-1 and NIfTI-2


@dataclass(frozen=True)
class Case:
    """One volume: a NIfTI file or a DICOM series folder (``path``), or a phantom. Phantom
    cases carry ground-truth labels; file cases do when a ground truth was found beside them
    (``truth``, a label file) or a TotalSegmentator ``segmentations/`` folder (``masks``)."""

    id: str
    path: Path | None = None
    phantom: PhantomSpec | None = None
    truth: Path | None = None
    masks: Path | None = None

    def files(
        self, cache_dir: Path, announce: Callable[[str], None] | None = None
    ) -> tuple[Path, Path | None]:
        """(image path, ground-truth label path or None), generating a phantom if needed (then
        announced to ``announce``). A masks folder is not a label file: see
        :meth:`ground_truth`."""
        if self.phantom is not None:
            image, labels = ensure_phantom(self.phantom, cache_dir, announce)
            return image, labels
        assert self.path is not None
        return self.path, self.truth

    @property
    def truth_names(self) -> dict[int, str] | None:
        """The ground truth's label names when segbench knows them (phantoms); for files they
        come from the label table in the file, if any."""
        return dict(LABELS) if self.phantom is not None else None

    def ground_truth(
        self, cache_dir: Path, class_names: tuple[str, ...] | list[str]
    ) -> tuple[Path | None, dict[int, str] | None]:
        """(ground-truth label file or None, its label names or None) for a model of
        ``class_names``. A TotalSegmentator case's masks become one label map (written once
        into ``cache_dir``), labelled by the model's class indices where the names match."""
        if self.masks is None:
            return self.files(cache_dir)[1], self.truth_names
        from segbench.inputs.masks import label_map_from_masks

        return label_map_from_masks(self.masks, class_names, cache_dir)


@dataclass(frozen=True)
class Skipped:
    """A file or folder under the data folder that is no case, and why (``path`` relative)."""

    path: str
    reason: str


@dataclass
class Discovery:
    """The cases found under ``root``, sorted by id, and everything left out."""

    root: Path
    cases: list[Case] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path | PurePosixPath) -> str:
    """``scan`` for ``scan.nii.gz`` or ``scan.nii``."""
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def builtin_cases(suite: str, shared_data: Path | None) -> list[Case]:
    """The phantoms of ``suite`` plus the shared example CT when ``shared_data`` holds it."""
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    cases = (
        []
        if suite == "none"
        else [Case(id=f"{spec.case_id}.nii.gz", phantom=spec) for spec in phantom_set(suite)]
    )
    if shared_data is not None and (shared_data / SHARED_CT).is_file():
        cases.append(Case(id=SHARED_CT.name, path=shared_data / SHARED_CT))
    return cases


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a glob over posix relative paths: ``*`` and ``?`` stay inside one folder
    name, ``**/`` is any number of folders, ``[...]`` a character class. A pattern that can
    match no relative path (absolute, with ``..``) or is no valid pattern (a reversed range
    such as ``[z-a]``) is a :class:`ConfigError` naming the option."""
    parts = PurePosixPath(pattern).parts
    if pattern.startswith("/") or ".." in parts:
        raise ConfigError(
            f"--segbench-glob={pattern} "
            + ("is an absolute path" if pattern.startswith("/") else "leaves the data folder (..)")
            + ": it matches the paths of files relative to --segbench-data, so "
            "it would select nothing. Fix: write it relative to the folder, e.g. "
            "--segbench-glob=**/*.nii.gz, or point --segbench-data at the folder it names"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # re's FutureWarning of a set inside a set
            return _glob_regex(pattern)
    except (re.error, FutureWarning) as exc:
        raise ConfigError(
            f"--segbench-glob={pattern} is not a valid pattern ({exc}). Fix: use * and ? "
            "within a folder name, **/ for any folders, [abc] or [a-z] (low to high) for one "
            "character; put [ and ] in brackets ([[]) to match them literally"
        ) from None


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:[^/]+/)*", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end].replace("\\", "\\\\").replace("[", "\\[")
            out, i = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def nifti_problem(path: Path) -> str | None:
    """Why ``path`` (a regular file named .nii / .nii.gz) cannot be a NIfTI volume, reading
    only its first bytes; None when it starts like one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc}). Fix its permissions"
    if not head:
        return "is empty"
    if path.name.endswith(".gz"):
        if head[:2] != GZIP_MAGIC:
            return "is named .nii.gz but is not gzip data"
    elif len(head) < 4 or not {
        int.from_bytes(head, "little"),
        int.from_bytes(head, "big"),
    } & set(NIFTI_HEADER_SIZES):
        return "is named .nii but has no NIfTI header"
    return None


_TsCase = tuple[os.DirEntry[str], os.DirEntry[str]]  # (ct.nii.gz, segmentations/)


def _ts_layout(names: dict[str, os.DirEntry[str]]) -> _TsCase | None:
    """A folder's TotalSegmentator case: its ``ct.nii(.gz)`` and ``segmentations/`` folder,
    when it has both."""
    ts_image = next(
        (names[f"{s}{x}"] for s in TS_IMAGE_STEMS for x in NIFTI_SUFFIXES if f"{s}{x}" in names),
        None,
    )
    ts_masks = names.get(TS_MASKS) if ts_image is not None else None
    if ts_image is None or ts_masks is None or not ts_masks.is_dir():
        return None
    return ts_image, ts_masks


class _Walk:
    """One recursive listing: NIfTI files, DICOM series and TotalSegmentator cases found,
    and everything left out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.niftis: list[tuple[PurePosixPath, Path]] = []
        self.series: list[tuple[PurePosixPath, Path]] = []
        self.ts_cases: list[tuple[PurePosixPath, Path, Path]] = []  # (rel, image, masks)
        self.skipped: list[Skipped] = []
        self._seen: dict[str, str] = {}  # real path -> relative path where it was first met

    def skip(self, rel: PurePosixPath, reason: str) -> None:
        self.skipped.append(Skipped(str(rel), reason))

    def folder(self, path: Path, rel: PurePosixPath, chain: tuple[str, ...]) -> None:
        """List ``path`` (at ``rel``, below the real folders ``chain``) and what is in it."""
        try:
            # real files and folders before links to them: a link to one is the duplicate
            entries = sorted(os.scandir(path), key=lambda e: (e.is_symlink(), e.name))
        except OSError as exc:
            self.skip(rel, f"folder cannot be listed ({exc.strerror or exc}). Fix its permissions")
            return
        is_series = is_dicom_folder(path)
        if is_series:
            self.series.append((rel, path))
        ts = _ts_layout({e.name: e for e in entries})
        for entry in entries:
            self._entry(entry, rel / entry.name, chain, ts, is_series)

    def _entry(
        self,
        entry: os.DirEntry[str],
        here: PurePosixPath,
        chain: tuple[str, ...],
        ts: _TsCase | None,
        is_series: bool,
    ) -> None:
        """One entry of a folder (``ts``: the folder's TotalSegmentator image and masks;
        ``is_series``: the folder is a DICOM series)."""
        if entry.name.startswith("."):
            self.skip(here, "hidden: not searched")
            return
        try:
            mode = os.stat(entry.path).st_mode  # follows links
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.skip(here, "symlink loop: the link never resolves to a file")
            else:
                target = os.readlink(entry.path) if entry.is_symlink() else "?"
                self.skip(here, f"dangling symlink to {target}: its target does not exist")
            return
        real = os.path.realpath(entry.path)
        if stat.S_ISDIR(mode):
            self._subfolder(entry, here, chain, real, ts)
        elif not stat.S_ISREG(mode):
            self.skip(here, f"is {_kind(mode)}, not a regular file")
        elif real in self._seen:
            self.skip(here, f"the same file as {self._seen[real]}: counted once")
        elif is_nifti(Path(entry.name)):
            self._seen[real] = str(here)
            problem = nifti_problem(Path(entry.path))
            if problem is not None:
                self.skip(here, problem)
            elif not (ts is not None and entry.name == ts[0].name):
                self.niftis.append((here, Path(entry.path)))
        elif is_series:
            self._seen[real] = str(here)  # a slice (or a file) of the DICOM series
        else:
            self.skip(
                here,
                "matches no rule: not .nii/.nii.gz, not in a folder of DICOM slices",
            )

    def _subfolder(
        self,
        entry: os.DirEntry[str],
        here: PurePosixPath,
        chain: tuple[str, ...],
        real: str,
        ts: _TsCase | None,
    ) -> None:
        """A folder in a folder: a loop or a folder already searched is left out, a
        TotalSegmentator ``segmentations/`` folder makes its case, any other is searched."""
        if real in chain:
            self.skip(here, "symlink loop: the link leads back to a folder above it")
        elif real in self._seen:
            self.skip(here, f"the same folder as {self._seen[real]}: searched once")
        elif ts is not None and entry.name == TS_MASKS:
            self._seen[real] = str(here)
            image = ts[0]
            if nifti_problem(Path(image.path)) is None:
                self.ts_cases.append((here.parent, Path(image.path), Path(entry.path)))
            else:
                self.skip(here, f"masks of {image.name}, which is left out")
        else:
            self._seen[real] = str(here)
            self.folder(Path(entry.path), here, (*chain, real))


_Found = tuple[str, Path, Path | None, Path | None]  # (id, image, truth file, masks folder)
_Files = dict[PurePosixPath, Path]  # the NIfTI files of a walk, by relative path


def _pair(walk: _Walk) -> tuple[list[_Found], list[Skipped]]:
    """(id, image, truth file, masks folder) of every case, and the NIfTI files left out."""
    skipped: list[Skipped] = []
    files = dict(walk.niftis)
    used: set[PurePosixPath] = set()
    labels_of = _nnunet_truths(files, used, skipped)
    _nnunet_orphans(files, used, skipped)
    truth_of = _seg_truths(files, walk.series, used, skipped)
    cases: list[_Found] = []
    for rel, path in files.items():
        if rel in used:
            continue
        truth = labels_of.get(rel) or truth_of.get(rel.parent / nifti_stem(rel))
        cases.append((str(rel), path, files[truth] if truth else None, None))
    for rel, path in walk.series:
        truth = truth_of.get(rel)
        cases.append((str(rel), path, files[truth] if truth else None, None))
    for rel, image, masks in walk.ts_cases:
        cases.append((str(rel), image, None, masks))
    return cases, skipped


def _nnunet_truths(
    files: _Files, used: set[PurePosixPath], skipped: list[Skipped]
) -> dict[PurePosixPath, PurePosixPath]:
    """nnU-Net's raw layout: ``images<X>/<case>_0000.nii.gz`` -> ``labels<X>/<case>.nii.gz``.
    Other input channels are left out (added to ``skipped``); they and the labels found are
    added to ``used``."""
    labels_of: dict[PurePosixPath, PurePosixPath] = {}
    for rel in files:
        split = NNUNET_IMAGES.match(rel.parent.name)
        channel = NNUNET_CHANNEL.match(nifti_stem(rel))
        if split is None or channel is None:
            continue
        if channel["channel"] != "0000":
            skipped.append(
                Skipped(
                    str(rel),
                    f"input channel {channel['channel']} of nnU-Net case {channel['case']}: "
                    "segbench reads channel 0000 (the CT) only",
                )
            )
            used.add(rel)
            continue
        labels = rel.parent.parent / f"labels{split['split']}"
        truth = next(
            (
                labels / f"{channel['case']}{x}"
                for x in NIFTI_SUFFIXES
                if labels / f"{channel['case']}{x}" in files
            ),
            None,
        )
        if truth is not None:
            labels_of[rel] = truth
            used.add(truth)
    return labels_of


def _nnunet_orphans(files: _Files, used: set[PurePosixPath], skipped: list[Skipped]) -> None:
    """Leave out (add to ``skipped`` and ``used``) the files of an nnU-Net ``labels<X>`` folder
    that no image of its ``images<X>`` folder claimed."""
    image_folders = {rel.parent for rel in files if NNUNET_IMAGES.match(rel.parent.name)}
    for rel in files:
        if rel in used or not rel.parent.name.startswith("labels"):
            continue
        images = rel.parent.parent / ("images" + rel.parent.name[len("labels") :])
        if images in image_folders:
            skipped.append(
                Skipped(
                    str(rel),
                    "nnU-Net label without its image "
                    f"{images / (nifti_stem(rel) + '_0000.nii.gz')}",
                )
            )
            used.add(rel)


def _seg_truths(
    files: _Files,
    series: list[tuple[PurePosixPath, Path]],
    used: set[PurePosixPath],
    skipped: list[Skipped],
) -> dict[PurePosixPath, PurePosixPath]:
    """``<case>_seg.nii(.gz)`` beside a case file or a DICOM series folder, by the case's path
    without suffix; a ``_seg`` file without its case is left out (added to ``skipped``). Every
    ``_seg`` file is added to ``used``."""
    stems = {rel.parent / nifti_stem(rel) for rel in files if rel not in used}
    stems |= {rel for rel, _ in series}
    truth_of: dict[PurePosixPath, PurePosixPath] = {}
    for rel in files:
        stem = nifti_stem(rel)
        if rel in used or not stem.endswith(TRUTH_SUFFIX):
            continue
        base = rel.parent / stem.removesuffix(TRUTH_SUFFIX)
        if base in stems:
            truth_of[base] = rel
        else:
            skipped.append(
                Skipped(
                    str(rel),
                    f"a ground truth ({TRUTH_SUFFIX}) without its case {base.name}.nii.gz or "
                    f"DICOM folder {base.name}. Fix: rename it if it is a CT volume",
                )
            )
        used.add(rel)
    return truth_of


def discover(folder: Path, glob: str | None = None) -> Discovery:
    """The cases under ``folder``, searched recursively (see the module's layouts), and every
    file or folder left out with why. ``glob`` (a pattern over the posix relative paths, e.g.
    ``**/image.nii.gz``) keeps only the cases whose file or folder matches it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            f"--segbench-data {folder}: not a folder. Fix: pass a folder of .nii/.nii.gz files "
            "(and/or of DICOM series folders)"
        )
    walk = _Walk(folder)
    walk.folder(folder, PurePosixPath("."), (os.path.realpath(folder),))
    found, skipped = _pair(walk)
    result = Discovery(folder, skipped=walk.skipped + skipped)
    pattern = glob_regex(glob) if glob else None
    by_id: dict[str, Case] = {}
    for cid, image, truth, masks in found:
        case_id = folder.resolve().name if cid == "." else cid
        if pattern is not None and not pattern.match(cid):
            result.skipped.append(Skipped(cid, f"does not match --segbench-glob={glob}"))
            for extra, what in ((truth, "ground truth"), (masks, "masks")):
                if extra is not None:
                    rel = extra.relative_to(folder).as_posix()
                    result.skipped.append(Skipped(rel, f"{what} of {cid}, which is left out"))
        elif case_id in by_id:
            result.skipped.append(Skipped(cid, f"duplicate case id {case_id}: kept once"))
        else:
            by_id[case_id] = Case(id=case_id, path=image, truth=truth, masks=masks)
    result.cases = sorted(by_id.values(), key=lambda c: c.id)
    result.skipped.sort(key=lambda s: s.path)
    return result


def folder_cases(folder: Path, glob: str | None = None) -> list[Case]:
    """The cases of :func:`discover`, sorted by id; a folder without any is refused."""
    found = discover(folder, glob)
    if not found.cases:
        left = "; ".join(f"{s.path}: {s.reason}" for s in found.skipped[:5])
        raise ConfigError(
            f"--segbench-data {folder}: holds no .nii or .nii.gz files and no folders of DICOM "
            f"slices{' matching ' + glob if glob else ''}"
            f"{' (left out: ' + left + ')' if left else ''}. Fix: point it at the folder with "
            "your CT volumes"
        )
    return found.cases
