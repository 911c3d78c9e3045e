"""Write the saved runs of this folder and the golden outputs of ``segbench report | compare |
gate | merge`` on them (``golden/``), which ``tests/test_runfile.py`` compares against.

The runs stand for runs saved before the ``"segbench"`` block had an owner module: one without
a block, one with a format-1 block without the newer keys (``machine``, ``paths``,
``options.malloc``), one with the block as the plugin writes it today, and two shards. The
golden outputs were written by the code before that change; regenerate them only when an
output is meant to change::

    PYTHONPATH=src:tests python tests/data/runfile/generate.py [--runs]
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"

# (output name, argv): run from this folder, with file names relative to it
COMMANDS: list[tuple[str, list[str]]] = [
    ("report_noblock", ["report", "noblock.json", "--no-plots", "--out", "{out}"]),
    ("report_old_block", ["report", "old_block.json", "--no-plots", "--out", "{out}"]),
    ("report_full_block", ["report", "full_block.json", "--no-plots", "--out", "{out}"]),
    ("gate_noblock", ["gate", "noblock.json"]),
    ("gate_old_block", ["gate", "old_block.json"]),
    ("gate_full_block", ["gate", "full_block.json"]),
    ("gate_merged", ["gate", "merged.json"]),
    ("compare_noblock_old", ["compare", "noblock.json", "old_block.json"]),
    ("compare_old_full", ["compare", "old_block.json", "full_block.json"]),
    ("compare_full_slow", ["compare", "full_block.json", "full_block_slow.json"]),
    ("compare_full_merged", ["compare", "full_block.json", "merged.json", "--force"]),
    ("merge_shards", ["merge", "shard-1.json", "shard-2.json", "-o", "{out}/merged.json"]),
]


def full_block(cases: list[str], suite: list[str], group: int | None) -> dict[str, Any]:
    """A block with every key the plugin writes (fingerprint: malloc, paths, machine)."""
    from test_merge import settings

    block_settings = settings()
    block_settings["options"]["malloc"] = "system"
    block_settings["config"]["gates"]["inconclusive_fails"] = True
    block_settings["config"]["timing"]["confidence"] = 0.9
    return {
        "format": 1,
        "settings": block_settings,
        "suite": suite,
        "cases": cases,
        "shard": {"splits": 2, "group": group} if group else None,
        "model_option": "synthetic",
        "config_source": "benchmarks.json",
        "paths": {"mode": "relative", "cases_from": "suite:phantoms"},
        "machine": {
            "cpu_flags": {"avx2": True, "avx512f": True, "avx512_bf16": False, "amx_bf16": False},
            "openvino": {"inference_precision": "f32", "capabilities": ["FP32", "INT8"]},
        },
    }


def write_runs() -> None:
    from test_cli import make_run
    from test_merge import SUITE, shard

    def save(name: str, data: dict[str, Any]) -> None:
        (HERE / name).write_text(json.dumps(data, indent=1) + "\n")

    save("noblock.json", make_run())
    save("old_block.json", shard(list(SUITE), None, slow_candidate=1.1))
    full = make_run()
    full["segbench"] = full_block(list(SUITE), list(SUITE), None)
    save("full_block.json", full)
    slow = make_run(slow_candidate=1.4, failed_dice=(SUITE[1],))
    slow["segbench"] = copy.deepcopy(full["segbench"])
    save("full_block_slow.json", slow)
    for group, cases, node in ((1, SUITE[:2], "ci-1"), (2, SUITE[2:], "ci-2")):
        data = shard(list(cases), group, node=node)
        data["segbench"] = full_block(list(cases), list(SUITE), group)
        data["segbench"]["machine"]["cpu_flags"]["avx512f"] = group == 1
        save(f"shard-{group}.json", data)


def run(argv: list[str], out: Path) -> str:
    """``segbench ARGV``'s exit code, stdout and stderr, and the files it wrote."""
    from segbench.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main([a.replace("{out}", str(out)) for a in argv], out=stdout)
    text = f"exit {code}\n--- stdout\n{stdout.getvalue()}--- stderr\n{stderr.getvalue()}"
    for path in sorted(out.glob("*")) if out.is_dir() else []:
        text += f"--- {path.name}\n{path.read_text()}"
    return text.replace(str(out), "OUT")


def outputs(work: Path) -> dict[str, str]:
    """The text of every command of :data:`COMMANDS`, run in ``HERE`` (``work``: a scratch
    folder for the files they write)."""
    found = {}
    cwd = Path.cwd()
    os.chdir(HERE)
    try:
        for name, argv in COMMANDS:
            found[name] = run(argv, work / name)
    finally:
        os.chdir(cwd)
    return found


def main() -> None:
    import tempfile

    if "--runs" in sys.argv:
        write_runs()
    with tempfile.TemporaryDirectory() as work:
        found = outputs(Path(work))
        merged = Path(work) / "merge_shards" / "merged.json"
        (HERE / "merged.json").write_text(merged.read_text())
        found = outputs(Path(work) / "again")  # gate/compare of merged.json
    GOLDEN.mkdir(exist_ok=True)
    for name, text in found.items():
        (GOLDEN / f"{name}.txt").write_text(text)


if __name__ == "__main__":
    main()
