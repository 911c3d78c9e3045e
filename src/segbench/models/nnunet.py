"""nnU-Net v2 trained-model folders as segbench model cards, without installing nnU-Net.

A results folder such as ``Dataset297_TotalSegmentator_total_3mm_1559subj/
nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres`` holds ``plans.json``,
``dataset.json`` and ``fold_N/checkpoint_final.pth``. :func:`card_from_nnunet_folder` reads the
plans (new ``architecture`` layout of nnU-Net >= 2.4 and the older ``UNet_class_name`` one), builds
segbench's own :class:`~segbench.models.unet.PlainConvUNet` and loads the checkpoint into it by
renaming dynamic-network-architectures' parameter names (:func:`nnunet_state_to_segbench`).

Axis order. nnU-Net reads images with SimpleITK into ``(z, y, x)`` arrays, so the plans list
``spacing``, ``patch_size``, ``kernel_sizes`` and ``strides`` z first. segbench's arrays are
``(X, Y, Z)`` (nibabel order, reoriented to RAS), so every per-axis value is reversed here. Both
orders address the same voxels when nnU-Net's input file is RAS-canonical, as TotalSegmentator
writes it; for other orientations segbench's reorientation is a deliberate difference.

Prediction settings reproduced on the card: target spacing, patch size, CT normalisation
(clip to the foreground 0.5 / 99.5 percentiles, subtract the mean, divide by the std), the
Gaussian-weighted sliding window (segbench's default) and the tile step (0.8 for
TotalSegmentator's 1.5 mm total parts, as TotalSegmentator runs them, else nnU-Net's 0.5, see
:func:`default_tile_step`). Not reproduced: test-time mirroring (segbench never mirrors; a model
trained with mirroring gives slightly different, slower nnU-Net predictions with it on),
nnU-Net's cropping to the non-zero region and its resampling (third order, separate z for
anisotropic data: segbench uses ``PipelineSettings.resample_order``), deep-supervision heads
(only the full-resolution head is used at inference, as in nnU-Net) and dropout (identity at
inference).
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbench.errors import ModelError
from segbench.models.card import ModelCard, read_mapping
from segbench.models.normalization import CTNormalization
from segbench.models.unet import PlainConvUNet

Shape3 = tuple[int, int, int]

PLANS_NAME = "plans.json"
DATASET_NAME = "dataset.json"
SUPPORTED_NETWORKS = ("PlainConvUNet",)
DEFAULT_CHECKPOINT = "checkpoint_final.pth"
DEFAULT_CONFIGURATION = "3d_fullres"

# arch_kwargs of dynamic_network_architectures' PlainConvUNet that segbench understands
_ARCH_KWARGS = frozenset(
    {
        "n_stages",
        "features_per_stage",
        "conv_op",
        "kernel_sizes",
        "strides",
        "n_conv_per_stage",
        "n_conv_per_stage_decoder",
        "conv_bias",
        "norm_op",
        "norm_op_kwargs",
        "dropout_op",
        "dropout_op_kwargs",
        "nonlin",
        "nonlin_kwargs",
        "deep_supervision",
        "nonlin_first",
    }
)
_OTHER_SOURCES = "export the network yourself and use a 'torchscript:' or 'entrypoint:' model"


@dataclass(frozen=True)
class NnunetArchitecture:
    """A PlainConvUNet as an nnU-Net plan describes it, per-axis values in segbench (X, Y, Z)."""

    features: tuple[int, ...]
    strides: tuple[Shape3, ...]
    kernel_sizes: tuple[Shape3, ...]
    n_conv_encoder: tuple[int, ...]
    n_conv_decoder: tuple[int, ...]
    conv_bias: bool
    in_channels: int
    num_classes: int

    @property
    def total_stride(self) -> Shape3:
        prod = [math.prod(s[a] for s in self.strides) for a in range(3)]
        return (prod[0], prod[1], prod[2])

    def build(self) -> PlainConvUNet:
        """The network with PyTorch's default (random) initialisation."""
        return PlainConvUNet(
            self.in_channels,
            self.features,
            self.strides,
            self.num_classes,
            n_conv_encoder=self.n_conv_encoder,
            n_conv_decoder=self.n_conv_decoder,
            kernel_sizes=self.kernel_sizes,
            conv_bias=self.conv_bias,
        )


# --- plans.json and dataset.json -----------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(
            f"{path} is missing; an nnU-Net v2 results folder holds {PLANS_NAME}, {DATASET_NAME} "
            "and fold_N/checkpoint_final.pth: point at the trainer folder "
            "(e.g. .../DatasetXXX_Name/nnUNetTrainer__nnUNetPlans__3d_fullres)"
        )
    return read_mapping(
        lambda: json.loads(path.read_text()),
        lambda error: (
            f"{path} is not readable JSON ({error}); restore the file nnU-Net wrote "
            "next to the trained folds"
        ),
        lambda kind: f"{path} holds a {kind}, not a JSON object; restore it",
    )


def configuration_from_plans(plans: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    """``plans["configurations"][name]`` with ``inherits_from`` parents merged in."""
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or not configs:
        raise ModelError(f"{path} has no 'configurations'; it is not an nnU-Net v2 plans file")
    chain: list[dict[str, Any]] = []
    current: str | None = name
    while current is not None:
        if current not in configs or not isinstance(configs[current], dict):
            raise ModelError(
                f"{path} has no configuration {current!r}; it has {', '.join(sorted(configs))}: "
                "pass one of those (the folder name ends with it, e.g. __3d_fullres)"
            )
        if any(c is configs[current] for c in chain):
            raise ModelError(f"{path}: configuration {name!r} inherits from itself; fix the plans")
        chain.append(configs[current])
        parent = configs[current].get("inherits_from")
        current = str(parent) if parent is not None else None
    merged: dict[str, Any] = {}
    for config in reversed(chain):
        merged.update(config)
    return merged


def _xyz(value: Any, what: str, path: Path, cast: type = int) -> tuple[Any, Any, Any]:
    """A z-first triple from the plans, reversed to segbench's (X, Y, Z) order."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value] * 3
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ModelError(
            f"{path}: {what} is {value!r}, not three values; segbench runs 3D configurations "
            "only: choose a 3d_* configuration"
        )
    try:
        z, y, x = (cast(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: {what} {value!r} is not numeric; restore the plans") from exc
    return (x, y, z)


def _per_stage(value: Any, n: int, what: str, path: Path) -> tuple[int, ...]:
    values = [value] * n if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(values, list | tuple)
        or len(values) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    ):
        raise ModelError(
            f"{path}: {what} is {value!r}, expected one positive int or {n} of them; "
            "restore the plans nnU-Net wrote"
        )
    return tuple(int(v) for v in values)


def _short(name: Any) -> str:
    return str(name).rsplit(".", 1)[-1] if name is not None else "None"


def _stage_triples(value: Any, n: int, what: str, path: Path) -> tuple[Shape3, ...]:
    values = [value] * n if isinstance(value, int) else value
    if not isinstance(values, list | tuple) or len(values) != n:
        raise ModelError(f"{path}: {what} {value!r} must have {n} entries (one per stage)")
    return tuple(_xyz(v, f"{what}[{i}]", path) for i, v in enumerate(values))


def _check_kernels(kernels: tuple[Shape3, ...], path: Path) -> None:
    bad = [k for k in kernels if any(v < 1 or v % 2 == 0 for v in k)]
    if bad:
        raise ModelError(
            f"{path}: kernel sizes {bad} are not odd; segbench's PlainConvUNet pads 'same' and "
            f"needs odd kernels: {_OTHER_SOURCES} source"
        )


def _check_norm_nonlin(kwargs: Mapping[str, Any], path: Path) -> None:
    problems = []
    if _short(kwargs.get("conv_op")) != "Conv3d":
        problems.append(f"conv_op {kwargs.get('conv_op')!r} (need Conv3d)")
    if _short(kwargs.get("norm_op")) != "InstanceNorm3d":
        problems.append(f"norm_op {kwargs.get('norm_op')!r} (need InstanceNorm3d)")
    norm_kw = kwargs.get("norm_op_kwargs") or {}
    if not norm_kw.get("affine", False):
        problems.append(f"norm_op_kwargs {norm_kw} (need affine=True)")
    if abs(float(norm_kw.get("eps", 1e-5)) - 1e-5) > 1e-12:
        problems.append(f"norm eps {norm_kw.get('eps')} (need 1e-5)")
    if norm_kw.get("track_running_stats", False):
        problems.append("norm track_running_stats=True (need False)")
    if _short(kwargs.get("nonlin")) != "LeakyReLU":
        problems.append(f"nonlin {kwargs.get('nonlin')!r} (need LeakyReLU)")
    slope = (kwargs.get("nonlin_kwargs") or {}).get("negative_slope", 0.01)
    if abs(float(slope) - 0.01) > 1e-12:
        problems.append(f"LeakyReLU negative_slope {slope} (need 0.01)")
    if kwargs.get("nonlin_first", False):
        problems.append("nonlin_first=True (need conv-norm-nonlin order)")
    if problems:
        raise ModelError(
            f"{path}: the PlainConvUNet's layers differ from segbench's "
            f"conv-InstanceNorm-LeakyReLU blocks: {'; '.join(problems)}; {_OTHER_SOURCES} source"
        )


def _check_network_class(name: Any, path: Path, configuration: str) -> None:
    if _short(name) not in SUPPORTED_NETWORKS:
        raise ModelError(
            f"{path}: configuration {configuration!r} uses network class {name!r}; segbench builds "
            f"only {', '.join(SUPPORTED_NETWORKS)} from nnU-Net plans: {_OTHER_SOURCES} source"
        )


def architecture_from_config(
    config: Mapping[str, Any],
    path: Path,
    in_channels: int,
    num_classes: int,
    configuration: str = DEFAULT_CONFIGURATION,
) -> NnunetArchitecture:
    """Read a (merged) plans configuration's network, new or old plans layout."""
    if "architecture" in config:
        arch = config["architecture"]
        if not isinstance(arch, dict) or not isinstance(arch.get("arch_kwargs"), dict):
            raise ModelError(f"{path}: 'architecture' of {configuration!r} lacks 'arch_kwargs'")
        _check_network_class(arch.get("network_class_name"), path, configuration)
        kw: dict[str, Any] = arch["arch_kwargs"]
        unknown = sorted(set(kw) - _ARCH_KWARGS)
        if unknown:
            raise ModelError(
                f"{path}: arch_kwargs {unknown} of {configuration!r} are unknown to segbench's "
                f"PlainConvUNet reader; {_OTHER_SOURCES} source"
            )
        n = kw.get("n_stages")
        if not isinstance(n, int) or n < 2:
            raise ModelError(f"{path}: arch_kwargs n_stages {n!r} must be an int >= 2")
        _check_norm_nonlin(kw, path)
        features = _per_stage(kw.get("features_per_stage"), n, "features_per_stage", path)
        kernels = _stage_triples(kw.get("kernel_sizes"), n, "kernel_sizes", path)
        strides = _stage_triples(kw.get("strides"), n, "strides", path)
        n_enc = _per_stage(kw.get("n_conv_per_stage"), n, "n_conv_per_stage", path)
        n_dec = _per_stage(
            kw.get("n_conv_per_stage_decoder"), n - 1, "n_conv_per_stage_decoder", path
        )
        conv_bias = bool(kw.get("conv_bias", False))  # dynamic-network-architectures' default
    elif "UNet_class_name" in config:  # nnU-Net 2.0 - 2.3 plans
        _check_network_class(config["UNet_class_name"], path, configuration)
        kernel_list = config.get("conv_kernel_sizes")
        if not isinstance(kernel_list, list) or len(kernel_list) < 2:
            raise ModelError(f"{path}: conv_kernel_sizes of {configuration!r} is missing or short")
        n = len(kernel_list)
        base, top = config.get("UNet_base_num_features"), config.get("unet_max_num_features")
        if not isinstance(base, int) or not isinstance(top, int):
            raise ModelError(
                f"{path}: {configuration!r} lacks UNet_base_num_features/unet_max_num_features"
            )
        features = tuple(min(base * 2**i, top) for i in range(n))
        kernels = _stage_triples(kernel_list, n, "conv_kernel_sizes", path)
        pools = config.get("pool_op_kernel_sizes")
        strides = _stage_triples(pools, n, "pool_op_kernel_sizes", path)
        n_enc = _per_stage(config.get("n_conv_per_stage_encoder", 2), n, "n_conv_encoder", path)
        n_dec = _per_stage(config.get("n_conv_per_stage_decoder", 2), n - 1, "n_conv_dec", path)
        conv_bias = True  # what nnU-Net 2.0 - 2.3 built
    else:
        raise ModelError(
            f"{path}: configuration {configuration!r} has neither 'architecture' (nnU-Net >= 2.4) "
            "nor 'UNet_class_name' (older v2); it is not an nnU-Net v2 plans file (v1 .pkl plans "
            "are not supported: retrain or convert with nnU-Net v2)"
        )
    _check_kernels(kernels, path)
    return NnunetArchitecture(
        features=features,
        strides=strides,
        kernel_sizes=kernels,
        n_conv_encoder=n_enc,
        n_conv_decoder=n_dec,
        conv_bias=conv_bias,
        in_channels=in_channels,
        num_classes=num_classes,
    )


def class_names_from_dataset(dataset: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    """Label names ordered by label value, background first; nnU-Net's ``ignore`` label dropped."""
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ModelError(f"{path} has no 'labels' object; restore the dataset.json nnU-Net wrote")
    values: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, list | tuple):
            if len(value) > 1 or "regions_class_order" in dataset:
                raise ModelError(
                    f"{path}: label {name!r} is the region {value}; region-based nnU-Net models "
                    "(sigmoid outputs, overlapping regions) are not supported: use a model trained "
                    "with plain integer labels"
                )
            value = value[0]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ModelError(f"{path}: label {name!r} has value {value!r}, not an int >= 0")
        if value in values:
            raise ModelError(f"{path}: labels {values[value]!r} and {name!r} share value {value}")
        values[value] = str(name)
    if "ignore" in labels:  # nnU-Net's ignore label is the highest value and no output channel
        ignore = labels["ignore"]
        ignore = ignore[0] if isinstance(ignore, list | tuple) else ignore
        if ignore != max(values):
            raise ModelError(f"{path}: the 'ignore' label must have the highest value")
        del values[ignore]
    if sorted(values) != list(range(len(values))) or len(values) < 2:
        raise ModelError(
            f"{path}: label values {sorted(values)} are not 0, 1, ..., K-1 (K >= 2, background 0); "
            "nnU-Net requires consecutive labels: restore the dataset.json of this model"
        )
    return tuple(values[v] for v in range(len(values)))


def _in_channels(dataset: Mapping[str, Any], path: Path) -> int:
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise ModelError(f"{path} has no 'channel_names'; restore the dataset.json nnU-Net wrote")
    if len(channels) != 1:
        raise ModelError(
            f"{path}: the model takes {len(channels)} input channels {channels}; segbench feeds "
            "one CT channel: use a single-channel CT model"
        )
    return 1


def normalization_from_plans(
    plans: Mapping[str, Any], config: Mapping[str, Any], path: Path
) -> CTNormalization:
    """nnU-Net's CTNormalization constants for channel 0 (foreground percentiles, mean, std)."""
    schemes = config.get("normalization_schemes")
    if not isinstance(schemes, list) or not schemes:
        raise ModelError(f"{path}: the configuration has no normalization_schemes")
    if schemes[0] != "CTNormalization":
        raise ModelError(
            f"{path}: channel 0 uses normalization scheme {schemes[0]!r}; segbench reproduces only "
            "nnU-Net's CTNormalization (fixed HU clip, mean and std): use a CT model planned with "
            "CTNormalization"
        )
    props = plans.get(
        "foreground_intensity_properties_per_channel",
        plans.get("foreground_intensity_properties_by_modality"),
    )
    if not isinstance(props, dict) or not isinstance(props.get("0"), dict):
        raise ModelError(
            f"{path} lacks foreground_intensity_properties_per_channel['0']; CTNormalization "
            "needs it: restore the plans.json nnU-Net wrote"
        )
    channel = props["0"]
    try:
        return CTNormalization(
            lower=float(channel["percentile_00_5"]),
            upper=float(channel["percentile_99_5"]),
            mean=float(channel["mean"]),
            std=max(float(channel["std"]), 1e-8),  # nnU-Net's guard against std 0
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"{path}: foreground intensity properties of channel 0 are unusable "
            f"({type(exc).__name__}: {exc}); they need percentile_00_5, percentile_99_5, mean and "
            "std: restore the plans.json nnU-Net wrote"
        ) from exc


def default_tile_step(dataset_name: str) -> float:
    """Sliding-window step as TotalSegmentator runs its models: 0.8 for the five 1.5 mm
    ``total`` parts (Dataset291-295, ``..._partN_...``; TotalSegmentator uses 0.8 only when the
    task is ``total`` and the resampling is finer than 3 mm), otherwise nnU-Net's default 0.5
    (the 3 mm fast and fastest models included)."""
    name = dataset_name.lower()
    if "totalsegmentator" in name and re.search(r"_part\d", name):
        return 0.8
    return 0.5


# --- checkpoints ---------------------------------------------------------------------------------


def numpy_safe_globals() -> list[Any]:
    """What ``torch.load(weights_only=True)`` must allow for numpy scalars and arrays (nnU-Net
    logs numpy floats in its checkpoints), under numpy 2 names and numpy 1 aliases."""
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    allowed: list[Any] = [
        np.dtype,
        np.ndarray,
        scalar,
        _reconstruct,
        (scalar, "numpy.core.multiarray.scalar"),
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
    ]
    dtypes = getattr(np, "dtypes", None)
    for name in (
        "BoolDType",
        *(f"{p}{b}DType" for p in ("Int", "UInt") for b in (8, 16, 32, 64)),
        "Float16DType",
        "Float32DType",
        "Float64DType",
        "LongDoubleDType",
        "Complex64DType",
        "Complex128DType",
        *(f"{p}DType" for p in ("Byte", "UByte", "Short", "UShort", "Int", "UInt", "Long")),
        *(f"{p}DType" for p in ("ULong", "LongLong", "ULongLong")),
    ):
        cls = getattr(dtypes, name, None)
        if isinstance(cls, type) and cls not in allowed:
            allowed.append(cls)
    return allowed


def _refused_global(exc: Exception) -> str | None:
    """The global that ``weights_only`` loading refused, if that is why it failed."""
    text = str(exc)
    match = (
        re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        # torch >= 2.6 for a module it never allows (os, subprocess, builtins.eval...)
        or re.search(r"unsupported GLOBAL ([\w.]+) whose module [\w.]+ is blocked", text, re.I)
        or re.search(r"but got <class '([\w.]+)'>", text)
    )
    if not match:
        return None
    name = match.group(1)
    module, _, attr = name.rpartition(".")
    return f"os.{attr}" if module in ("posix", "nt") else name  # os.system pickles as posix.system


def _unpickler_reason(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    return match.group(1).strip()[:200] if match else f"{type(exc).__name__}: {text[:200]}"


def load_nnunet_checkpoint(path: Path, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """The network weights (nnU-Net names) of an nnU-Net v2 checkpoint (or a bare state_dict).

    Loaded with ``weights_only=True`` plus :func:`numpy_safe_globals`; only with
    ``trust_checkpoint=True`` does a refused file get a second, unrestricted ``torch.load``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} is missing; pass an existing fold and checkpoint name")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(exc)
        if refused is None:
            raise ModelError(
                f"checkpoint {path} cannot be read ({_unpickler_reason(exc)}); the file is corrupt "
                "or not a torch.save file. Fix: copy it again from the trained model"
            ) from exc
        if not trust_checkpoint:
            raise ModelError(
                f"checkpoint {path}: unsafe pickle: it would import/call {refused} (refused by "
                "torch.load(weights_only=True)); the file holds objects other than tensors, "
                "numpy scalars and plain containers, and nothing of it was run. Fix: only if "
                "you trust the file's source, load it with #trust ('nnunet:PATH#trust', "
                "trust_checkpoint=True), which unpickles it with weights_only=False and runs "
                "that code"
            ) from exc
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise ModelError(
                f"checkpoint {path} cannot be read even with weights_only=False "
                f"({type(exc2).__name__}: {exc2}); the file is corrupt. Fix: copy it again"
            ) from exc2
    except Exception as exc:
        raise ModelError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); the file is corrupt "
            "or not a torch.save file. Fix: copy it again from the trained model"
        ) from exc
    if isinstance(ckpt, dict) and isinstance(ckpt.get("network_weights"), Mapping):
        state = ckpt["network_weights"]
    elif isinstance(ckpt, Mapping) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        keys = list(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ModelError(
            f"checkpoint {path} has no 'network_weights' (found {keys}); pass a checkpoint "
            "written by nnU-Net v2 (fold_N/checkpoint_final.pth)"
        )
    return dict(state)


# --- parameter names -----------------------------------------------------------------------------
#
# dynamic_network_architectures' PlainConvUNet (encoder: PlainConvEncoder, decoder: UNetDecoder):
#   encoder.stages.{i}.0.convs.{k}.conv.*   and its alias ...convs.{k}.all_modules.0.*
#   encoder.stages.{i}.0.convs.{k}.norm.*   and its alias ...convs.{k}.all_modules.1.*
#     (ConvDropoutNormReLU registers conv/norm and again inside all_modules; with a dropout op
#     the norm is all_modules.2; stage Sequential index 0 is the StackedConvBlocks)
#   decoder.encoder.*        the same encoder again (the decoder keeps a reference to it)
#   decoder.transpconvs.{j}.*, decoder.stages.{j}.convs.{k}.{conv,norm}.* (+ all_modules aliases)
#   decoder.seg_layers.{j}.*  one 1x1x1 head per decoder stage (deep supervision); only the last,
#     full-resolution one is used at inference.
# segbench's PlainConvUNet: encoder.{i}.{k}.{0 conv,1 norm}.*, upsample.{j}.*,
#   decoder.{j}.{k}.{0,1}.*, seg.*  (decoder j = 0 is the lowest resolution in both).
# nnU-Net's network sees (B, C, z, y, x) arrays, segbench's (B, C, X, Y, Z): every conv and
# transposed-conv weight has its three spatial dims reversed on the way (_flip_spatial), which
# makes the two networks compute the same function up to that transpose.

_BLOCK = re.compile(r"(encoder|decoder)\.(\d+)\.(\d+)\.([01])\.(\w+)")
_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class _Names:
    ours: str
    nnunet: str
    aliases: tuple[str, ...]  # written by segbench_state_to_nnunet, accepted on loading
    accepted: tuple[str, ...]  # further names accepted on loading (dropout variants)


def _names(key: str, last_seg: int) -> _Names:
    block = _BLOCK.fullmatch(key)
    if block:
        part, i, k, m, param = block.groups()
        stage = f"encoder.stages.{i}.0" if part == "encoder" else f"decoder.stages.{i}"
        base = f"{stage}.convs.{k}"
        primary = f"{base}.{'conv' if m == '0' else 'norm'}.{param}"
        alias = f"{base}.all_modules.{m}.{param}"
        accepted = (f"{base}.all_modules.2.{param}",) if m == "1" else ()
        if part == "encoder":  # UNetDecoder.encoder is the same module: every name appears twice
            return _Names(
                key,
                primary,
                (alias, f"decoder.{primary}", f"decoder.{alias}"),
                tuple(f"decoder.{a}" for a in accepted) + accepted,
            )
        return _Names(key, primary, (alias,), accepted)
    up = re.fullmatch(r"upsample\.(\d+)\.(\w+)", key)
    if up:
        return _Names(key, f"decoder.transpconvs.{up.group(1)}.{up.group(2)}", (), ())
    seg = re.fullmatch(r"seg\.(\w+)", key)
    if seg:
        return _Names(key, f"decoder.seg_layers.{last_seg}.{seg.group(1)}", (), ())
    raise ModelError(
        f"parameter {key!r} is not one of segbench's PlainConvUNet; map only networks built by "
        "segbench.models.unet.PlainConvUNet"
    )


def _name_table(net: PlainConvUNet) -> list[tuple[str, _Names]]:
    last_seg = len(net.decoder) - 1
    out = []
    for key in net.state_dict():
        names = _names(key, last_seg)
        out.append((key, names))
    return out


def _flip_spatial(tensor: torch.Tensor) -> torch.Tensor:
    """(out, in, kz, ky, kx) <-> (out, in, kx, ky, kz) for 3D (transposed) conv weights."""
    return tensor.permute(0, 1, 4, 3, 2).contiguous() if tensor.dim() == 5 else tensor


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _examples(keys: Sequence[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def nnunet_state_to_segbench(
    state_dict: Mapping[str, torch.Tensor],
    net: PlainConvUNet,
    source: str | Path = "nnU-Net state_dict",
) -> dict[str, torch.Tensor]:
    """Rename an nnU-Net (dynamic-network-architectures) PlainConvUNet state_dict to ``net``'s
    names and reverse the spatial dims of conv weights (nnU-Net runs on (z, y, x) arrays).

    Duplicate names (``all_modules``, ``decoder.encoder``) must equal their primary;
    deep-supervision heads are dropped; missing, unexpected or misshaped keys raise ModelError.
    """
    state = {_strip(k): v for k, v in state_dict.items()}
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing, differing, misshaped = [], [], []
    for key, names in _name_table(net):
        present = [n for n in (names.nnunet, *names.aliases, *names.accepted) if n in state]
        if not present:
            missing.append(names.nnunet)
            continue
        tensor = state[present[0]]
        used.update(present)
        differing += [n for n in present[1:] if not torch.equal(state[n], tensor)]
        tensor = _flip_spatial(tensor)
        if tuple(tensor.shape) != shapes[key]:
            zyx = tuple(state[present[0]].shape)
            misshaped.append(f"{present[0]} {zyx} (z, y, x) vs {shapes[key]} (X, Y, Z)")
        out[key] = tensor
    last_seg = len(net.decoder) - 1
    for name in state:
        head = re.fullmatch(r"decoder\.seg_layers\.(\d+)\.(weight|bias)", name)
        if head and int(head.group(1)) < last_seg:
            used.add(name)  # deep supervision, unused at inference
    unexpected = sorted(set(state) - used)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
    if misshaped:
        problems.append(f"{len(misshaped)} of another shape ({_examples(misshaped, 3)})")
    if differing:
        problems.append(f"{len(differing)} duplicates that differ ({_examples(differing)})")
    if problems:
        raise ModelError(
            f"{source}: the network weights do not fit the PlainConvUNet described by "
            f"{PLANS_NAME}: {'; '.join(problems)}; use the checkpoint and plans of the same "
            "nnU-Net training folder (and the matching configuration)"
        )
    return out


def _nnunet_order(name: str) -> tuple[Any, ...]:
    """Sort key giving nnU-Net's state_dict order (module registration order)."""
    in_decoder = name.startswith("decoder.encoder.")
    rest = name.removeprefix("decoder.") if in_decoder else name
    groups = ("encoder.", "decoder.stages.", "decoder.transpconvs.", "decoder.seg_layers.")
    group = next(i for i, g in enumerate(groups) if rest.startswith(g))
    tokens = rest.split(".")
    alias = "all_modules" in tokens
    if alias:
        head, part = tokens[: tokens.index("all_modules")], int(tokens[-2])
    elif tokens[-2] in ("conv", "norm"):
        head, part = tokens[:-2], int(tokens[-2] == "norm")
    else:
        head, part = tokens[:-1], 0
    numbers = [int(t) for t in head if t.isdigit()]
    param = {"weight": 0, "bias": 1}.get(tokens[-1], 2)
    return (group + 1 if group else int(in_decoder), numbers, alias, part, param)


def segbench_state_to_nnunet(
    state_dict: Mapping[str, torch.Tensor], net: PlainConvUNet
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`nnunet_state_to_segbench`: the state_dict nnU-Net's PlainConvUNet
    (deep supervision heads included) would hold, every duplicate name sharing one tensor and
    conv weights in nnU-Net's (z, y, x) kernel order.

    Deep-supervision heads that segbench's network lacks are zeros (they do not affect inference).
    """
    out: dict[str, torch.Tensor] = {}
    for key, names in _name_table(net):
        if key not in state_dict:
            raise ModelError(f"state_dict lacks {key!r}; pass net.state_dict() of the same net")
        tensor = _flip_spatial(state_dict[key])
        for name in (names.nnunet, *names.aliases):
            out[name] = tensor
    num_classes = net.seg.out_channels
    for j in range(len(net.decoder) - 1):
        channels = int(state_dict[f"upsample.{j}.weight"].shape[1])  # (in, out, kx, ky, kz)
        out[f"decoder.seg_layers.{j}.weight"] = torch.zeros(num_classes, channels, 1, 1, 1)
        out[f"decoder.seg_layers.{j}.bias"] = torch.zeros(num_classes)
    return {k: out[k] for k in sorted(out, key=_nnunet_order)}


# --- the card ------------------------------------------------------------------------------------


def card_from_nnunet_folder(
    path: str | Path,
    fold: int | str = 0,
    checkpoint: str = DEFAULT_CHECKPOINT,
    configuration: str = DEFAULT_CONFIGURATION,
    trust_checkpoint: bool = False,
    tile_step: float | None = None,
) -> ModelCard:
    """A :class:`ModelCard` for an nnU-Net v2 results folder; ``build()`` loads the weights.

    ``fold`` names ``fold_{fold}`` (an int or ``"all"``); ``tile_step=None`` applies
    :func:`default_tile_step` to the dataset name. Plans, labels and normalisation are checked
    here; the checkpoint is read when the card's network is built.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"nnU-Net model folder {folder} does not exist; pass the trainer folder holding "
            f"{PLANS_NAME}, {DATASET_NAME} and fold_N/"
        )
    plans_path, dataset_path = folder / PLANS_NAME, folder / DATASET_NAME
    plans, dataset = _read_json(plans_path), _read_json(dataset_path)
    ckpt_path = folder / f"fold_{fold}" / checkpoint
    if not ckpt_path.is_file():
        folds = sorted(p.name for p in folder.glob("fold_*") if p.is_dir())
        raise ModelError(
            f"checkpoint {ckpt_path} is missing (folds here: {folds or 'none'}); pass an existing "
            "fold and checkpoint name (e.g. checkpoint_best.pth), or copy the trained fold"
        )
    config = configuration_from_plans(plans, configuration, plans_path)
    class_names = class_names_from_dataset(dataset, dataset_path)
    arch = architecture_from_config(
        config, plans_path, _in_channels(dataset, dataset_path), len(class_names), configuration
    )
    normalization = normalization_from_plans(plans, config, plans_path)
    spacing = _xyz(config.get("spacing"), "spacing", plans_path, float)
    patch = _xyz(config.get("patch_size"), "patch_size", plans_path, int)
    if any(s <= 0 for s in spacing) or any(p <= 0 for p in patch):
        raise ModelError(f"{plans_path}: spacing {spacing} / patch {patch} must be positive")
    dataset_name = str(plans.get("dataset_name") or folder.parent.name)
    if tile_step is None:
        tile_step = default_tile_step(f"{dataset_name} {folder.parent.name}")

    def build() -> PlainConvUNet:
        net = arch.build()
        state = load_nnunet_checkpoint(ckpt_path, trust_checkpoint)
        net.load_state_dict(nnunet_state_to_segbench(state, net, ckpt_path))
        return net

    return ModelCard(
        name=f"nnunet-{dataset_name}-{configuration}-fold_{fold}",
        build=build,
        spacing=spacing,
        patch_size=patch,
        total_stride=arch.total_stride,
        normalization=normalization,
        class_names=class_names,
        tile_step=tile_step,
        in_channels=arch.in_channels,
    )
