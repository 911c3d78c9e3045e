"""Train the embedded demo model on segbench's phantoms; write src/segbench/models/weights/.

    python scripts/train_demo.py            # ~10 min on 2 CPU cores, deterministic

Writes ``demo_unet.pt`` (state_dict) and ``demo_unet.json`` (the model card: spacing, patch,
normalisation constants measured on the training phantoms, class names, SHA-256 of the weights,
and the validation Dice on unseen phantoms).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segbench.inputs.phantoms import LABELS, generate_phantom, phantom_set
from segbench.inputs.volumes import load_volume
from segbench.models import demo
from segbench.models.card import sha256_file
from segbench.models.normalization import CTNormalization
from segbench.pipeline.backends import TorchBackend
from segbench.pipeline.predict import predict_volume
from segbench.pipeline.preprocess import resample, resampled_shape
from segbench.scoring.metrics import compute_dice
from segbench.settings.pipeline import PipelineSettings

SPACING = (3.0, 3.0, 3.0)
PATCH = (64, 64, 64)
TILE_STEP = 0.8
CLASS_NAMES = tuple(LABELS[k] for k in sorted(LABELS))
# the package data of the checkout this script lies in (shipped in the wheel)
OUT = Path(__file__).resolve().parents[1] / "src" / "segbench" / "models" / "weights"


def training_volumes() -> list[tuple[np.ndarray, np.ndarray]]:
    """The training phantoms on the 3 mm grid: (HU float32, labels uint8), RAS."""
    out = []
    for spec in phantom_set("train"):
        image, seg = generate_phantom(spec)
        vol = load_volume(image)
        shape = resampled_shape(vol.shape, vol.spacing, SPACING)
        seg_ras = load_volume(seg, expect_ct=False).array.astype(np.uint8)
        out.append((resample(vol.array, shape, order=1), resample(seg_ras, shape, order=0)))
    return out


def normalization_from(volumes: list[tuple[np.ndarray, np.ndarray]]) -> CTNormalization:
    """nnU-Net's CT intensity properties: foreground percentiles 0.5/99.5, mean and std."""
    fg = np.concatenate([img[seg > 0][::10] for img, seg in volumes])
    lo, hi = np.percentile(fg, [0.5, 99.5])
    return CTNormalization(
        lower=round(float(lo), 2),
        upper=round(float(hi), 2),
        mean=round(float(fg.mean()), 2),
        std=round(float(fg.std()), 2),
    )


def random_crop(
    img: np.ndarray,
    seg: np.ndarray,
    size: tuple[int, int, int],
    rng: np.random.Generator,
    foreground: bool,
) -> tuple[np.ndarray, np.ndarray]:
    pads = [(0, max(0, s - n)) for s, n in zip(size, img.shape, strict=True)]
    img = np.pad(img, pads, constant_values=0.0)
    seg = np.pad(seg, pads, constant_values=0)
    present = np.unique(seg[seg > 0])
    if foreground and present.size:
        # class-balanced: a random present class, then a random voxel of it (small organs such
        # as the aorta would otherwise be sampled rarely)
        idx = np.argwhere(seg == present[rng.integers(present.size)])
        centre = idx[rng.integers(len(idx))]
        start = [
            int(np.clip(c - s // 2, 0, n - s))
            for c, s, n in zip(centre, size, img.shape, strict=True)
        ]
    else:
        start = [int(rng.integers(0, n - s + 1)) for s, n in zip(size, img.shape, strict=True)]
    sl = tuple(slice(a, a + s) for a, s in zip(start, size, strict=True))
    return img[sl], seg[sl]


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + 1e-5) / (denom + 1e-5))[1:].mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--crop", type=int, default=48)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    volumes = training_volumes()
    norm = normalization_from(volumes)
    volumes = [(norm.apply(img.copy()), seg) for img, seg in volumes]
    print(f"{len(volumes)} training phantoms ready in {time.perf_counter() - t0:.0f} s; {norm}")

    net = demo.build(len(CLASS_NAMES))
    opt = torch.optim.AdamW(net.parameters(), lr=5e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: (1 - i / args.iterations) ** 0.9)
    crop = (args.crop,) * 3
    net.train()
    for it in range(args.iterations):
        pairs = [
            random_crop(
                *volumes[int(rng.integers(len(volumes)))],
                crop,
                rng,
                foreground=bool(rng.random() < 0.5),
            )
            for _ in range(args.batch)
        ]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None].copy())
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        logits = net(x)
        loss = F.cross_entropy(logits, y) + dice_loss(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 50 == 0 or it == args.iterations - 1:
            print(
                f"iter {it:4d} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / demo.WEIGHTS_NAME
    torch.save(net.state_dict(), weights)
    meta = {
        "spacing": list(SPACING),
        "patch_size": list(PATCH),
        "tile_step": TILE_STEP,
        "normalization": norm.__dict__,
        "class_names": list(CLASS_NAMES),
        "weights_sha256": sha256_file(weights),
        "training": {
            "phantom_set": "train",
            "iterations": args.iterations,
            "crop": args.crop,
            "batch": args.batch,
            "seconds": round(time.perf_counter() - t0),
        },
    }
    card_path = args.out / demo.CARD_NAME
    card_path.write_text(json.dumps(meta, indent=1) + "\n")

    # validation on unseen phantoms, with the full pipeline (original grids)
    card = demo.card(args.out)
    backend = TorchBackend(net.eval())
    scores = {}
    for spec in phantom_set("val"):
        image, seg = generate_phantom(spec)
        vol = load_volume(image)
        pred = predict_volume(vol, card, backend, PipelineSettings())
        truth = load_volume(seg, expect_ct=False).array.astype(np.uint8)
        scores[spec.case_id] = round(compute_dice(truth, pred.labels).mean, 4)
    meta["validation"] = {
        "phantom_set": "val",
        "mean_dice_per_case": scores,
        "mean_dice": round(float(np.mean(list(scores.values()))), 4),
    }
    card_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta["validation"], indent=1))
    print(f"done in {time.perf_counter() - t0:.0f} s -> {weights}")


if __name__ == "__main__":
    main()
