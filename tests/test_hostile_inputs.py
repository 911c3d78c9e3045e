"""Hostile inputs around volumes, output paths, configs and the command line: each is refused
with a SegbenchError that names the file and says the fix, or gives the right result."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import tiny_card, write_nifti

from segbench.cli import main
from segbench.errors import ConfigError, InputError
from segbench.inputs.volumes import check_truth_labels, load_volume
from segbench.pipeline.predict import (
    backend_kind,
    check_output_path,
    make_backend,
    predict,
    save_mask,
)
from segbench.settings.config import BenchConfig, Gates, check_case_keys, load_config, parse_config

# ---- voxel types and headers ------------------------------------------------------------------


def test_rgb_volume_is_refused_naming_the_file(tmp_path: Path) -> None:
    rgb = np.zeros((6, 6, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp_path / "rgb.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    with pytest.raises(InputError, match=r"rgb\.nii\.gz: stores RGB/structured voxels") as info:
        load_volume(path)
    assert "Fix: convert it to a grey-level CT" in str(info.value)


def test_complex_volume_is_refused_not_truncated(tmp_path: Path) -> None:
    data = (np.full((6, 6, 6), -1000.0) + 5j).astype(np.complex64)
    path = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(InputError, match=r"complex\.nii\.gz: stores complex voxels"):
        load_volume(path)


def _raw_header_edit(path: Path, offset: int, fmt: str, value: float) -> Path:
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(bytes(raw))
    return path


def test_negative_dim_in_header_is_named_negative(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "neg.nii", shape=(8, 8, 8))
    _raw_header_edit(path, 42, "<h", -5)  # dim[1]
    with pytest.raises(InputError, match=r"neg\.nii: has a negative-length axis"):
        load_volume(path)


def test_huge_dims_in_header_are_refused_before_reading(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "huge.nii", shape=(8, 8, 8))
    for offset in (42, 44, 46):
        _raw_header_edit(path, offset, "<h", 30000)
    with pytest.raises(InputError, match=r"huge\.nii: has 27,000,000,000,000 voxels"):
        load_volume(path)


def test_uncompressed_file_named_nii_gz_is_refused(tmp_path: Path) -> None:
    plain = write_nifti(tmp_path / "plain.nii", shape=(8, 8, 8))
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(plain.read_bytes())
    with pytest.raises(InputError, match=r"fake\.nii\.gz: not a readable NIfTI file.*gzip"):
        load_volume(fake)


def test_singleton_fourth_axis_is_a_3d_volume(tmp_path: Path) -> None:
    data = np.full((8, 8, 8, 1), -1000.0, dtype=np.float32)
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    assert load_volume(path).shape == (8, 8, 8)


# ---- ground truth labels ----------------------------------------------------------------------


def test_integral_float_labels_are_accepted() -> None:
    check_truth_labels(np.array([0.0, 1.0, 2.0], dtype=np.float32), "t.nii.gz", 3)
    check_truth_labels(np.array([0, 2], dtype=np.uint8), "t.nii.gz", 3)


@pytest.mark.parametrize(
    ("values", "num_classes", "match"),
    [
        ([0.0, 0.5, 1.0], 3, r"t\.nii\.gz: has 1 non-integral labels \(e\.g\. 0\.5\)"),
        ([0.0, np.nan], 3, r"t\.nii\.gz: has 1 NaN/inf labels"),
        ([0, -1], 3, r"t\.nii\.gz: has negative labels \(min -1\)"),
        ([0, 3], 3, r"t\.nii\.gz: has label 3, out of range for a model of 3 classes \(0\.\.2\)"),
        ([0, 300], None, r"t\.nii\.gz: has label 300, over 255"),
    ],
)
def test_bad_truth_labels_are_refused(
    values: list[float], num_classes: int | None, match: str
) -> None:
    with pytest.raises(InputError, match=match) as info:
        check_truth_labels(np.array(values), "t.nii.gz", num_classes)
    assert "Fix: pass a label map with integer labels" in str(info.value)


def test_truth_labels_of_a_loaded_intensity_image_are_refused(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "ct_as_truth.nii.gz", shape=(8, 8, 8))
    labels = load_volume(path, expect_ct=False)
    with pytest.raises(InputError, match=r"ct_as_truth\.nii\.gz: has"):
        check_truth_labels(labels.array, labels.source, 3)


# ---- output paths -----------------------------------------------------------------------------


@pytest.fixture
def ct(tmp_path: Path) -> Path:
    return write_nifti(tmp_path / "ct.nii.gz", shape=(8, 8, 8))


def test_output_equal_to_input_is_refused_before_any_work(
    ct: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr("segbench.pipeline.predict.make_backend", no_work)
    monkeypatch.setattr("segbench.pipeline.predict.load_volume", no_work)
    before = ct.read_bytes()
    with pytest.raises(InputError, match=r"ct\.nii\.gz: is the input .*ct\.nii\.gz itself") as info:
        predict(ct, tiny_card(), "torch", output=ct)
    assert "Fix: write the mask to another file" in str(info.value)
    other_spelling = ct.parent / "." / ".." / ct.parent.name / ct.name
    with pytest.raises(InputError, match="is the input"):
        predict(str(ct), tiny_card(), "torch", output=other_spelling)
    assert ct.read_bytes() == before


def test_symlink_and_hard_link_of_the_input_are_refused(ct: Path) -> None:
    link = ct.parent / "link.nii.gz"
    link.symlink_to(ct)
    with pytest.raises(InputError, match=r"link\.nii\.gz: is the input"):
        check_output_path(link, [ct])
    hard = ct.parent / "hard.nii.gz"
    os.link(ct, hard)
    with pytest.raises(InputError, match=r"hard\.nii\.gz: is the input"):
        check_output_path(hard, [ct])
    with pytest.raises(InputError, match="is the input"):  # input passed as an image
        predict(nib.load(ct), tiny_card(), "torch", output=hard)


def test_output_folder_problems_are_found_first(ct: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"its folder .*missing does not exist") as info:
        check_output_path(tmp_path / "missing" / "mask.nii.gz", [ct])
    assert "Fix: create" in str(info.value)
    with pytest.raises(InputError, match=r"\(it is a file\)"):
        check_output_path(ct / "mask.nii.gz", [ct])
    with pytest.raises(InputError, match=r"is not a \.nii or \.nii\.gz name"):
        check_output_path(tmp_path / "mask.png", [ct])
    (tmp_path / "dir.nii.gz").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_output_path(tmp_path / "dir.nii.gz", [ct])
    assert check_output_path(tmp_path / "mask.nii.gz", [ct]) == tmp_path / "mask.nii.gz"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused(ct: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(InputError, match="is not writable"):
            check_output_path(locked / "mask.nii.gz", [ct])
    finally:
        locked.chmod(0o755)


def test_save_mask_leaves_no_partial_file(ct: Path, tmp_path: Path) -> None:
    out = tmp_path / "mask.nii.gz"
    out.write_bytes(b"previous mask")
    with pytest.raises(Exception):  # noqa: B017 - whatever nibabel raises for a bad image
        save_mask("not an image", out)  # type: ignore[arg-type]
    assert out.read_bytes() == b"previous mask"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "mask.nii.gz"]
    save_mask(nib.load(ct), out)
    assert nib.load(out).shape == (8, 8, 8)


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"backend 'tensorrt' is not supported. Fix: .*onnx"):
        backend_kind("tensorrt")
    with pytest.raises(ConfigError, match="tensorrt"):
        make_backend(tiny_card(), "tensorrt")


# ---- configs ----------------------------------------------------------------------------------


def test_config_that_is_a_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cfg: is a folder, not a file. Fix:"):
        (tmp_path / "cfg").mkdir()
        load_config(tmp_path / "cfg")


def test_config_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin.json"
    path.write_bytes('{"$comment": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.json: not UTF-8 text .*Fix: save the file"):
        load_config(path)


def test_config_with_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"timing": {"rounds": 4}}')
    assert load_config(path).timing.rounds == 4


def test_config_with_repeated_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"gates": {"dice_min": 0.99, "dice_min": 0.1}}')
    with pytest.raises(ConfigError, match=r"dup\.json: key 'dice_min' appears twice.*Fix:"):
        load_config(path)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_config_non_finite_constants_are_refused(tmp_path: Path, constant: str) -> None:
    path = tmp_path / "nan.json"
    path.write_text(f'{{"gates": {{"speedup_min": {constant}}}}}')
    with pytest.raises(ConfigError, match=rf"nan\.json: {constant} is not a JSON number"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"timing": {"rounds": true}}', "timing.rounds"),
        ('{"timing": {"rounds": -1}}', "timing.rounds"),
        ('{"timing": {"warmup_rounds": 1.5}}', "timing.warmup_rounds"),
        ('{"profiles": {"candidate": {"backend": "tensorrt"}}}', "profiles.candidate.backend"),
        ('{"profiles": {"candidate": {"threads": "4"}}}', "profiles.candidate.threads"),
        ('{"cases": {"a.nii.gz": {"dice_min": 2}}}', "cases.a.nii.gz.dice_min"),
    ],
)
def test_config_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"b\.json: key '{key}'"):
        load_config(path)


def test_case_key_typo_names_the_closest_cases() -> None:
    cfg = parse_config({"cases": {"liver_003.nii.gz": {"dice_min": 0.9}}}, "bench.json")
    with pytest.raises(ConfigError) as info:
        check_case_keys(cfg, ["liver_001.nii.gz", "liver_002.nii.gz", "spleen_1.nii.gz"])
    text = str(info.value)
    assert text.startswith("bench.json: key 'cases.liver_003.nii.gz' is not a case")
    assert "closest case ids: 'liver_002.nii.gz', 'liver_001.nii.gz'. Fix:" in text
    assert "spleen" not in text
    assert "Fix:" in text
    check_case_keys(cfg, ["liver_003.nii.gz", "other"])  # known: fine
    check_case_keys(BenchConfig(case_gates={}), [])
    lone = BenchConfig(case_gates={"zzz": Gates()}, source="c.json")
    with pytest.raises(ConfigError, match="no case id is close"):
        check_case_keys(lone, ["liver_001.nii.gz"])


# ---- the command line -------------------------------------------------------------------------


def test_merge_refuses_to_write_over_a_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = tmp_path / "a.json"
    shard.write_text(json.dumps({"machine_info": {}, "benchmarks": []}))
    before = shard.read_bytes()
    code = main(["merge", str(shard), "-o", str(tmp_path / "." / "a.json")])
    assert code == 2
    assert "is also an input" in capsys.readouterr().err
    assert shard.read_bytes() == before


def test_export_gab_refuses_to_write_over_its_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run.json"
    run.write_text("{}")
    assert main(["export-gab", str(run), "-o", str(run)]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert run.read_text() == "{}"
