"""Fake nnU-Net v2 results folders for the model-source tests: plans.json and dataset.json as
nnU-Net writes them and a checkpoint saved the way nnUNetTrainer saves it, for TotalSegmentator's
fast architecture and a tiny variant."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbench.models import tsfast
from segbench.models.nnunet import segbench_state_to_nnunet
from segbench.models.unet import PlainConvUNet

FAST_DATASET = "Dataset297_TotalSegmentator_total_3mm_1559subj"
TRAINER = "nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres"
FAST_PARAMS = 30_583_478  # tsfast.build(): 30.6 M
INTENSITY = {
    "max": 3071.0,
    "mean": -50.4,
    "median": 40.0,
    "min": -1024.0,
    "percentile_00_5": -1004.0,
    "percentile_99_5": 1588.0,
    "std": 503.4,
}


def zyx(values: Sequence[Sequence[int]]) -> list[list[int]]:
    return [list(reversed(v)) for v in values]


def make_plans(
    name: str,
    features: Sequence[int],
    kernels_zyx: Sequence[Sequence[int]],
    strides_zyx: Sequence[Sequence[int]],
    patch_zyx: Sequence[int],
    spacing_zyx: Sequence[float],
) -> dict[str, Any]:
    """A plans.json as nnU-Net >= 2.4 writes it (new ``architecture`` layout)."""
    n = len(features)
    fullres = {
        "data_identifier": "nnUNetPlans_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": list(patch_zyx),
        "median_image_size_in_voxels": [160.0, 120.0, 120.0],
        "spacing": list(spacing_zyx),
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": n,
                "features_per_stage": list(features),
                "conv_op": "torch.nn.modules.conv.Conv3d",
                "kernel_sizes": [list(k) for k in kernels_zyx],
                "strides": [list(s) for s in strides_zyx],
                "n_conv_per_stage": [2] * n,
                "n_conv_per_stage_decoder": [2] * (n - 1),
                "conv_bias": True,
                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                "dropout_op": None,
                "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": False,
    }
    return {
        "dataset_name": name,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing_zyx),
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_fullres": fullres,
            "3d_lowres": {"inherits_from": "3d_fullres", "spacing": [6.0, 6.0, 6.0]},
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": dict(INTENSITY)},
    }


def make_dataset(num_labels: int) -> dict[str, Any]:
    names = ["background", *(f"organ_{i:03d}" for i in range(1, num_labels))]
    labels = {n: i for i, n in reversed(list(enumerate(names)))}  # not in value order on disk
    return {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": 1559,
        "file_ending": ".nii.gz",
    }


def nnunet_checkpoint(net: PlainConvUNet, plans: dict[str, Any], dataset: dict[str, Any]) -> dict:
    """What nnUNetTrainer.save_checkpoint writes (numpy scalars and arrays in the logs)."""
    weights = segbench_state_to_nnunet(net.state_dict(), net)
    epochs = 3
    return {
        "network_weights": weights,
        "optimizer_state": {
            "state": {},
            "param_groups": [{"lr": 0.01, "momentum": 0.99, "nesterov": True, "params": [0, 1]}],
        },
        "grad_scaler_state": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 7},
        "logging": {
            "mean_fg_dice": [np.float64(0.5 + i / 10) for i in range(epochs)],
            "ema_fg_dice": [np.float64(0.4 + i / 10) for i in range(epochs)],
            "dice_per_class_or_region": [[np.float64(0.9), np.float64(0.8)]] * epochs,
            "train_losses": [np.float32(-0.5), np.float32(-0.6), np.float32(-0.7)],
            "val_losses": [np.float64(-0.4)] * epochs,
            "lrs": [0.01, 0.0099, 0.0098],
            "epoch_start_timestamps": [1.7e9 + i for i in range(epochs)],
            "epoch_end_timestamps": [1.7e9 + i + 0.5 for i in range(epochs)],
            "dice_history": np.arange(epochs, dtype=np.float64),
            "class_counts": np.array([3, 4], dtype=np.int64),
        },
        "_best_ema": np.float64(0.6),
        "current_epoch": epochs,
        "init_args": {
            "plans": plans,
            "configuration": "3d_fullres",
            "fold": 0,
            "dataset_json": dataset,
            "device": torch.device("cpu"),
        },
        "trainer_name": TRAINER.split("__")[0],
        "inference_allowed_mirroring_axes": None,
    }


def seeded(net: PlainConvUNet, seed: int) -> PlainConvUNet:
    """Perturb every parameter (norm affines too) so that no value is a default."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return net.eval()


def write_folder(
    root: Path,
    dataset_name: str,
    plans: dict[str, Any],
    dataset: dict[str, Any],
    net: PlainConvUNet,
    extra: dict[str, Any] | None = None,
    trainer: str = TRAINER,
) -> Path:
    folder = root / dataset_name / trainer
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    ckpt = nnunet_checkpoint(net, plans, dataset)
    ckpt.update(extra or {})
    torch.save(ckpt, folder / "fold_0" / "checkpoint_final.pth")
    return folder


FAST_STRIDES_ZYX = zyx(tsfast.STRIDES)  # (2, 1, 1) in X -> [1, 1, 2] in (z, y, x)
TINY_FEATURES = (4, 8, 16)
TINY_KERNELS_ZYX = [[1, 3, 3], [3, 3, 3], [3, 3, 3]]  # anisotropic first stage, as nnU-Net plans
TINY_STRIDES_ZYX = [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
TINY_PATCH_ZYX = [16, 24, 32]
TINY_SPACING_ZYX = [3.0, 2.5, 2.0]


def tiny_net(seed: int = 0, num_classes: int = 3) -> PlainConvUNet:
    torch.manual_seed(seed)
    net = PlainConvUNet(
        1,
        TINY_FEATURES,
        zyx(TINY_STRIDES_ZYX),
        num_classes,
        kernel_sizes=zyx(TINY_KERNELS_ZYX),
    )
    return seeded(net, seed)


def tiny_plans() -> dict[str, Any]:
    return make_plans(
        "Dataset001_Tiny",
        TINY_FEATURES,
        TINY_KERNELS_ZYX,
        TINY_STRIDES_ZYX,
        TINY_PATCH_ZYX,
        TINY_SPACING_ZYX,
    )
