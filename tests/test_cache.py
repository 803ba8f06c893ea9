"""The result cache and resume, end to end: real runs, real worker processes, real files on the share."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv
from agi_core.app import Partition
from agi_core.base.errors import AgiError, PlanError, RunError
from agi_core.cache import CacheStore, plan_keys
from agi_core.plan import GraphDriver, Known
from agi_core.provenance import RunStore, read_record
from tests.conftest import ROOT, TEST_APPS, run_agi


def run(env, share, **kwargs):
    cluster = {"workers_data_path": str(share), **kwargs.pop("cluster", {})}
    return asyncio.run(AGI.run(env, cluster=cluster, **kwargs))


def caches(result) -> dict[str, str | None]:
    return {p.id: p.cache for p in read_record(result.manifest).partitions}


def squares(n: int, offset: int = 0) -> dict[str, int]:
    return {f"p{i}": i * i + offset for i in range(n)}


# -- keys and the driver (pure logic) ---------------------------------------------------------


def test_keys_chain_through_dependencies_and_ignore_args_a_partition_does_not_read():
    parts = [Partition("a", payload={"x": 1}, reads=("alpha",)), Partition("b", payload=2, deps=("a",), reads=("beta",)),
             Partition("c", payload=3, reads=())]
    base = plan_keys(parts, code="c0de", args={"alpha": 1, "beta": 1}, kernel="python")
    alpha = plan_keys(parts, code="c0de", args={"alpha": 2, "beta": 1}, kernel="python")
    assert alpha.keys["a"] != base.keys["a"] and alpha.keys["b"] != base.keys["b"] and alpha.keys["c"] == base.keys["c"]
    beta = plan_keys(parts, code="c0de", args={"alpha": 1, "beta": 2}, kernel="python")
    assert beta.keys["a"] == base.keys["a"] and beta.keys["b"] != base.keys["b"]
    for changed in (plan_keys(parts, code="other", args={"alpha": 1, "beta": 1}, kernel="python"),
                    plan_keys(parts, code="c0de", args={"alpha": 1, "beta": 1}, kernel="cython")):
        assert set(changed.keys.values()).isdisjoint(base.keys.values())
    with pytest.raises(PlanError, match="partition 'z' reads arg.s. gamma"):
        plan_keys([Partition("z", reads=("gamma",))], code="c", args={"alpha": 1}, kernel="python")


def test_driver_with_known_results_never_counts_them_twice_when_an_ancestor_fails():
    parts = [Partition("a"), Partition("b", deps=("a",)), Partition("c", deps=("b",)), Partition("d", deps=("a",))]
    driver = GraphDriver(parts, known={"b": Known({"v": 2})})
    assert [pid for pid, _ in driver.take_known()] == ["b"] and sorted(driver.ready()) == ["a", "c"]
    assert driver.inputs("c") == {"b": {"v": 2}}
    assert driver.complete("a", ok=False) == ["d"]  # b was known already: not skipped
    assert not driver.finished
    driver.complete("c", ok=True)
    assert driver.finished


# -- runs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0, "p"])
def test_an_unchanged_rerun_computes_nothing_and_restores_outputs(toy_env, share, mode):
    first = run(toy_env, share, mode=mode, n=6, chain=True, write_files=True)
    assert set(caches(first).values()) == {"stored"}
    again = run(toy_env, share, mode=mode, n=6, chain=True, write_files=True)
    record = read_record(again.manifest)
    assert set(caches(again).values()) == {"hit"} and record.totals.cached == 6 and record.totals.ok == 0
    assert again.value == first.value and {pid: r["square"] for pid, r in again.results.items()} == squares(6)
    assert sorted(p.name for p in again.out_dir.iterdir()) == [f"part-{i}.txt" for i in range(6)]
    assert (again.out_dir / "part-3.txt").read_text() == (first.out_dir / "part-3.txt").read_text()
    assert record.cache == str(share / "cache" / "toy")


def test_a_changed_arg_recomputes_only_what_reads_it(toy_env, share):
    run(toy_env, share, mode=0, n=4)
    assert set(caches(run(toy_env, share, mode=0, n=4, sleep=0.01)).values()) == {"hit"}  # no partition reads sleep
    changed = run(toy_env, share, mode=0, n=5, offset=7)  # every partition reads offset; p4 is new
    assert set(caches(changed).values()) == {"stored"}
    assert {pid: r["square"] for pid, r in changed.results.items()} == squares(5, 7)


@pytest.mark.parametrize("mode", [0, "p"])
def test_refreshing_a_partition_whose_dependents_are_cached_runs_only_it(toy_env, share, mode):
    run(toy_env, share, mode=mode, n=4, chain=True)
    refreshed = run(toy_env, share, mode=mode, n=4, chain=True, refresh=["p1"])
    assert caches(refreshed) == {"p0": "hit", "p1": "stored", "p2": "hit", "p3": "hit"}
    key = next(p.cache_key for p in read_record(refreshed.manifest).partitions if p.id == "p1")
    assert CacheStore(share / "cache" / "toy").load(key).header["run_id"] == refreshed.run_id  # the new entry wins
    assert refreshed.status == "ok" and refreshed.results["p3"] == run(toy_env, share, mode=0, n=4, chain=True).results["p3"]


def test_the_driver_never_hands_out_a_known_child_of_a_refreshed_parent():
    parts = [Partition("a"), Partition("b", deps=("a",)), Partition("c", deps=("b",))]
    driver = GraphDriver(parts, known={"b": Known(2), "c": Known(3)})
    assert driver.ready() == ["a"] and [pid for pid, _ in driver.take_known()] == ["b", "c"]
    assert driver.complete("a", ok=True, result=1) == [] and driver.ready() == [] and driver.finished


def test_no_cache_neither_reads_nor_writes_and_refresh_recomputes_named_partitions(toy_env, share):
    off = run(toy_env, share, mode=0, n=3, use_cache=False)
    assert set(caches(off).values()) == {None} and not (share / "cache").exists() and read_record(off.manifest).cache is None
    run(toy_env, share, mode=0, n=3)
    refreshed = run(toy_env, share, mode=0, n=3, refresh=["p1"])
    assert caches(refreshed) == {"p0": "hit", "p1": "stored", "p2": "hit"} and read_record(refreshed.manifest).refreshed == ["p1"]
    runs = sorted((share / "runs" / "toy").iterdir())
    with pytest.raises(PlanError, match="--refresh names partition.s. p9"):
        run(toy_env, share, mode=0, n=3, refresh=["p9"])
    assert sorted((share / "runs" / "toy").iterdir()) == runs  # refused before a run folder was made


def _damage(location: str, key: str) -> None:
    """Flip the last bytes of one entry's result inside its pack (same size, wrong checksum)."""
    header = CacheStore.header_at(location, key)
    assert header is not None, location
    pack = Path(location)
    data = bytearray(pack.read_bytes())
    end = header["offset"] + header["size"]
    data[end - 5: end] = b"xxxxx"
    pack.write_bytes(bytes(data))


def test_a_corrupt_entry_is_reported_recomputed_and_stored_again(toy_env, share):
    first = run(toy_env, share, mode="p", n=4)
    damaged = read_record(first.manifest).partitions[2]
    assert damaged.result_location.endswith(".pack")
    _damage(damaged.result_location, damaged.cache_key)
    again = run(toy_env, share, mode="p", n=4)
    record = read_record(again.manifest)
    bad = next(p for p in record.partitions if p.id == damaged.id)
    assert bad.cache == "corrupt" and "checksum" in bad.note and bad.status == "ok"
    assert sorted(p.cache for p in record.partitions) == ["corrupt", "hit", "hit", "hit"]
    assert {pid: r["square"] for pid, r in again.results.items()} == squares(4)
    store = CacheStore(share / "cache" / "toy")
    assert store.load(bad.cache_key).result["square"] == again.results[bad.id]["square"]
    assert len(list(store.entries())) == 4  # the corrupt copy went (its pack rewritten without it); the others stayed
    pack = Path(bad.result_location)
    pack.write_bytes(pack.read_bytes()[:1])  # cut short, as by a full disk
    assert caches(run(toy_env, share, mode=0, n=4))[bad.id] == "corrupt"
    assert run_agi("cache", "verify", "toy", "--share", str(share)).returncode == 0


def test_a_partial_pack_or_index_is_never_served(toy_env, share):
    """What a writer killed half-way can leave (a temporary file, a pack without its index) is
    invisible; an index cut short is reported by `agi cache verify` and its entries recomputed."""
    first = run(toy_env, share, mode=0, n=3)
    packs = share / "cache" / "toy" / "packs"
    (packs / ".tmp-0000000000000000-1-aaaa-1.pack").write_bytes(b"half a pack")
    (packs / "ffffffffffffffff-1-bbbb-1.pack").write_bytes(b"a pack whose index never came")
    assert set(caches(run(toy_env, share, mode=0, n=3)).values()) == {"hit"}
    location = read_record(first.manifest).partitions[1].result_location
    index = Path(location).with_suffix(".index")
    index.write_bytes(index.read_bytes()[:-10])
    verified = run_agi("cache", "verify", "toy", "--share", str(share), "--json")
    assert verified.returncode == 1 and "cut short" in verified.stdout, verified.stdout + verified.stderr
    again = run(toy_env, share, mode=0, n=3)
    assert caches(again)["p1"] == "stored" and {pid: r["square"] for pid, r in again.results.items()} == squares(3)


def test_single_file_entries_of_the_older_layout_are_served_then_migrated_by_gc(toy_env, share):
    from agi_core.cache.entries import encode_single

    run(toy_env, share, mode=0, n=4, write_files=True)
    store = CacheStore(share / "cache" / "toy")
    view = store.view()
    for key, header, body, _, _ in list(store.read_raw(view, view.keys())):  # rewrite the cache as before packs
        (store.root / key[:2] / f"{key}.entry").write_bytes(encode_single(header, body))
    for path in (store.root / "packs").iterdir():
        path.unlink()
    again = run(toy_env, share, mode="p", n=4, write_files=True)
    assert set(caches(again).values()) == {"hit"} and (again.out_dir / "part-2.txt").is_file()
    assert all(p.result_location.endswith(".entry") for p in read_record(again.manifest).partitions)
    gc = run_agi("cache", "gc", "toy", "--share", str(share), "--json")
    assert gc.returncode == 0 and json.loads(gc.stdout)["migrated"] == 4, gc.stdout + gc.stderr
    assert not list(store.root.glob("*/*.entry")) and len(list(store.entries())) == 4
    assert set(caches(run(toy_env, share, mode=0, n=4, write_files=True)).values()) == {"hit"}
    assert run_agi("cache", "verify", "toy", "--share", str(share)).returncode == 0


def test_discard_gc_and_clear_rewrite_or_remove_packs_and_keep_the_rest_whole(toy_env, share):
    first = run(toy_env, share, mode="p", n=24, write_files=True)
    store = CacheStore(share / "cache" / "toy")
    view = store.view()
    by_pack: dict[str, list[str]] = {}
    for key, index in view.places.items():
        by_pack.setdefault(index.name, []).append(key)
    name, keys = max(by_pack.items(), key=lambda item: len(item[1]))
    assert len(keys) >= 2  # a slot's results share a pack (its first batches hold several partitions)
    old_index = store.packs_dir / f"{name}.index"
    used = old_index.stat().st_mtime - 100
    os.utime(old_index, (used, used))
    gone = keys[0]
    index = view.places[gone]
    files = index.files[index.position[gone]]
    assert store.discard_many([gone]) == {gone}
    assert not old_index.exists() and not (store.packs_dir / f"{name}.pack").exists()
    assert not (store.root / gone[:2] / files).exists()
    after = {info.key: info for info in store.entries()}
    assert gone not in after and len(after) == 23 and after[keys[1]].used == used  # the rewrite kept its last use
    for key in after:
        store.restore(store.load(key, touch=False), share / "check")
    assert set(caches(run(toy_env, share, mode="p", n=24, write_files=True)).values()) == {"hit", "stored"}

    gc = run_agi("cache", "gc", "toy", "--max-size", "1", "--share", str(share), "--json")
    assert gc.returncode == 0 and len(json.loads(gc.stdout)["removed"]) == 24, gc.stdout + gc.stderr
    assert len(store.view()) == 0 and not list(store.packs_dir.iterdir()) and not list(store.root.glob("*/*.files-*"))
    run(toy_env, share, mode="p", n=3)
    cleared = run_agi("cache", "clear", "toy", "--yes", "--share", str(share), "--json")
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["removed"] == 3 and not store.root.exists()
    assert first.status == "ok"


def test_gc_merges_many_small_packs_and_every_entry_still_serves(toy_env, share):
    # mode 0 writes a pack per partition that runs 5 ms or more (`sequential._SLOW_S`)
    first = run(toy_env, share, mode=0, n=70, write_files=True, sleep=0.006)
    refreshed = run(toy_env, share, mode=0, n=70, write_files=True, sleep=0.006, refresh=["p3"])  # p3's newer entry must stay the one served
    packs = share / "cache" / "toy" / "packs"
    assert len(list(packs.glob("*.index"))) == 71
    gc = run_agi("cache", "gc", "toy", "--share", str(share), "--json")
    assert gc.returncode == 0 and json.loads(gc.stdout)["compacted"] == 70, gc.stdout + gc.stderr
    assert len(list(packs.glob("*.index"))) == 1 and len(list(packs.glob("*.pack"))) == 1
    store = CacheStore(share / "cache" / "toy")
    key = next(p.cache_key for p in read_record(refreshed.manifest).partitions if p.id == "p3")
    assert store.load(key).header["run_id"] == refreshed.run_id != first.run_id
    again = run(toy_env, share, mode="p", n=70, write_files=True, sleep=0.006)
    assert set(caches(again).values()) == {"hit"} and (again.out_dir / "part-69.txt").is_file()
    assert run_agi("cache", "verify", "toy", "--share", str(share)).returncode == 0


def test_mode_0_writes_fast_partitions_in_few_packs_and_a_rerun_serves_every_one(share):
    """Mode 0 reports (and writes the entries of) fast partitions together, at least every 0.2 s,
    instead of a pack per partition, which made 100,000 tiny partitions ten times slower."""
    noop = AgiEnv(app="noop", apps_path=TEST_APPS)
    first = run(noop, share, mode=0, n=3000)
    packs = list((share / "cache" / "noop" / "packs").glob("*.index"))
    assert first.value == 3000 and 0 < len(packs) < 300  # one per 0.2 s of run at most
    assert set(caches(first).values()) == {"stored"}
    again = run(noop, share, mode=0, n=3000)
    assert set(caches(again).values()) == {"hit"} and again.value == 3000


def test_a_worker_running_batches_in_threads_stores_every_entry_whole(tmp_path):
    """A Dask worker with several threads runs batches of one job at once, through one runner:
    each thread buffers and flushes its own entries, so no pack mixes up keys and results."""
    import threading

    from agi_core.executors.base import JobSpec
    from agi_core.executors.partition_runner import PartitionRunner

    job = JobSpec(TEST_APPS / "noop_project" / "src", "noop", "Noop", {"n": 8000}, 1, tmp_path / "out", run_id="r1",
                  cache_dir=tmp_path / "cache", cache_kernel="python")
    runner = PartitionRunner(job)
    stored: list[str] = []

    def batch(first: int) -> None:
        outcomes = [runner.run(Partition(f"n{i}", payload=i), "s0", key=f"{i:064x}") for i in range(first, first + 2000)]
        runner.flush()  # what run_batch does before its outcomes go
        stored.extend(o.cache for o in outcomes)

    threads = [threading.Thread(target=batch, args=(k * 2000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stored == ["stored"] * 8000
    store = CacheStore(tmp_path / "cache")
    view = store.view()
    assert len(view) == 8000
    assert all(entry is not None and entry.result == int(key, 16) and entry.header["partition"] == f"n{int(key, 16)}"
               for key, entry, _ in store.load_many(view, view.keys(), touch=False))


@pytest.mark.parametrize("mode", [0, "p", "d"])
def test_a_failed_node_then_resume_recomputes_only_it_and_its_skipped_descendants(toy_env, share, tmp_path, mode):
    flag = tmp_path / "failing"
    flag.touch()
    cluster = {"workers": {"127.0.0.1": 2}, "dask": {"scheduler_port": 0, "dashboard_port": None}}
    with pytest.raises(RunError) as info:  # p0 -> p1 -> ... -> p5, and p2 fails while the flag exists
        run(toy_env, share, mode=mode, n=6, chain=True, fail_on=[2], fail_while=str(flag), cluster=cluster)
    failed = info.value.result
    assert caches(failed) == {"p0": "stored", "p1": "stored", "p2": "miss", "p3": None, "p4": None, "p5": None}
    flag.unlink()
    run(AgiEnv(app="noop", apps_path=TEST_APPS), share, mode=0, n=2)  # "last" is the newest run of *this* app
    resumed = run(toy_env, share, resume="last", cluster=cluster)
    record = read_record(resumed.manifest)
    assert record.resumed_from == failed.run_id and record.args == read_record(failed.manifest).args
    assert caches(resumed) == {"p0": "hit", "p1": "hit", "p2": "stored", "p3": "stored", "p4": "stored", "p5": "stored"}
    assert {pid: r["square"] for pid, r in resumed.results.items()} == squares(6)


def _agi_process(share: Path, *args: str, state: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if state is not None:
        env["XDG_STATE_HOME"] = str(state)
    return subprocess.Popen([sys.executable, "-m", "agi_core.cli", *args, "--apps-path", str(TEST_APPS),
                             "--set", f"cluster.workers_data_path={share}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _entries(share: Path) -> int:
    return len(CacheStore(share / "cache" / "toy").view())


def _wait_for_entries(share: Path, count: int, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while _entries(share) < count:
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"only {_entries(share)} cache entries after {timeout} s"
        time.sleep(0.05)


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGKILL, "abandoned"), (signal.SIGINT, "interrupted")])
def test_the_manager_stopped_then_resume_computes_only_what_was_not_finished(share, stop, status):
    n = 12
    manager = _agi_process(share, "run", "toy", "--mode", "p", "--set", f"n={n}", "--set", "sleep=0.4")
    _wait_for_entries(share, 4, manager)
    manager.send_signal(stop)
    manager.wait(timeout=30)
    time.sleep(0.2)  # the slots die with their manager (PDEATHSIG, or stopped by it)
    finished = _entries(share)
    assert 4 <= finished < n
    killed = RunStore(share).find("last")
    assert killed.status == status
    out = run_agi("run", "toy", "--resume", "last", "--apps-path", str(TEST_APPS), "--set", f"cluster.workers_data_path={share}",
                  "--json")
    assert out.returncode == 0, out.stderr
    resumed = read_record(Path(json.loads(out.stdout)["manifest"]))
    assert resumed.resumed_from == killed.run_id and resumed.status == "ok"
    statuses = [p.cache for p in resumed.partitions]
    assert statuses.count("hit") == finished and statuses.count("stored") == n - finished


def test_the_scheduler_killed_then_resume_completes_on_a_new_cluster(share, tmp_path):
    state = tmp_path / "state"
    cluster = ["--set", "cluster.workers={\"127.0.0.1\" = 2}", "--set", "cluster.dask.scheduler_port=0",
               "--set", "cluster.dask.dashboard_port=0"]
    up = _agi_process(share, "cluster", "up", "toy", *cluster, state=state)
    assert up.wait(timeout=120) == 0, up.communicate()
    try:
        manager = _agi_process(share, "run", "toy", "--mode", "d", "--set", "n=10", "--set", "sleep=0.5", *cluster, state=state)
        _wait_for_entries(share, 2, manager)
        schedulers = subprocess.run(["pgrep", "-f", "distributed.cli.dask_scheduler|dask scheduler"], capture_output=True,
                                    text=True).stdout.split()
        assert schedulers, "no scheduler process found"
        for pid in schedulers:
            os.kill(int(pid), signal.SIGKILL)
        _, err = manager.communicate(timeout=120)
        assert manager.returncode != 0 and "scheduler" in err, err
    finally:
        subprocess.run([sys.executable, "-m", "agi_core.cli", "cluster", "down", "toy", "--apps-path", str(TEST_APPS), *cluster],
                       cwd=ROOT, env={**os.environ, "XDG_STATE_HOME": str(state)}, capture_output=True, timeout=120)
    finished = _entries(share)
    resume = _agi_process(share, "run", "toy", "--resume", "last", "--json", state=state)
    out, err = resume.communicate(timeout=180)
    assert resume.returncode == 0, err
    resumed = read_record(Path(json.loads(out)["manifest"]))
    statuses = [p.cache for p in resumed.partitions]
    assert statuses.count("hit") == finished and statuses.count("stored") == 10 - finished and resumed.status == "ok"


def test_two_runs_at_once_share_the_cache_without_torn_entries(share):
    args = ["run", "toy", "--mode", "p", "--set", "n=16", "--set", "sleep=0.05", "--set", "write_files=true", "--json"]
    runs = [_agi_process(share, *args) for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in runs]
    assert all(p.returncode == 0 for p in runs), [err for _, err in outputs]
    store = CacheStore(share / "cache" / "toy")
    entries = list(store.entries())
    assert len(entries) == 16  # one entry per key, whoever wrote it first
    for info in entries:
        entry = store.load(info.key)  # checks size and checksum: nothing torn
        store.restore(entry, Path(share) / "check")
        assert entry.result["square"] == int(entry.header["partition"][1:]) ** 2
    assert not list((share / "cache" / "toy").glob("*/.tmp-*"))  # no leftovers
    assert list((share / "cache" / "toy" / "packs").glob("*.index"))  # stored in packs
    for out, _ in outputs:
        record = read_record(Path(json.loads(out)["manifest"]))
        assert record.status == "ok" and {p.cache for p in record.partitions} <= {"stored", "hit"}
        for part in record.partitions:  # every location a record names serves its entry
            assert CacheStore.header_at(part.result_location, part.cache_key)["partition"] == part.id
    verified = run_agi("cache", "verify", "toy", "--share", str(share), "--json")
    report = json.loads(verified.stdout)
    assert verified.returncode == 0 and report["ok"] and len(report["entries"]) == 16, verified.stdout


def test_resume_refuses_a_run_that_did_not_use_the_cache(toy_env, share):
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode=0, n=3, fail_on=[1], use_cache=False)
    with pytest.raises(AgiError, match="--no-cache"):
        run(toy_env, share, resume=info.value.result.run_id)


def test_the_heat_dag_reruns_from_the_cache(share):
    env = AgiEnv(app="heat", apps_path=[ROOT / "apps"])
    small = {"sizes": [12, 16], "alphas": [0.5, 1.0], "t_end": 0.02}
    first = run(env, share, mode=0, **small)
    again = run(env, share, mode="p", **small)
    assert set(caches(again).values()) == {"hit"} and again.value.keys() == first.value.keys()
    assert sorted(p.name for p in again.out_dir.iterdir()) == sorted(p.name for p in first.out_dir.iterdir())


def test_files_written_without_ctx_output_are_named_in_a_warning(toy_env, share):
    result = run(toy_env, share, mode="p", n=3, stray_files=True, write_files=True)
    [warning] = read_record(result.manifest).warnings
    assert "stray-0.txt, stray-1.txt, stray-2.txt" in warning and "ctx.output" in warning and "part-0.txt" not in warning
    shown = run_agi("runs", "show", result.run_id, "--share", str(share))
    assert "warning:" in shown.stdout and "stray-0.txt" in shown.stdout, shown.stdout + shown.stderr


def test_a_declared_output_that_was_never_written_is_not_cached_and_leaves_nothing(tmp_path):
    store = CacheStore(tmp_path / "cache")
    (tmp_path / "out").mkdir()
    with pytest.raises(FileNotFoundError):
        store.put("cd" * 32, 1, partition="p", out_dir=tmp_path / "out", outputs=["missing.png"])
    assert [p.name for p in (tmp_path / "cache" / "cd").iterdir()] == [] and len(store.view()) == 0


def test_a_bad_reads_name_is_an_error_with_the_cache_off_too(tmp_path, share):
    """`Partition(reads=...)` naming an arg the app lacks fails before anything runs, whether the
    cache is on or off (a typo must not wait for the day the cache is used)."""
    project = tmp_path / "apps" / "typo_project"
    (project / "src" / "typo").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "typo"\nversion = "0.0.1"\ndependencies = []\n')
    (project / "src" / "typo" / "__init__.py").write_text(
        "from pydantic import BaseModel\nfrom agi_core import App, Partition\n\n"
        "class Args(BaseModel):\n    size: int = 3\n\n"
        "class Typo(App):\n    Args = Args\n\n"
        "    def plan(self, args):\n        return [Partition(f'p{i}', payload=i, reads=('sise',)) for i in range(args.size)]\n\n"
        "    def work(self, part, ctx):\n        return part.payload\n\n"
        "    def reduce(self, results, ctx):\n        return sum(results.values())\n")
    env = AgiEnv(app="typo", apps_path=tmp_path / "apps")
    for use_cache in (True, False):
        with pytest.raises(PlanError, match=r"partition 'p0' reads arg\(s\) sise, which the app's Args do not have \(it has size\)"):
            asyncio.run(AGI.run(env, mode=0, cluster={"workers_data_path": str(share)}, use_cache=use_cache))
