"""Which tests a session runs, and in what order: the per-case parametrisation (by case id) and
the interplay with pytest-split.

With several named candidates, the candidate test is also parametrised by the candidate's name
(``test_candidate[<case>-<name>]``); a single candidate keeps ``test_candidate[<case>]``.

Sharding (pytest-split's ``--splits N --group i``): a case's reference and candidate tests
always run in the same shard, the shard its reference test goes to. Just before the splitter
selects (the plugin module's ``pytest_collection_modifyitems``), each candidate whose reference
is also selected is set aside (:meth:`Collection.before_split`); after every plugin has
selected (:meth:`Collection.after_split`), the candidates of the references that stayed come
back and the others are reported deselected.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

CASE_ARG = "segbench_case_id"  # the parametrised argument, a case id string (see fixtures.py)
CANDIDATE_ARG = "segbench_candidate"  # the candidate test's second one: a candidate's name
ROLE_TESTS = {"test_reference": "reference", "test_candidate": "candidate"}


def parametrize(
    metafunc: pytest.Metafunc, case_ids: Sequence[str], candidates: Sequence[str] = ()
) -> None:
    """One test per case id (its id is the case id); with pytest-xdist, a case's tests share an
    ``xdist_group`` so that ``--dist loadgroup`` sends them to one worker. A test that takes
    ``segbench_candidate`` (the candidate test) is also parametrised by the named
    ``candidates``, if any (ids ``<case>-<name>``)."""
    xdist = metafunc.config.pluginmanager.hasplugin("xdist")
    params = [
        pytest.param(cid, marks=[pytest.mark.xdist_group(cid)] if xdist else []) for cid in case_ids
    ]
    metafunc.parametrize(CASE_ARG, params, ids=list(case_ids))
    if candidates and CANDIDATE_ARG in metafunc.fixturenames:
        metafunc.parametrize(CANDIDATE_ARG, list(candidates), ids=list(candidates))


def candidate_of(request: pytest.FixtureRequest) -> str | None:
    """The candidate name the requesting test is parametrised with, else ``None``."""
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params.get(CANDIDATE_ARG) if callspec is not None else None
    return name if isinstance(name, str) else None


def case_id_of(item: pytest.Item) -> str | None:
    """The case id a test is parametrised with, else ``None``."""
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get(CASE_ARG) if callspec is not None else None
    return case if isinstance(case, str) else None


def role_of(item: pytest.Item) -> str | None:
    """``reference`` or ``candidate`` for the suite's two test functions, else ``None``."""
    if case_id_of(item) is None:
        return None
    return ROLE_TESTS.get(getattr(item, "originalname", "") or item.name.split("[")[0])


def pair_key(item: pytest.Item) -> tuple[str, str]:
    """The test's container (module or class) and case: a reference and its candidate share it."""
    parent = item.parent.nodeid if item.parent is not None else ""
    return parent, case_id_of(item) or ""


class Collection:
    """The session's view of collection: the suite (case ids that reached the splitter), the
    cases this session runs, and the candidates set aside around the split."""

    def __init__(self, case_ids: Sequence[str]) -> None:
        self.case_ids = list(case_ids)
        self.suite: list[str] | None = None  # case ids that reached the splitter
        self.selected: list[str] = []  # case ids this session runs
        self._set_aside: list[tuple[tuple[str, str], pytest.Item]] = []

    def before_select(self, items: list[pytest.Item]) -> None:
        """Mark the per-volume tests ``segbench`` and order them case by case."""
        for item in items:
            if case_id_of(item) is not None:
                item.add_marker(pytest.mark.segbench)
        self.order(items)

    def before_split(self, items: list[pytest.Item]) -> None:
        """Right before the splitter: note the suite, and set aside every candidate whose
        reference is also selected, so that the splitter places cases (by their reference), not
        single tests. The candidates set aside are not reported deselected:
        :meth:`after_split` brings them back or does."""
        self.suite = list(dict.fromkeys(c for i in items if (c := case_id_of(i))))
        references = {pair_key(i) for i in items if role_of(i) == "reference"}
        keep: list[pytest.Item] = []
        for item in items:
            if role_of(item) == "candidate" and pair_key(item) in references:
                self._set_aside.append((pair_key(item), item))
            else:
                keep.append(item)
        items[:] = keep

    def after_split(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Bring back the candidates whose reference stayed, deselect the others, and order
        again so that each case's reference runs right before its candidates."""
        references = {pair_key(i) for i in items if role_of(i) == "reference"}
        back = [c for key, c in self._set_aside if key in references]
        gone = [c for key, c in self._set_aside if key not in references]
        self._set_aside = []
        items.extend(back)
        if gone:  # their reference went to another shard: so do they
            config.hook.pytest_deselected(items=gone)
        self.order(items)
        self.selected = list(dict.fromkeys(c for i in items if (c := case_id_of(i))))
        if self.suite is None:  # before_split did not run
            self.suite = list(self.selected)

    def order(self, items: list[pytest.Item]) -> None:
        """Sort the per-volume tests, in the slots they occupy, by case, reference first (then
        the candidates in their collection order)."""
        order = {cid: i for i, cid in enumerate(self.case_ids)}
        slots: list[int] = []
        ours: list[tuple[int, int, int, pytest.Item]] = []
        for index, item in enumerate(items):
            case = case_id_of(item)
            if case is not None:
                slots.append(index)
                role = 0 if role_of(item) == "reference" else 1
                ours.append((order.get(case, 0), role, len(ours), item))
        for slot, (_, _, _, item) in zip(slots, sorted(ours, key=lambda t: t[:3]), strict=True):
            items[slot] = item
