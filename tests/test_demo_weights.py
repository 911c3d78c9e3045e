"""The demo model's weights and card are package data, found through importlib.resources."""

from __future__ import annotations

from pathlib import Path

import pytest

import segbench
from segbench.errors import ModelError
from segbench.models import demo
from segbench.models.card import sha256_file

ROOT = Path(__file__).resolve().parents[1]


def test_demo_weights_live_in_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGBENCH_DEMO_DIR", raising=False)
    folder = demo.default_dir()
    assert folder == Path(segbench.__file__).parent / "models" / "weights"
    card = demo.card()
    assert card.weights == folder / demo.WEIGHTS_NAME
    assert sha256_file(card.weights) == card.weights_sha256


def test_pyproject_declares_the_demo_files_as_package_data() -> None:
    section = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1]
    data = section.split("\n[")[0]
    for name in (demo.WEIGHTS_NAME, demo.CARD_NAME):
        assert f'"models/weights/{name}"' in data


def test_demo_dir_env_points_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEGBENCH_DEMO_DIR", str(tmp_path))
    assert demo.default_dir() == tmp_path
    with pytest.raises(ModelError, match=r"demo_unet\.json is missing.*Fix: reinstall"):
        demo.card()
