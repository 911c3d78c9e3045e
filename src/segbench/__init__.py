"""segbench: PyTorch vs ONNX Runtime regression gates for 3D CT segmentation.

The public API: :func:`predict` (one volume through one backend), the pipeline pieces it is
made of, the metrics and the gates.
"""

from segbench.backends import BackendKind, OrtBackend, TorchBackend
from segbench.errors import ConfigError, InputError, ModelError, SegbenchError
from segbench.export import export_onnx
from segbench.inference import compute_gaussian, compute_steps, sliding_window
from segbench.metrics import compute_dice, logit_diff
from segbench.models import ModelCard, get_card, load_network
from segbench.pipeline import PipelineSettings, Prediction, StageTimes, predict, predict_volume
from segbench.volumes import Volume, load_volume

__version__ = "0.1.0"

__all__ = [
    "BackendKind",
    "ConfigError",
    "InputError",
    "ModelCard",
    "ModelError",
    "OrtBackend",
    "PipelineSettings",
    "Prediction",
    "SegbenchError",
    "StageTimes",
    "TorchBackend",
    "Volume",
    "compute_dice",
    "compute_gaussian",
    "compute_steps",
    "export_onnx",
    "get_card",
    "load_network",
    "load_volume",
    "logit_diff",
    "predict",
    "predict_volume",
    "sliding_window",
]
