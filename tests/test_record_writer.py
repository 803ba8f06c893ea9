"""The record writer's manifest: every partition's latest line, in plan order, whichever way the
log was filled (one line each in plan order is spliced whole; anything else line by line)."""

from __future__ import annotations

import json

from agi_core.executors import Outcome
from agi_core.provenance import RecordWriter, read_record
from agi_core.provenance.lines import partition_line
from agi_core.provenance.model import AppRecord, RunRecord

PLAN = [f"p{i}" for i in range(5000)]


def _line(pid: str, note: str = "") -> bytes:
    return partition_line(Outcome(pid, "s0", "ok", note=note, result_location="/c/x.pack"))


def _manifest(tmp_path, name: str, lines: list[tuple[str, bytes]], *, in_batches: bool = False) -> bytes:
    run_dir = tmp_path / name
    run_dir.mkdir()
    writer = RecordWriter(run_dir)
    if in_batches:  # as outcomes arrive: several appends to the log
        for first in range(0, len(lines), 1000):
            writer.add_many(lines[first: first + 1000])
            writer.flush()
    else:
        writer.add_many(lines)
    writer.finish(RunRecord(run_id=name, app=AppRecord(name="t"), status="ok"), PLAN, lambda: {pid: "s9" for pid in PLAN})
    return writer.manifest.read_bytes()


def _partitions(manifest: bytes) -> bytes:
    return manifest[manifest.rindex(b'"partitions": [\n'):]


def test_lines_logged_in_plan_order_are_spliced_whole_with_the_same_bytes_as_line_by_line(tmp_path):
    lines = [(pid, _line(pid)) for pid in PLAN]
    whole = _manifest(tmp_path, "whole", lines, in_batches=True)
    # the same lines logged in another order take the line-by-line path; the manifest lists plan order either way
    shuffled = _manifest(tmp_path, "shuffled", lines[1::2] + lines[::2])
    assert _partitions(whole) == _partitions(shuffled)
    assert [p["id"] for p in json.loads(whole)["partitions"]] == PLAN


def test_a_partition_logged_twice_keeps_its_latest_line_and_one_never_logged_is_not_run(tmp_path):
    lines = [(pid, _line(pid)) for pid in PLAN[:-1]] + [("p7", _line("p7", note="ran again"))]
    record = json.loads(_manifest(tmp_path, "again", lines))
    by_id = {p["id"]: p for p in record["partitions"]}
    assert [p["id"] for p in record["partitions"]] == PLAN
    assert by_id["p7"]["note"] == "ran again" and by_id["p6"].get("note") is None
    assert by_id[PLAN[-1]] == {"id": PLAN[-1], "slot": "s9", "status": "not run"}
    assert read_record(tmp_path / "again" / "manifest.json").partitions[7].note == "ran again"
