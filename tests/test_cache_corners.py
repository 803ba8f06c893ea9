"""Cache corners: a `--refresh` (and a gc) landing between another run's look-up and its load,
and the temporary file a writer killed mid-write leaves behind. Real runs, real files, a real
process killed by SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agi_core import AGI
from agi_core.cache import CacheStore, packs
from agi_core.cache.keys import read_run_keys
from agi_core.cache.maintenance import GRACE_S, apply_gc, collect_gc, unfinished_writes
from agi_core.cache.tempnames import host_tag, temp_name
from agi_core.run.caching import RunCache
from tests.conftest import ROOT, run_agi

N = 4


def run(env, share: Path, **kwargs):
    return asyncio.run(AGI.run(env, mode=0, n=N, write_files=True, cluster={"workers_data_path": str(share)}, **kwargs))


class _Interleaved(CacheStore):
    """The cache as one run sees it while ``between`` (another run, a gc) acts once, right after
    this run took its view of the cache and before it loads anything from it."""

    def __init__(self, root: Path, between: Callable[[], None]) -> None:
        super().__init__(root)
        self._between: Callable[[], None] | None = between

    def view(self, keys=None):
        view = super().view(keys)
        between, self._between = self._between, None
        if between is not None:
            between()
        return view


def _gc_superseded_files(share: Path, store: CacheStore, key: str, old: packs.PackIndex) -> None:
    """What a gc does an hour later: the superseded copy's output folder is named by no entry a
    reader is served, so it goes as a leftover (its pack stays until it is merged)."""
    done = apply_gc(share, collect_gc(share, ["toy"], older_than=None, max_size=None, now=time.time() + 2 * GRACE_S))
    folder = store.root / key[:2] / old.files[old.position[key]]
    assert folder in [path for _, path, _ in done.leftovers] and not folder.exists()


def _drop_superseded_copy(share: Path, store: CacheStore, key: str, old: packs.PackIndex) -> None:
    """What discarding the old copy does: its pack is rewritten without it, its files removed."""
    current = packs.read_index(old.index)
    assert packs.rewrite_without(current, {key})
    shutil.rmtree(store.root / key[:2] / current.files[current.position[key]])


@pytest.mark.parametrize("then", [_gc_superseded_files, _drop_superseded_copy], ids=["gc-files", "drop-copy"])
def test_a_refresh_between_a_runs_look_up_and_its_load_never_reads_as_corrupt(toy_env, share, tmp_path, then):
    first = run(toy_env, share)
    keys = read_run_keys(first.run_dir)
    assert keys is not None
    key = keys.keys["p1"]
    store = CacheStore.for_app(share, "toy")
    old = store.view().places[key]
    assert isinstance(old, packs.PackIndex)
    refreshed: list[str] = []

    def refresh_then_discard_the_old() -> None:  # run B, between run A's view and its load
        refreshed.append(run(toy_env, share, refresh=["p1"]).run_id)
        then(share, store, key, old)

    reader = RunCache(_Interleaved(store.root, refresh_then_discard_the_old), keys)
    notices: list[object] = []
    out = tmp_path / "out"
    known = reader.load(first.plan, out, notices.append)

    assert refreshed and reader.corrupt == {} and notices == []  # nothing was called corrupt
    assert set(known) == {f"p{i}" for i in range(N)} and known["p1"].result["square"] == 1  # a valid result (the new one)
    assert (out / "part-1.txt").is_file()
    fresh = store.load(key)  # run B's entry is still there, and it is the one served
    assert fresh.header["run_id"] == refreshed[0]
    store.restore(fresh, None)


def test_a_corrupt_copy_found_twice_is_removed_alone(toy_env, share, tmp_path):
    """An entry that really is damaged (its output file altered) fails the second look too: it is
    reported corrupt and removed; the other entries of its pack stay."""
    first = run(toy_env, share)
    keys = read_run_keys(first.run_dir)
    assert keys is not None
    store = CacheStore.for_app(share, "toy")
    damaged = store.load(keys.keys["p2"], touch=False)
    (damaged.files_dir / "part-2.txt").write_text("altered")
    reader = RunCache(store, keys)
    notices: list[object] = []
    known = reader.load(first.plan, tmp_path / "out", notices.append)
    assert set(reader.corrupt) == {"p2"} and "does not match its checksum" in reader.corrupt["p2"]
    assert set(known) == {"p0", "p1", "p3"} and keys.keys["p2"] not in store.view()
    assert {keys.keys[p] for p in ("p0", "p1", "p3")} <= set(store.view().places)


# -- a writer killed mid-write ----------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from agi_core.cache import CacheStore

    real_rename = os.rename

    def rename(src, dst):  # the kill lands after the pack is written, before it is renamed into place
        if os.path.basename(src).startswith(".tmp-"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_rename(src, dst)

    os.rename = rename
    CacheStore(Path(sys.argv[1])).put("ef" * 32, os.urandom(8 << 20), partition="big")
""")


def test_a_writer_killed_mid_write_is_counted_by_list_and_show_and_removed_by_gc_at_once(share):
    store = CacheStore.for_app(share, "toy")
    store.put("ab" * 32, {"small": 1}, partition="p0")
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(store.root)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert writer.wait(timeout=60) == -signal.SIGKILL
    [killed] = [u for u in unfinished_writes(store) if u.writer.startswith(f"{writer.pid}@")]
    assert killed.size > 8 << 20 and killed.alive is False and killed.path.parent == store.packs_dir
    in_progress = store.packs_dir / temp_name("0000000000000001-1-aa-1.pack")  # this process: alive
    in_progress.write_bytes(b"x" * 100)
    elsewhere = store.packs_dir / ".tmp-123@another-host~1@0000000000000002-1-aa-1.pack"  # cannot be judged here
    elsewhere.write_bytes(b"x" * 100)

    summary = json.loads(run_agi("cache", "list", "--share", str(share), "--json").stdout)
    assert [(s["app"], s["entries"], s["unfinished_writes"], s["unfinished_gone"]) for s in summary] == [("toy", 1, 3, 1)]
    assert summary[0]["unfinished_size"] == killed.size + 200
    listed = run_agi("cache", "list", "toy", "--share", str(share))
    assert "3 unfinished writes (8.0 MiB): 1 left by a writer that is gone (8.0 MiB; `agi cache gc` removes them), " \
           "1 in progress, 1 by a writer on another host" in " ".join(listed.stdout.split()), listed.stdout
    shown = json.loads(run_agi("cache", "show", "abab", "--share", str(share), "--json").stdout)
    assert sorted(Path(u["path"]).name for u in shown["unfinished_writes"]) == sorted(
        p.name for p in (killed.path, in_progress, elsewhere))

    done = json.loads(run_agi("cache", "gc", "--share", str(share), "--json").stdout)
    assert [Path(item["path"]) for item in done["leftovers"]] == [killed.path] and not killed.path.exists()
    assert in_progress.exists() and elsewhere.exists()  # a live writer's, and one of another host: an hour's grace
    assert host_tag() in in_progress.name and store.load("ab" * 32).result == {"small": 1}
