"""A deployment's label numbering (a profile's ``"labels"``) and how two numberings are paired.

A profile that runs the user's own pipeline or command may number its classes differently from
the model segbench knows. Its ``"labels"`` says how, in one of three forms::

    {"1": "spleen", "2": "kidney", ...}          label value -> class name (0 is the background)
    "path/to/dataset.json"                       nnU-Net's dataset.json: {"labels": {name: value}}
    "path/to/class_map.json"                     a TotalSegmentator class map: {value: name} or
                                                 {"<task>": {value: name}} with one task

A relative path is read from the folder of ``benchmarks.json``. Classes are then paired by NAME
(:func:`pair_classes`): the reference's numbering is the common one, a class that only the
candidate knows is appended after it, and a class present on one side only is reported, never
dropped. Plain Python (no numpy): every layer may import it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench.errors import ConfigError

BACKGROUND = "background"


def _fail(source: str, key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{source}: key {key!r} {problem}. Fix: {fix}")


def _by_value(table: Mapping[Any, Any], source: str, key: str) -> dict[int, str]:
    """``{value: name}`` from a ``{value: name}`` or ``{name: value}`` JSON object."""
    out: dict[int, str] = {}
    for k, v in table.items():
        if isinstance(k, str) and k.strip().isdigit() and isinstance(v, str):
            value, name = int(k), v
        elif isinstance(v, int) and not isinstance(v, bool) and isinstance(k, str):
            value, name = v, k
        else:
            raise _fail(
                source,
                key,
                f"has the entry {k!r}: {v!r}, which is neither value: name nor name: value",
                'write labels as {"1": "spleen", ...} (or nnU-Net\'s {"spleen": 1, ...})',
            )
        if value < 0 or value > 65535:
            raise _fail(source, key, f"has the label value {value}", "use values 0..65535")
        if value in out:
            raise _fail(
                source, key, f"names the label value {value} twice", "give each value one name"
            )
        out[value] = name.strip()
    names = [n for v, n in out.items() if v != 0]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _fail(source, key, f"names the class {twice[0]!r} twice", "give each class one value")
    if not names:
        raise _fail(source, key, "names no foreground class", "list the classes from value 1 up")
    out.setdefault(0, BACKGROUND)
    return dict(sorted(out.items()))


def _read_json(path: Path, source: str, key: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise _fail(
            source, key, f"names {path}, which does not exist", "give the path of the file"
        ) from None
    except (OSError, ValueError) as exc:
        raise _fail(
            source, key, f"names {path}, which is not readable JSON ({exc})", "fix that file"
        ) from None


def parse_labels(spec: Any, source: str, key: str, base: Path | None = None) -> dict[int, str]:
    """A profile's ``"labels"`` as ``{value: name}`` (value 0 named ``background`` unless the
    map names it). ``spec`` is a mapping or the path of a JSON file (relative to ``base``);
    any problem is a :class:`ConfigError` naming ``source`` and ``key``."""
    if isinstance(spec, Mapping):
        return _by_value(spec, source, key)
    if not isinstance(spec, str) or not spec:
        raise _fail(
            source,
            key,
            f"must be an object of value: name or the path of a JSON file, got {spec!r}",
            'write {"1": "spleen", ...} or "path/to/dataset.json"',
        )
    path = Path(spec)
    if not path.is_absolute() and base is not None:
        path = base / path
    data = _read_json(path, source, key)
    if isinstance(data, Mapping) and isinstance(data.get("labels"), Mapping):
        data = data["labels"]  # nnU-Net's dataset.json
    elif (
        isinstance(data, Mapping)
        and len(data) == 1
        and isinstance(next(iter(data.values())), Mapping)
    ):
        data = next(iter(data.values()))  # a class map with one task
    if not isinstance(data, Mapping):
        raise _fail(
            source,
            key,
            f"names {path}, which holds no label table",
            'point it at a JSON object {"1": "spleen", ...} or an nnU-Net dataset.json',
        )
    return _by_value(data, f"{source} ({path})", key)


def names_by_value(class_names: Sequence[str]) -> dict[int, str]:
    """A model card's class names (index = label value) as ``{value: name}``."""
    return dict(enumerate(class_names))


@dataclass(frozen=True)
class ClassPairing:
    """Two numberings paired by class name. ``names`` is the common numbering (the reference's,
    then the classes only the candidate has); ``candidate_to_common[v]`` is where the candidate's
    value ``v`` goes (``-1``: not a class of its map); ``reference_only`` and
    ``candidate_only`` name the classes present on one side only."""

    names: tuple[str, ...]
    reference_to_common: tuple[int, ...]
    candidate_to_common: tuple[int, ...]
    reference_only: tuple[str, ...]
    candidate_only: tuple[str, ...]

    @property
    def identity(self) -> bool:
        """Both numberings are the common one: no relabelling needed."""
        ident = tuple(range(len(self.names)))
        return self.reference_to_common == ident[: len(self.reference_to_common)] and (
            self.candidate_to_common == ident[: len(self.candidate_to_common)]
        )


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def pair_classes(reference: Mapping[int, str], candidate: Mapping[int, str]) -> ClassPairing:
    """Pair two ``{value: name}`` numberings by class name (case and spaces ignored; value 0,
    the background, always pairs with 0)."""
    ref_max = max(reference, default=0)
    names = [reference.get(v, BACKGROUND if v == 0 else f"label {v}") for v in range(ref_max + 1)]
    common = {_key(n): v for v, n in reference.items() if v != 0}
    ref_lut = tuple(v if v in reference else -1 for v in range(ref_max + 1))
    cand_lut = [-1] * (max(candidate, default=0) + 1)
    cand_lut[0] = 0
    candidate_only = []
    for value, name in sorted(candidate.items()):
        if value == 0:
            continue
        target = common.get(_key(name))
        if target is None:
            target = len(names)
            names.append(name)
            candidate_only.append(name)
        cand_lut[value] = target
    paired = {_key(n) for v, n in candidate.items() if v != 0}
    reference_only = tuple(n for v, n in sorted(reference.items()) if v and _key(n) not in paired)
    return ClassPairing(
        tuple(names), ref_lut, tuple(cand_lut), reference_only, tuple(candidate_only)
    )
