"""Agreement in millimetres (segbench.scoring.surface) against closed-form cases and an
independent brute-force computation (surfaces from explicit neighbour checks, distances from
every pair of surface voxels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from segbench.scoring.surface import (
    APPEARED,
    PRESENT,
    VANISHED,
    agreement,
    class_agreement,
    surface,
    surface_distances,
)


def cube(shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[lo:hi, lo:hi, lo:hi] = True
    return mask


def sphere(shape: tuple[int, int, int], radius: float, centre: float | None = None) -> np.ndarray:
    grid = np.indices(shape)
    c = (shape[0] - 1) / 2 if centre is None else centre
    return ((grid - c) ** 2).sum(axis=0) <= radius**2


def brute_surface(mask: np.ndarray) -> np.ndarray:
    """Voxels with a face neighbour outside the mask (the array's edge outside)."""
    padded = np.pad(mask, 1)
    inner = np.ones_like(mask)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return mask & ~inner


def brute(ref: np.ndarray, cand: np.ndarray, spacing: tuple[float, ...], tol: float):
    a_pts = np.argwhere(brute_surface(ref)) * np.asarray(spacing)
    b_pts = np.argwhere(brute_surface(cand)) * np.asarray(spacing)
    pair = cdist(a_pts, b_pts)
    there, back = pair.min(axis=1), pair.min(axis=0)
    nsd = ((there <= tol).sum() + (back <= tol).sum()) / (there.size + back.size)
    hd95 = max(np.percentile(there, 95), np.percentile(back, 95))
    return nsd, hd95


def test_surface_is_the_voxels_with_a_background_face_neighbour() -> None:
    mask = sphere((15, 15, 15), 5.5)
    assert np.array_equal(surface(mask), brute_surface(mask))
    edge = cube((6, 6, 6), 0, 6)  # touches every edge of the array: the edge is background
    assert surface(edge).sum() == 6**3 - 4**3


def test_cube_eroded_by_one_voxel_closed_form() -> None:
    # a 10-voxel cube against its 8-voxel core, 1 mm voxels: the outer shell's 488 voxels are
    # 1 mm (384 face voxels), sqrt 2 mm (96 edge voxels) or sqrt 3 mm (8 corners) from the
    # core's surface; the core's 296 surface voxels are all 1 mm from the shell
    ref = cube((20, 20, 20), 5, 15)
    cand = cube((20, 20, 20), 6, 14)
    c = class_agreement(ref, cand, (1.0, 1.0, 1.0), tolerance_mm=1.0)
    assert c.nsd == pytest.approx((384 + 296) / (488 + 296))
    assert c.hd95_mm == pytest.approx(math.sqrt(2))
    at = {t: class_agreement(ref, cand, (1.0, 1.0, 1.0), tolerance_mm=t).nsd for t in (1.5, 1.8)}
    assert at[1.5] == pytest.approx((784 - 8) / 784) and at[1.8] == 1.0  # corners: sqrt 3 mm
    assert class_agreement(ref, cand, (1.0, 1.0, 1.0), tolerance_mm=0.5).nsd == 0.0
    assert c.reference_ml == pytest.approx(1.0) and c.candidate_ml == pytest.approx(0.512)
    assert c.volume_diff_ml == pytest.approx(-0.488)
    assert c.volume_diff_pct == pytest.approx(-48.8)
    assert c.presence == PRESENT and c.components_change == 0


def test_sphere_shifted_by_one_voxel_is_within_one_voxel() -> None:
    ref = sphere((30, 30, 30), 8.0)
    cand = np.roll(ref, 1, axis=0)
    c = class_agreement(ref, cand, (1.0, 1.0, 1.0), tolerance_mm=1.0)
    assert c.nsd == 1.0 and c.hd95_mm == pytest.approx(1.0)
    assert c.volume_diff_pct == 0.0
    tight = class_agreement(ref, cand, (1.0, 1.0, 1.0), tolerance_mm=0.5)
    assert tight.nsd == pytest.approx(brute(ref, cand, (1.0, 1.0, 1.0), 0.5)[0])
    assert 0.0 < tight.nsd < 1.0


@pytest.mark.parametrize("axis", [0, 2])
def test_anisotropic_spacing_shift_is_in_millimetres(axis: int) -> None:
    spacing = (1.0, 1.0, 3.0)
    ref = sphere((30, 30, 30), 8.0)
    cand = np.roll(ref, 1, axis=axis)
    c = class_agreement(ref, cand, spacing, tolerance_mm=1.0)
    nsd, hd95 = brute(ref, cand, spacing, 1.0)
    assert c.nsd == pytest.approx(nsd) and c.hd95_mm == pytest.approx(hd95)
    if axis == 0:  # 1 mm along x: within 1 mm everywhere
        assert c.nsd == 1.0 and c.hd95_mm == pytest.approx(1.0)
    else:  # 3 mm along z: the caps move 3 mm, beyond the tolerance
        assert c.nsd < 0.95 and 1.0 < c.hd95_mm <= 3.0
    assert c.reference_ml == pytest.approx(ref.sum() * 3.0 / 1000.0)


def test_anisotropic_cube_eroded_matches_brute_force() -> None:
    spacing = (0.8, 1.0, 3.0)
    ref = cube((16, 16, 16), 3, 13)
    cand = cube((16, 16, 16), 4, 12)
    c = class_agreement(ref, cand, spacing, tolerance_mm=1.0)
    nsd, hd95 = brute(ref, cand, spacing, 1.0)
    assert c.nsd == pytest.approx(nsd) and c.hd95_mm == pytest.approx(hd95)
    # the shell's 488 voxels sorted by distance: 256 face voxels <= 1 mm, 32 x-y edges, 128
    # z faces at 3 mm, 32 x-z edges at sqrt(0.8^2 + 3^2), then the 95th percentile's 32 y-z
    # edges at sqrt(1^2 + 3^2) mm, 8 corners
    assert c.hd95_mm == pytest.approx(math.sqrt(1.0 + 3.0**2))


def test_distances_equal_scipys_distance_transform() -> None:
    rng = np.random.default_rng(3)
    ref = ndimage.binary_opening(rng.random((24, 20, 16)) > 0.4, iterations=1)
    cand = ndimage.binary_opening(rng.random((24, 20, 16)) > 0.4, iterations=1)
    spacing = (0.7, 1.3, 2.5)
    sr, sc = surface(ref), surface(cand)
    edt = ndimage.distance_transform_edt(~sc, sampling=spacing)[sr]
    assert np.allclose(surface_distances(sr, sc, spacing), edt)


def test_crop_gives_the_figures_of_the_whole_volume() -> None:
    small_ref = sphere((20, 20, 20), 6.0)
    small_cand = np.roll(sphere((20, 20, 20), 5.0), 2, axis=1)
    spacing = (1.2, 0.9, 2.0)
    small = class_agreement(small_ref, small_cand, spacing)
    pad = ((30, 5), (3, 40), (0, 12))
    big = class_agreement(np.pad(small_ref, pad), np.pad(small_cand, pad), spacing)
    assert big == small
    nsd, hd95 = brute(small_ref, small_cand, spacing, 1.0)
    assert small.nsd == pytest.approx(nsd) and small.hd95_mm == pytest.approx(hd95)


def test_empty_masks_rule() -> None:
    empty = np.zeros((8, 8, 8), dtype=bool)
    both = class_agreement(empty, empty, (1.0, 1.0, 1.0))
    assert both.nsd == 1.0 and both.hd95_mm == 0.0 and both.presence == PRESENT
    assert both.volume_diff_pct == 0.0
    full = cube((8, 8, 8), 2, 6)
    gone = class_agreement(full, empty, (1.0, 1.0, 2.0))
    assert gone.nsd == 0.0 and gone.hd95_mm == math.inf and gone.presence == VANISHED
    assert gone.volume_diff_pct == -100.0 and gone.reference_ml == pytest.approx(0.128)
    new = class_agreement(empty, full, (1.0, 1.0, 2.0))
    assert new.presence == APPEARED and new.volume_diff_pct == math.inf and new.nsd == 0.0
    labels = np.zeros((8, 8, 8), dtype=np.uint8)
    assert agreement(labels, labels, (1.0, 1.0, 1.0)).per_class == ()


def test_label_maps_per_class_presence_and_components() -> None:
    ref = np.zeros((30, 30, 30), dtype=np.uint8)
    ref[2:10, 2:10, 2:10] = 1
    ref[15:25, 15:25, 15:25] = 2
    ref[26:28, 26:28, 26:28] = 3  # a small class
    cand = ref.copy()
    cand[cand == 3] = 0  # vanished
    cand[11:13, 2:4, 2:4] = 1  # a second piece of class 1
    cand[0:2, 20:22, 0:2] = 4  # appeared
    found = agreement(ref, cand, (1.5, 1.5, 1.5), {1: 2.0})
    assert [c.label for c in found.per_class] == [1, 2, 3, 4]
    assert found.vanished == [3] and found.appeared == [4]
    one = found.of(1)
    assert one is not None and one.components_change == 1 and one.tolerance_mm == 2.0
    two = found.of(2)
    assert two is not None and two.nsd == 1.0 and two.hd95_mm == 0.0 and two.tolerance_mm == 1.0
    assert found.min_nsd(min_voxels=100) < 1.0  # class 1 changed
    assert found.min_nsd(min_voxels=1000) == 1.0  # only class 2 is that big
    assert found.max_volume_diff_pct() == pytest.approx(100 * 8 / 512)
    assert [c.label for c in agreement(ref, cand, (1, 1, 1), labels=[2, 3]).per_class] == [2, 3]


def test_bad_input_is_refused() -> None:
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="differ in shape"):
        agreement(labels, labels[:3], (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        agreement(labels, labels, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        agreement(labels, labels, (1.0, 0.0, 1.0))


def test_components_are_counted_unless_skipped() -> None:
    labels = np.zeros((12, 12, 12), dtype=np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[7:10, 7:10, 7:10] = 1  # two components
    counted = agreement(labels, labels, (1.0, 1.0, 1.0)).per_class[0]
    skipped = agreement(labels, labels, (1.0, 1.0, 1.0), count_components=False).per_class[0]
    assert counted.reference_components == counted.candidate_components == 2
    assert skipped.reference_components == skipped.candidate_components == 0
    assert skipped.nsd == counted.nsd == 1.0
