"""segbench.scoring.metrics: Dice per class (empty-class rule), flipped fraction, logit diff."""

from __future__ import annotations

import numpy as np
import pytest

from segbench.scoring.metrics import (
    ClassDice,
    DiceResult,
    LogitDiff,
    compute_dice,
    logit_diff,
    slabs,
)


def test_identical_maps() -> None:
    labels = np.zeros((6, 5, 4), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[4:, :, :] = 4
    result = compute_dice(labels, labels.copy())
    assert result.mean == 1.0
    assert [c.label for c in result.per_class] == [1, 4]  # only classes present, no 0, 2, 3
    assert all(c.dice == 1.0 for c in result.per_class)
    assert result.per_class[0].reference_voxels == result.per_class[0].candidate_voxels == 8
    assert result.per_class[1].reference_voxels == 2 * 5 * 4
    assert result.flipped_fraction == 0.0


def test_hand_computed_example() -> None:
    ref = np.array([0, 1, 1, 1, 2, 2, 0, 0], dtype=np.uint8)
    cand = np.array([0, 1, 1, 2, 2, 0, 0, 3], dtype=np.uint8)
    result = compute_dice(ref, cand)
    by_label = {c.label: c for c in result.per_class}
    assert sorted(by_label) == [1, 2, 3]
    assert by_label[1].dice == pytest.approx(2 * 2 / (3 + 2))  # 0.8
    assert by_label[2].dice == pytest.approx(2 * 1 / (2 + 2))  # 0.5
    assert by_label[3].dice == 0.0  # only in the candidate
    assert (by_label[3].reference_voxels, by_label[3].candidate_voxels) == (0, 1)
    assert result.mean == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert result.flipped_fraction == pytest.approx(3 / 8)


def test_class_absent_from_both_is_skipped_not_scored_one() -> None:
    ref = np.array([0, 1, 1, 3, 3, 0], dtype=np.uint8)
    cand = np.array([0, 1, 0, 3, 3, 0], dtype=np.uint8)
    result = compute_dice(ref, cand)
    assert [c.label for c in result.per_class] == [1, 3]
    # mean over classes 1 (2/3) and 3 (1.0) only; a scored empty class 2 would give 0.889
    assert result.mean == pytest.approx((2 / 3 + 1.0) / 2)
    restricted = compute_dice(ref, cand, labels=[2, 7])
    assert restricted.per_class == ()
    assert restricted.mean == 1.0


def test_class_in_one_map_only_scores_zero() -> None:
    ref = np.array([0, 0, 1, 1], dtype=np.uint8)
    cand = np.array([0, 0, 0, 0], dtype=np.uint8)
    for a, b in ((ref, cand), (cand, ref)):
        result = compute_dice(a, b)
        assert [(c.label, c.dice) for c in result.per_class] == [(1, 0.0)]
        assert result.mean == 0.0
        assert result.flipped_fraction == 0.5


def test_labels_argument_restricts_classes() -> None:
    ref = np.array([0, 1, 2, 2, 3], dtype=np.uint8)
    cand = np.array([0, 1, 2, 0, 0], dtype=np.uint8)
    result = compute_dice(ref, cand, labels=[0, 2])
    assert [c.label for c in result.per_class] == [2]
    assert result.mean == pytest.approx(2 / 3)


def test_all_background_maps() -> None:
    zeros = np.zeros((4, 4, 4), dtype=np.uint8)
    result = compute_dice(zeros, zeros.copy())
    assert result.per_class == ()
    assert result.mean == 1.0
    assert result.flipped_fraction == 0.0


def test_flipped_fraction_counts_background_changes() -> None:
    ref = np.zeros((10, 10), dtype=np.uint8)
    cand = ref.copy()
    cand[0, :7] = 2  # 7 background voxels turned foreground
    ref[9, 0] = 1  # 1 foreground voxel turned background
    assert compute_dice(ref, cand).flipped_fraction == pytest.approx(8 / 100)


def test_mixed_integer_dtypes() -> None:
    ref = np.array([[0, 1], [300, 300]], dtype=np.uint16)
    cand = np.array([[0, 1], [300, 0]], dtype=np.int64)
    result = compute_dice(ref, cand)
    assert [(c.label, c.dice) for c in result.per_class] == [(1, 1.0), (300, pytest.approx(2 / 3))]


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        compute_dice(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8))


def test_worst_orders_by_dice_then_size_and_filters_small() -> None:
    result = DiceResult(
        per_class=(
            ClassDice(1, 0.9, 1000, 1000),
            ClassDice(2, 0.5, 10, 4),
            ClassDice(3, 0.5, 300, 200),
            ClassDice(4, 0.2, 5, 9),
            ClassDice(5, 0.95, 50, 60),
        ),
        flipped_fraction=0.0,
    )
    assert [c.label for c in result.worst()] == [4, 3, 2]  # ties: larger class first
    assert [c.label for c in result.worst(n=10)] == [4, 3, 2, 1, 5]
    assert [c.label for c in result.worst(n=2, min_voxels=10)] == [3, 2]  # 4 has 9 voxels
    assert [c.label for c in result.worst(n=3, min_voxels=11)] == [3, 1, 5]
    assert result.worst(min_voxels=5000) == []
    assert ClassDice(7, 0.1, 3, 12).voxels == 12


def test_worst_on_computed_result() -> None:
    ref = np.array([1, 1, 1, 1, 2, 2, 3, 0], dtype=np.uint8)
    cand = np.array([1, 1, 1, 0, 2, 0, 0, 0], dtype=np.uint8)
    worst = compute_dice(ref, cand).worst(n=1)
    assert [c.label for c in worst] == [3]


def test_logit_diff() -> None:
    a = np.zeros((2, 3, 4), dtype=np.float32)
    b = a.copy()
    b[0, 0, 0] = 0.5
    b[1, 2, 3] = -1.5
    diff = logit_diff(a, b)
    assert diff.max_abs == pytest.approx(1.5)
    assert diff.mean_abs == pytest.approx(2.0 / 24)
    same = logit_diff(a, a)
    assert same.max_abs == 0.0 and same.mean_abs == 0.0


def test_logit_diff_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        logit_diff(np.zeros((3, 4)), np.zeros((4, 3)))


def test_logit_diff_in_slabs_matches_the_whole_array(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 13, 7, 6), dtype=np.float32)
    b = a + rng.standard_normal(a.shape, dtype=np.float32) * 1e-3
    b[4, 12, 6, 5] += 2.0  # in the last, partial slab
    whole = np.abs(a.astype(np.float64) - b)
    monkeypatch.setattr("segbench.scoring.metrics.slabs", lambda shape: slabs(shape, elements=840))
    assert len(slabs(a.shape, elements=840)) == 4  # 4 rows of 5 x 7 x 6 each: 0-3, ..., 12
    diff = logit_diff(a, b)
    assert diff.max_abs == pytest.approx(whole.max(), rel=1e-6)
    assert diff.mean_abs == pytest.approx(whole.mean(), rel=1e-5)
    assert logit_diff(np.zeros(0), np.zeros(0)) == LogitDiff(0.0, 0.0)
    assert logit_diff(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == LogitDiff(2.0, 1.0)


def test_slabs_cover_axis_one_once() -> None:
    for shape, elements in (((118, 119, 119, 93), 1 << 22), ((2, 5, 3), 1), ((3, 4), 10**9)):
        rows = [r for s in slabs(shape, elements) for r in range(shape[1])[s]]
        assert rows == list(range(shape[1]))
