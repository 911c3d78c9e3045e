"""segbench.pipeline.inference: nnU-Net window placement, Gaussian weighting, padding, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import build_tiny_net

from segbench.pipeline.backends import TorchBackend
from segbench.pipeline.inference import (
    compute_gaussian,
    compute_steps,
    fit_patch,
    pad_to_patch,
    sliding_window,
)

# ---- compute_steps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "patch", "step", "expected"),
    [
        # nnU-Net: n = ceil((size - patch) / (patch * step)) + 1 windows,
        # starting at round(i * (size - patch) / (n - 1))
        (64, 64, 0.5, [0]),
        (100, 64, 0.5, [0, 18, 36]),  # ceil(36 / 32) + 1 = 3 windows
        (96, 64, 0.5, [0, 32]),  # exactly one step
        (200, 64, 0.8, [0, 45, 91, 136]),  # 136 / 51.2 -> 4 windows, 45.33 apart
        (200, 64, 1.0, [0, 45, 91, 136]),
        (65, 64, 0.5, [0, 1]),
        (128, 64, 1.0, [0, 64]),
    ],
)
def test_compute_steps_matches_nnunet(size: int, patch: int, step: float, expected) -> None:
    assert compute_steps((size, 64, 64), (patch, 64, 64), step) == [expected, [0], [0]]


def test_compute_steps_per_axis() -> None:
    assert compute_steps((100, 64, 200), (64, 64, 64), 0.5) == [
        [0, 18, 36],
        [0],
        [0, 27, 54, 82, 109, 136],
    ]


@pytest.mark.parametrize("step", [0.0, -0.5, 1.5])
def test_compute_steps_rejects_bad_step(step: float) -> None:
    with pytest.raises(ValueError, match="step_size"):
        compute_steps((100, 100, 100), (64, 64, 64), step)


def test_compute_steps_rejects_image_smaller_than_patch() -> None:
    with pytest.raises(ValueError, match="smaller than patch"):
        compute_steps((100, 50, 100), (64, 64, 64), 0.5)


# ---- compute_gaussian -------------------------------------------------------------------------


@pytest.mark.parametrize("patch", [(32, 32, 32), (17, 24, 9)])
def test_compute_gaussian_properties(patch) -> None:
    g = compute_gaussian(patch)
    assert g.shape == patch
    assert g.dtype == np.float32
    assert float(g.max()) == pytest.approx(10.0, rel=1e-6)
    assert float(g.min()) > 0.0
    centre = tuple(p // 2 for p in patch)
    assert np.unravel_index(int(np.argmax(g)), patch) == centre
    assert g[centre] == g.max()
    # symmetric about the centre voxel p // 2 (for even p index 0 has no mirror partner)
    for axis, p in enumerate(patch):
        part = np.take(g, range(p % 2 == 0, p), axis=axis)
        np.testing.assert_allclose(part, np.flip(part, axis=axis), rtol=1e-5)
    # decreasing away from the centre along each axis
    line = g[:, centre[1], centre[2]]
    assert np.all(np.diff(line[: centre[0] + 1]) > 0)
    assert np.all(np.diff(line[centre[0] :]) < 0)


def test_compute_gaussian_sigma_is_an_eighth_of_the_patch() -> None:
    g = compute_gaussian((1, 1, 65)).astype(np.float64)[0, 0]
    d = np.arange(65) - 32
    expected = 10.0 * np.exp(-(d**2) / (2 * (65 / 8) ** 2))
    np.testing.assert_allclose(g, expected, rtol=2e-2)


def test_compute_gaussian_is_read_only() -> None:
    g = compute_gaussian((16, 16, 16))
    assert not g.flags.writeable
    with pytest.raises(ValueError):
        g[0, 0, 0] = 1.0
    # the cached map handed out next time is untouched
    assert float(compute_gaussian((16, 16, 16)).max()) == pytest.approx(10.0, rel=1e-6)


# ---- sliding_window ---------------------------------------------------------------------------


def _scaled_copies(k: int):
    """A predictor whose class c output is (c + 1) * input: sliding windows must reproduce it."""
    scale = np.arange(1, k + 1, dtype=np.float32)[None, :, None, None, None]

    def predictor(batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32
        return np.repeat(batch, k, axis=1) * scale

    return predictor


@pytest.mark.parametrize("use_gaussian", [True, False])
@pytest.mark.parametrize("step", [0.5, 0.8, 1.0])
def test_sliding_window_identity_predictor_reproduces_input(use_gaussian: bool, step: float):
    image = np.random.default_rng(0).standard_normal((1, 50, 41, 37)).astype(np.float32)
    calls = []
    inner = _scaled_copies(3)

    def predictor(batch):
        calls.append(batch.shape)
        return inner(batch)

    out = sliding_window(
        image, predictor, (16, 16, 16), 3, step_size=step, use_gaussian=use_gaussian
    )
    assert out.shape == (3, 50, 41, 37)
    assert out.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(out[c], (c + 1) * image[0], rtol=1e-5, atol=1e-6)
    steps = compute_steps((50, 41, 37), (16, 16, 16), step)
    assert len(calls) == len(steps[0]) * len(steps[1]) * len(steps[2])
    assert all(shape == (1, 1, 16, 16, 16) for shape in calls)


def test_sliding_window_equals_single_forward_pass() -> None:
    net = build_tiny_net()
    image = np.random.default_rng(1).standard_normal((1, 32, 32, 32)).astype(np.float32)
    out = sliding_window(image, TorchBackend(net), (32, 32, 32), 3)
    with torch.inference_mode():
        ref = net(torch.from_numpy(image[None])).numpy()[0]
    assert out.shape == ref.shape == (3, 32, 32, 32)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_sliding_window_pads_small_volume_and_crops_back() -> None:
    image = np.random.default_rng(2).standard_normal((1, 20, 33, 9)).astype(np.float32)
    seen = []
    inner = _scaled_copies(2)

    def predictor(batch):
        seen.append(batch.shape)
        return inner(batch)

    out = sliding_window(image, predictor, (32, 32, 32), 2)
    assert out.shape == (2, 20, 33, 9)
    assert all(shape[2:] == (32, 32, 32) for shape in seen)
    np.testing.assert_allclose(out[0], image[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], 2 * image[0], rtol=1e-5, atol=1e-6)


def test_pad_to_patch_is_symmetric_with_zeros() -> None:
    image = np.ones((1, 5, 40, 8), dtype=np.float32)
    padded, crop = pad_to_patch(image, (8, 32, 11))
    assert padded.shape == (1, 8, 40, 11)
    assert padded[0, :1].sum() == 0 and padded[0, -2:].sum() == 0  # 3 -> 1 before, 2 after
    assert padded[0, :, :, :1].sum() == 0 and padded[0, :, :, -2:].sum() == 0
    np.testing.assert_array_equal(padded[crop], image)
    same, crop2 = pad_to_patch(image, (5, 40, 8))
    assert same is image
    np.testing.assert_array_equal(same[crop2], image)


def test_sliding_window_rejects_wrong_predictor_shape() -> None:
    image = np.zeros((1, 32, 32, 32), dtype=np.float32)

    def too_few_classes(batch):
        return np.zeros((batch.shape[0], 2, *batch.shape[2:]), dtype=np.float32)

    def half_size(batch):
        return np.zeros((batch.shape[0], 3, 16, 16, 16), dtype=np.float32)

    for predictor in (too_few_classes, half_size):
        with pytest.raises(ValueError, match="predictor returned shape"):
            sliding_window(image, predictor, (32, 32, 32), 3)


def test_sliding_window_rejects_non_4d_image() -> None:
    with pytest.raises(ValueError, match="C, X, Y, Z"):
        sliding_window(np.zeros((32, 32, 32), np.float32), _scaled_copies(1), (32, 32, 32), 1)


def test_batch_size_does_not_change_the_result() -> None:
    image = np.random.default_rng(3).standard_normal((1, 45, 38, 30)).astype(np.float32)
    batch_sizes = []

    def windowed(batch):
        # depends on the whole window, so a window mixed up with another would show
        batch_sizes.append(batch.shape[0])
        mean = batch.mean(axis=(1, 2, 3, 4), keepdims=True)
        return np.concatenate([batch * mean, np.tanh(batch) - mean], axis=1)

    one = sliding_window(image, windowed, (16, 16, 16), 2, batch_size=1)
    assert set(batch_sizes) == {1}
    batch_sizes.clear()
    three = sliding_window(image, windowed, (16, 16, 16), 2, batch_size=3)
    assert max(batch_sizes) == 3 and all(1 <= b <= 3 for b in batch_sizes)
    steps = compute_steps((45, 38, 30), (16, 16, 16), 0.5)
    assert sum(batch_sizes) == len(steps[0]) * len(steps[1]) * len(steps[2])
    np.testing.assert_allclose(three, one, rtol=1e-6, atol=1e-7)


def test_fit_patch_shrinks_only_axes_smaller_than_the_patch() -> None:
    # example_ct_sm at 3 mm (122 x 101 x 30) under ts-fast's 128 x 112 x 112 patch, stride 16/16/32
    assert fit_patch((122, 101, 30), (128, 112, 112), (16, 16, 32)) == (128, 112, 32)
    assert fit_patch((300, 300, 300), (64, 64, 64), (8, 8, 8)) == (64, 64, 64)
    assert fit_patch((64, 65, 1), (64, 80, 64), (8, 8, 8)) == (64, 72, 8)


def test_fitted_window_matches_padding_where_the_network_sees_no_border() -> None:
    """A predictor that ignores context (per-voxel) gives the same logits either way, and the
    fitted window is called with the smaller shape."""
    image = np.random.default_rng(0).standard_normal((1, 20, 30, 9)).astype(np.float32)
    shapes: list[tuple[int, ...]] = []

    def per_voxel(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return np.concatenate([batch, -batch], axis=1)

    padded = sliding_window(image, per_voxel, (32, 32, 32), 2, step_size=0.5)
    fitted = sliding_window(
        image, per_voxel, fit_patch(image.shape[1:], (32, 32, 32), (8, 8, 8)), 2, step_size=0.5
    )
    np.testing.assert_allclose(fitted, padded, rtol=1e-6, atol=1e-6)
    assert shapes == [(1, 1, 32, 32, 32), (1, 1, 24, 32, 16)]
