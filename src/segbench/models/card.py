"""The one small typed object that describes a segmentation model to segbench."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbench.errors import ModelError
from segbench.models.normalization import CTNormalization

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class ModelCard:
    """Everything the pipeline needs to run a model, whatever its source.

    ``build`` returns the network with its final weights when ``weights`` is None (for example
    seeded random weights); otherwise a ``state_dict`` file is loaded with
    ``torch.load(weights_only=True)`` after its SHA-256 is checked against ``weights_sha256``.
    ``spacing`` is the target voxel size in mm (RAS axis order), ``patch_size`` the sliding-window
    patch, divisible by ``total_stride``; ``class_names[0]`` is the background.
    """

    name: str
    build: Callable[[], nn.Module]
    spacing: tuple[float, float, float]
    patch_size: Shape3
    total_stride: Shape3
    normalization: CTNormalization
    class_names: tuple[str, ...]
    tile_step: float = 0.5
    in_channels: int = 1
    weights: Path | None = None
    weights_sha256: str | None = None

    def __post_init__(self) -> None:
        bad = [p for p, s in zip(self.patch_size, self.total_stride, strict=True) if p % s]
        if bad:
            raise ModelError(
                f"model {self.name!r}: patch {self.patch_size} is not divisible by the network's "
                f"total stride {self.total_stride}; pick a patch that is a multiple of it"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_network(card: ModelCard) -> nn.Module:
    """Build ``card``'s network, load and verify its weights, and put it in eval mode."""
    net = card.build()
    if card.weights is not None:
        path = Path(card.weights)
        if not path.is_file():
            raise ModelError(
                f"model {card.name!r}: weights file {path} is missing; regenerate it "
                "(for the demo model: python scripts/train_demo.py) or point the card at it"
            )
        if card.weights_sha256 is not None:
            actual = sha256_file(path)
            if actual != card.weights_sha256:
                raise ModelError(
                    f"model {card.name!r}: weights file {path} has SHA-256 {actual}, expected "
                    f"{card.weights_sha256}; the file is corrupt or from another run: restore it "
                    "from git or retrain and update the recorded checksum"
                )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as exc:
            raise ModelError(
                f"model {card.name!r}: cannot load weights {path} ({type(exc).__name__}: {exc}); "
                "check that the file is a state_dict saved by this model's training script"
            ) from exc
    return net.eval()


def state_digest(net: nn.Module) -> str:
    """SHA-256 over the network's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(net.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_mapping(
    load: Callable[[], Any],
    unreadable: Callable[[str], str],
    not_a_mapping: Callable[[str], str],
) -> dict[str, Any]:
    """A model file's settings: ``load()``'s result, which must be a mapping. A
    :class:`ModelError` raised by ``load`` passes; any other error becomes one with the message
    ``unreadable(error)``, and a result of another kind one with ``not_a_mapping(kind)`` (its
    type's name)."""
    try:
        data = load()
    except ModelError:
        raise
    except Exception as exc:  # the parser's decode errors, OSError, UnicodeDecodeError
        raise ModelError(unreadable(f"{type(exc).__name__}: {exc}")) from exc
    if not isinstance(data, dict):
        raise ModelError(not_a_mapping(type(data).__name__))
    return data
