"""Files of the on-disk caches (ONNX exports, float16 and perturbed copies, phantoms): written
atomically, verified on read, and their leftover temporary files cleaned.

:func:`write_atomic` (and :func:`write_text_atomic`, :func:`write_bytes_atomic`) is the one way
segbench writes a file, in every layer: a temporary file with a unique name in the same folder,
flushed to disk (``fsync``), then ``os.replace``; it refuses to write through a symlink, and,
given the output folder, to a path that resolves outside it.

An entry is a data file plus a JSON metadata file written after it: both go through a temporary
file in the same folder and ``os.replace``, so a killed writer leaves either no entry or a whole
one. The metadata holds the data file's SHA-256 and size; :func:`read_entry` checks them, and an
entry that fails (empty or truncated file, unreadable metadata) is removed with one
:class:`~segbench.errors.SegbenchWarning` so that the caller builds it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segbench.errors import SegbenchError, SegbenchWarning

TEMP_MAX_AGE_S = 3600.0  # a temporary file older than this is a writer's leftover
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
# .<final name>.<host>.<pid>.<random>.tmp<ext>
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")
# what older versions left: tempfile.mkstemp names (tmpXXXX.onnx, .<name>.XXXX.tmp)
_LEGACY_TEMP = re.compile(r"^(tmp[\w-]{6,}\.onnx|\..+\.nii\.gz\.[\w-]{6,}\.tmp)$")
_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same resolved path, or (both existing) another
    spelling, a symlink or a hard link of it."""
    if a.resolve() == b.resolve():
        return True
    if not (a.exists() and b.exists()):
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class UnsafeWriteError(SegbenchError, ValueError):
    """An output path that a write would follow out of place: a symlink, or a path that
    resolves outside the output folder."""


def temp_path(final: Path, ext: str | None = None) -> Path:
    """A fresh temporary name beside ``final`` (same folder, so ``os.replace`` is atomic) that
    names this host and process and keeps ``final``'s extension (onnx infers the format), or
    ``ext`` (``".nii.gz"``: nibabel reads two)."""
    ext = "".join(final.suffixes[-1:]) if ext is None else ext
    return final.with_name(f".{final.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp{ext}")


def check_target(final: Path, inside: Path | None = None) -> None:
    """Raise :class:`UnsafeWriteError` when ``final`` is a symlink (writing would replace or
    follow it), or, given ``inside`` (the output folder), resolves outside that folder."""
    if final.is_symlink():
        raise UnsafeWriteError(
            f"{final}: is a symlink (to {os.readlink(final)}); segbench does not write through "
            "links. Fix: remove the link, or choose another output path"
        )
    if inside is not None and not final.resolve().is_relative_to(inside.resolve()):
        raise UnsafeWriteError(
            f"{final}: resolves to {final.resolve()}, outside the output folder {inside}. "
            "Fix: remove the link on the way, or choose another output folder"
        )


def _fsync(path: Path, folder: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if folder:  # some file systems cannot open a folder: its entry is flushed anyway
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def write_atomic(
    final: Path,
    write: Callable[[Path], object],
    *,
    inside: Path | None = None,
    ext: str | None = None,
) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``final`` (:func:`temp_path`, with
    ``ext``), flush it to disk and move it into place: a failed or interrupted write (a full
    disk) leaves the previous file whole. The temporary file is removed whatever happens.
    Refused (:func:`check_target`): ``final`` a symlink, or outside ``inside``."""
    final = Path(final)
    check_target(final, inside)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final, ext)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(final.parent, folder=True)
    return final


def write_text_atomic(final: Path, text: str, *, inside: Path | None = None) -> Path:
    """:func:`write_atomic` of UTF-8 ``text``."""
    return write_atomic(final, lambda tmp: tmp.write_text(text, encoding="utf-8"), inside=inside)


def write_bytes_atomic(final: Path, data: bytes, *, inside: Path | None = None) -> Path:
    """:func:`write_atomic` of ``data``."""
    return write_atomic(final, lambda tmp: tmp.write_bytes(data), inside=inside)


def sha256_file(path: Path) -> str:
    """SHA-256 of ``path``'s bytes, remembered per (path, size, mtime) within the process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def meta_path(data: Path) -> Path:
    return data.with_suffix(".json")


def write_entry(data: Path, write: Callable[[Path], object], meta: dict[str, Any]) -> Path:
    """Write a cache entry: the data through ``write`` (atomically), then its metadata (with the
    data's SHA-256 and size) atomically, last."""
    write_atomic(data, write)
    return write_meta(data, meta)


def write_meta(data: Path, meta: dict[str, Any]) -> Path:
    """Write ``data``'s metadata file (``meta`` plus the data's SHA-256 and size) atomically;
    the entry counts as written from then on."""
    record = {**meta, "sha256": sha256_file(data), "size": data.stat().st_size}
    text = json.dumps(record, indent=1)
    write_atomic(meta_path(data), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return data


def _problem(data: Path, meta: Path) -> tuple[str | None, dict[str, Any]]:
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"its metadata {meta.name} is unreadable ({type(exc).__name__})", {}
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return f"its metadata {meta.name} holds no checksum", {}
    size = data.stat().st_size
    if size != record.get("size"):
        return f"{data.name} has {size} bytes, {record.get('size')} were written", record
    if sha256_file(data) != record["sha256"]:
        return f"{data.name} does not match its SHA-256", record
    return None, record


def read_entry(data: Path) -> dict[str, Any] | None:
    """The metadata of a verified cache entry, or None when it is missing or damaged (then it
    is removed, with one warning, and the caller builds it again)."""
    meta = meta_path(data)
    if not data.is_file() and not meta.is_file():
        return None
    problem: str | None
    record: dict[str, Any] = {}
    if not data.is_file():
        problem = f"{data.name} is missing"
    elif not meta.is_file():
        problem = f"its metadata {meta.name} is missing"
    else:
        problem, record = _problem(data, meta)
    if problem is None:
        return record
    warnings.warn(
        SegbenchWarning(f"cache entry {data} is damaged ({problem}); building it again"),
        stacklevel=3,
    )
    for path in (meta, data):  # metadata first: a half-removed entry is never taken as whole
        path.unlink(missing_ok=True)
    return None


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def is_stale_temp(path: Path, now: float | None = None, max_age_s: float = TEMP_MAX_AGE_S) -> bool:
    """Whether ``path`` is a temporary file left by a writer: one of :func:`temp_path`'s names
    (or an older mkstemp name) that is older than ``max_age_s`` or whose writer, a process of
    this host, is gone."""
    name = path.name
    match = _TEMP.match(name)
    if match is None and _LEGACY_TEMP.match(name) is None:
        return False
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return False
    if age > max_age_s:
        return True
    return bool(match and match["host"] == _HOST and _pid_gone(int(match["pid"])))


def clean_stale_temps(folder: Path, max_age_s: float = TEMP_MAX_AGE_S) -> list[Path]:
    """Remove the stale temporary files (:func:`is_stale_temp`) in ``folder``; return them."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.iterdir():
        if path.is_file() and is_stale_temp(path, now, max_age_s):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


MAX_NAME_BYTES = 150  # a cache file's name: room left for temp_path's ~50 bytes under 255


def fit_name(stem: str, suffix: str, limit: int = MAX_NAME_BYTES) -> str:
    """``stem + suffix`` as a file name of at most ``limit`` UTF-8 bytes: unchanged when it
    fits, else the stem cut short and followed by a hash of the whole stem (so two long names
    never share a file). For file names made from case ids (240 characters are allowed in a
    case's own name, not in ``<case>-<key>.nii.gz`` or its temporary file); the case id
    itself, in messages and saved runs, stays whole."""
    name = stem + suffix
    if len(name.encode()) <= limit:
        return name
    digest = "~" + hashlib.sha256(stem.encode()).hexdigest()[:16]
    room = limit - len((digest + suffix).encode())
    cut = stem.encode()[: max(room, 0)].decode(errors="ignore")
    return cut + digest + suffix
