"""segbench: PyTorch vs ONNX Runtime regression gates for 3D CT segmentation.

The public API: :func:`predict` (one volume through one backend), the pipeline pieces it is
made of, the metrics and the gates. Names are imported on first use, so ``import segbench``
(and the pytest plugin, the saved-run tools) import no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "BackendKind": "segbench.settings.kinds",
    "ConfigError": "segbench.errors",
    "InputError": "segbench.errors",
    "ModelError": "segbench.errors",
    "SegbenchError": "segbench.errors",
    "ModelCard": "segbench.models",
    "get_card": "segbench.models",
    "load_network": "segbench.models",
    "OrtBackend": "segbench.pipeline.backends",
    "TorchBackend": "segbench.pipeline.backends",
    "export_onnx": "segbench.pipeline.export",
    "compute_gaussian": "segbench.pipeline.inference",
    "compute_steps": "segbench.pipeline.inference",
    "sliding_window": "segbench.pipeline.inference",
    "PipelineSettings": "segbench.settings.pipeline",
    "Prediction": "segbench.pipeline.predict",
    "StageTimes": "segbench.pipeline.predict",
    "predict": "segbench.pipeline.predict",
    "predict_volume": "segbench.pipeline.predict",
    "compute_dice": "segbench.scoring.metrics",
    "logit_diff": "segbench.scoring.metrics",
    "Volume": "segbench.inputs.volumes",
    "load_volume": "segbench.inputs.volumes",
}

__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:
    from segbench.errors import ConfigError, InputError, ModelError, SegbenchError  # noqa: F401
    from segbench.inputs.volumes import Volume, load_volume  # noqa: F401
    from segbench.models import ModelCard, get_card, load_network  # noqa: F401
    from segbench.pipeline.backends import OrtBackend, TorchBackend  # noqa: F401
    from segbench.pipeline.export import export_onnx  # noqa: F401
    from segbench.pipeline.inference import compute_gaussian, compute_steps, sliding_window  # noqa: F401
    from segbench.pipeline.predict import Prediction, StageTimes, predict, predict_volume  # noqa: F401
    from segbench.scoring.metrics import compute_dice, logit_diff  # noqa: F401
    from segbench.settings.kinds import BackendKind  # noqa: F401
    from segbench.settings.pipeline import PipelineSettings  # noqa: F401


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'segbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
