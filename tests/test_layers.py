"""The package's layers: settings/, results/, scoring/ and the command line work without torch,
onnx or onnxruntime (a CI job that merges and gates saved runs installs none of them), importing
segbench or its pytest plugin imports none of them, and no module imports another in a cycle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

from helpers import ROOT
from saved_runs import SUITE, make_run, shard

SRC = ROOT / "src"
PACKAGE = SRC / "segbench"
HEAVY = ("torch", "onnx", "onnxruntime")
TORCH_FREE = ("segbench.settings", "segbench.results", "segbench.scoring", "segbench.cli")

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {heavy!r}:
                raise ImportError(f"{{name}} is blocked: this layer must not need it")
            return None

    sys.meta_path.insert(0, Blocker())
    """
).format(heavy=HEAVY)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _top_level_imports(path: Path, name: str) -> set[str]:
    """Modules imported at module level (not inside functions, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                    visit(node.orelse)
                else:
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    """segbench module -> the segbench modules it imports at module level."""
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in _top_level_imports(path, name):
            if target in modules and target != name:
                graph[name].add(target)
        graph[name]
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_import_graph_has_no_cycle() -> None:
    graph = _graph()
    assert "segbench.plugin.session" in graph and "segbench.results.record" in graph
    # the parser sees imports at all: the session imports the options
    assert "segbench.plugin.options" in graph["segbench.plugin.session"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_torch_free_layers_import_no_heavy_module_at_module_level() -> None:
    offenders = []
    for name, path in _modules().items():
        if not name.startswith(TORCH_FREE):
            continue
        heavy = {m for m in _top_level_imports(path, name) if m.split(".")[0] in HEAVY}
        if heavy:
            offenders.append(f"{name}: {', '.join(sorted(heavy))}")
    assert not offenders, offenders


def test_saved_run_tools_work_without_torch(tmp_path: Path) -> None:
    """In a process where torch, onnx and onnxruntime cannot be imported: import segbench, the
    plugin and the torch-free layers, and run every ``segbench`` command on saved runs."""
    run = tmp_path / "run.json"
    run.write_text(json.dumps(make_run()))
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(make_run(slow_candidate=1.5)))
    (tmp_path / "shard-1.json").write_text(json.dumps(shard(SUITE[:2], 1)))
    (tmp_path / "shard-2.json").write_text(json.dumps(shard(SUITE[2:], 2, node="ci-2")))
    modules = sorted(n for n in _modules() if n.startswith(TORCH_FREE))
    script = BLOCKER + textwrap.dedent(
        f"""
        import importlib, io, sys
        import segbench, segbench.plugin
        for name in {modules!r}:
            importlib.import_module(name)
        from segbench.cli import main

        def run(*argv):
            out = io.StringIO()
            code = main(list(argv), out=out)
            print(argv[0], code, out.getvalue().count("\\n"))
            return code

        codes = [
            run("gate", "run.json"),
            run("report", "run.json", "--out", "report", "--no-plots"),
            run("compare", "run.json", "run.json"),
            run("compare", "run.json", "slower.json"),
            run("merge", "shard-1.json", "shard-2.json", "-o", "merged.json"),
            run("gate", "merged.json"),
            run("export-gab", "run.json", "-o", "gab.json"),
        ]
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
        print("CODES", codes, "HEAVY", heavy)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "CODES [0, 0, 0, 1, 0, 0, 0] HEAVY []" in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "merged.json").is_file() and (tmp_path / "report").is_dir()
    assert json.loads((tmp_path / "gab-smaller.json").read_text())


def test_the_blocker_blocks() -> None:
    """The import hook of the test above does make torch unimportable."""
    script = BLOCKER + "import torch\n"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode != 0 and "torch is blocked" in out.stderr


# Each layer imports only layers of a lower rank (module-level imports): the arrows of
# docs/architecture.md, plugin -> bench -> pipeline -> models / inputs -> settings.
LAYER_RANK = {
    "segbench": 0,  # the package's __init__: lazy, imports nothing at module level
    "errors": 0,
    "cachefiles": 1,
    "settings": 1,
    "scoring": 2,
    "inputs": 2,
    "models": 2,
    "results": 3,
    "pipeline": 3,
    "bench": 4,
    "plugin": 5,
    "cli": 5,
    "suite": 6,
    "__main__": 6,
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_layers_import_downwards_only() -> None:
    graph = _graph()
    layers = {_layer(m) for m in graph}
    assert layers <= set(LAYER_RANK), f"unranked layers: {sorted(layers - set(LAYER_RANK))}"
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if _layer(a) != _layer(b) and LAYER_RANK[_layer(b)] >= LAYER_RANK[_layer(a)]
    )
    assert not upward, "imports against the layering:\n" + "\n".join(upward)
