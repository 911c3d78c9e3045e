"""segbench.pipeline.preprocess: target grid shape, float32 resampling, CT normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import synthetic_ct
from scipy import ndimage

from segbench.models.normalization import CTNormalization
from segbench.pipeline.preprocess import resample, resampled_shape


def test_resampled_shape_rounds_to_nearest() -> None:
    # 100*1.5/3 = 50, 50*0.8/3 = 13.33 -> 13 (not ceil), 7*5/3 = 11.67 -> 12 (not floor)
    assert resampled_shape((100, 50, 7), (1.5, 0.8, 5.0), (3.0, 3.0, 3.0)) == (50, 13, 12)
    # 40*2.5/3 = 33.33, 36*2.5/3 = 30, 20*2.5/3 = 16.67
    assert resampled_shape((40, 36, 20), (2.5, 2.5, 2.5), (3.0, 3.0, 3.0)) == (33, 30, 17)


def test_resampled_shape_is_at_least_one() -> None:
    assert resampled_shape((1, 2, 3), (1.0, 1.0, 1.0), (10.0, 10.0, 10.0)) == (1, 1, 1)


def test_resampled_shape_returns_python_ints() -> None:
    shape = resampled_shape((10, 10, 10), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0))
    assert shape == (5, 5, 5)
    assert all(type(n) is int for n in shape)


def test_resampled_shape_needs_three_of_each() -> None:
    with pytest.raises(ValueError):
        resampled_shape((10, 10, 10), (1.0, 1.0), (1.0, 1.0, 1.0))


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_resample_gives_float32(order: int, dtype: type) -> None:
    data = synthetic_ct((20, 18, 10)).astype(dtype)
    out = resample(data, (25, 12, 15), order=order)
    assert out.shape == (25, 12, 15)
    assert out.dtype == np.float32


def test_resample_order1_matches_scipy() -> None:
    data = synthetic_ct((20, 18, 10)) / 1000.0
    out = resample(data, (25, 12, 15), order=1)
    ref = ndimage.zoom(data.astype(np.float64), (25 / 20, 12 / 18, 15 / 10), order=1, mode="mirror")
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_resample_order3_matches_scipy_zoom() -> None:
    # values O(1) (normalised CT): the float32 prefilter must agree with scipy's float64 one
    data = synthetic_ct((30, 28, 20)) / 300.0
    new_shape = (45, 20, 33)
    out = resample(data, new_shape, order=3)
    ref = ndimage.zoom(
        data, [n / s for n, s in zip(new_shape, data.shape, strict=True)], order=3, mode="mirror"
    )
    assert out.dtype == np.float32
    assert out.shape == ref.shape == new_shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)


def test_resample_order0_keeps_labels() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 2, 5], dtype=np.uint8), size=(12, 10, 8))
    out = resample(labels, (17, 7, 13), order=0)
    assert out.dtype == np.uint8
    assert out.shape == (17, 7, 13)
    assert set(np.unique(out).tolist()) <= {0, 2, 5}
    # nearest neighbour on a corner-aligned grid keeps the corners
    for corner in [(0, 0, 0), (-1, -1, -1), (0, -1, 0), (-1, 0, -1)]:
        assert out[corner] == labels[corner]


def test_resample_order0_upsampling_by_two_repeats_voxels() -> None:
    labels = np.arange(8, dtype=np.uint16).reshape(2, 2, 2)
    out = resample(labels, (2, 2, 4), order=0)
    assert out.dtype == np.uint16
    assert set(np.unique(out).tolist()) == set(range(8))


def test_nearest_matches_scipy_zoom_order0_voxel_for_voxel() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        shape_in = tuple(int(n) for n in rng.integers(1, 40, 3))
        shape_out = tuple(int(n) for n in rng.integers(1, 120, 3))
        labels = rng.integers(0, 118, shape_in).astype(np.uint8)
        factors = [o / i for o, i in zip(shape_out, shape_in, strict=True)]
        ref = ndimage.zoom(labels, factors, order=0, output=np.uint8, mode="nearest")
        out = resample(labels, shape_out, order=0)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, ref, err_msg=f"{shape_in} -> {shape_out}")


@pytest.mark.parametrize("order", [0, 1, 3])
def test_resample_identity_shape_returns_same_object(order: int) -> None:
    data = synthetic_ct((6, 5, 4))
    assert resample(data, (6, 5, 4), order=order) is data


@pytest.mark.parametrize("order", [-1, 6, 1.5])
def test_resample_rejects_bad_order(order) -> None:
    with pytest.raises(ValueError, match="order"):
        resample(synthetic_ct((6, 5, 4)), (3, 3, 3), order=order)


def test_ct_normalization_clips_and_standardises() -> None:
    norm = CTNormalization(lower=-1000.0, upper=1000.0, mean=50.0, std=200.0)
    data = np.array([-3000.0, -1000.0, 50.0, 250.0, 1000.0, 2500.0], dtype=np.float32)
    out = norm.apply(data)
    assert out is data  # in place
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-5.25, -5.25, 0.0, 1.0, 4.75, 4.75], rtol=1e-6)


def test_ct_normalization_on_volume_range() -> None:
    norm = CTNormalization(-1000.0, 1000.0, 0.0, 300.0)
    out = norm.apply(synthetic_ct((10, 10, 10)) * 3.0)
    assert out.min() >= -1000.0 / 300.0 - 1e-6
    assert out.max() <= 1000.0 / 300.0 + 1e-6


@pytest.mark.parametrize(
    "args",
    [
        (1000.0, -1000.0, 0.0, 1.0),
        (0.0, 0.0, 0.0, 1.0),
        (-1000.0, 1000.0, 0.0, 0.0),
        (-1000.0, 1000.0, 0.0, -5.0),
    ],
)
def test_ct_normalization_rejects_bad_constants(args) -> None:
    with pytest.raises(ValueError, match="normalisation"):
        CTNormalization(*args)


@pytest.mark.parametrize(
    "args", [(-1000.0, 1000.0, 0.0, float("nan")), (-1000.0, 1000.0, float("nan"), 300.0)]
)
def test_ct_normalization_rejects_nan(args) -> None:
    with pytest.raises(ValueError):
        CTNormalization(*args)
