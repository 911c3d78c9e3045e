"""A poisoned on-disk cache: damaged entries are found, reported once and rebuilt; writers'
leftover temporary files are cleaned."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import pytest
from helpers import build_tiny_net, tiny_card

from segbench.cachefiles import (
    clean_stale_temps,
    is_stale_temp,
    read_entry,
    temp_path,
    write_atomic,
    write_entry,
)
from segbench.errors import SegbenchWarning

# ---- the entry format -------------------------------------------------------------------------


def test_entry_round_trip_and_verification(tmp_path: Path) -> None:
    data = tmp_path / "m.onnx"
    write_entry(data, lambda tmp: tmp.write_bytes(b"model bytes"), {"max_abs_diff": 0.5})
    record = read_entry(data)
    assert record is not None and record["max_abs_diff"] == 0.5 and record["size"] == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]  # no temp left


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d, m: m.write_text(""), "metadata m.json is unreadable"),
        (lambda d, m: m.write_text('{"max_abs_diff": 0.'), "metadata m.json is unreadable"),
        (lambda d, m: m.write_text('{"max_abs_diff": 0.5}'), "holds no checksum"),
        (lambda d, m: d.write_bytes(b"model"), "m.onnx has 5 bytes, 11 were written"),
        (lambda d, m: d.write_bytes(b"MODEL BYTES"), "does not match its SHA-256"),
        (lambda d, m: m.unlink(), "metadata m.json is missing"),
        (lambda d, m: d.unlink(), "m.onnx is missing"),
    ],
)
def test_damaged_entry_warns_once_and_is_removed(tmp_path: Path, damage, reason: str) -> None:
    data, meta = tmp_path / "m.onnx", tmp_path / "m.json"
    write_entry(data, lambda tmp: tmp.write_bytes(b"model bytes"), {"max_abs_diff": 0.5})
    time.sleep(0.01)  # a new mtime, so the remembered digest is not reused
    damage(data, meta)
    with pytest.warns(SegbenchWarning, match=rf"cache entry .*m\.onnx is damaged \(.*{reason}"):
        assert read_entry(data) is None
    assert not data.exists() and not meta.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_entry(data) is None  # now a plain miss, no second warning


def test_failed_writer_leaves_no_file(tmp_path: Path) -> None:
    def crash(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "m.onnx", crash)
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_are_cleaned_and_live_ones_kept(tmp_path: Path) -> None:
    final = tmp_path / "m.onnx"
    live = temp_path(final)  # this process: alive
    live.write_bytes(b"")
    dead = Path(str(live).replace(f".{os.getpid()}.", ".999999999."))  # no such pid
    dead.write_bytes(b"")
    legacy = tmp_path / "tmpab12cd34.onnx"  # what tempfile.mkstemp left
    legacy.write_bytes(b"")
    old = time.time() - 2 * 3600
    os.utime(legacy, (old, old))
    fresh_legacy = tmp_path / "tmpzz99yy88.onnx"
    fresh_legacy.write_bytes(b"")
    user = tmp_path / "notes.txt"
    user.write_bytes(b"")
    os.utime(user, (old, old))
    assert live.name.endswith(".tmp.onnx") and live.name.startswith(".m.onnx.")
    removed = clean_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted([dead.name, legacy.name])
    assert live.exists() and fresh_legacy.exists() and user.exists()
    assert not is_stale_temp(final)


# ---- the ONNX export cache --------------------------------------------------------------------


def test_export_cache_poisoned_then_rebuilt(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from segbench.pipeline.export import export_onnx

    net, card = build_tiny_net(), tiny_card()
    first = export_onnx(net, card, tmp_path)
    assert not first.cached
    meta = first.path.with_suffix(".json")
    record = json.loads(meta.read_text())
    assert record["size"] == first.path.stat().st_size and len(record["sha256"]) == 64
    (tmp_path / "tmpkilled1.onnx").write_bytes(b"")  # a killed export of an older version
    old = time.time() - 2 * 3600
    os.utime(tmp_path / "tmpkilled1.onnx", (old, old))
    meta.write_text("")  # the poisoned metadata of a killed session
    with pytest.warns(SegbenchWarning, match="is damaged") as record_warnings:
        again = export_onnx(net, card, tmp_path)
    assert len([w for w in record_warnings if issubclass(w.category, SegbenchWarning)]) == 1
    assert not again.cached and again.path == first.path
    assert not (tmp_path / "tmpkilled1.onnx").exists()
    with open(first.path, "r+b") as f:  # a truncated model file
        f.truncate(100)
    with pytest.warns(SegbenchWarning, match="is damaged"):
        third = export_onnx(net, card, tmp_path)
    assert not third.cached
    cached = export_onnx(net, card, tmp_path)
    assert cached.cached and cached.max_abs_diff == third.max_abs_diff
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.path.name, meta.name])


def test_float16_cache_verified(tiny_onnx: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from segbench.pipeline.export import to_float16

    source = tiny_onnx
    half = to_float16(source, tmp_path / "fp16")
    assert half.with_suffix(".json").is_file()
    half.write_bytes(half.read_bytes()[:50])
    with pytest.warns(SegbenchWarning, match="is damaged"):
        again = to_float16(source, tmp_path / "fp16")
    assert again == half and half.stat().st_size > 50
    import onnx

    onnx.checker.check_model(str(half))
