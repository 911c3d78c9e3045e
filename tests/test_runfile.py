"""The run file's ``"segbench"`` block (:mod:`segbench.results.runfile`): runs saved before read
as they did, a newer format and a hand-edited key are refused by name, the writer and the
reader round-trip, the merged block, the plugin's block unchanged, and ``segbench report |
compare | gate | merge`` on runs saved before giving the outputs the code before wrote
(``tests/data/runfile/golden``, see its ``generate.py``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any
from unittest import mock

import pytest
from helpers import load_script

from segbench.results.merge import merge_shards
from segbench.results.runfile import (
    FORMAT,
    MergedShard,
    RunFileError,
    SegbenchBlock,
    ShardGroup,
)
from segbench.results.runs import load_run, parse_run

DATA = Path(__file__).parent / "data" / "runfile"
generate = load_script(DATA / "generate.py")


def saved(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


# runs saved before read as they did -------------------------------------------------------


def test_a_run_without_a_block_reads_as_before() -> None:
    run = load_run(DATA / "noblock.json")
    block = run.segbench
    assert block == SegbenchBlock(format=None) == SegbenchBlock.read(None)
    assert run.settings is None and run.expected_cases == [] and run.expected_candidates == []
    assert run.injection == "none" and run.cpu_flags == () and run.openvino_precisions == ()
    assert run.cpus == ("Test CPU",)
    assert block.gate_values() is None and block.timing is None and block.malloc is None


def test_a_format_1_block_without_the_newer_keys_reads_as_before() -> None:
    run = load_run(DATA / "old_block.json")
    block = run.segbench
    assert block.format == 1 and block.machine is None and block.paths is None
    assert block.malloc is None and block.merged_from is None and block.missing_groups is None
    assert run.expected_cases == generate_suite() and run.cpu_flags == ()
    assert run.injection == "none" and block.config_source == "benchmarks.json"
    assert block.gate_values() == {
        "dice_min": 0.99,
        "class_dice_min": 0.95,
        "min_class_voxels": 1000,
        "speedup_min": 1.0,
    }
    # written back, it holds the keys it had and a null machine (what merge wrote before)
    assert block.to_json() == {**saved("old_block.json")["segbench"], "machine": None}


def test_a_block_without_a_format_key_reads_as_format_unknown() -> None:
    block = SegbenchBlock.read({"suite": ["a"], "cases": ["a", "b"]})
    assert block.format is None and block.expected_cases == ["a"]


def generate_suite() -> list[str]:
    return list(saved("full_block.json")["segbench"]["suite"])


# newer formats and hand-edited keys are refused ----------------------------------------------


def test_a_newer_format_is_refused_naming_both_versions_and_the_fix(tmp_path: Path) -> None:
    data = saved("full_block.json")
    data["segbench"]["format"] = FORMAT + 1
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RunFileError) as err:
        load_run(path)
    text = str(err.value)
    assert str(path) in text and f"format {FORMAT + 1}" in text
    assert f"this segbench reads format {FORMAT}" in text and "upgrade segbench" in text
    with pytest.raises(RunFileError, match=f"format {FORMAT + 1}"):
        SegbenchBlock.read(data["segbench"], path)
    with pytest.raises(RunFileError, match=r"future\.json.*upgrade segbench"):
        merge_shards([path])


@pytest.mark.parametrize("command", ["report", "gate", "compare", "merge"])
def test_every_command_refuses_a_newer_format(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = saved("shard-1.json")
    data["segbench"]["format"] = FORMAT + 1
    (tmp_path / "future.json").write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)
    argv = {
        "report": ["report", "future.json", "--no-plots", "--out", "rep"],
        "gate": ["gate", "future.json"],
        "compare": ["compare", str(DATA / "full_block.json"), "future.json"],
        "merge": ["merge", str(DATA / "shard-2.json"), "future.json", "-o", "m.json"],
    }[command]
    found = generate.run(argv, tmp_path / "out")
    assert found.startswith("exit 2\n") and "Traceback" not in found
    assert f'future.json: has a "segbench" block of format {FORMAT + 1}' in found
    assert "upgrade segbench" in found
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "rep").exists()


def test_a_format_no_segbench_wrote_is_refused() -> None:
    with pytest.raises(RunFileError, match=r"x\.json: .*format 0; .*Fix: save the run again"):
        SegbenchBlock.read({"format": 0}, "x.json")


def test_the_current_format_is_read(tmp_path: Path) -> None:
    assert load_run(DATA / "full_block.json").segbench.format == FORMAT


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda b: b["machine"].update(cpu_flags="avx2"), "segbench.machine.cpu_flags"),
        (lambda b: b["machine"]["cpu_flags"].update(avx2="yes"), "segbench.machine.cpu_flags.avx2"),
        (lambda b: b["machine"].update(openvino=["bf16"]), "segbench.machine.openvino"),
        (lambda b: b.update(paths=["relative"]), "segbench.paths"),
        (lambda b: b["paths"].update(mode=1), "segbench.paths.mode"),
        (lambda b: b.update(suite="a.nii.gz"), "segbench.suite"),
        (lambda b: b.update(format="1"), "segbench.format"),
        (
            lambda b: b["settings"]["options"].update(malloc=False),
            "segbench.settings.options.malloc",
        ),
    ],
)
def test_a_hand_edited_key_of_the_wrong_type_is_refused_by_name(edit: Any, key: str) -> None:
    data = saved("full_block.json")
    edit(data["segbench"])
    with pytest.raises(RunFileError, match=rf"edited\.json: key {key}: must be"):
        parse_run(data, "edited.json")
    with pytest.raises(RunFileError, match=rf"key {key}: must be"):
        SegbenchBlock.read(data["segbench"], "edited.json")


def test_a_merged_shard_with_odd_machine_facts_is_refused_by_name() -> None:
    data = saved("merged.json")
    data["segbench"]["merged_from"][1]["segbench_machine"]["cpu_flags"] = 3
    with pytest.raises(RunFileError, match=r"merged_from\[1\]\.segbench_machine\.cpu_flags"):
        parse_run(data, "merged.json")


def test_unknown_machine_facts_are_read_as_unknown() -> None:
    data = saved("full_block.json")
    data["segbench"]["machine"] = {"cpu_flags": "unknown", "openvino": "unknown"}
    run = parse_run(data)
    assert run.cpu_flags == () and run.openvino_precisions == ()


# the writer and the reader ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["full_block.json", "merged.json", "shard-1.json"])
def test_a_saved_block_is_written_back_byte_for_byte(name: str) -> None:
    raw = saved(name)["segbench"]
    block = SegbenchBlock.read(raw)
    assert json.dumps(block.to_json()) == json.dumps(raw)
    assert SegbenchBlock.read(block.to_json()) == block


def test_a_built_block_round_trips() -> None:
    block = SegbenchBlock(
        settings={"model": "m", "options": {"injection": "slowdown=0.5", "malloc": "jemalloc"}},
        suite=("a", "b"),
        cases=("b",),
        shard=ShardGroup(2, 2),
        model_option="m",
        config_source="benchmarks.json",
        paths={"mode": "relative", "cases_from": "cts"},
        machine={"cpu_flags": {"avx2": True, "avx512f": False}},
    )
    again = SegbenchBlock.read(json.loads(json.dumps(block.to_json())))
    assert again == block
    assert again.injection == "slowdown=0.5" and again.malloc == "jemalloc"
    assert list(block.to_json()) == [
        "format",
        "settings",
        "suite",
        "cases",
        "shard",
        "model_option",
        "config_source",
        "paths",
        "machine",
    ]
    assert block.to_json()["shard"] == {"splits": 2, "group": 2}


def test_the_merged_block() -> None:
    merged = merge_shards([DATA / "shard-1.json", DATA / "shard-2.json"])
    assert json.dumps(merged["segbench"]) == json.dumps(saved("merged.json")["segbench"])
    block = SegbenchBlock.read(merged["segbench"])
    assert block.format == FORMAT and block.shard is None and block.paths is None
    assert block.missing_groups == () and block.cases == tuple(generate_suite())
    assert [s.file for s in block.merged_from or ()] == ["shard-1.json", "shard-2.json"]
    first = (block.merged_from or ())[0]
    assert isinstance(first, MergedShard) and (first.group, first.splits) == (1, 2)
    run = parse_run(merged)
    assert run.cpu_flags == ("avx2", "avx2 avx512f")  # each shard's own machine
    assert run.openvino_precisions == ("f32",)


def test_shards_without_a_format_are_not_merged(tmp_path: Path) -> None:
    data = saved("shard-1.json")
    del data["segbench"]["format"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RunFileError, match="format None, this segbench merges format 1"):
        merge_shards([path, DATA / "shard-2.json"])


# the plugin's block -----------------------------------------------------------------------


def plugin_blocks(tmp_path: Path) -> dict[str, Any]:
    """What :func:`segbench.plugin.fingerprint.fingerprint` writes for fixed inputs (the same
    inputs as ``golden/fingerprint_blocks.json``, written by the code before the owner)."""
    import segbench.pipeline.openvino as ovmod
    from segbench.plugin import fingerprint as fp
    from segbench.settings.config import load_config

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not really onnx")
    bench = load_config(Path(__file__).parents[1] / "benchmarks.json")
    config = NS(getoption=lambda name, default=None: {"splits": 3, "group": 2}.get(name, default))
    inj = NS(describe=lambda: "slowdown=0.5")
    card = NS(name="tiny", spacing=(1.5, 1.5, 3.0), patch_size=(64, 64, 32), tile_step=0.5)
    runtime = NS(
        card=NS(**vars(card), num_classes=4),
        weights_sha256="ab" * 32,
        onnx_source="export",
        onnx_path=onnx,
    )
    out: dict[str, Any] = {}
    flags = mock.patch.object(fp, "read_cpu_flags", return_value={"avx2": True, "avx512f": False})
    versions = mock.patch.object(fp, "version", side_effect=lambda m: f"v-{m}")
    with flags, versions:
        for label, rt, data, mode in (
            ("full", runtime, Path("/data/cts"), "relative"),
            ("absolute", None, Path("/data/cts"), "absolute"),
            ("none", None, None, "relative"),
        ):
            options = NS(
                injection=inj,
                baseline=Path("/x/base.json") if rt else None,
                max_voxels=123,
                require_gpu=False,
                model="tiny",
                record_paths=mode,
                data=data,
                suite="phantoms",
            )
            out[label] = fp.fingerprint(
                config, options, bench, "jemalloc", rt, ["a", "b", "c"], ["b"]
            )
    with mock.patch.object(fp, "read_cpu_flags", return_value=None):
        out["machine_unknown"] = fp.machine_facts(bench)
    ov_file = tmp_path / "ov.json"
    ov_file.write_text(
        '{"profiles": {"reference": {"backend": "torch"}, "candidates": {"ov": {"backend": '
        '"onnx", "provider": "openvino"}, "ort": {"backend": "onnx"}}}}'
    )
    ov = load_config(ov_file)
    options = NS(
        injection=inj,
        baseline=None,
        max_voxels=1,
        require_gpu=True,
        model=None,
        record_paths="relative",
        data=None,
        suite="phantoms",
    )
    for label, info in (
        ("ov", {"inference_precision": "bf16", "capabilities": ["BF16"]}),
        ("ov_none", None),
    ):
        with (
            mock.patch.object(ovmod, "openvino_cpu_info", return_value=info),
            mock.patch.object(fp, "read_cpu_flags", return_value={"avx2": True}),
            versions,
        ):
            out[label] = fp.machine_facts(ov)
            out[label + "_block"] = fp.fingerprint(config, options, ov, "system", None, [], [])
    return out


def test_the_plugin_writes_the_block_it_wrote_before(tmp_path: Path) -> None:
    found = plugin_blocks(tmp_path)
    golden = json.loads((DATA / "golden" / "fingerprint_blocks.json").read_text())
    for label in ("ov_block", "ov_none_block"):  # saved with the installed versions
        golden[label]["settings"]["versions"] = found[label]["settings"]["versions"]
    assert json.dumps(found, indent=1) == json.dumps(golden, indent=1)
    for label in ("full", "absolute", "none", "ov_block"):
        block = SegbenchBlock.read(found[label])
        assert json.dumps(block.to_json()) == json.dumps(found[label])
    assert SegbenchBlock.read(found["full"]).shard == ShardGroup(3, 2)


# the commands on runs saved before ---------------------------------------------------------


@pytest.mark.parametrize(("name", "argv"), generate.COMMANDS, ids=[c[0] for c in generate.COMMANDS])
def test_the_commands_print_what_they_printed_before(
    name: str, argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(DATA)
    found = generate.run(copy.copy(argv), tmp_path / name)
    assert found == (DATA / "golden" / f"{name}.txt").read_text()


def test_a_changed_output_fails_the_golden_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: a run with one gate changed prints something else."""
    data = saved("full_block.json")
    data["benchmarks"][1]["extra_info"]["gates"]["dice"] = False
    (tmp_path / "edited.json").write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)
    found = generate.run(["gate", "edited.json"], tmp_path / "out")
    golden = (DATA / "golden" / "gate_full_block.txt").read_text()
    assert found != golden and "FAILED" in found
