"""Case discovery in a user's data folder: recursive search, TotalSegmentator and nnU-Net raw
layouts, a glob, stable relative ids, and every file left out named with why."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_dicom_series
from helpers import write_nifti as _write_nifti

from segbench.errors import ConfigError, InputError
from segbench.inputs.cases import discover, folder_cases, glob_regex

SHAPE = (6, 5, 4)


def write_nifti(path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_nifti(path, **kwargs)  # type: ignore[arg-type]


def _skipped(folder: Path, glob: str | None = None) -> dict[str, str]:
    return {s.path: s.reason for s in discover(folder, glob).skipped}


def _ids(folder: Path, glob: str | None = None) -> list[str]:
    return [c.id for c in discover(folder, glob).cases]


def test_flat_folder_keeps_file_name_ids_and_seg_truths(tmp_path: Path) -> None:
    write_nifti(tmp_path / "scan.nii.gz", shape=SHAPE)
    write_nifti(tmp_path / "scan_seg.nii.gz", shape=SHAPE)
    write_nifti(tmp_path / "other.nii", shape=SHAPE)
    cases = {c.id: c for c in folder_cases(tmp_path)}
    assert list(cases) == ["other.nii", "scan.nii.gz"]
    assert cases["scan.nii.gz"].truth == tmp_path / "scan_seg.nii.gz"
    assert cases["other.nii"].truth is None


def test_nested_folders_give_relative_posix_ids(tmp_path: Path) -> None:
    write_nifti(tmp_path / "site_a" / "p1" / "scan.nii.gz", shape=SHAPE)
    write_nifti(tmp_path / "site_a" / "p1" / "scan_seg.nii.gz", shape=SHAPE)
    write_nifti(tmp_path / "site_b" / "scan.nii.gz", shape=SHAPE)
    write_dicom_series(tmp_path / "site_b" / "series_1")
    cases = {c.id: c for c in discover(tmp_path).cases}
    assert list(cases) == ["site_a/p1/scan.nii.gz", "site_b/scan.nii.gz", "site_b/series_1"]
    assert cases["site_a/p1/scan.nii.gz"].truth == tmp_path / "site_a/p1/scan_seg.nii.gz"
    assert cases["site_b/series_1"].path == tmp_path / "site_b" / "series_1"


def _mask(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), np.diag([1.5, 1.5, 2.0, 1.0])), path)


def test_totalsegmentator_layout_builds_the_truth_by_class_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_nifti(data / "s0001" / "ct.nii.gz", shape=SHAPE)
    liver, spleen, other = (np.zeros(SHAPE, np.uint8) for _ in range(3))
    liver[0:2] = 1
    spleen[3:4] = 1
    other[5:] = 1
    _mask(data / "s0001" / "segmentations" / "liver.nii.gz", liver)
    _mask(data / "s0001" / "segmentations" / "spleen.nii.gz", spleen)
    _mask(data / "s0001" / "segmentations" / "brain.nii.gz", other)  # not a model class
    found = discover(data)
    assert [c.id for c in found.cases] == ["s0001"]
    assert found.skipped == []
    case = found.cases[0]
    assert case.path == data / "s0001" / "ct.nii.gz"
    classes = ("background", "spleen", "kidney", "liver")
    truth, names = case.ground_truth(tmp_path / "cache", classes)
    assert truth is not None and names == {1: "spleen", 3: "liver"}
    labels = np.asanyarray(nib.load(truth).dataobj)
    assert labels.dtype == np.uint8
    assert (labels[0:2] == 3).all() and (labels[3] == 1).all()
    assert (labels[2] == 0).all() and (labels[4:] == 0).all()  # brain: no model class
    again, _ = case.ground_truth(tmp_path / "cache", classes)
    assert again == truth  # written once, reused
    assert case.ground_truth(tmp_path / "cache", ("background", "lung")) == (None, None)


def test_totalsegmentator_case_with_a_broken_ct_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "s1" / "segmentations").mkdir(parents=True)
    (tmp_path / "s1" / "ct.nii.gz").write_bytes(b"html error page")
    _mask(tmp_path / "s1" / "segmentations" / "liver.nii.gz", np.ones(SHAPE))
    found = discover(tmp_path)
    assert found.cases == []
    skipped = {s.path: s.reason for s in found.skipped}
    assert skipped == {
        "s1/ct.nii.gz": "is named .nii.gz but is not gzip data",
        "s1/segmentations": "masks of ct.nii.gz, which is left out",
    }


def test_totalsegmentator_masks_on_another_grid_are_refused(tmp_path: Path) -> None:
    write_nifti(tmp_path / "s1" / "ct.nii.gz", shape=SHAPE)
    _mask(tmp_path / "s1" / "segmentations" / "liver.nii.gz", np.ones(SHAPE))
    _mask(tmp_path / "s1" / "segmentations" / "spleen.nii.gz", np.ones((6, 5, 3)))
    case = discover(tmp_path).cases[0]
    with pytest.raises(InputError, match=r"is not on the grid of the other masks.*Fix:"):
        case.ground_truth(tmp_path / "cache", ("background", "spleen", "liver"))


def test_nnunet_raw_layout_pairs_images_and_labels(tmp_path: Path) -> None:
    ds = tmp_path / "Dataset001_Abdomen"
    for split in ("Tr", "Ts"):
        write_nifti(ds / f"images{split}" / "case_01_0000.nii.gz", shape=SHAPE)
        write_nifti(ds / f"labels{split}" / "case_01.nii.gz", shape=SHAPE)
    write_nifti(ds / "imagesTs" / "case_02_0000.nii.gz", shape=SHAPE)  # no label: no truth
    write_nifti(ds / "imagesTs" / "case_01_0001.nii.gz", shape=SHAPE)  # a second channel
    write_nifti(ds / "labelsTs" / "case_09.nii.gz", shape=SHAPE)  # a label without image
    (ds / "dataset.json").write_text("{}")
    found = discover(tmp_path)
    cases = {c.id: c for c in found.cases}
    assert list(cases) == [
        "Dataset001_Abdomen/imagesTr/case_01_0000.nii.gz",
        "Dataset001_Abdomen/imagesTs/case_01_0000.nii.gz",
        "Dataset001_Abdomen/imagesTs/case_02_0000.nii.gz",
    ]
    assert cases["Dataset001_Abdomen/imagesTs/case_01_0000.nii.gz"].truth == (
        ds / "labelsTs" / "case_01.nii.gz"
    )
    assert cases["Dataset001_Abdomen/imagesTr/case_01_0000.nii.gz"].truth == (
        ds / "labelsTr" / "case_01.nii.gz"
    )
    assert cases["Dataset001_Abdomen/imagesTs/case_02_0000.nii.gz"].truth is None
    skipped = {s.path: s.reason for s in found.skipped}
    assert "channel 0001" in skipped["Dataset001_Abdomen/imagesTs/case_01_0001.nii.gz"]
    assert "label without its image" in skipped["Dataset001_Abdomen/labelsTs/case_09.nii.gz"]
    assert "matches no rule" in skipped["Dataset001_Abdomen/dataset.json"]
    assert len(skipped) == 3


def test_every_left_out_file_is_named_with_why(tmp_path: Path) -> None:
    write_nifti(tmp_path / "good.nii.gz", shape=SHAPE)
    write_nifti(tmp_path / "lonely_seg.nii.gz", shape=SHAPE)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "fake.nii.gz").write_bytes(b"not gzip")
    (tmp_path / "fake.nii").write_bytes(b"\0" * 400)
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "dangling.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    (tmp_path / "self.nii.gz").symlink_to(tmp_path / "self.nii.gz")
    (tmp_path / "copy.nii.gz").symlink_to(tmp_path / "good.nii.gz")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(tmp_path / "pipe.nii.gz")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.nii"))
    (tmp_path / ".hidden").mkdir()
    try:
        skipped = _skipped(tmp_path)
    finally:
        sock.close()
    assert _ids(tmp_path) == ["good.nii.gz"]
    assert "without its case lonely.nii.gz" in skipped["lonely_seg.nii.gz"]
    assert "Fix: rename it" in skipped["lonely_seg.nii.gz"]
    assert "matches no rule" in skipped["notes.txt"]
    assert "not gzip data" in skipped["fake.nii.gz"]
    assert "no NIfTI header" in skipped["fake.nii"]
    assert "is empty" in skipped["empty.nii.gz"]
    assert "dangling symlink" in skipped["dangling.nii.gz"]
    assert "symlink loop" in skipped["self.nii.gz"]
    assert "the same file as good.nii.gz" in skipped["copy.nii.gz"]
    assert "symlink loop" in skipped["sub/up"]
    assert "a FIFO" in skipped["pipe.nii.gz"]
    assert "a socket" in skipped["s.nii"]
    assert "hidden" in skipped[".hidden"]
    assert len(skipped) == 12


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_left_out(tmp_path: Path) -> None:
    write_nifti(tmp_path / "a.nii.gz", shape=SHAPE)
    locked = write_nifti(tmp_path / "b.nii.gz", shape=SHAPE)
    locked.chmod(0)
    try:
        assert "cannot be read" in _skipped(tmp_path)["b.nii.gz"]
    finally:
        locked.chmod(0o644)


def test_duplicate_ids_are_kept_once(tmp_path: Path) -> None:
    # a TotalSegmentator case folder that also holds DICOM slices: two cases of one id
    write_dicom_series(tmp_path / "s1")
    write_nifti(tmp_path / "s1" / "ct.nii.gz", shape=SHAPE)
    _mask(tmp_path / "s1" / "segmentations" / "liver.nii.gz", np.ones(SHAPE))
    found = discover(tmp_path)
    assert [c.id for c in found.cases] == ["s1"]
    assert [s.reason for s in found.skipped] == ["duplicate case id s1: kept once"]


def test_glob_keeps_matching_cases_and_names_the_rest(tmp_path: Path) -> None:
    for patient in ("p1", "p2"):
        write_nifti(tmp_path / patient / "image.nii.gz", shape=SHAPE)
        write_nifti(tmp_path / patient / "mask.nii.gz", shape=SHAPE)
    assert _ids(tmp_path) == [
        "p1/image.nii.gz",
        "p1/mask.nii.gz",
        "p2/image.nii.gz",
        "p2/mask.nii.gz",
    ]
    assert _ids(tmp_path, "**/image.nii.gz") == ["p1/image.nii.gz", "p2/image.nii.gz"]
    skipped = _skipped(tmp_path, "**/image.nii.gz")
    assert skipped["p1/mask.nii.gz"] == "does not match --segbench-glob=**/image.nii.gz"
    assert len(skipped) == 2
    with pytest.raises(ConfigError, match=r"matching \*\.nrrd .*left out: .*Fix:"):
        folder_cases(tmp_path, "*.nrrd")


def test_glob_regex() -> None:
    assert glob_regex("*.nii.gz").match("a.nii.gz")
    assert not glob_regex("*.nii.gz").match("x/a.nii.gz")
    assert glob_regex("**/a.nii.gz").match("a.nii.gz")
    assert glob_regex("**/a.nii.gz").match("x/y/a.nii.gz")
    assert glob_regex("p[12]/?.nii").match("p2/a.nii")
    assert not glob_regex("p[!12]/?.nii").match("p2/a.nii")


def test_ids_are_stable_across_roots(tmp_path: Path) -> None:
    for root in (tmp_path / "here", tmp_path / "elsewhere" / "deeper"):
        write_nifti(root / "a" / "scan.nii.gz", shape=SHAPE)
        write_dicom_series(root / "b")
    assert _ids(tmp_path / "here") == _ids(tmp_path / "elsewhere" / "deeper")


def test_empty_folder_is_refused_with_what_was_left_out(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(ConfigError, match=r"left out: readme\.md: matches no rule.*Fix:"):
        folder_cases(tmp_path)
