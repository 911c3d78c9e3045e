"""segbench.models.nnunet: fake nnU-Net v2 results folders (plans, dataset, checkpoint saved the
way nnU-Net saves it) for TotalSegmentator's fast architecture and a tiny variant."""

from __future__ import annotations

import argparse
import copy
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import TINY_GRID, phantom_folder, run_suite, write_nifti
from nnunet_folders import (
    FAST_DATASET,
    FAST_PARAMS,
    FAST_STRIDES_ZYX,
    TINY_FEATURES,
    TINY_KERNELS_ZYX,
    TINY_STRIDES_ZYX,
    make_dataset,
    make_plans,
    nnunet_checkpoint,
    tiny_net,
    tiny_plans,
    write_folder,
)
from torch import nn

from segbench.errors import ModelError
from segbench.inputs.volumes import load_volume
from segbench.models import get_card, load_network, tsfast
from segbench.models.nnunet import (
    card_from_nnunet_folder,
    configuration_from_plans,
    default_tile_step,
    load_nnunet_checkpoint,
    nnunet_state_to_segbench,
    numpy_safe_globals,
    segbench_state_to_nnunet,
)
from segbench.models.unet import PlainConvUNet
from segbench.pipeline.backends import OrtBackend, TorchBackend
from segbench.pipeline.export import export_onnx
from segbench.pipeline.predict import predict_volume
from segbench.scoring.metrics import compute_dice


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PlainConvUNet]:
    plans = make_plans(
        FAST_DATASET,
        tsfast.FEATURES,
        [[3, 3, 3]] * 6,
        FAST_STRIDES_ZYX,
        [112, 112, 128],
        [3.0, 3.0, 3.0],
    )
    net = tsfast.build().eval()
    root = tmp_path_factory.mktemp("nnunet_fast")
    return write_folder(root, FAST_DATASET, plans, make_dataset(118), net), net


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PlainConvUNet]:
    net = tiny_net()
    root = tmp_path_factory.mktemp("nnunet_tiny")
    return write_folder(root, "Dataset001_Tiny", tiny_plans(), make_dataset(3), net), net


def copy_folder(src: Path, dst_root: Path) -> Path:
    import shutil

    dst = dst_root / src.parent.name / src.name
    shutil.copytree(src, dst)
    return dst


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


# ---- TotalSegmentator fast architecture ------------------------------------------------------


def test_fast_card_recovers_plans(fast: tuple[Path, PlainConvUNet]) -> None:
    folder, _ = fast
    card = card_from_nnunet_folder(folder)
    assert card.spacing == (3.0, 3.0, 3.0)
    assert card.patch_size == (128, 112, 112)  # plans [112, 112, 128] is (z, y, x)
    assert card.total_stride == (32, 16, 16)  # tsfast's, in (X, Y, Z)
    norm = card.normalization
    assert (norm.lower, norm.upper, norm.mean, norm.std) == (-1004.0, 1588.0, -50.4, 503.4)
    assert card.num_classes == 118
    assert card.class_names[0] == "background"
    assert card.class_names[1:3] == ("organ_001", "organ_002")  # ordered by label value
    assert card.tile_step == 0.5  # TotalSegmentator: 0.8 only for the 1.5 mm total parts
    assert card.weights is None and card.in_channels == 1


def test_fast_weights_load_exactly_and_parameter_count(fast: tuple[Path, PlainConvUNet]) -> None:
    folder, net = fast
    loaded = load_network(card_from_nnunet_folder(folder))
    assert isinstance(loaded, PlainConvUNet)
    assert sum(p.numel() for p in loaded.parameters()) == FAST_PARAMS
    assert loaded.strides == net.strides
    assert_same_state(loaded.state_dict(), net.state_dict())


def test_fast_checkpoint_uses_nnunet_names(fast: tuple[Path, PlainConvUNet]) -> None:
    folder, _ = fast
    weights = load_nnunet_checkpoint(folder / "fold_0" / "checkpoint_final.pth")
    for key in (
        "encoder.stages.0.0.convs.0.conv.weight",
        "encoder.stages.0.0.convs.0.norm.weight",
        "encoder.stages.0.0.convs.0.all_modules.1.weight",
        "decoder.encoder.stages.5.0.convs.1.conv.bias",
        "decoder.transpconvs.0.weight",
        "decoder.stages.4.convs.1.conv.weight",
        "decoder.seg_layers.0.weight",
        "decoder.seg_layers.4.weight",
    ):
        assert key in weights, key
    assert weights["decoder.seg_layers.4.weight"].shape == (118, 32, 1, 1, 1)
    # the last transposed conv undoes the (z, y, x) stride [1, 1, 2]: kernel (1, 1, 2) there
    assert weights["decoder.transpconvs.0.weight"].shape == (320, 320, 1, 1, 2)


# ---- checkpoint loading ----------------------------------------------------------------------


def test_weights_only_load_needs_and_gets_numpy_globals(tiny: tuple[Path, PlainConvUNet]) -> None:
    path = tiny[0] / "fold_0" / "checkpoint_final.pth"
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert "numpy._core.multiarray.scalar" in unsafe or "numpy.core.multiarray.scalar" in unsafe
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, map_location="cpu", weights_only=True)  # plain torch refuses
    with torch.serialization.safe_globals(numpy_safe_globals()):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["_best_ema"] == np.float64(0.6)
    assert ckpt["logging"]["class_counts"].tolist() == [3, 4]
    assert "decoder.seg_layers.1.weight" in load_nnunet_checkpoint(path)


def _as_numpy1_pickle(src: Path, dst: Path) -> None:
    """Rewrite a torch.save zip so its pickle names numpy 1's ``numpy.core`` modules."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\n" in data  # protocol 2: GLOBAL text lines
                data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
            zout.writestr(item, data)


def test_checkpoint_written_by_numpy1_loads(
    tiny: tuple[Path, PlainConvUNet], tmp_path: Path
) -> None:
    folder = copy_folder(tiny[0], tmp_path)
    path = folder / "fold_0" / "checkpoint_final.pth"
    old = tmp_path / "numpy1.pth"
    _as_numpy1_pickle(path, old)
    assert "numpy.core.multiarray.scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(
        str(old)
    )
    old.replace(path)
    assert_same_state(
        load_network(card_from_nnunet_folder(folder)).state_dict(), tiny[1].state_dict()
    )


def test_arbitrary_object_refused_unless_trusted(tmp_path: Path) -> None:
    net = tiny_net(seed=3)
    extra = {"trainer_options": argparse.Namespace(fast=True)}
    folder = write_folder(tmp_path, "Dataset001_Tiny", tiny_plans(), make_dataset(3), net, extra)
    card = card_from_nnunet_folder(folder)
    with pytest.raises(ModelError, match="trust_checkpoint=True") as info:
        load_network(card)
    assert "checkpoint_final.pth" in str(info.value) and "argparse.Namespace" in str(info.value)
    trusted = load_network(card_from_nnunet_folder(folder, trust_checkpoint=True))
    assert_same_state(trusted.state_dict(), net.state_dict())
    via_name = load_network(get_card(f"nnunet:{folder}#fold=0,trust"))
    assert_same_state(via_name.state_dict(), net.state_dict())


def test_corrupt_checkpoint_is_named(tiny: tuple[Path, PlainConvUNet], tmp_path: Path) -> None:
    folder = copy_folder(tiny[0], tmp_path)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"checkpoint_final\.pth cannot be read"):
        load_network(card_from_nnunet_folder(folder, trust_checkpoint=True))


def test_checkpoint_of_another_network_is_refused(
    tiny: tuple[Path, PlainConvUNet], tmp_path: Path
) -> None:
    folder = copy_folder(tiny[0], tmp_path)
    other = tiny_net(num_classes=4)
    torch.save(
        nnunet_checkpoint(other, tiny_plans(), make_dataset(4)),
        folder / "fold_0" / "checkpoint_final.pth",
    )
    with pytest.raises(ModelError, match=r"another shape.*seg_layers\.1\.weight"):
        load_network(card_from_nnunet_folder(folder))


# ---- the name mapping ------------------------------------------------------------------------


def test_mapping_round_trips_and_reports_bad_keys() -> None:
    net = tiny_net()
    nn_state = segbench_state_to_nnunet(net.state_dict(), net)
    assert_same_state(nnunet_state_to_segbench(nn_state, net), net.state_dict())
    wrapped = {f"module.{k}": v for k, v in nn_state.items()}  # DDP prefix
    assert_same_state(nnunet_state_to_segbench(wrapped, net), net.state_dict())
    broken = dict(nn_state)
    del broken["encoder.stages.1.0.convs.0.conv.weight"]
    del broken["encoder.stages.1.0.convs.0.all_modules.0.weight"]
    del broken["decoder.encoder.stages.1.0.convs.0.conv.weight"]
    del broken["decoder.encoder.stages.1.0.convs.0.all_modules.0.weight"]
    broken["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"1 missing \(encoder.stages.1.0.convs.0.conv.weight\)"):
        nnunet_state_to_segbench(broken, net, source="x.pth")
    differing = dict(nn_state)
    differing["decoder.encoder.stages.0.0.convs.0.conv.bias"] = torch.ones(4)
    with pytest.raises(ModelError, match="duplicates that differ"):
        nnunet_state_to_segbench(differing, net)


# dynamic_network_architectures' PlainConvUNet module tree, restated from its source
# (building_blocks/simple_conv_blocks.py, plain_conv_encoder.py, unet_decoder.py and
# architectures/unet.py) without its package: attribute names and registration order matter.


class _DnaConvDropoutNormReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        pad = [(k - 1) // 2 for k in kernel]
        self.conv = nn.Conv3d(cin, cout, tuple(kernel), tuple(stride), padding=pad, bias=True)
        self.norm = nn.InstanceNorm3d(cout, eps=1e-5, affine=True)
        self.nonlin = nn.LeakyReLU(inplace=True)
        self.all_modules = nn.Sequential(self.conv, self.norm, self.nonlin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.all_modules(x)


class _DnaStackedConvBlocks(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        self.convs = nn.Sequential(
            _DnaConvDropoutNormReLU(cin, cout, kernel, stride),
            _DnaConvDropoutNormReLU(cout, cout, kernel, (1, 1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class _DnaEncoder(nn.Module):
    def __init__(self, features: Sequence[int], kernels: Sequence, strides: Sequence) -> None:
        super().__init__()
        stages, cin = [], 1
        for feat, kernel, stride in zip(features, kernels, strides, strict=True):
            stages.append(nn.Sequential(_DnaStackedConvBlocks(cin, feat, kernel, stride)))
            cin = feat
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class _DnaDecoder(nn.Module):
    def __init__(
        self,
        encoder: _DnaEncoder,
        features: Sequence[int],
        kernels: Sequence,
        strides: Sequence,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        stages, transpconvs, seg_layers = [], [], []
        for s in range(1, len(features)):
            below, skip, stride = features[-s], features[-(s + 1)], tuple(strides[-s])
            transpconvs.append(nn.ConvTranspose3d(below, skip, stride, stride, bias=True))
            stages.append(_DnaStackedConvBlocks(2 * skip, skip, kernels[-(s + 1)], (1, 1, 1)))
            seg_layers.append(nn.Conv3d(skip, num_classes, 1, 1, 0, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(transpconvs)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        x = skips[-1]
        for s, (up, stage) in enumerate(zip(self.transpconvs, self.stages, strict=True)):
            x = stage(torch.cat((up(x), skips[-(s + 2)]), 1))
        return self.seg_layers[-1](x)


class _DnaPlainConvUNet(nn.Module):
    def __init__(
        self, features: Sequence[int], kernels: Sequence, strides: Sequence, num_classes: int
    ) -> None:
        super().__init__()
        self.encoder = _DnaEncoder(features, kernels, strides)
        self.decoder = _DnaDecoder(self.encoder, features, kernels, strides, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def test_names_order_and_function_match_dynamic_network_architectures() -> None:
    net = tiny_net()
    ref = _DnaPlainConvUNet(TINY_FEATURES, TINY_KERNELS_ZYX, TINY_STRIDES_ZYX, 3).eval()
    nn_state = segbench_state_to_nnunet(net.state_dict(), net)
    ref_state = ref.state_dict()
    assert list(nn_state) == list(ref_state)  # same names, same order
    assert {k: v.shape for k, v in nn_state.items()} == {k: v.shape for k, v in ref_state.items()}
    ref.load_state_dict(nn_state)
    x_zyx = torch.randn(1, 1, 8, 16, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(x_zyx)
        ours = net(x_zyx.permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    # and back: the reference's own state_dict loads into segbench's network
    assert_same_state(nnunet_state_to_segbench(ref.state_dict(), net), net.state_dict())


# ---- plans, dataset and folder errors --------------------------------------------------------


def _edit(folder: Path, name: str, change: Any) -> Path:
    data = json.loads((folder / name).read_text())
    change(data)
    (folder / name).write_text(json.dumps(data))
    return folder / name


def _arch(plans: dict[str, Any]) -> dict[str, Any]:
    arch: dict[str, Any] = plans["configurations"]["3d_fullres"]["architecture"]
    return arch


def test_tiny_card_axes_kernels_and_default_step(tiny: tuple[Path, PlainConvUNet]) -> None:
    card = card_from_nnunet_folder(tiny[0])
    assert card.spacing == (2.0, 2.5, 3.0) and card.patch_size == (32, 24, 16)
    assert card.total_stride == (4, 4, 2)
    assert card.tile_step == 0.5 and card.class_names == ("background", "organ_001", "organ_002")
    net = card.build()
    assert isinstance(net, PlainConvUNet)
    assert net.encoder[0][0][0].kernel_size == (3, 3, 1)  # plans [1, 3, 3] is (z, y, x)
    assert card_from_nnunet_folder(tiny[0], tile_step=0.7).tile_step == 0.7
    lowres = card_from_nnunet_folder(tiny[0], configuration="3d_lowres")  # inherits_from
    assert lowres.spacing == (6.0, 6.0, 6.0) and lowres.patch_size == (32, 24, 16)


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("Dataset297_TotalSegmentator_total_3mm_1559subj", 0.5),
        ("Dataset300_TotalSegmentator_body_3mm", 0.5),
        ("Dataset291_TotalSegmentator_part1_organs_1559subj", 0.8),
        ("Dataset295_TotalSegmentator_part5_ribs_1559subj", 0.8),
        ("Dataset001_Tiny", 0.5),
    ],
)
def test_default_tile_step(name: str, step: float) -> None:
    assert default_tile_step(name) == step


def test_old_plans_layout_builds_the_same_network(
    tiny: tuple[Path, PlainConvUNet], tmp_path: Path
) -> None:
    folder = copy_folder(tiny[0], tmp_path)

    def to_old(plans: dict[str, Any]) -> None:
        config = plans["configurations"]["3d_fullres"]
        kw = config.pop("architecture")["arch_kwargs"]
        config.update(
            UNet_class_name="PlainConvUNet",
            UNet_base_num_features=4,
            unet_max_num_features=16,
            conv_kernel_sizes=kw["kernel_sizes"],
            pool_op_kernel_sizes=kw["strides"],
            n_conv_per_stage_encoder=[2, 2, 2],
            n_conv_per_stage_decoder=[2, 2],
        )

    _edit(folder, "plans.json", to_old)
    loaded = load_network(card_from_nnunet_folder(folder))
    assert_same_state(loaded.state_dict(), tiny[1].state_dict())


@pytest.mark.parametrize(
    ("file", "change", "match"),
    [
        (
            "plans.json",
            lambda p: p["configurations"]["3d_fullres"].update(
                normalization_schemes=["ZScoreNormalization"]
            ),
            "ZScoreNormalization",
        ),
        (
            "plans.json",
            lambda p: _arch(p).update(
                network_class_name="dynamic_network_architectures.architectures.unet."
                "ResidualEncoderUNet"
            ),
            "ResidualEncoderUNet.*PlainConvUNet",
        ),
        (
            "plans.json",
            lambda p: _arch(p)["arch_kwargs"].update(kernel_sizes=[[2, 2, 2]] * 3),
            "not odd",
        ),
        (
            "plans.json",
            lambda p: _arch(p)["arch_kwargs"].update(norm_op="torch.nn.BatchNorm3d"),
            "BatchNorm3d",
        ),
        (
            "plans.json",
            lambda p: _arch(p)["arch_kwargs"].update(pool="max"),
            r"arch_kwargs \['pool'\]",
        ),
        (
            "plans.json",
            lambda p: p.pop("foreground_intensity_properties_per_channel"),
            "foreground_intensity_properties_per_channel",
        ),
        (
            "dataset.json",
            lambda d: d["labels"].update(organ_001=[1, 2]),
            "region-based",
        ),
        (
            "dataset.json",
            lambda d: d["channel_names"].update({"1": "T1"}),
            "2 input channels",
        ),
    ],
)
def test_bad_plans_or_dataset_name_the_file(
    tiny: tuple[Path, PlainConvUNet], tmp_path: Path, file: str, change: Any, match: str
) -> None:
    folder = copy_folder(tiny[0], tmp_path)
    path = _edit(folder, file, change)
    with pytest.raises(ModelError, match=match) as info:
        card_from_nnunet_folder(folder)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("missing", ["plans.json", "dataset.json", "fold_0/checkpoint_final.pth"])
def test_missing_files_are_named(
    tiny: tuple[Path, PlainConvUNet], tmp_path: Path, missing: str
) -> None:
    folder = copy_folder(tiny[0], tmp_path)
    (folder / missing).unlink()
    with pytest.raises(ModelError, match="is missing") as info:
        card_from_nnunet_folder(folder)
    assert str(folder / missing) in str(info.value)


def test_unknown_configuration_and_folder(tiny: tuple[Path, PlainConvUNet], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no configuration '2d'.*3d_fullres, 3d_lowres"):
        card_from_nnunet_folder(tiny[0], configuration="2d")
    with pytest.raises(ModelError, match="does not exist"):
        card_from_nnunet_folder(tmp_path / "nowhere")
    with pytest.raises(ModelError, match=r"fold_1.*folds here: \['fold_0'\]"):
        card_from_nnunet_folder(tiny[0], fold=1)


# ---- end to end ------------------------------------------------------------------------------


def test_tiny_model_torch_and_onnx_agree(tiny: tuple[Path, PlainConvUNet], tmp_path: Path) -> None:
    card = get_card(f"nnunet:{tiny[0]}#fold=0")
    volume = load_volume(write_nifti(tmp_path / "ct.nii.gz", shape=(40, 36, 20), codes="LPS"))
    net = load_network(card)
    reference = predict_volume(volume, card, TorchBackend(net))
    exported = export_onnx(net, card, tmp_path / "onnx")
    candidate = predict_volume(volume, card, OrtBackend(exported.path, ["CPUExecutionProvider"]))
    assert reference.labels.shape == volume.original.shape
    assert compute_dice(reference.labels, candidate.labels).mean >= 0.999


def test_configuration_merge_leaves_plans_alone() -> None:
    plans = tiny_plans()
    before = copy.deepcopy(plans)
    merged = configuration_from_plans(plans, "3d_lowres", Path("plans.json"))
    assert merged["spacing"] == [6.0, 6.0, 6.0] and "architecture" in merged
    assert plans == before


@pytest.mark.slow
def test_nnunet_folder_runs_through_the_suite(
    tiny: tuple[Path, PlainConvUNet], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """--segbench-model nnunet:PATH drives the whole regression suite (both backends, gates)."""
    from segbench.inputs.phantoms import PhantomSpec

    folder, _ = tiny
    scans = phantom_folder(PhantomSpec(TINY_GRID, 7), tmp_path_factory)
    model = f"nnunet:{folder}#tile_step=1.0"  # 27 windows of the tiny patch, not 200+
    out = run_suite(
        scans,
        tmp_path,
        "--segbench-model",
        model,
        "--segbench-speedup-min",
        "0",
        "--segbench-rounds",
        "1",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 passed" in out.stdout
    assert f"segbench: {model} model" in out.stdout
