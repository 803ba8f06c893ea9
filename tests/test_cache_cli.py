"""`agi cache list|show|clear|gc`, `agi runs prune`, `agi runs show --why/--dump-keys`, run as a user would."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import TEST_APPS, run_agi


def agi(*args: str, share: Path) -> subprocess.CompletedProcess[str]:
    return run_agi(*args, "--share", str(share))


def run_app(share: Path, *sets: str, app: str = "toy", apps: Path = TEST_APPS, extra: tuple[str, ...] = ()) -> str:
    """Run APP with ``--set`` assignments on ``share``; the run id."""
    options = [item for assignment in sets for item in ("--set", assignment)]
    out = run_agi("run", app, "--apps-path", str(apps), "--set", f'cluster.workers_data_path="{share}"', *options, *extra, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["run_id"]


def as_json(out: subprocess.CompletedProcess[str]) -> object:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def entries(share: Path, app: str = "toy") -> list[dict]:
    return as_json(agi("cache", "list", app, "--limit", "0", "--json", share=share))  # type: ignore[return-value]


def keys_of(share: Path, run_id: str, app: str = "toy") -> dict[str, str]:
    return json.loads((share / "runs" / app / run_id / "cache_keys.json").read_text())["keys"]


def make_running(share: Path, app: str, run_id: str, keys: dict[str, str], pid: int | None = None) -> Path:
    """A run of ``app`` that is still running (its manager: this test's process, alive) and holds ``keys``."""
    from agi_core.cache import RunKeys
    from agi_core.provenance import AppRecord, ManagerRecord, RunRecord
    from agi_core.provenance.writer import HEARTBEAT_FILE

    run_dir = share / "runs" / app / run_id
    run_dir.mkdir(parents=True)
    record = RunRecord(run_id=run_id, status="running", app=AppRecord(name=app), started="2026-11-23T10:00:00.000+00:00",
                       manager=ManagerRecord(host=platform.node(), pid=os.getpid() if pid is None else pid),
                       cache=str(share / "cache" / app))
    (run_dir / "manifest.json").write_text(record.dump_json())
    (run_dir / HEARTBEAT_FILE).write_text(f"{time.time()}\n")
    (run_dir / "cache_keys.json").write_bytes(RunKeys(code="c0de", kernel="python", args={}, keys=keys).to_json())
    return run_dir


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- list, show, clear -------------------------------------------------------------------------------


def test_cache_list_show_and_clear(share):
    run_id = run_app(share, "n=3", "write_files=true")
    listed = entries(share)
    assert as_json(agi("cache", "list", "--json", share=share)) == [
        {"app": "toy", "entries": 3, "size": sum(e["size"] for e in listed), "oldest_use": min(e["used"] for e in listed),
         "newest_use": max(e["used"] for e in listed), "path": str(share / "cache" / "toy"), "unfinished_writes": 0,
         "unfinished_size": 0, "unfinished_gone": 0}]
    assert sorted(e["partition"] for e in listed) == ["p0", "p1", "p2"]
    assert {e["run_id"] for e in listed} == {run_id} and {e["outputs"] for e in listed} == {1}
    text = agi("cache", "list", "toy", share=share).stdout
    assert "3 entries of toy" in text and listed[0]["key"][:12] in text and run_id in text

    p1 = next(e for e in listed if e["partition"] == "p1")
    shown = as_json(agi("cache", "show", p1["key"][:6], "--json", share=share))
    assert shown["ok"] and shown["key"] == p1["key"] and shown["header"]["partition"] == "p1"  # type: ignore[index]
    assert shown["header"]["run_id"] == run_id and shown["header"]["outputs"][0]["path"] == "part-1.txt"  # type: ignore[index]
    text = agi("cache", "show", p1["key"][:6], "--app", "toy", share=share).stdout
    assert "partition p1" in text and f"stored by run {run_id}" in text and "part-1.txt" in text and "check: ok" in text
    # showing is not a use: gc's idea of the last use does not move
    assert next(e for e in entries(share) if e["key"] == p1["key"])["used"] == p1["used"]

    # an altered output file: the entry does not check
    files = next((share / "cache" / "toy" / p1["key"][:2]).glob(f"{p1['key']}.files-*"))
    (files / "part-1.txt").write_text("tampered")
    text = agi("cache", "show", p1["key"][:8], share=share).stdout
    assert "check: corrupt" in text and "part-1.txt" in text

    short = agi("cache", "show", p1["key"][:3], share=share)
    assert short.returncode == 1 and "at least 4 characters" in short.stderr
    missing = agi("cache", "show", "ffffffff", share=share)
    assert missing.returncode == 1 and "no cache entry" in missing.stderr

    refused = agi("cache", "clear", "toy", share=share)  # no terminal to confirm on: nothing removed
    assert refused.returncode != 0 and len(entries(share)) == 3
    cleared = agi("cache", "clear", "toy", "--yes", share=share)
    assert cleared.returncode == 0 and "removed 3 cache entries of toy" in cleared.stdout
    assert entries(share) == [] and not (share / "cache" / "toy").exists()


# -- gc ----------------------------------------------------------------------------------------------


def test_gc_max_size_keeps_what_fits_and_never_the_keys_of_a_running_run(share):
    first = run_app(share, "n=4")
    second = run_app(share, "n=4", "offset=1")
    old, new = keys_of(share, first), keys_of(share, second)
    by_key = {e["key"]: e for e in entries(share)}
    assert set(by_key) == set(old.values()) | set(new.values())
    now = time.time()
    for i, pid in enumerate(sorted(old)):  # the first run's entries: used long ago, p0 least recently
        used = Path(by_key[old[pid]]["path"]).with_suffix(".index")  # a pack's last use: its index's mtime (mode 0: a pack each)
        os.utime(used, (now - 7200 + i, now - 7200 + i))
    running = make_running(share, "toy", "20261123-100000-aaaaaa", {"p0": old["p0"], "p1": old["p1"]})

    # --older-than: the first run's entries are old, but a running run holds two of them
    plan = as_json(agi("cache", "gc", "toy", "--older-than", "30m", "--dry-run", "--json", share=share))
    assert {e["key"] for e in plan["removed"]} == {old["p2"], old["p3"]}  # type: ignore[index]
    assert {(e["key"], e["running_run"]) for e in plan["protected"]} == {(old["p0"], running.name), (old["p1"], running.name)}  # type: ignore[index]
    assert len(entries(share)) == 8  # a dry run removes nothing

    # --max-size: least recently used first, until what is left fits; the held ones stay
    fits = sum(by_key[k]["size"] for k in (*new.values(), old["p0"], old["p1"]))
    done = as_json(agi("cache", "gc", "--max-size", str(fits), "--json", share=share))
    assert {e["key"] for e in done["removed"]} == {old["p2"], old["p3"]}  # type: ignore[index]
    left = {e["key"] for e in entries(share)}
    assert left == set(new.values()) | {old["p0"], old["p1"]}
    assert done["kept"] == {"entries": 6, "size": fits}  # type: ignore[index]
    text = agi("cache", "gc", "--max-size", str(fits - 1), "--dry-run", share=share).stdout
    assert running.name in text  # it says which run holds the entries it keeps

    # once its manager is gone the run reads abandoned and holds nothing
    record = json.loads((running / "manifest.json").read_text())
    record["manager"]["pid"] = dead_pid()
    (running / "manifest.json").write_text(json.dumps(record))
    done = as_json(agi("cache", "gc", "toy", "--max-size", "1G", "--older-than", "1h", "--json", share=share))
    assert {e["key"] for e in done["removed"]} == {old["p0"], old["p1"]} and done["protected"] == []  # type: ignore[index]
    assert {e["key"] for e in entries(share)} == set(new.values())


def test_gc_removes_old_leftovers_only(share):
    from agi_core.cache import CacheStore

    store = CacheStore.for_app(share, "toy")
    keep_key, out = "ab" * 32, share / "out"
    out.mkdir()
    (out / "f.txt").write_text("data")
    store.put(keep_key, 1, partition="p0", out_dir=out, outputs=["f.txt"])
    folder = store.root / "ab"
    hour_ago = time.time() - 2 * 3600
    stale_tmp, fresh_tmp = folder / f".tmp-{'cd' * 32}-1-aa", folder / f".tmp-{'cd' * 32}-2-bb"
    orphan, fresh_orphan = folder / f"{'ab' * 31}ef.files-1-cc", folder / f"{'ab' * 31}ee.files-2-dd"
    for path in (stale_tmp, fresh_tmp):
        path.write_bytes(b"x" * 10)
    for path in (orphan, fresh_orphan):
        path.mkdir()
        (path / "g.txt").write_text("orphan")
    for path in (stale_tmp, orphan, orphan / "g.txt"):
        os.utime(path, (hour_ago, hour_ago))
    named = next(folder.glob(f"{keep_key}.files-*"))
    os.utime(named, (hour_ago, hour_ago))
    os.utime(named / "f.txt", (hour_ago, hour_ago))

    done = as_json(agi("cache", "gc", "--json", share=share))
    assert sorted(Path(item["path"]).name for item in done["leftovers"]) == sorted([stale_tmp.name, orphan.name])  # type: ignore[index]
    assert done["removed"] == [] and not stale_tmp.exists() and not orphan.exists()  # type: ignore[index]
    assert fresh_tmp.exists() and fresh_orphan.exists() and named.exists()  # too young, or named by its entry
    assert store.load(keep_key).result == 1


def test_gc_and_prune_refuse_bad_durations_and_sizes(share):
    bad = agi("cache", "gc", "--older-than", "3 weeks", share=share)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    bad = agi("cache", "gc", "--max-size", "lots", share=share)
    assert bad.returncode == 2 and "not a size" in bad.stderr
    neither = agi("runs", "prune", share=share)
    assert neither.returncode == 1 and "--keep N or --older-than" in neither.stderr


def test_help_of_the_cache_and_prune_commands():
    for command in (["cache"], ["cache", "list"], ["cache", "show"], ["cache", "clear"], ["cache", "gc"], ["runs", "prune"]):
        out = run_agi(*command, "--help")
        assert out.returncode == 0 and "Usage: agi" in out.stdout and "--apps-path" in out.stdout, command
    assert "agi cache gc" in " ".join(run_agi("runs", "prune", "--help").stdout.split())  # it leaves the cache alone
    assert "running run" in " ".join(run_agi("cache", "gc", "--help").stdout.split())
    shown = " ".join(run_agi("runs", "show", "--help").stdout.split())
    assert "--why ID" in shown and "--dump-keys" in shown


# -- runs prune --------------------------------------------------------------------------------------


def test_prune_keep_1_keeps_the_newest_and_a_running_run_and_the_cache(share):
    oldest, middle, newest = (run_app(share, "n=2", f"offset={i}") for i in range(3))
    # the oldest is still running (its manager: this process)
    manifest = share / "runs" / "toy" / oldest / "manifest.json"
    record = json.loads(manifest.read_text())
    record.update(status="running", ended=None, manager={"host": platform.node(), "pid": os.getpid()})
    manifest.write_text(json.dumps(record, indent=1))
    (manifest.parent / "heartbeat").write_text(f"{time.time()}\n")
    cached = entries(share)

    plan = as_json(agi("runs", "prune", "toy", "--keep", "1", "--dry-run", "--json", share=share))
    assert [r["run_id"] for r in plan["removed"]] == [middle] and [r["run_id"] for r in plan["running"]] == [oldest]  # type: ignore[index]
    assert (share / "runs" / "toy" / middle).is_dir()

    done = agi("runs", "prune", "--keep", "1", "--yes", share=share)
    assert done.returncode == 0, done.stderr
    assert "removed 1 run," in done.stdout and middle in done.stdout and f"kept toy run {oldest}: it is still running" in done.stdout
    assert sorted(p.name for p in (share / "runs" / "toy").iterdir()) == sorted([oldest, newest])
    listed = as_json(agi("runs", "list", "--json", share=share))
    assert [r["run_id"] for r in listed] == [newest, oldest]  # type: ignore[union-attr]
    assert entries(share) == cached  # prune leaves the cache to gc

    # --older-than: the newest ended moments ago, the running one never ended
    assert as_json(agi("runs", "prune", "--older-than", "1h", "--yes", "--json", share=share))["removed"] == []  # type: ignore[index]
    gone = as_json(agi("runs", "prune", "--older-than", "0s", "--yes", "--json", share=share))
    assert [r["run_id"] for r in gone["removed"]] == [newest] and gone["freed"] > 0  # type: ignore[index]
    assert [p.name for p in (share / "runs" / "toy").iterdir()] == [oldest]


# -- runs show --why / --dump-keys -------------------------------------------------------------------


def why(share: Path, run: str, pid: str) -> dict:
    return as_json(agi("runs", "show", run, "--why", pid, "--json", share=share))  # type: ignore[return-value]


def test_why_names_the_changed_arg_with_both_values_and_why_an_unchanged_key_ran(share):
    first = run_app(share, "n=3")
    second = run_app(share, "n=3", "offset=5")
    told = why(share, "last", "p1")
    assert told["run_id"] == second and told["earlier"]["run_id"] == first and told["key_changed"] is True
    assert told["reasons"] == ["args.offset was 0, is now 5"]
    assert told["key"] == keys_of(share, second)["p1"] and told["earlier"]["key"] == keys_of(share, first)["p1"]
    text = agi("runs", "show", second, "--why", "p1", share=share).stdout
    assert "args.offset was 0, is now 5" in text and first in text and told["key"] in text

    hit = run_app(share, "n=3", "offset=5")
    told = why(share, hit, "p1")
    assert told["cache"] == "hit" and told["key_changed"] is False and f"stored by run {second}" in told["verdict"]

    refreshed = run_app(share, "n=3", "offset=5", extra=("--refresh", "p1"))
    assert "--refresh p1" in why(share, refreshed, "p1")["verdict"]

    assert agi("cache", "clear", "toy", "--yes", share=share).returncode == 0
    after_clear = run_app(share, "n=3", "offset=5")
    told = why(share, after_clear, "p1")
    assert told["key_changed"] is False and told["cache"] == "stored" and "agi cache gc" in told["verdict"]

    uncached = run_app(share, "n=3", extra=("--no-cache",))
    assert "--no-cache" in why(share, uncached, "p1")["verdict"]
    assert "no earlier recorded run" in why(share, first, "p1")["verdict"]
    unknown = agi("runs", "show", "last", "--why", "p7", share=share)
    assert unknown.returncode == 1 and "no partition 'p7'" in unknown.stderr

    dumped = as_json(agi("runs", "show", second, "--dump-keys", "--json", share=share))
    assert sorted(dumped["partitions"]) == ["p0", "p1", "p2"]  # type: ignore[index]
    p1 = dumped["partitions"]["p1"]  # type: ignore[index]
    assert p1["key"] == keys_of(share, second)["p1"] and p1["args"] == {"offset": 5, "write_files": False} and p1["deps"] == {}
    text = agi("runs", "show", second, "--why", "p1", "--dump-keys", share=share).stdout
    assert "args.offset = 5" in text and f"payload {p1['payload']}" in text and "p2 " not in text


DAG_APP = '''
from pydantic import BaseModel
from agi_core import App, Partition, WorkContext


class DagArgs(BaseModel):
    seed: int = 0  # only the first partition reads it
    n: int = 3


class Dag(App):
    Args = DagArgs

    def plan(self, args):
        return [Partition(id=f"s{i}", payload=i, deps=(f"s{i - 1}",) if i else (), reads=("seed",) if i == 0 else ())
                for i in range(args.n)]

    def work(self, part, ctx: WorkContext):
        return (ctx.args.seed if part.payload == 0 else 0) + sum(ctx.deps.values()) + part.payload

    def reduce(self, results, ctx):
        return max(results.values())
'''


def test_why_follows_a_changed_dependency_up_to_its_cause(share, tmp_path):
    project = tmp_path / "apps" / "dag_project"
    (project / "src" / "dag").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "dag"\nversion = "0.0.1"\ndependencies = []\n')
    (project / "src" / "dag" / "__init__.py").write_text(textwrap.dedent(DAG_APP))
    apps = tmp_path / "apps"
    first = run_app(share, "seed=1", app="dag", apps=apps)
    second = run_app(share, "seed=2", app="dag", apps=apps)
    told = why(share, second, "s2")
    assert told["earlier"]["run_id"] == first and told["key_changed"] is True
    assert told["reasons"] == ["dependency s1 changed:", "  dependency s0 changed:", "    args.seed was 1, is now 2"]
    text = agi("runs", "show", second, "--why", "s2", share=share).stdout
    assert "dependency s1 changed" in text and "args.seed was 1, is now 2" in text
    dumped = as_json(agi("runs", "show", second, "--why", "s2", "--dump-keys", "--json", share=share))
    assert dumped["keys"]["partitions"]["s2"]["deps"] == {"s1": keys_of(share, second, "dag")["s1"]}  # type: ignore[index]
    assert dumped["keys"]["partitions"]["s2"]["args"] == {}  # type: ignore[index]
