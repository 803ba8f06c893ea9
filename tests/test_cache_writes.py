"""Results that could not be stored in the cache are counted and said out loud (summary line,
record warning, `agi runs show`), and `--require-cache` makes them the run's error. The failures
are real: a read-only bind mount of the cache folder (EROFS) and a small tmpfs that is full
(ENOSPC), mounted here as root (skipped, with the reason, otherwise)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agi_core import AGI
from agi_core.app import Partition
from agi_core.base.errors import RunError
from agi_core.cache import CacheStore, EntryWriter
from agi_core.cache.maintenance import unfinished_writes
from agi_core.cache.write_failures import STORE_FAILED, tally
from agi_core.executors.base import JobSpec
from agi_core.executors.partition_runner import PartitionRunner
from agi_core.executors.worker_cache import _Buffer
from agi_core.provenance import read_record
from tests.conftest import TEST_APPS, run_agi

N = 6
CLUSTER = {"workers": {"127.0.0.1": 2}, "dask": {"scheduler_port": 0, "dashboard_port": None}}


def _mount(*args: str | Path) -> str | None:
    """Run mount(8); None when it worked, else why not."""
    out = subprocess.run(["mount", *map(str, args)], check=False, capture_output=True, text=True)
    return None if out.returncode == 0 else (out.stderr.strip() or f"mount exited {out.returncode}")


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)  # a process still in it: detach now


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only or full cache folder needs root")


@pytest.fixture
def read_only_cache(share: Path) -> Iterator[Path]:
    """The toy app's cache folder, bind-mounted read-only onto itself."""
    _need_root()
    folder = share / "cache" / "toy"
    folder.mkdir(parents=True)
    why = _mount("--bind", folder, folder)
    if why:
        pytest.skip(f"cannot bind-mount {folder}: {why}")
    try:
        why = _mount("-o", "remount,ro,bind", folder)
        if why:
            pytest.skip(f"cannot remount {folder} read-only: {why}")
        yield folder
    finally:
        _unmount(folder)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        chunk = b"\0" * 4096
        while True:
            try:
                handle.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return filler


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (filled by the tests that need it full)."""
    _need_root()
    folder = tmp_path / "small"
    folder.mkdir()
    why = _mount("-t", "tmpfs", "-o", "size=1m,mode=0750", "tmpfs", folder)
    if why:
        pytest.skip(f"cannot mount a tmpfs on {folder}: {why}")
    try:
        yield folder
    finally:
        _unmount(folder)


@pytest.fixture
def full_cache(share: Path) -> Iterator[Path]:
    """The toy app's cache folder on a tmpfs that is full."""
    _need_root()
    folder = share / "cache" / "toy"
    folder.mkdir(parents=True)
    why = _mount("-t", "tmpfs", "-o", "size=256k,mode=0750", "tmpfs", folder)  # 0750: a 1777 cache folder is refused (share_access)
    if why:
        pytest.skip(f"cannot mount a tmpfs on {folder}: {why}")
    try:
        _fill(folder)
        yield folder
    finally:
        _unmount(folder)


def _cli_run(share: Path, mode: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_agi("run", "toy", "--apps-path", str(TEST_APPS), "--set", f"cluster.workers_data_path={share}",
                   "--set", f"n={N}", "--mode", mode, *extra)


def _record(out: subprocess.CompletedProcess[str]):
    manifest = next(line.removeprefix("record: ") for line in out.stdout.splitlines() if line.startswith("record: "))
    return read_record(Path(manifest))


# -- a read-only cache folder (EROFS), through the command line ---------------------------------


@pytest.mark.parametrize("mode", ["0", "p"])
def test_a_read_only_cache_folder_is_counted_in_the_summary_the_record_and_runs_show(read_only_cache, share, mode):
    out = _cli_run(share, mode)
    assert out.returncode == 0, out.stderr
    said = f"{N} results not cached: EROFS (Read-only file system) in {read_only_cache}"
    summary = out.stdout.splitlines()[0]
    assert summary.startswith("ok ") and said in summary, out.stdout
    assert f"warning: {said}: later runs and --resume compute them again" in out.stderr, out.stderr
    record = _record(out)
    assert record.status == "ok" and [w for w in record.warnings if "not cached" in w] == [record.warnings[-1]]
    assert record.warnings[-1].startswith(said) and "--require-cache" in record.warnings[-1]
    assert all(p.cache == "miss" and STORE_FAILED in (p.note or "") for p in record.partitions)
    shown = run_agi("runs", "show", record.run_id, "--share", str(share))
    assert f"warning: {said}" in shown.stdout, shown.stdout + shown.stderr


def test_require_cache_fails_the_run_naming_the_cache_folder_and_the_errno(read_only_cache, share):
    out = _cli_run(share, "p", "--require-cache")
    assert out.returncode == 1, out.stdout + out.stderr
    error = next(line for line in out.stderr.splitlines() if line.startswith("error: "))
    assert error == (f"error: --require-cache: {N} results could not be stored in the cache folder {read_only_cache}: "
                     f"EROFS (Read-only file system) in {read_only_cache}")
    fix = next(line for line in out.stderr.splitlines() if line.startswith("fix: "))
    assert f"mount {read_only_cache} read-write" in fix and "--resume" in fix
    record = _record(out)
    assert record.status == "failed" and record.error == error.removeprefix("error: ")
    assert not any("not cached" in w for w in record.warnings)  # said once, as the error


def test_the_require_setting_fails_the_run_too(read_only_cache, share, apps_copy):
    settings = run_agi("settings", "toy", "--apps-path", str(apps_copy), "--set", "cache.require=true")
    assert settings.returncode == 0, settings.stderr
    out = run_agi("run", "toy", "--apps-path", str(apps_copy), "--set", f"cluster.workers_data_path={share}", "--mode", "0")
    assert out.returncode == 1 and "error: --require-cache: 6 results could not be stored" in out.stderr, out.stderr
    assert _record(out).request["cache"]["require"] is True


# -- a full share (ENOSPC): every pack fails when it is flushed, after its outcomes were made ----


def _api_run(share: Path, toy_env, mode, **kwargs):
    cluster = {"workers_data_path": str(share), **CLUSTER}
    return asyncio.run(AGI.run(toy_env, mode=mode, n=N, cluster=cluster, **kwargs))


@pytest.mark.parametrize("mode", [0, "p", "d"])
def test_a_full_share_is_counted_and_require_cache_fails_the_run(full_cache, share, toy_env, mode):
    result = _api_run(share, toy_env, mode)
    said = f"{N} results not cached: ENOSPC (No space left on device) in {full_cache}/packs"
    record = read_record(result.manifest)
    assert result.status == "ok" and record.warnings[-1].startswith(said), record.warnings
    assert "free space on the file system of" in record.warnings[-1]
    assert tally(result.outcomes).count == N and {o.cache for o in result.outcomes} == {"miss"}
    assert unfinished_writes(CacheStore(full_cache)) == []  # a failed write leaves no temporary file

    with pytest.raises(RunError) as info:
        _api_run(share, toy_env, mode, require_cache=True)
    assert str(info.value) == (f"--require-cache: {N} results could not be stored in the cache folder {full_cache}: "
                               f"ENOSPC (No space left on device) in {full_cache}/packs")
    assert info.value.fix.startswith(f"free space on the file system of {full_cache}/packs")
    failed = read_record(info.value.result.manifest)
    assert failed.status == "failed" and failed.error == str(info.value)


def test_no_cache_and_require_cache_together_are_refused(share, toy_env):
    from agi_core.base.errors import SettingsError

    with pytest.raises(SettingsError, match="--require-cache"):
        _api_run(share, toy_env, 0, use_cache=False, require_cache=True)


# -- a pack that fills up is written by the next add: its failure reaches its own entries --------


def _runner(cache: Path, out: Path, max_entries: int) -> PartitionRunner:
    job = JobSpec(TEST_APPS / "toy_project" / "src", "toy", "Toy", {"n": 8, "write_files": True}, 0, out, run_id="r1",
                  cache_dir=cache, cache_kernel="python")
    runner = PartitionRunner(job)
    assert runner.cache is not None and runner.writes is not None
    runner.writes._buffers.buffer = _Buffer(EntryWriter(runner.cache, max_entries=max_entries))  # small packs: fill up sooner
    return runner


def _part(i: int) -> Partition:
    return Partition(f"p{i}", payload={"i": i})


def test_a_full_pack_that_fails_when_the_next_entry_comes_is_charged_to_its_entries(small_tmpfs, tmp_path):
    """p0 and p1 fill a pack; the share is full when p2 comes, so writing that pack fails then
    (inside p2's store): p0 and p1 must say so, not stay `stored`, and their staged output files
    go (which frees the room p2's take). Space comes back, and p2 and p3 are stored."""
    runner = _runner(small_tmpfs / "cache", tmp_path / "out", max_entries=2)
    first = [runner.run(_part(i), "s0", key=f"{i:064x}") for i in (0, 1)]
    filler = _fill(small_tmpfs)
    second = runner.run(_part(2), "s0", key=f"{2:064x}")
    filler.unlink()
    third = runner.run(_part(3), "s0", key=f"{3:064x}")
    runner.flush()
    assert [o.cache for o in (*first, second, third)] == ["miss", "miss", "stored", "stored"]
    assert all(STORE_FAILED + "ENOSPC (No space left on device) in " in o.note for o in first)
    store = CacheStore(small_tmpfs / "cache")
    assert set(store.view().places) == {f"{2:064x}", f"{3:064x}"} and store.load(f"{3:064x}").result["square"] == 9
    assert unfinished_writes(store) == [] and len(list(store.root.glob("*/*.files-*"))) == 2  # p2's and p3's outputs only
    assert tally([*first, second, third]).count == 2


def test_a_failed_flush_spares_the_entries_of_a_pack_written_before_it(small_tmpfs, tmp_path):
    """p4 and p5 fill a pack, written when p6 comes; the share is full when p6's pack is flushed:
    only p6 says `miss`, and p4's and p5's output files stay (their entries restore whole)."""
    runner = _runner(small_tmpfs / "cache", tmp_path / "out", max_entries=2)
    outcomes = [runner.run(_part(i), "s0", key=f"{i:064x}") for i in (4, 5, 6)]
    _fill(small_tmpfs)
    runner.flush()
    assert [o.cache for o in outcomes] == ["stored", "stored", "miss"]
    assert STORE_FAILED + "ENOSPC (No space left on device) in " in outcomes[2].note
    store = CacheStore(small_tmpfs / "cache")
    restored = tmp_path / "restored"
    for i in (4, 5):
        entry = store.load(f"{i:064x}")
        store.restore(entry, restored)
        assert entry.result["square"] == i * i and (restored / f"part-{i}.txt").is_file()
    assert f"{6:064x}" not in store.view() and unfinished_writes(store) == []


def test_a_result_that_cannot_be_pickled_is_counted_with_its_type(share, toy_env):
    result = _api_run(share, toy_env, 0, unpicklable_on=[2])
    writes = tally(result.outcomes)
    assert writes.count == 1 and writes.reason.startswith(("PicklingError", "AttributeError", "TypeError")), writes.reason
    assert read_record(result.manifest).warnings[-1].startswith(f"1 result not cached: {writes.reason}")
    assert json.loads(result.manifest.read_text())["status"] == "ok"


_PICKLED: list[int] = []  # one entry per pickling of a `_Counted`


class _Counted:
    """A result that counts how often it is pickled."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[type, tuple[int]]:
        _PICKLED.append(self.value)
        return (_Counted, (self.value,))


def test_a_stored_result_goes_back_with_its_cache_entrys_pickle_not_a_second_one(tmp_path):
    from agi_core.executors.base import Outcome
    from agi_core.executors.wire import pack_outcomes, read_outcomes

    runner = _runner(tmp_path / "cache", tmp_path / "out", max_entries=100)
    assert runner.writes is not None and runner.cache is not None
    key = "ab" * 32
    outcome = Outcome("p1", "s-0", "ok", kernel="python", worker="w", result=_Counted(7))
    _PICKLED.clear()
    runner.writes.store(outcome, key)
    runner.writes.flush()
    frame = pack_outcomes([outcome])
    assert _PICKLED == [7]  # once, for the entry; the frame carries the same bytes
    assert outcome.cache == "stored" and outcome.result_pickle is None and outcome.result.value == 7
    (back,), unreadable = read_outcomes(frame, "the manager")
    assert unreadable == {} and back.result.value == 7 and back.result_pickle is None
    assert runner.cache.load(key).result.value == 7  # the entry holds that pickle
    # a result that was not stored (no cache) is pickled for the wire as before
    plain = Outcome("p2", "s-0", "ok", kernel="python", result=_Counted(8))
    (back,), _ = read_outcomes(pack_outcomes([plain]), "the manager")
    assert back.result.value == 8 and _PICKLED == [7, 8]
