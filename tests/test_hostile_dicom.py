"""Hostile DICOM headers (round 3): each is refused before any pixel is decoded, with one
message naming the folder, the file, the tag and the fix, never a raw RecursionError,
ValueError or AttributeError, and never the wrong diagnosis ("duplicated files")."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_dicom_series
from hostile_files import insert_before_pixels, nested_sequences, set_number_of_frames

from segbench.errors import InputError
from segbench.inputs.volumes import load_volume

pydicom = pytest.importorskip("pydicom", reason="DICOM tests need segbench[dicom] (pydicom)")
pytest.importorskip("SimpleITK", reason="DICOM tests need segbench[dicom] (SimpleITK)")


def refused(folder: Path, *words: str) -> str:
    with pytest.raises(InputError) as info:
        load_volume(folder)
    message = str(info.value)
    assert message.startswith(f"{folder}: ") and "Fix: " in message, message
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_shallow_nesting_is_read(tmp_path: Path) -> None:
    paths = write_dicom_series(tmp_path / "s")
    insert_before_pixels(paths[0], nested_sequences(5))
    assert load_volume(tmp_path / "s").shape == (16, 12, 6)


def test_deeply_nested_sequences_are_refused(tmp_path: Path) -> None:
    paths = write_dicom_series(tmp_path / "s")
    insert_before_pixels(paths[2], nested_sequences(3000))
    refused(tmp_path / "s", "file slice002.dcm nests DICOM sequences too deeply", "remove slice002")


@pytest.mark.filterwarnings("error")  # pydicom's warning about the IS value is no way out
def test_non_numeric_number_of_frames_is_refused(tmp_path: Path) -> None:
    paths = write_dicom_series(tmp_path / "s")
    set_number_of_frames(paths[1], b"ab")
    refused(tmp_path / "s", "file slice001.dcm has NumberOfFrames 'ab', not a positive whole")


def test_one_frame_per_file_is_read(tmp_path: Path) -> None:
    paths = write_dicom_series(tmp_path / "s")
    set_number_of_frames(paths[1], b"1 ")
    assert load_volume(tmp_path / "s").shape == (16, 12, 6)


@pytest.mark.parametrize("which", [[0], [0, 1, 2, 3, 4, 5]], ids=["one file", "every file"])
def test_rows_without_columns_is_refused(tmp_path: Path, which: list[int]) -> None:
    paths = write_dicom_series(tmp_path / "s")
    for k in which:
        ds = pydicom.dcmread(paths[k])
        del ds.Columns
        ds.save_as(paths[k])
    refused(tmp_path / "s", "file slice000.dcm has no Columns tag", "Rows and Columns")


def test_zero_rows_is_refused_before_decoding(tmp_path: Path) -> None:
    paths = write_dicom_series(tmp_path / "s")
    ds = pydicom.dcmread(paths[3])
    ds.Rows = 0
    ds.save_as(paths[3])
    message = refused(tmp_path / "s", "file slice003.dcm has Rows '0'")
    assert "decoded" not in message


@pytest.mark.parametrize(
    "orientation",
    [(0.0,) * 6, (1.0, 0.0, 0.0, 1.0, 0.0, 0.0), (2.0, 0.0, 0.0, 0.0, 1.0, 0.0)],
    ids=["all zero", "parallel", "not unit"],
)
def test_blank_orientation_is_not_called_duplicated(
    tmp_path: Path, orientation: tuple[float, ...]
) -> None:
    paths = write_dicom_series(tmp_path / "s")
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = list(orientation)
        ds.save_as(path)
    message = refused(
        tmp_path / "s",
        "slice slice000.dcm has ImageOrientationPatient",
        "not two orthogonal unit vectors",
    )
    assert "duplicated" not in message and "share a position" not in message


def test_rounded_orientation_cosines_are_accepted(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "s", orientation=(1.0, 0.0, 0.0, 0.0, 0.9999, 0.0001))
    assert load_volume(tmp_path / "s").shape == (16, 12, 6)
