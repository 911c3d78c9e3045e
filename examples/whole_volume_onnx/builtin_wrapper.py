"""segbench's own ONNX path wrapped as a ``pipeline`` factory: the same preprocessing, sliding
window and postprocessing as the built-in candidate, on the same cached ONNX file. Run beside
the built-in candidate (``wrapper.json``), it shows what the wrapper costs: its masks must equal
the built-in candidate's and its speed-up must lie inside the built-in one's interval."""

from __future__ import annotations

from collections.abc import Callable

import nibabel as nib


def make_segmenter(threads: int | None = None) -> Callable[[nib.Nifti1Image], nib.Nifti1Image]:
    import torch

    from segbench.inputs.phantoms import default_cache_dir
    from segbench.inputs.volumes import load_volume
    from segbench.models import get_card, load_network
    from segbench.pipeline.export import export_onnx
    from segbench.pipeline.factory import build_backend
    from segbench.pipeline.predict import predict_volume
    from segbench.settings.config import Profile
    from segbench.settings.kinds import BackendKind

    card = get_card("demo")
    net = load_network(card)
    folder = default_cache_dir() / "onnx"
    onnx = export_onnx(net, card, folder).path
    profile = Profile(BackendKind.ONNX, threads=threads or torch.get_num_threads())
    backend = build_backend(profile, net, onnx, folder)

    def segment(image: nib.Nifti1Image) -> nib.Nifti1Image:
        return predict_volume(load_volume(image), card, backend, profile.pipeline).mask

    return segment
