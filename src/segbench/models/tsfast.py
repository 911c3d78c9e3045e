"""The architecture of TotalSegmentator's fast 3 mm model, with seeded random weights.

nnU-Net PlainConvUNet, 118 output classes, features 32-64-128-256-320-320, 3x3x3 convs,
InstanceNorm, LeakyReLU; strides chosen as nnU-Net's planner would for a 128 x 112 x 112 patch
(total stride 32 x 16 x 16): 30.6 M parameters, ~734 GFLOP per patch. Its Dice is meaningless
(random weights); its timings are real.
"""

from __future__ import annotations

import torch

from segbench.models.card import ModelCard
from segbench.models.normalization import CTNormalization
from segbench.models.unet import PlainConvUNet

FEATURES = (32, 64, 128, 256, 320, 320)
STRIDES = ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 1, 1))
NUM_CLASSES = 118
SEED = 20240297


def build() -> PlainConvUNet:
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    try:
        net = PlainConvUNet(1, FEATURES, STRIDES, NUM_CLASSES)
    finally:
        torch.random.set_rng_state(gen_state)
    return net


def card() -> ModelCard:
    return ModelCard(
        name="ts-fast",
        build=build,
        spacing=(3.0, 3.0, 3.0),
        patch_size=(128, 112, 112),
        total_stride=(32, 16, 16),
        # TotalSegmentator's CT intensity properties (percentile clip, mean, std) are of this order
        normalization=CTNormalization(lower=-1004.0, upper=1588.0, mean=-50.4, std=503.4),
        class_names=("background", *(f"class_{i:03d}" for i in range(1, NUM_CLASSES))),
        tile_step=0.5,  # TotalSegmentator runs its 3 mm models at nnU-Net's 0.5
    )
