"""nnU-Net's PlainConvUNet (conv - InstanceNorm - LeakyReLU stacks, transposed-conv decoder).

Written here so the core install needs neither nnU-Net nor dynamic-network-architectures (which
pulls timm and torchvision). Parameter names follow nothing external: weights are our own;
:mod:`segbench.models.nnunet` maps nnU-Net's checkpoint names onto these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

Shape3 = tuple[int, int, int]


class ConvNormAct(nn.Sequential):
    """Conv3d (odd kernel, "same" padding) - InstanceNorm3d (affine) - LeakyReLU(0.01)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: Shape3,
        kernel: int | Sequence[int] = 3,
        bias: bool = True,
    ) -> None:
        ks = [kernel] * 3 if isinstance(kernel, int) else [int(k) for k in kernel]
        if len(ks) != 3 or any(k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"kernel must be 3 odd sizes, got {kernel!r}")
        size, pad = (ks[0], ks[1], ks[2]), (ks[0] // 2, ks[1] // 2, ks[2] // 2)
        super().__init__(
            nn.Conv3d(cin, cout, size, stride=stride, padding=pad, bias=bias),
            nn.InstanceNorm3d(cout, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


def _stack(
    cin: int,
    cout: int,
    stride: Shape3,
    n: int,
    kernel: int | Sequence[int] = 3,
    bias: bool = True,
) -> nn.Sequential:
    return nn.Sequential(
        ConvNormAct(cin, cout, stride, kernel, bias),
        *(ConvNormAct(cout, cout, (1, 1, 1), kernel, bias) for _ in range(n - 1)),
    )


def _per_stage(value: int | Sequence[int], n: int, what: str) -> list[int]:
    values = [int(value)] * n if isinstance(value, int) else [int(v) for v in value]
    if len(values) != n or any(v < 1 for v in values):
        raise ValueError(f"{what} must be one positive int or {n} of them, got {value!r}")
    return values


class PlainConvUNet(nn.Module):
    """3D U-Net as nnU-Net v2 builds it: input ``(B, C, X, Y, Z)``, logits ``(B, K, X, Y, Z)``.

    ``strides[i]`` is the stride of the first conv of encoder stage ``i`` (stage 0 usually 1);
    each spatial size must be divisible by :attr:`total_stride`.

    Optional, as nnU-Net's plans allow: ``n_conv_encoder`` per stage (one int or one per stage),
    ``n_conv_decoder`` (one int or one per decoder stage, lowest resolution first),
    ``kernel_sizes`` (one odd ``(kx, ky, kz)`` per encoder stage; decoder stage at resolution
    ``s`` uses stage ``s``'s kernel; default 3 everywhere) and ``conv_bias`` (bias of the 3x3x3
    and transposed convolutions; the 1x1x1 segmentation conv always has one).
    """

    def __init__(
        self,
        in_channels: int,
        features: Sequence[int],
        strides: Sequence[Sequence[int]],
        num_classes: int,
        n_conv_encoder: int | Sequence[int] = 2,
        n_conv_decoder: int | Sequence[int] = 2,
        kernel_sizes: Sequence[Sequence[int]] | None = None,
        conv_bias: bool = True,
    ) -> None:
        super().__init__()
        if len(features) != len(strides):
            raise ValueError(f"features {features} and strides {strides} differ in length")
        n = len(features)
        self.strides: list[Shape3] = [(int(s[0]), int(s[1]), int(s[2])) for s in strides]
        kernels: list[Sequence[int]] = (
            [(3, 3, 3)] * n if kernel_sizes is None else [tuple(k) for k in kernel_sizes]
        )
        if len(kernels) != n:
            raise ValueError(f"kernel_sizes {kernel_sizes} must have {n} entries (one per stage)")
        n_enc = _per_stage(n_conv_encoder, n, "n_conv_encoder")
        n_dec = _per_stage(n_conv_decoder, n - 1, "n_conv_decoder")
        self.encoder = nn.ModuleList()
        cin = in_channels
        for s, (feat, stride) in enumerate(zip(features, self.strides, strict=True)):
            self.encoder.append(_stack(cin, feat, stride, n_enc[s], kernels[s], conv_bias))
            cin = feat
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for j, s in enumerate(range(n - 2, -1, -1)):
            up_stride = self.strides[s + 1]
            self.upsample.append(
                nn.ConvTranspose3d(
                    features[s + 1], features[s], up_stride, stride=up_stride, bias=conv_bias
                )
            )
            self.decoder.append(
                _stack(2 * features[s], features[s], (1, 1, 1), n_dec[j], kernels[s], conv_bias)
            )
        self.seg = nn.Conv3d(features[0], num_classes, 1)

    @property
    def total_stride(self) -> tuple[int, int, int]:
        prod = [math.prod(s[a] for s in self.strides) for a in range(3)]
        return (prod[0], prod[1], prod[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.upsample, self.decoder, strict=True):
            x = dec(torch.cat((up(x), skips.pop()), dim=1))
        return self.seg(x)


def count_flops(net: PlainConvUNet, patch: Sequence[int]) -> int:
    """Multiply-add FLOPs (2 per MAC) of the convolutions for one ``patch`` (batch 1)."""
    flops = 0
    size = [int(p) for p in patch]

    def conv_flops(conv: nn.Conv3d | nn.ConvTranspose3d, out_size: Sequence[int]) -> int:
        k = math.prod(conv.kernel_size)
        return 2 * conv.in_channels * conv.out_channels * k * math.prod(out_size) // conv.groups

    sizes = []
    for stage, stride in zip(net.encoder, net.strides, strict=True):
        size = [s // st for s, st in zip(size, stride, strict=True)]
        sizes.append(size)
        flops += sum(conv_flops(m, size) for m in stage.modules() if isinstance(m, nn.Conv3d))
    for i, (up, dec) in enumerate(zip(net.upsample, net.decoder, strict=True)):
        out = sizes[-2 - i]
        assert isinstance(up, nn.ConvTranspose3d)
        # a transposed conv with kernel == stride: one MAC per input voxel and kernel tap
        taps = math.prod(up.kernel_size)
        flops += 2 * up.in_channels * up.out_channels * taps * math.prod(sizes[-1 - i])
        flops += sum(conv_flops(m, out) for m in dec.modules() if isinstance(m, nn.Conv3d))
    flops += conv_flops(net.seg, sizes[0])
    return flops
