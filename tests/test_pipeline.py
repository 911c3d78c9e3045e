"""segbench.pipeline and segbench.models: one volume end to end, model cards, weights, sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import build_tiny_net, tiny_card, write_nifti
from torch import nn

from segbench.errors import ModelError
from segbench.inputs.volumes import Volume, load_volume, to_original_orientation
from segbench.models import get_card, load_network, state_digest, tsfast
from segbench.models.card import sha256_file
from segbench.models.unet import PlainConvUNet, count_flops
from segbench.pipeline.backends import OrtBackend, TorchBackend
from segbench.pipeline.predict import (
    PipelineSettings,
    Prediction,
    StageTimes,
    argmax_labels,
    make_backend,
    predict,
    predict_volume,
)
from segbench.scoring.metrics import compute_dice, logit_diff


@pytest.fixture(scope="module")
def volume_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline")
    return write_nifti(
        folder / "phantom_lps.nii.gz", shape=(40, 36, 20), codes="LPS", zooms=(2.5, 2.5, 2.5)
    )


@pytest.fixture(scope="module")
def volume(volume_path: Path) -> Volume:
    return load_volume(volume_path)


@pytest.fixture(scope="module")
def torch_prediction(volume: Volume) -> Prediction:
    card = tiny_card()
    return predict_volume(volume, card, TorchBackend(load_network(card)), keep_logits=True)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segbench.pipeline.export import export_onnx

    card = tiny_card()
    return export_onnx(load_network(card), card, tmp_path_factory.mktemp("onnx")).path


def test_predict_volume_mask_matches_input_grid(
    volume_path: Path, volume: Volume, torch_prediction: Prediction
) -> None:
    original = nib.load(volume_path)
    mask = torch_prediction.mask
    assert mask.shape == original.shape == (40, 36, 20)
    np.testing.assert_array_equal(mask.affine, original.affine)
    assert mask.get_data_dtype() == np.uint8
    assert torch_prediction.labels.dtype == np.uint8
    assert torch_prediction.labels.shape == volume.shape
    np.testing.assert_array_equal(
        np.asarray(mask.dataobj), to_original_orientation(torch_prediction.labels, volume)
    )
    assert set(np.unique(torch_prediction.labels).tolist()) <= {0, 1, 2}
    # 40 x 36 x 20 at 2.5 mm -> 33 x 30 x 17 at 3 mm (the tiny card's spacing)
    assert torch_prediction.network_shape == (33, 30, 17)
    assert torch_prediction.logits is not None
    assert torch_prediction.logits.shape == (3, 33, 30, 17)
    assert torch_prediction.provider == "cpu"


class _ZeroBackend:
    """A cheap stand-in predictor: constant logits favouring class 1."""

    provider = "zeros"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = np.zeros((batch.shape[0], 3, *batch.shape[2:]), dtype=np.float32)
        out[:, 1] = 1.0
        return out


def test_predict_volume_does_not_modify_the_volume(volume: Volume) -> None:
    before = volume.array.copy()
    card = tiny_card(spacing=(2.5, 2.5, 2.5))  # no resampling: the array itself is normalised
    pred = predict_volume(volume, card, _ZeroBackend())  # type: ignore[arg-type]
    np.testing.assert_array_equal(volume.array, before)
    assert pred.network_shape == (40, 36, 20)
    assert pred.logits is None
    assert pred.provider == "zeros"
    assert np.all(pred.labels == 1)


def test_stage_times(torch_prediction: Prediction) -> None:
    times = torch_prediction.times
    assert isinstance(times, StageTimes)
    for field in dataclasses.fields(StageTimes):
        assert getattr(times, field.name) > 0.0
    assert times.total == pytest.approx(times.preprocess + times.inference + times.postprocess)
    as_dict = times.as_dict()
    assert as_dict["total"] == times.total
    assert set(as_dict) == {"preprocess", "inference", "postprocess", "total"}


def test_torch_and_onnx_agree(
    volume: Volume, torch_prediction: Prediction, onnx_path: Path
) -> None:
    ort = predict_volume(
        volume,
        tiny_card(),
        OrtBackend(onnx_path, providers=["CPUExecutionProvider"]),
        keep_logits=True,
    )
    assert ort.provider == "CPUExecutionProvider"
    assert ort.logits is not None and torch_prediction.logits is not None
    assert logit_diff(torch_prediction.logits, ort.logits).max_abs < 1e-3
    dice = compute_dice(torch_prediction.labels, ort.labels)
    assert dice.per_class  # the random net does predict foreground here
    assert dice.mean >= 0.999
    np.testing.assert_array_equal(ort.mask.affine, torch_prediction.mask.affine)


def test_settings_change_the_run(volume: Volume, torch_prediction: Prediction) -> None:
    card = tiny_card()
    calls = []

    class Counting(TorchBackend):
        def __call__(self, batch: np.ndarray) -> np.ndarray:
            calls.append(batch.shape[0])
            return super().__call__(batch)

    settings = PipelineSettings(resample_order=3, tile_step=1.0, use_gaussian=False, batch_size=4)
    pred = predict_volume(volume, card, Counting(load_network(card)), settings, keep_logits=True)
    assert pred.network_shape == torch_prediction.network_shape
    # tile_step 1.0 on 33 x 30 x 17 (padded to 33 x 32 x 32): 2 x 1 x 1 windows in one batch
    assert calls == [2]
    assert pred.logits is not None and torch_prediction.logits is not None
    assert not np.allclose(pred.logits, torch_prediction.logits)


def test_predict_from_path_with_default_backend(volume_path: Path, tmp_path: Path) -> None:
    mask = predict(volume_path, model=tiny_card(), backend="torch")
    assert mask.shape == (40, 36, 20)
    backend = make_backend(tiny_card(), "onnx", cache_dir=str(tmp_path))
    assert isinstance(backend, OrtBackend)
    assert any(tmp_path.glob("tiny-*.onnx"))


# ---- settings and cards -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"resample_order": 4},
        {"resample_order": -1},
        {"tile_step": 0.0},
        {"tile_step": 1.5},
        {"tile_step": -0.5},
        {"batch_size": 0},
    ],
)
def test_pipeline_settings_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError):
        PipelineSettings(**kwargs)


def test_pipeline_settings_accepts_edges() -> None:
    assert PipelineSettings(resample_order=0, tile_step=1.0, batch_size=1).tile_step == 1.0
    assert PipelineSettings().tile_step is None


def test_card_patch_not_divisible_by_stride() -> None:
    with pytest.raises(ModelError, match="not divisible"):
        tiny_card(patch_size=(32, 30, 32))


def test_card_num_classes() -> None:
    assert tiny_card(num_classes=5).num_classes == 5


def _saved_weights(tmp_path: Path, seed: int = 1) -> tuple[Path, nn.Module]:
    net = build_tiny_net(seed=seed)
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    return path, net


def test_load_network_with_right_checksum(tmp_path: Path) -> None:
    path, trained = _saved_weights(tmp_path, seed=1)
    card = tiny_card(seed=0, weights=path, weights_sha256=sha256_file(path))
    net = load_network(card)
    assert not net.training
    # the file's weights (seed 1) replaced the built ones (seed 0)
    assert state_digest(net) == state_digest(trained)
    assert state_digest(net) != state_digest(build_tiny_net(seed=0))


def test_load_network_with_wrong_checksum(tmp_path: Path) -> None:
    path, _ = _saved_weights(tmp_path)
    wrong = "0" * 64
    with pytest.raises(ModelError) as info:
        load_network(tiny_card(weights=path, weights_sha256=wrong))
    message = str(info.value)
    assert "SHA-256" in message
    assert wrong in message and sha256_file(path) in message
    assert str(path) in message


def test_load_network_with_missing_weights(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "weights.pt"
    with pytest.raises(ModelError) as info:
        load_network(tiny_card(weights=missing, weights_sha256="0" * 64))
    assert str(missing) in str(info.value)
    assert "missing" in str(info.value)


def test_load_network_with_incompatible_weights(tmp_path: Path) -> None:
    path = tmp_path / "five.pt"
    torch.save(build_tiny_net(num_classes=5).state_dict(), path)
    with pytest.raises(ModelError, match="cannot load weights"):
        load_network(tiny_card(num_classes=3, weights=path, weights_sha256=sha256_file(path)))


def test_get_card_unknown_name() -> None:
    with pytest.raises(ModelError, match="unknown model"):
        get_card("no-such-model")


# ---- model sizes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ts_fast_net() -> PlainConvUNet:
    return tsfast.build()


def test_ts_fast_size(ts_fast_net: PlainConvUNet) -> None:
    params = sum(p.numel() for p in ts_fast_net.parameters())
    assert 30.0e6 <= params <= 31.0e6
    assert ts_fast_net.total_stride == (32, 16, 16)
    card = tsfast.card()
    assert card.total_stride == ts_fast_net.total_stride
    assert card.num_classes == 118
    flops = count_flops(ts_fast_net, card.patch_size)
    assert card.patch_size == (128, 112, 112)
    assert 700e9 <= flops <= 760e9


def test_ts_fast_build_is_seeded_and_leaves_rng_alone(ts_fast_net: PlainConvUNet) -> None:
    state = torch.random.get_rng_state()
    again = tsfast.build()
    assert torch.equal(torch.random.get_rng_state(), state)
    first = next(iter(ts_fast_net.parameters()))
    assert torch.equal(next(iter(again.parameters())), first)


def _hooked_flops(net: PlainConvUNet, patch: tuple[int, int, int]) -> int:
    """2 x multiply-adds of every (transposed) convolution, measured on a real forward pass."""
    total = 0

    def hook(module, inputs, output) -> None:
        nonlocal total
        taps = int(np.prod(module.kernel_size))
        if isinstance(module, nn.ConvTranspose3d):
            voxels = int(np.prod(inputs[0].shape[2:]))  # every input voxel hits every tap
        else:
            voxels = int(np.prod(output.shape[2:]))
        total += 2 * module.in_channels * module.out_channels * taps * voxels // module.groups

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)
    ]
    try:
        with torch.inference_mode():
            net(torch.zeros((1, 1, *patch)))
    finally:
        for handle in handles:
            handle.remove()
    return total


def test_count_flops_convolutions_lower_bound() -> None:
    net = build_tiny_net()
    upsampling = sum(  # the transposed convs: kernel == stride 2, inputs 2^3 and 4^3 voxels
        2 * m.in_channels * m.out_channels * int(np.prod(m.kernel_size)) * (8 // s) ** 3
        for m, s in zip(net.upsample, (4, 2), strict=True)
    )
    convs_only = _hooked_flops(net, (8, 8, 8)) - upsampling
    assert count_flops(net, (8, 8, 8)) > convs_only


def test_count_flops_matches_a_measured_forward_pass() -> None:
    net = build_tiny_net()
    assert count_flops(net, (8, 16, 12)) == _hooked_flops(net, (8, 16, 12))


def test_argmax_labels_matches_numpy_ties_included(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    logits = rng.integers(0, 3, (6, 11, 5, 4)).astype(np.float32)  # many ties: first max wins
    monkeypatch.setattr(
        "segbench.pipeline.predict.slabs", lambda shape: [slice(i, i + 3) for i in range(0, 11, 3)]
    )
    labels = argmax_labels(logits)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.argmax(logits, axis=0))
    wide = argmax_labels(rng.standard_normal((300, 2, 2, 2), dtype=np.float32))
    assert wide.dtype == np.uint16
