"""Property-based tests (hypothesis) of the saved-run and gate-file readers: whatever the file
holds, reading it either works or raises segbench's own error with a one-line message, and
``segbench gate`` answers 0, 1 or 2 (2 with one line on stderr), never a traceback.

Malformed structures: any key of a valid run (a single run, and a merged one) replaced by a
value of another kind (null, booleans, huge integers, NaN/inf/negative floats, strings, lists,
mappings, deep nesting), arbitrary JSON as the whole document, as its ``"segbench"`` block and
as a benchmark's ``extra_info``. Examples are few and small so the module stays in ``make test``
(a few seconds)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from saved_runs import SUITE, make_run, shard

from segbench.cli import main
from segbench.results.decision import gate_decision
from segbench.results.markdown import render_report
from segbench.results.merge import MergeError, merge_shards
from segbench.results.runs import RunFileError, parse_run

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a failure is reproducible
)

LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400), 2**53, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["false", "true", "NaN", "1.5", "::error::x", "\x1b[31m", "", "a|b\n# h"]),
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def deep(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


HOSTILE = st.one_of(JSON, st.sampled_from([deep(40), deep(200), [{}], [None], {"": {}}]))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path of a decoded JSON document (the root excluded)."""
    if not isinstance(value, dict | list):
        return
    for key, sub in value.items() if isinstance(value, dict) else enumerate(value):
        yield (*prefix, key)
        yield from paths(sub, (*prefix, key))


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def merged_run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "shard-1.json", Path(tmp) / "shard-2.json"
        a.write_text(json.dumps(shard(SUITE[:2], 1, node="ci-1")))
        b.write_text(json.dumps(shard(SUITE[2:], 2, node="ci-2")))
        return merge_shards([a, b])


SINGLE, MERGED = make_run(), merged_run()
SINGLE_PATHS, MERGED_PATHS = list(paths(SINGLE)), list(paths(MERGED))


def one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Fix:" in text, text


def read_and_gate(doc: Any) -> None:
    """The property: parse_run, the gate decision and the report either work or raise
    :class:`RunFileError` in one line; ``segbench gate`` answers 0, 1 or 2."""
    try:
        run = parse_run(doc, "fuzz.json")
    except RunFileError as exc:
        one_line(exc)
    else:
        gate_decision(run)
        render_report(list(run.rows), "fuzz", run=run)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.json"
        path.write_text(json.dumps(doc))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["gate", str(path)], out=io.StringIO())
    assert code in (0, 1, 2)
    if code == 2:
        assert len(err.getvalue().splitlines()) == 1, err.getvalue()


@FUZZ
@given(st.data(), HOSTILE)
def test_any_key_of_a_run_replaced(data: st.DataObject, value: Any) -> None:
    path = data.draw(st.sampled_from(SINGLE_PATHS))
    read_and_gate(replaced(SINGLE, path, value))


@FUZZ
@given(st.data(), HOSTILE)
def test_any_key_of_a_merged_run_replaced(data: st.DataObject, value: Any) -> None:
    path = data.draw(st.sampled_from(MERGED_PATHS))
    read_and_gate(replaced(MERGED, path, value))


@FUZZ
@given(JSON)
def test_arbitrary_json_as_the_run_the_block_and_an_extra_info(value: Any) -> None:
    read_and_gate(value)
    read_and_gate({**SINGLE, "segbench": value})
    read_and_gate(replaced(SINGLE, ("benchmarks", 1, "extra_info"), value))
    if isinstance(value, dict):
        info = {**SINGLE["benchmarks"][1]["extra_info"], **value}
        read_and_gate(replaced(SINGLE, ("benchmarks", 1, "extra_info"), info))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.data(), HOSTILE)
def test_merge_of_a_malformed_shard(data: st.DataObject, value: Any) -> None:
    good = shard(SUITE[:2], 1, node="ci-1")
    other = shard(SUITE[2:], 2, node="ci-2")
    path = data.draw(st.sampled_from(list(paths(other))))
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "shard-1.json", Path(tmp) / "shard-2.json"
        a.write_text(json.dumps(good))
        b.write_text(json.dumps(replaced(other, path, value)))
        try:
            merged = merge_shards([a, b])
        except RunFileError as exc:  # a malformed shard: one line
            one_line(exc)
        except MergeError:  # the shards differ (settings, cases): listed one per line
            pass
        else:
            read_and_gate(merged)
