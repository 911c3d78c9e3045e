"""docs/architecture.md's package layout checked against the tree: every module of
src/segbench is listed there, and every path listed there exists."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT

DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "src" / "segbench"
HEADING = "## The package layout"
# an entry: two spaces, then a path relative to src/segbench/ (a module or a folder ending in /)
ENTRY = re.compile(r"^  (?P<path>[\w/]+(?:\.py|/))(?:\s|$)")


def layout_block(text: str) -> str:
    """The first fenced code block after the package-layout heading (its opening fence's line
    and the lines up to the closing fence)."""
    if HEADING not in text:
        raise AssertionError(f"{DOC}: no '{HEADING}' heading")
    after = text.split(HEADING, 1)[1]
    parts = after.split("```")
    if len(parts) < 3:
        raise AssertionError(f"{DOC}: no code block after '{HEADING}'")
    return parts[1]


def listed_paths(block: str) -> list[str]:
    """The paths the layout names, relative to src/segbench/, in order: each entry line starts
    with two spaces and the path; description lines go on with more spaces."""
    lines = block.splitlines()
    roots = [line.strip() for line in lines if line.strip()]
    if not roots or roots[0] != "src/segbench/":
        raise AssertionError(f"{DOC}: the layout block must start with 'src/segbench/'")
    return [m["path"] for line in lines if (m := ENTRY.match(line))]


def package_modules() -> set[str]:
    """Every module of the package to document: each .py under src/segbench except the
    ``__init__.py`` files (listed where they hold more than the package marker) and the
    models' weights folder."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and "weights" not in path.relative_to(PACKAGE).parts
    }


def test_listed_paths_parse() -> None:
    block = "\nsrc/segbench/\n  cli.py      the CLI\n              more words\n  models/\n"
    assert listed_paths(block) == ["cli.py", "models/"]
    with pytest.raises(AssertionError, match="must start with 'src/segbench/'"):
        listed_paths("\n  cli.py  x\n")


def test_layout_lists_every_module_and_only_paths_that_exist() -> None:
    listed = listed_paths(layout_block(DOC.read_text(encoding="utf-8")))
    assert listed, f"{DOC}: the layout block lists no path"
    missing = sorted(package_modules() - set(listed))
    extra = sorted(p for p in listed if not (PACKAGE / p).exists())
    doubled = sorted({p for p in listed if listed.count(p) > 1})
    problems = [
        *(f"  not in the layout: src/segbench/{p}" for p in missing),
        *(f"  listed but absent: src/segbench/{p}" for p in extra),
        *(f"  listed twice: src/segbench/{p}" for p in doubled),
    ]
    assert not problems, (
        f"{DOC} ('{HEADING}') and the tree disagree:\n"
        + "\n".join(problems)
        + "\nFix: add a line '  <path>  <what it holds>' for each new module, drop or rename "
        "the lines of moved ones."
    )
