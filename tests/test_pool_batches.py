"""The pool keeps each slot fed: a second batch waits in the slot's pipe while it runs one
(`executors.pool_slot.DEPTH`); a batch too big to wait there is written when the one before ends.
Real slot processes, with a pure-logic check of how a death is accounted across two batches."""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv
from agi_core.executors import pool_slot
from agi_core.executors.slot_process import IDLE

APPS = Path(__file__).parent / "apps"


def _noop(share: Path, **args):
    env = AgiEnv(app="noop", apps_path=APPS)
    return asyncio.run(AGI.run(env, mode="p", use_cache=False, cluster={"workers_data_path": str(share), "workers": {"127.0.0.1": 1}},
                               **args))


def test_a_batch_too_big_to_wait_in_the_pipe_is_written_when_the_one_before_ends(tmp_path, monkeypatch):
    held, written = [], []
    send, done = pool_slot.SlotProcess.send, pool_slot.SlotProcess.batch_done

    def counting_send(self, batch):
        send(self, batch)
        if self._batches[-1].held:
            held.append(len(batch))

    def counting_done(self):
        waiting = self._batches[1].held if len(self._batches) > 1 else b""
        done(self)
        if waiting:
            written.append(len(waiting))

    monkeypatch.setattr(pool_slot.SlotProcess, "send", counting_send)
    monkeypatch.setattr(pool_slot.SlotProcess, "batch_done", counting_done)
    # a DAG whose partitions each get two results of 40 KiB as inputs: most batches exceed _QUEUED_BYTES
    result = _noop(tmp_path, n=240, layers=6, result_kb=40)
    assert result.status == "ok" and result.value == 240
    assert all(result.results[f"n{i}"][0] == i for i in range(240))
    assert held and len(written) == len(held)  # every held batch was written, once


def test_small_batches_queue_behind_the_running_one_and_every_partition_runs_once(tmp_path, monkeypatch):
    depths = []
    send = pool_slot.SlotProcess.send

    def watching_send(self, batch):
        send(self, batch)
        depths.append(len(self._batches))

    monkeypatch.setattr(pool_slot.SlotProcess, "send", watching_send)
    result = _noop(tmp_path, n=3000)
    assert result.value == 3000 and sorted(o.id for o in result.outcomes) == sorted(f"n{i}" for i in range(3000))
    assert max(depths) == pool_slot.DEPTH  # a second batch was queued


def _slot_with(batches: list[list[str]], progress: list[float]) -> pool_slot.SlotProcess:
    """A `_SlotProcess` without a process: its bookkeeping only (the real deaths are in test_run_local)."""
    slot = object.__new__(pool_slot.SlotProcess)
    slot._batches = deque(pool_slot.SentBatch(k + 1, ids, 0.0) for k, ids in enumerate(batches))
    slot.in_flight = dict.fromkeys(pid for ids in batches for pid in ids)
    slot.progress = progress
    return slot


@pytest.mark.parametrize(("progress", "expected"), [
    ([1, 0.0, 1], (["a"], "b", ["c", "d", "e"])),  # died in the running batch: the queued one never started
    ([IDLE, 0.0, 1], (["a", "b", "c"], None, ["d", "e"])),  # between the two: the first ran, unreported
    ([0, 0.0, 2], (["a", "b", "c"], "d", ["e"])),  # in the second: the first ran (not reported yet)
    ([IDLE, 0.0, 0], ([], None, ["a", "b", "c", "d", "e"])),  # before any batch started (loading the app)
])
def test_a_death_splits_the_unreported_partitions_by_the_batch_and_index_it_died_at(progress, expected):
    slot = _slot_with([["a", "b", "c"], ["d", "e"]], progress)
    assert slot.lost() == expected


def test_running_names_the_partition_of_the_batch_the_slot_says_it_runs():
    slot = _slot_with([["a", "b"], ["c", "d"]], [1, 12.5, 2])
    assert slot.running() == ("d", 12.5)
    slot.in_flight.pop("d")  # reported meanwhile
    assert slot.running() is None
    assert _slot_with([["a"]], [IDLE, 3.0, 1]).running() is None
