"""segbench.pipeline.export and the ONNX Runtime backend: cached, verified exports of a U-Net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import build_tiny_net, tiny_card

from segbench.errors import ModelError
from segbench.pipeline.backends import BackendKind, OrtBackend, TorchBackend
from segbench.pipeline.export import (
    ExportResult,
    cache_key,
    check_onnx_matches,
    export_onnx,
    to_float16,
)

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def exported(export_dir: Path) -> ExportResult:
    return export_onnx(build_tiny_net(), tiny_card(), export_dir)


def test_export_creates_a_valid_verified_file(exported: ExportResult, export_dir: Path) -> None:
    assert exported.cached is False
    assert exported.path.is_file()
    assert exported.path.parent == export_dir
    assert exported.path.suffix == ".onnx"
    assert exported.path.name.startswith("tiny-")
    onnx.checker.check_model(str(exported.path))
    assert 0.0 <= exported.max_abs_diff < 1e-4
    # the temporary file is gone: only the model and its metadata remain
    assert sorted(p.name for p in export_dir.iterdir()) == sorted(
        [exported.path.name, exported.path.with_suffix(".json").name]
    )


def test_second_export_is_cached(
    exported: ExportResult, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mtime = exported.path.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("export_onnx re-exported a cached model")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = export_onnx(build_tiny_net(), tiny_card(), export_dir)  # a fresh, equal network
    assert again.cached is True
    assert again.path == exported.path
    assert again.max_abs_diff == exported.max_abs_diff
    assert exported.path.stat().st_mtime_ns == mtime


def test_different_weights_get_a_different_file(exported: ExportResult, tmp_path: Path) -> None:
    other_net = build_tiny_net(seed=1)
    assert cache_key(other_net, 17) != cache_key(build_tiny_net(), 17)
    assert cache_key(build_tiny_net(), 17) != cache_key(build_tiny_net(), 18)
    other = export_onnx(other_net, tiny_card(seed=1), tmp_path)
    assert other.cached is False
    assert other.path.name != exported.path.name
    onnx.checker.check_model(str(other.path))


def test_dynamic_spatial_axes(exported: ExportResult) -> None:
    backend = OrtBackend(exported.path, providers=["CPUExecutionProvider"], threads=1)
    assert backend.kind is BackendKind.ONNX
    assert backend.provider == "CPUExecutionProvider"
    net = build_tiny_net()
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 16, 24, 40), (2, 1, 8, 32, 12)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        out = backend(x)
        assert out.shape == (shape[0], 3, *shape[2:])
        assert out.dtype == np.float32
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(out, ref, atol=1e-3)


def test_ort_matches_torch_on_a_patch(exported: ExportResult) -> None:
    x = np.random.default_rng(5).standard_normal((1, 1, 32, 32, 32), dtype=np.float32)
    ort_out = OrtBackend(exported.path, providers=["CPUExecutionProvider"])(x)
    torch_out = TorchBackend(build_tiny_net())(x)
    assert ort_out.shape == torch_out.shape == (1, 3, 32, 32, 32)
    assert float(np.abs(ort_out - torch_out).max()) < 1e-3
    assert float(np.abs(torch_out).max()) > 1e-2  # not a trivially zero output


@pytest.mark.parametrize(("spinning", "flag"), [(False, "0"), (True, "1")])
def test_spinning_reaches_the_session(exported: ExportResult, spinning: bool, flag: str) -> None:
    """Off by default: a spinning pool would take the cores from the reference run that
    follows the candidate's in a pair."""
    from segbench.pipeline.factory import build_backend
    from segbench.settings.config import Profile

    backend = OrtBackend(exported.path, providers=["CPUExecutionProvider"], spinning=spinning)
    default = OrtBackend(exported.path, providers=["CPUExecutionProvider"])
    profile = Profile(BackendKind.ONNX, provider="cpu", spinning=spinning)
    built = build_backend(profile, build_tiny_net(), exported.path, exported.path.parent)
    assert isinstance(built, OrtBackend)
    for pool in ("intra_op", "inter_op"):
        key = f"session.{pool}.allow_spinning"
        assert backend.session.get_session_options().get_session_config_entry(key) == flag
        assert built.session.get_session_options().get_session_config_entry(key) == flag
        assert default.session.get_session_options().get_session_config_entry(key) == "0"


def test_io_binding_gives_the_same_logits(exported: ExportResult) -> None:
    """IO binding (on by default on GPU providers) runs here on the CPU provider: same output,
    for several window shapes in a row (the output is bound afresh per call)."""
    plain = OrtBackend(exported.path, providers=["CPUExecutionProvider"])
    bound = OrtBackend(exported.path, providers=["CPUExecutionProvider"], io_binding=True)
    assert plain.io_binding is False and bound.io_binding is True and bound.device == "cpu"
    rng = np.random.default_rng(3)
    for shape in [(1, 1, 16, 16, 16), (2, 1, 32, 16, 8)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        out = bound(x)
        assert out.dtype == np.float32 and out.shape == (shape[0], 3, *shape[2:])
        np.testing.assert_array_equal(out, plain(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and onnxruntime-gpu")
def test_gpu_providers_bind_io_on_the_device(exported: ExportResult) -> None:
    backend = OrtBackend(exported.path)
    assert backend.provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"), (
        f"onnxruntime fell back to {backend.provider}: install onnxruntime-gpu for this CUDA"
    )
    assert backend.io_binding and backend.device == "cuda"
    x = np.random.default_rng(5).standard_normal((1, 1, 32, 32, 32), dtype=np.float32)
    torch_out = TorchBackend(build_tiny_net(), device="cuda")(x)
    assert float(np.abs(backend(x) - torch_out).max()) < 1e-2


def test_check_onnx_matches_accepts_the_right_model(exported: ExportResult) -> None:
    check_onnx_matches(exported.path, tiny_card())


def test_check_onnx_matches_refuses_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("definitely not protobuf\n" * 10)
    with pytest.raises(ModelError) as info:
        check_onnx_matches(path, tiny_card())
    assert str(path) in str(info.value)


def test_check_onnx_matches_refuses_other_class_count(tmp_path: Path) -> None:
    five = export_onnx(build_tiny_net(num_classes=5), tiny_card(num_classes=5), tmp_path)
    check_onnx_matches(five.path, tiny_card(num_classes=5))
    with pytest.raises(ModelError) as info:
        check_onnx_matches(five.path, tiny_card(num_classes=3))
    message = str(info.value)
    assert str(five.path) in message
    assert "5 channels, expected 3" in message


def test_ort_backend_refuses_text_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_text("not a model")
    with pytest.raises(ModelError, match=r"broken\.onnx"):
        OrtBackend(path, providers=["CPUExecutionProvider"])


def test_ort_backend_rejects_bad_graph_level(exported: ExportResult) -> None:
    with pytest.raises(ValueError, match="graph_level"):
        OrtBackend(exported.path, providers=["CPUExecutionProvider"], graph_level="max")


def test_float16_copy_keeps_float32_io_and_close_logits(
    exported: ExportResult, tmp_path: Path
) -> None:
    half = to_float16(exported.path, tmp_path)
    assert half != exported.path and half.parent == tmp_path
    model = onnx.load(str(half))
    weights = [i for i in model.graph.initializer if len(i.dims) == 5]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(5).standard_normal((1, 1, 32, 32, 32), dtype=np.float32)
    full = OrtBackend(exported.path, providers=["CPUExecutionProvider"])(x)
    out = OrtBackend(half, providers=["CPUExecutionProvider"])(x)
    assert out.dtype == np.float32 and out.shape == full.shape
    diff = float(np.abs(out - full).max())
    assert 0 < diff < 0.05 * float(np.abs(full).max())  # rounded, not identical, not broken
    assert to_float16(exported.path, tmp_path) == half  # cached
    with pytest.raises(ModelError, match="cannot convert it to float16"):
        bad = tmp_path / "bad.onnx"
        bad.write_text("not onnx")
        to_float16(bad, tmp_path)
