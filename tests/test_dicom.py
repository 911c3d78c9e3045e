"""DICOM series folders as volumes and cases (segbench.inputs.dicom, extra ``segbench[dicom]``).

The real series (``../shared/data/dicom``) checks the geometry against the segmentation made on
its grid and the decoding of its JPEG 2000 slices; small synthetic series written with pydicom
check the geometry of other orientations and every refusal.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import (
    run_suite,
    shared_dicom_paths,
    synthetic_ct,
    tiny_card,
    write_dicom_series,
    write_nifti,
)

from segbench.bench.paired import PairedRun, truth_label_check
from segbench.bench.runtime import Runtime
from segbench.errors import InputError
from segbench.inputs.cases import folder_cases
from segbench.inputs.dicom import is_dicom_folder, looks_like_dicom, read_dicom_series
from segbench.inputs.volumes import check_same_grid, label_names, load_volume
from segbench.models import load_network
from segbench.pipeline.backends import TorchBackend
from segbench.pipeline.predict import predict

pydicom = pytest.importorskip("pydicom", reason="DICOM tests need segbench[dicom] (pydicom)")
pytest.importorskip("SimpleITK", reason="DICOM tests need segbench[dicom] (SimpleITK)")

JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
MPEG4_AVC = "1.2.840.10008.1.2.4.102"  # video: GDCM has no decoder for it


def _refused(folder: Path, *words: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_volume(folder)
    message = str(info.value)
    assert str(folder) in message and "Fix:" in message, message
    for word in words:
        assert word in message, message
    return info.value


# ---- the real series ------------------------------------------------------------------------


def test_example_series_lands_on_its_segmentation_grid() -> None:
    folder, seg_path = shared_dicom_paths()
    first = pydicom.dcmread(next(iter(sorted(folder.iterdir()))), stop_before_pixels=True)
    assert first.file_meta.TransferSyntaxUID == JPEG2000_LOSSLESS  # compressed, and decoded
    assert float(first.SliceThickness) == 3.0  # the spacing must come from the positions

    image = read_dicom_series(folder)
    seg = nib.load(seg_path)
    assert image.shape == seg.shape == (512, 512, 20)
    np.testing.assert_allclose(image.affine, seg.affine, atol=1e-3)
    assert nib.aff2axcodes(image.affine) == ("L", "A", "S")  # rows reversed, as dcm2niix
    np.testing.assert_allclose(image.header.get_zooms(), (0.9765625, 0.9765625, 2.0), atol=1e-6)

    hu = np.asarray(image.dataobj)
    labels = np.asarray(seg.dataobj)
    assert hu.dtype == np.float32
    assert hu.min() == -1024.0  # RescaleIntercept -1024 applied: air, not 0
    assert np.median(hu[:32, :32, :]) == -1024.0  # a corner outside the body
    # voxel data in the right order: the labelled organs are tissue, not air
    assert float((hu[labels > 0] < -500).mean()) < 0.05
    assert 40.0 < float(np.median(hu[labels == 5])) < 200.0  # liver

    volume = load_volume(folder)
    assert volume.source == str(folder) and volume.shape == (512, 512, 20)
    assert volume.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))


@pytest.mark.slow
def test_predict_on_a_series_writes_the_mask_on_its_grid(tmp_path: Path) -> None:
    folder, seg_path = shared_dicom_paths()
    card = tiny_card(spacing=(6.0, 6.0, 6.0), tile_step=1.0)  # 9 windows: CPU time is scarce
    out = tmp_path / "mask.nii.gz"
    mask = predict(folder, card, TorchBackend(load_network(card)), output=out)
    seg = nib.load(seg_path)
    saved = nib.load(out)
    assert mask.shape == saved.shape == seg.shape
    np.testing.assert_allclose(saved.affine, seg.affine, atol=1e-3)
    assert saved.get_data_dtype() == np.uint8
    with pytest.raises(InputError, match=r"\.nii or \.nii\.gz"):
        predict(folder, card, TorchBackend(load_network(card)), output=tmp_path / "mask.dcm")


def test_damaged_compressed_slice_is_a_clear_error(tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate, generate_frames

    source, _ = shared_dicom_paths()
    folder = tmp_path / "damaged"
    folder.mkdir()
    for k, path in enumerate(sorted(source.iterdir())):
        ds = pydicom.dcmread(path)
        if k == 3:  # a JPEG 2000 stream cut short, as by an interrupted transfer
            frame = next(generate_frames(ds.PixelData, number_of_frames=1))
            ds.PixelData = encapsulate([frame[:200]])
        ds.save_as(folder / path.name)
    _refused(folder, "could not be decoded", "JPEG 2000", "gdcmconv --raw")


# ---- geometry of synthetic series ----------------------------------------------------------

ORIENTATIONS = {
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    "sagittal": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
    "oblique": (0.8, 0.6, 0.0, 0.0, 0.0, -1.0),
}


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_voxel_world_positions_follow_dicom(tmp_path: Path, name: str) -> None:
    """A bright voxel at (slice k, row r, column c) lies where DICOM puts it:
    IPP_k + c * column_spacing * row_direction + r * row_spacing * column_direction (LPS)."""
    stored = np.full((5, 9, 11), 24, dtype=np.uint16)
    k, r, c = 3, 2, 7
    stored[k, r, c] = 3000
    iop = ORIENTATIONS[name]
    origin = np.array([-12.0, 30.0, 105.0])
    write_dicom_series(
        tmp_path / name, stored, orientation=iop, origin=origin, step=2.5, pixel_spacing=(0.8, 0.7)
    )
    image = read_dicom_series(tmp_path / name)
    data = np.asarray(image.dataobj)
    assert data.shape == (11, 9, 5)
    ijk = np.argwhere(data == data.max())
    assert len(ijk) == 1
    world_ras = image.affine @ np.append(ijk[0], 1.0)

    row_dir, col_dir = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row_dir, col_dir)
    lps = origin + k * 2.5 * normal + c * 0.7 * row_dir + r * 0.8 * col_dir
    np.testing.assert_allclose(world_ras[:3], lps * [-1.0, -1.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(image.header.get_zooms(), (0.7, 0.8, 2.5), atol=1e-5)


def test_files_in_any_order_and_slices_in_reverse(tmp_path: Path) -> None:
    """Slices are sorted by position, not by file name or InstanceNumber."""
    stored = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5) + 100
    forward = write_dicom_series(tmp_path / "forward", stored)
    positions = [np.array([-10.0, -20.0, -30.0 + 2.0 * k]) for k in range(4)]
    write_dicom_series(tmp_path / "reverse", stored[::-1], positions=positions[::-1])
    a, b = read_dicom_series(tmp_path / "forward"), read_dicom_series(tmp_path / "reverse")
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    assert len(forward) == 4


def test_rescale_slope_and_intercept_are_applied(tmp_path: Path) -> None:
    stored = np.full((3, 4, 5), 10, dtype=np.uint16)
    stored[1] = 700
    write_dicom_series(tmp_path / "s", stored, slope=2.0, intercept=-1000.0)
    data = np.asarray(read_dicom_series(tmp_path / "s").dataobj)
    assert set(np.unique(data).tolist()) == {-980.0, 400.0}


def test_dicom_files_are_recognised_by_their_preamble(tmp_path: Path) -> None:
    paths = write_dicom_series(tmp_path / "s")
    (tmp_path / "s" / "notes.txt").write_text("not a slice")
    assert looks_like_dicom(paths[0]) and not looks_like_dicom(tmp_path / "s" / "notes.txt")
    assert is_dicom_folder(tmp_path / "s") and not is_dicom_folder(tmp_path)
    assert read_dicom_series(tmp_path / "s").shape == (16, 12, 6)  # the text file is ignored


# ---- refusals -------------------------------------------------------------------------------


def test_two_series_in_one_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_dicom_series(folder)
    for path in write_dicom_series(tmp_path / "other", series_uid="1.2.3.4"):
        shutil.move(path, folder / f"b_{path.name}")
    _refused(folder, "mixes 2 DICOM series", "1.2.3.4: 6 files", "a folder of its own")


def test_missing_slices(tmp_path: Path) -> None:
    folder = tmp_path / "gap"
    paths = write_dicom_series(folder)
    paths[3].unlink()
    _refused(folder, "slice spacing is uneven", "gaps of 2, 4 mm", "slices are missing")


def test_mr_series(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "mr", modality="MR")
    _refused(tmp_path / "mr", "modality MR (6 files), not CT")


def test_compressed_without_a_decoder(tmp_path: Path) -> None:
    """Labelled MPEG-4 video, a transfer syntax GDCM cannot decode."""
    from pydicom.encaps import encapsulate

    folder = tmp_path / "video"
    for path in write_dicom_series(folder):
        ds = pydicom.dcmread(path)
        ds.PixelData = encapsulate([ds.PixelData])
        ds.file_meta.TransferSyntaxUID = MPEG4_AVC
        ds.save_as(path)
    _refused(folder, "could not be decoded", "MPEG-4 AVC/H.264", "re-export it")


@pytest.mark.parametrize("content", ["nothing", "text", "subfolder"])
def test_folder_without_dicom_files(tmp_path: Path, content: str) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    if content == "text":
        (folder / "README.txt").write_text("the slices are on the PACS")
        write_nifti(folder / "ct.nii.gz", shape=(6, 5, 4))
    elif content == "subfolder":
        write_dicom_series(folder / "SE1")
    err = _refused(folder, "holds no DICOM image files")
    if content == "subfolder":
        assert "subfolders are not searched" in str(err)


def test_other_geometry_mixed_in(tmp_path: Path) -> None:
    folder = tmp_path / "localizer"
    write_dicom_series(folder)
    stray = write_dicom_series(tmp_path / "x", orientation=ORIENTATIONS["coronal"])[0]
    shutil.move(stray, folder / "zz_localizer.dcm")
    _refused(folder, "zz_localizer.dcm differs", "orientation")


def test_duplicate_positions(tmp_path: Path) -> None:
    folder = tmp_path / "dup"
    paths = write_dicom_series(folder)
    shutil.copy(paths[2], folder / "copy_of_2.dcm")
    _refused(folder, "share a position", "copy_of_2.dcm")


def test_gantry_tilt(tmp_path: Path) -> None:
    positions = [(-10.0, -20.0 + 0.5 * k, -30.0 + 2.0 * k) for k in range(6)]
    write_dicom_series(tmp_path / "tilt", positions=positions)
    _refused(tmp_path / "tilt", "gantry tilt of about 14.0 degrees")


def test_single_slice_and_geometry_tags(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "one", np.full((1, 4, 4), 24, np.uint16))
    _refused(tmp_path / "one", "one DICOM slice", "at least two")
    paths = write_dicom_series(tmp_path / "noipp")
    ds = pydicom.dcmread(paths[1])
    del ds.ImagePositionPatient
    ds.save_as(paths[1])
    _refused(tmp_path / "noipp", f"{paths[1].name} has no usable ImagePositionPatient")


def test_voxel_limit_checked_before_decoding(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "s")
    with pytest.raises(InputError, match="over the limit of 100"):
        load_volume(tmp_path / "s", max_voxels=100)


def test_missing_extra_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dicom_series(tmp_path / "s")
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # import fails as when not installed
    _refused(tmp_path / "s", "pip install segbench[dicom]")


# ---- cases and ground truth -----------------------------------------------------------------


def test_folder_cases_take_series_and_pair_ground_truths(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "series_a")
    write_nifti(tmp_path / "series_a_seg.nii.gz", shape=(6, 5, 4))
    write_nifti(tmp_path / "scan.nii.gz", shape=(6, 5, 4))
    write_nifti(tmp_path / "scan_seg.nii", shape=(6, 5, 4))
    write_nifti(tmp_path / "lonely_seg.nii.gz", shape=(6, 5, 4))  # no case 'lonely': left out
    (tmp_path / "reports").mkdir()  # no DICOM in it: not a case
    (tmp_path / "reports" / "r.txt").write_text("x")
    cases = {c.id: c for c in folder_cases(tmp_path)}
    assert list(cases) == ["scan.nii.gz", "series_a"]
    assert cases["series_a"].path == tmp_path / "series_a"
    assert cases["series_a"].truth == tmp_path / "series_a_seg.nii.gz"
    assert cases["scan.nii.gz"].truth == tmp_path / "scan_seg.nii"
    assert cases["series_a"].files(tmp_path) == (tmp_path / "series_a", cases["series_a"].truth)


def _runtime(num_classes: int = 3) -> Runtime:
    return Runtime(tiny_card(num_classes), {}, {}, None, "export", None)


def test_truth_on_another_grid_is_refused(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "s")
    truth = write_nifti(
        tmp_path / "s_seg.nii.gz", np.zeros((16, 12, 5), np.uint8), np.diag([-0.7, 0.8, 2.0, 1.0])
    )
    from segbench.settings.config import load_config

    config = load_config(None)
    with pytest.raises(InputError, match="is not on the grid of its case") as info:
        PairedRun.load("s", tmp_path / "s", truth, _runtime(), config, config.gates)
    assert str(truth) in str(info.value) and "(16, 12, 5) vs (16, 12, 6)" in str(info.value)


def test_truth_in_another_voxel_order_of_the_same_grid_is_accepted(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "s")
    volume = load_volume(tmp_path / "s")
    labels = np.zeros(volume.shape, np.uint8)
    labels[volume.array > 0] = 1
    # stored RAS (the series is stored LAS): same grid, other voxel order
    truth = load_volume(write_nifti(tmp_path / "t.nii.gz", labels, volume.affine), expect_ct=False)
    check_same_grid(truth, volume)
    np.testing.assert_array_equal(truth.array, labels)


def test_truth_label_names_decide_dice_vs_truth() -> None:
    truth = np.array([0, 1, 2, 2])
    model = ("background", "spleen", "liver")
    assert truth_label_check(truth, None, model) == "unnamed"
    assert truth_label_check(truth, {1: "spleen", 2: "liver", 3: "lung"}, model) == "match"
    differ = truth_label_check(truth, {1: "spleen", 2: "kidney_right"}, model)
    assert differ.startswith("differ") and "2 is 'kidney_right' in the truth" in differ


def test_totalsegmentator_label_table_is_read() -> None:
    _, seg_path = shared_dicom_paths()
    names = label_names(nib.load(seg_path))
    assert names is not None and len(names) == 117
    assert names[1] == "spleen" and names[5] == "liver" and names[117] == "costal_cartilages"
    assert label_names(nib.Nifti1Image(synthetic_ct((4, 4, 4)), np.eye(4))) is None


# ---- the main job -----------------------------------------------------------------------------


@pytest.mark.slow
def test_series_runs_as_a_case_of_the_suite(tmp_path: Path) -> None:
    """``pytest --benchmark-only --segbench-data DIR`` with the shared series (and its
    segmentation) linked into DIR: both backends run on it, its truth's grid is checked, and
    Dice against that truth is left out (TotalSegmentator labels, not the demo model's)."""
    import json

    folder, seg_path = shared_dicom_paths()
    data = tmp_path / "hospital"
    data.mkdir()
    (data / folder.name).symlink_to(folder, target_is_directory=True)
    (data / seg_path.name).symlink_to(seg_path)
    report = tmp_path / "run.json"
    out = run_suite(
        data,
        tmp_path,
        "--segbench-rounds=1",
        "--segbench-warmup=0",
        "--segbench-suite=none",
        "--segbench-speedup-min=0",
        f"--benchmark-json={report}",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 passed" in out.stdout
    table = out.stdout.split("segbench: demo model")[1]
    assert "example_ct_dicom " in table and "512x512x20" in table and "ok" in table
    runs = {b["name"]: b["extra_info"] for b in json.loads(report.read_text())["benchmarks"]}
    info = runs["candidate[example_ct_dicom]"]
    assert info["shape"] == [512, 512, 20] and info["mean_dice"] >= 0.99
    assert info["ground_truth"]["grid"] == "matches"
    assert info["ground_truth"]["labels"].startswith("differ: label 5 is 'liver' in the truth")
    assert "dice_vs_ground_truth" not in info
