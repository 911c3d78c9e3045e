"""segbench.models sources: TorchScript / torch.export files with a card file, Python entry
points, and get_card's name parsing."""

from __future__ import annotations

import json
import textwrap
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import TINY_PATCH, build_tiny_net

from segbench.errors import ModelError
from segbench.models import (
    BUILTIN,
    MODEL_FORMS,
    get_card,
    is_valid_model_name,
    load_network,
    parse_model_name,
)
from segbench.models.card import ModelCard
from segbench.models.entrypoint import card_from_entry_point
from segbench.models.torchscript import card_from_torchscript

CARD: dict[str, Any] = {
    "spacing": [3.0, 2.5, 2.0],
    "patch_size": list(TINY_PATCH),
    "total_stride": [4, 4, 4],
    "class_names": ["background", "liver", "spleen"],
    "tile_step": 0.6,
    "normalization": {"lower": -1000.0, "upper": 1000.0, "mean": 0.0, "std": 300.0},
}
CARD_TOML = """\
spacing = [3.0, 2.5, 2.0]
patch_size = [32, 32, 32]
total_stride = [4, 4, 4]
class_names = ["background", "liver", "spleen"]
tile_step = 0.6
name = "tiny-toml"

[normalization]
lower = -1000.0
upper = 1000.0
mean = 0.0
std = 300.0
"""


def _x() -> torch.Tensor:
    return torch.randn(1, 1, 16, 16, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(build_tiny_net(), torch.zeros(1, 1, 16, 16, 16))
        torch.jit.save(traced, str(path))
    return path


def _check_card(card: ModelCard) -> None:
    assert card.spacing == (3.0, 2.5, 2.0) and card.patch_size == TINY_PATCH
    assert card.total_stride == (4, 4, 4) and card.tile_step == 0.6
    assert card.class_names == ("background", "liver", "spleen")
    assert card.normalization.std == 300.0
    net = load_network(card)
    with torch.no_grad():
        torch.testing.assert_close(net(_x()), build_tiny_net()(_x()), rtol=1e-5, atol=1e-5)


def test_torchscript_with_json_card(scripted: Path) -> None:
    card_path = scripted.parent / "card.json"
    card_path.write_text(json.dumps(CARD))
    card = get_card(f"torchscript:{scripted}:{card_path}")
    assert card.name == "tiny"
    _check_card(card)


def test_torchscript_with_toml_card_next_to_it(scripted: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(scripted.read_bytes())
    (tmp_path / "model.toml").write_text(CARD_TOML)
    card = get_card(f"torchscript:{model}")
    assert card.name == "tiny-toml"
    _check_card(card)
    _check_card(card_from_torchscript(model, tmp_path / "model.toml"))


def test_torch_export_pt2(tmp_path: Path) -> None:
    net = build_tiny_net()
    auto = torch.export.Dim.AUTO
    try:
        program = torch.export.export(
            net,
            (torch.zeros(2, 1, 16, 16, 16),),
            dynamic_shapes=({0: auto, 2: auto, 3: auto, 4: auto},),
        )
        torch.export.save(program, str(tmp_path / "tiny.pt2"))
    except Exception as exc:  # pragma: no cover - depends on the torch build
        pytest.skip(f"torch.export cannot export the tiny U-Net here: {type(exc).__name__}: {exc}")
    (tmp_path / "tiny.json").write_text(json.dumps(CARD))
    card = get_card(f"torchscript:{tmp_path / 'tiny.pt2'}")
    _check_card(card)  # load_network's .eval() works on the wrapped exported module


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c.update(spacnig=[1, 1, 1]), "unknown key 'spacnig'"),
        (lambda c: c.pop("class_names"), "missing key 'class_names'"),
        (lambda c: c["normalization"].update(centre=0), "unknown key 'centre' in 'normalization'"),
        (lambda c: c["normalization"].pop("std"), "missing key 'std' in 'normalization'"),
        (lambda c: c.update(patch_size=[32, 32]), "'patch_size'"),
        (lambda c: c.update(patch_size=[32, 32, 30]), "not divisible"),
        (lambda c: c.update(tile_step=1.5), "'tile_step'"),
        (lambda c: c.update(class_names=["background"]), "'class_names'"),
        (lambda c: c["normalization"].update(std=0), "'normalization'"),
    ],
)
def test_card_file_validation_names_key_and_file(
    scripted: Path, tmp_path: Path, edit: Any, match: str
) -> None:
    data = json.loads(json.dumps(CARD))
    edit(data)
    card_path = tmp_path / "bad.json"
    card_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=match) as info:
        card_from_torchscript(scripted, card_path)
    if "divisible" not in match:  # ModelCard's own check names the model instead
        assert str(card_path) in str(info.value)


def test_torchscript_missing_or_unreadable_files(scripted: Path, tmp_path: Path) -> None:
    card_path = tmp_path / "card.json"
    card_path.write_text(json.dumps(CARD))
    with pytest.raises(ModelError, match="missing"):
        card_from_torchscript(tmp_path / "nope.pt", card_path)
    with pytest.raises(ModelError, match=r"nope\.json is missing"):
        card_from_torchscript(scripted, tmp_path / "nope.json")
    with pytest.raises(ModelError, match="no model card next to"):
        get_card(f"torchscript:{tmp_path / 'lonely.pt'}")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"no model here")
    with pytest.raises(ModelError, match=r"torch\.jit\.load cannot read it"):
        load_network(card_from_torchscript(garbage, card_path))
    (tmp_path / "broken.toml").write_text("spacing = [")
    with pytest.raises(ModelError, match=r"broken\.toml: cannot parse"):
        card_from_torchscript(scripted, tmp_path / "broken.toml")


# ---- entry points ----------------------------------------------------------------------------

FACTORIES = """
from segbench.models.card import ModelCard
from segbench.models.normalization import CTNormalization
from helpers import build_tiny_net

FIELDS = {FIELDS}

def as_pair():
    return build_tiny_net(), dict(FIELDS)

def as_card():
    return ModelCard(
        name="from-card", build=build_tiny_net, spacing=(1.0, 1.0, 1.0), patch_size=(32, 32, 32),
        total_stride=(4, 4, 4), normalization=CTNormalization(-1000.0, 1000.0, 0.0, 300.0),
        class_names=("background", "a", "b"),
    )

def wrong():
    return build_tiny_net()

def bad_fields():
    return build_tiny_net(), dict(FIELDS, colour="red")

def broken():
    raise RuntimeError("no weights today")

class Holder:
    @staticmethod
    def make():
        return as_pair()

NOT_CALLABLE = 3
"""


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"segbench_factories_{uuid.uuid4().hex[:8]}"
    source = FACTORIES.replace("{FIELDS}", repr(CARD))
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_entry_point_pair_and_card(factories: str) -> None:
    card = get_card(f"entrypoint:{factories}:as_pair")
    assert card.name == "as_pair"
    _check_card(card)
    assert get_card(f"entrypoint:{factories}:Holder.make").name == "Holder.make"
    direct = card_from_entry_point(f"{factories}:as_card")
    assert direct.name == "from-card" and direct.num_classes == 3


@pytest.mark.parametrize(
    ("attr", "match"),
    [
        ("wrong", "returned PlainConvUNet; a factory must return"),
        ("bad_fields", "unknown key 'colour'"),
        ("broken", "raised RuntimeError: no weights today"),
        ("missing", "has no attribute 'missing'"),
        ("NOT_CALLABLE", "not a callable"),
    ],
)
def test_entry_point_refusals(factories: str, attr: str, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        card_from_entry_point(f"{factories}:{attr}")


def test_entry_point_import_error_and_form() -> None:
    with pytest.raises(ModelError, match=r"cannot import 'no_such_pkg_xyz\.mod'.*PYTHONPATH"):
        card_from_entry_point("no_such_pkg_xyz.mod:factory")
    with pytest.raises(ModelError, match=r"package\.module:factory"):
        card_from_entry_point("just_a_module")


# ---- get_card name parsing -------------------------------------------------------------------


def test_parse_model_names() -> None:
    assert BUILTIN == ("demo", "ts-fast")
    assert parse_model_name("ts-fast") == ("ts-fast", {})
    assert parse_model_name("nnunet:/m/Dataset1/T__P__3d_fullres") == (
        "nnunet",
        {"path": "/m/Dataset1/T__P__3d_fullres"},
    )
    assert parse_model_name("nnunet:/m#fold=all,checkpoint=checkpoint_best.pth,trust") == (
        "nnunet",
        {
            "path": "/m",
            "fold": "all",
            "checkpoint": "checkpoint_best.pth",
            "trust_checkpoint": True,
        },
    )
    assert parse_model_name("nnunet:/m#fold=2,tile_step=0.5,configuration=3d_lowres")[1] == {
        "path": "/m",
        "fold": 2,
        "tile_step": 0.5,
        "configuration": "3d_lowres",
    }
    assert parse_model_name("torchscript:/a/m.pt:/a/c.toml") == (
        "torchscript",
        {"model_path": "/a/m.pt", "card_path": "/a/c.toml"},
    )
    assert parse_model_name("torchscript:m.pt2")[1] == {"model_path": "m.pt2", "card_path": ""}
    assert parse_model_name("entrypoint:pkg.mod:make") == ("entrypoint", {"spec": "pkg.mod:make"})


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("demo", True),
        ("ts-fast", True),
        ("nnunet:/some/folder", True),
        ("nnunet:/some/folder#fold=1", True),
        ("torchscript:m.pt:c.json", True),
        ("entrypoint:pkg.mod:factory", True),
        ("nnunet:", False),
        ("nnunet:/f#folds=1", False),
        ("nnunet:/f#trust=maybe", False),
        ("entrypoint:pkg.mod", False),
        ("onnx:model.onnx", False),
        ("no-such-model", False),
    ],
)
def test_is_valid_model_name(name: str, valid: bool) -> None:
    assert is_valid_model_name(name) is valid


def test_unknown_names_list_the_accepted_forms() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'onnx:m\.onnx'") as info:
        get_card("onnx:m.onnx")
    for form in MODEL_FORMS:
        assert form in str(info.value)
    with pytest.raises(ModelError, match="bad option 'folds=1'"):
        get_card("nnunet:/f#folds=1")
    with pytest.raises(ModelError, match="does not exist"):
        get_card("nnunet:/no/such/folder")
