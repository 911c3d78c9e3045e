"""Progress hooks: per-window callbacks of the sliding window and the pipeline, and the
announcements of an ONNX export and of a phantom's generation (callback and logging)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import build_tiny_net, tiny_card, write_nifti

from segbench.inputs.cases import Case
from segbench.inputs.phantoms import GridSpec, PhantomSpec, ensure_phantom
from segbench.inputs.volumes import load_volume
from segbench.pipeline.export import export_onnx
from segbench.pipeline.inference import count_windows, sliding_window
from segbench.pipeline.predict import predict_volume
from segbench.settings.pipeline import PipelineSettings

TINY = GridSpec("progress3mm", (20, 18, 16), (3.0, 3.0, 3.0), "RAS")


def _zeros(k: int):  # a predictor of k classes
    return lambda batch: np.zeros((batch.shape[0], k, *batch.shape[2:]), np.float32)


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_sliding_window_reports_every_window(batch_size: int) -> None:
    image = np.zeros((1, 40, 30, 20), np.float32)
    calls: list[tuple[int, int]] = []
    sliding_window(
        image,
        _zeros(2),
        (16, 16, 16),
        2,
        step_size=0.5,
        batch_size=batch_size,
        progress=lambda d, t: calls.append((d, t)),
    )
    total = count_windows(image.shape[1:], (16, 16, 16), 0.5)
    assert total > 4
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    done = [d for d, _ in calls]
    assert done == sorted(done) and all(t == total for _, t in calls)
    assert len(calls) == 1 + -(-total // batch_size)


def test_sliding_window_without_progress_is_unchanged() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 20, 20, 20)).astype(np.float32)

    def predictor(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([batch, -batch], axis=1)

    plain = sliding_window(image, predictor, (16, 16, 16), 2)
    hooked = sliding_window(image, predictor, (16, 16, 16), 2, progress=lambda d, t: None)
    assert np.array_equal(plain, hooked)


def test_predict_volume_passes_progress_through(tmp_path: Path) -> None:
    card = tiny_card()
    from segbench.pipeline.backends import TorchBackend

    volume = load_volume(write_nifti(tmp_path / "a.nii.gz", shape=(24, 22, 20)))
    calls: list[tuple[int, int]] = []
    pred = predict_volume(
        volume,
        card,
        TorchBackend(build_tiny_net().eval()),
        PipelineSettings(),
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (pred.windows, pred.windows) and calls[0] == (0, pred.windows)


def test_phantom_generation_is_announced_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    said: list[str] = []
    spec = PhantomSpec(TINY, 3)
    with caplog.at_level(logging.INFO, logger="segbench.inputs.phantoms"):
        ensure_phantom(spec, tmp_path, said.append)
        ensure_phantom(spec, tmp_path, said.append)  # cached: silent
    assert said == [f"generating phantom {spec.case_id} into {tmp_path / 'phantoms'}..."]
    assert [r.getMessage() for r in caplog.records] == said
    # a phantom case passes the callback on
    more: list[str] = []
    Case(id="p", phantom=PhantomSpec(TINY, 4)).files(tmp_path, more.append)
    assert len(more) == 1 and "generating phantom" in more[0]


def test_onnx_export_is_announced_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    card = tiny_card()
    net = build_tiny_net()
    said: list[str] = []
    with caplog.at_level(logging.INFO, logger="segbench.pipeline.export"):
        first = export_onnx(net, card, tmp_path, announce=said.append)
        second = export_onnx(net, card, tmp_path, announce=said.append)
    assert not first.cached and second.cached
    assert len(said) == 1 and said[0].startswith("exporting tiny to ONNX")
    assert [r.getMessage() for r in caplog.records] == said
