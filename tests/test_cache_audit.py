"""Cache audits (`--audit F`, `agi cache verify --sample N`): real runs that recompute cache hits and
compare them with their entries. The `dice` test app returns `random.random()` (every audit of it is
a mismatch) or equal values whose pickles differ (no audit of it is); mandelbrot is deterministic."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agi_core import AGI, AgiEnv
from agi_core.base.errors import SettingsError
from agi_core.cache import CacheStore
from agi_core.cache.audit import audit_sample, result_digest, same_value
from agi_core.provenance import read_record
from tests.conftest import TEST_APPS, run_agi

MODES = [0, "p", "d"]
LOCAL_CLUSTER = {"workers": {"127.0.0.1": 2}, "dask": {"scheduler_port": 0, "dashboard_port": None}}
SMALL_MANDELBROT = {"width": 64, "height": 48, "bands": 4, "max_iter": 50}


@pytest.fixture
def dice_env():
    return AgiEnv(app="dice", apps_path=TEST_APPS)


def run(env, share, mode, **kwargs):
    cluster = {"workers_data_path": str(share), **(LOCAL_CLUSTER if mode == "d" else {})}
    return asyncio.run(AGI.run(env, mode=mode, cluster=cluster, **kwargs))


def caches(result) -> dict[str, str | None]:
    return {p.id: p.cache for p in read_record(result.manifest).partitions}


def entries(share: Path, app: str) -> dict[str, tuple[str, object]]:
    """partition -> (its entry's digest, its result), for every entry of ``app``."""
    store = CacheStore.for_app(share, app)
    loaded = (store.load(info.key, touch=False) for info in store.entries())
    return {entry.header["partition"]: (entry.header["sha256"], entry.result) for entry in loaded}


# -- comparing results (pure logic) -------------------------------------------------------------


@dataclasses.dataclass
class _Band:
    top: int
    shade: np.ndarray


def test_equal_values_whose_pickles_differ_are_the_same_result():
    one = {"b": 2, "a": 1, "s": frozenset({"x", "y", "z"})}
    other = {"a": 1, "b": 2, "s": frozenset({"z", "y", "x"})}
    assert result_digest(one) != result_digest(other) and same_value(one, other)
    assert same_value(np.array([1.0, np.nan, 3.0]), np.array([1.0, np.nan, 3.0]))
    assert same_value(pd.DataFrame({"a": [1.0, np.nan]}), pd.DataFrame({"a": [1.0, np.nan]}))
    assert same_value(_Band(1, np.arange(3)), _Band(1, np.arange(3))) and same_value(float("nan"), float("nan"))


def test_different_values_are_not_the_same_result():
    assert not same_value(0.0, -0.0) and not same_value(1, 1.0) and not same_value({"a": 1}, {"a": 1, "b": 2})
    assert not same_value(np.array([1.0, np.nan]), np.array([np.nan, 1.0]))
    assert not same_value(np.array([1, 2], dtype=np.int32), np.array([1, 2], dtype=np.int64))
    assert not same_value(pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [2.0]}))
    assert not same_value(_Band(1, np.arange(3)), _Band(1, np.arange(4))) and not same_value([0.1], [math.nextafter(0.1, 1)])


def test_the_sample_is_the_ceiling_of_the_share_at_least_one_and_the_seed_repeats_it():
    ids = [f"p{i}" for i in range(10)]
    assert len(audit_sample(ids, 0.3, seed=11)) == 3 and len(audit_sample(ids, 0.25, seed=11)) == 3
    assert len(audit_sample(ids, 0.001, seed=11)) == 1 and audit_sample(ids, 1.0, seed=11) == ids
    assert audit_sample(ids, 0.0, seed=11) == []
    backwards = audit_sample(list(reversed(ids)), 0.5, seed=3)
    assert audit_sample(ids, 0.5, seed=3) == backwards[::-1]  # the order they come in does not choose
    assert len({tuple(audit_sample(ids, 0.3, seed=s)) for s in range(20)}) > 1


# -- runs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_auditing_every_hit_of_a_random_kernel_reports_each_as_a_mismatch_and_replaces_its_entry(dice_env, share, mode):
    run(dice_env, share, mode, n=4)
    before = entries(share, "dice")
    audited = run(dice_env, share, mode, n=4, audit=1.0)
    record = read_record(audited.manifest)
    assert set(caches(audited).values()) == {"mismatch"} and audited.status == "ok" and record.totals.ok == 4
    after = entries(share, "dice")
    assert record.audit is not None and (record.audit.hits, record.audit.chosen, record.audit.matched) == (4, 4, 0)
    assert {m.partition: (m.cached, m.fresh) for m in record.audit.mismatched} == {
        pid: (before[pid][0], after[pid][0]) for pid in before}
    assert all(before[p.id][0] in p.note and after[p.id][0] in p.note for p in record.partitions)  # both digests
    assert {pid: result for pid, (_, result) in after.items()} == audited.results  # the fresh results replaced the entries
    assert any("cache: mismatch" in warning for warning in record.warnings)
    again = run(dice_env, share, mode, n=4)
    assert set(caches(again).values()) == {"hit"} and again.results == audited.results


@pytest.mark.parametrize("mode", MODES)
def test_auditing_every_hit_of_mandelbrot_finds_no_mismatch(share, mode):
    env = AgiEnv(app="mandelbrot")
    first = run(env, share, mode, **SMALL_MANDELBROT)
    audited = run(env, share, mode, audit=1.0, **SMALL_MANDELBROT)
    record = read_record(audited.manifest)
    assert set(caches(audited).values()) == {"audited"} and not record.warnings
    assert record.audit is not None and (record.audit.chosen, record.audit.matched, record.audit.mismatched) == (4, 4, [])
    assert all(p.result_location and p.result_location.endswith((".pack", ".entry")) for p in record.partitions)
    assert audited.value["inside_fraction"] == first.value["inside_fraction"]


@pytest.mark.parametrize("mode", [0, "d"])
def test_equal_results_that_pickle_differently_are_not_a_mismatch(dice_env, share, mode):
    run(dice_env, share, mode, n=3, kind="shuffled")
    audited = run(dice_env, share, mode, n=3, kind="shuffled", audit=1.0)
    assert set(caches(audited).values()) == {"audited"}
    assert all("pickles differ" in p.note for p in read_record(audited.manifest).partitions)


def test_a_share_of_the_hits_is_audited_as_the_recorded_seed_chooses(dice_env, share):
    run(dice_env, share, 0, n=10, kind="shuffled")
    audited = run(dice_env, share, 0, n=10, kind="shuffled", audit=0.3)
    record = read_record(audited.manifest)
    assert record.audit is not None and (record.audit.fraction, record.audit.hits, record.audit.chosen) == (0.3, 10, 3)
    chosen = {pid for pid, cache in caches(audited).items() if cache == "audited"}
    assert chosen == set(audit_sample([f"d{i}" for i in range(10)], 0.3, record.audit.seed))
    assert sorted(caches(audited).values()).count("hit") == 7
    one = read_record(run(dice_env, share, 0, n=10, kind="shuffled", audit=0.01).manifest)
    assert one.audit is not None and one.audit.chosen == 1


def test_an_audited_parent_leaves_its_cached_children_cached(dice_env, share):
    run(dice_env, share, 0, n=2, chain=True)
    for _ in range(40):  # the seed is the run's own: audit until it picks d0, the parent (1 in 2 each time)
        audited = run(dice_env, share, 0, n=2, chain=True, audit=0.5)
        if caches(audited)["d0"] == "mismatch":
            break
    assert caches(audited) == {"d0": "mismatch", "d1": "hit"} and audited.status == "ok"


def test_the_settings_audit_is_used_and_a_bad_audit_is_a_clear_error(dice_env, share, apps_copy):
    settings = apps_copy / "dice_project" / "app_settings.toml"
    settings.write_text(settings.read_text() + "\n[cache]\naudit = 1.0\n")
    env = AgiEnv(app="dice", apps_path=apps_copy)
    run(env, share, 0, n=2)
    assert set(caches(run(env, share, 0, n=2)).values()) == {"mismatch"}
    assert set(caches(run(env, share, 0, n=2, audit=0.0)).values()) == {"hit"}  # the call's wins
    with pytest.raises(SettingsError, match="audit 2: expected a fraction of the cache hits between 0 and 1"):
        run(dice_env, share, 0, n=2, audit=2)
    with pytest.raises(SettingsError, match="use_cache=False"):
        run(dice_env, share, 0, n=2, audit=0.5, use_cache=False)
    out = run_agi("run", "dice", "--apps-path", str(TEST_APPS), "--set", f"cluster.workers_data_path={share}", "--audit", "2")
    assert out.returncode != 0 and "between 0 and 1" in out.stderr and "Traceback" not in out.stderr


def test_the_cli_warns_of_each_mismatch_and_runs_show_lists_them_with_both_digests(share):
    where = ["--apps-path", str(TEST_APPS), "--set", f"cluster.workers_data_path={share}", "--set", "n=3"]
    assert run_agi("run", "dice", *where).returncode == 0
    out = run_agi("run", "dice", *where, "--audit", "1", "--json")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("warning: cache: mismatch on partition") == 3
    record = read_record(Path(json.loads(out.stdout)["manifest"]))
    shown = run_agi("runs", "show", record.run_id, "--share", str(share))
    assert shown.returncode == 0, shown.stderr
    assert record.audit is not None
    assert f"3 of 3 hits recomputed (--audit 1, seed {record.audit.seed}): 0 same, 3 mismatches" in shown.stdout
    for mismatch in record.audit.mismatched:
        assert mismatch.cached in shown.stdout and mismatch.fresh in shown.stdout
    why = run_agi("runs", "show", record.run_id, "--share", str(share), "--why", "d1")
    assert "chosen for the cache audit" in why.stdout, why.stdout + why.stderr


# -- agi cache verify ----------------------------------------------------------------------------------


def _verify(share: Path, app: str, *more: str):
    where = ["--apps-path", str(TEST_APPS)] if app == "dice" else []  # mandelbrot: the bundled example
    out = run_agi("cache", "verify", app, *where, "--share", str(share), "--json", *more)
    return out.returncode, json.loads(out.stdout) if out.stdout else out.stderr


@pytest.mark.parametrize("mode", [0, "p"])
def test_cache_verify_recomputes_a_sample_and_fails_on_a_random_kernel(dice_env, share, mode):
    run(dice_env, share, mode, n=5, chain=True)
    code, report = _verify(share, "dice", "--sample", "3", "--seed", "7")
    assert code == 1 and report["seed"] == 7
    verdicts = [e["verdict"] for e in report["entries"]]
    assert sorted(verdicts) == ["mismatch"] * 3 + ["ok"] * 2
    for entry in report["entries"]:
        if entry["verdict"] == "mismatch":
            assert entry["cached"] == CacheStore.for_app(share, "dice").load(entry["key"]).header["sha256"] != entry["fresh"]
    again = _verify(share, "dice", "--sample", "3", "--seed", "7")[1]["entries"]  # the same sample, and nothing replaced
    def verdicts_of(entries):
        return [(e["key"], e["verdict"], e["cached"]) for e in entries]

    assert verdicts_of(again) == verdicts_of(report["entries"])


def test_cache_verify_recomputes_mandelbrot_without_mismatch_and_says_what_it_cannot_verify(share):
    run(AgiEnv(app="mandelbrot"), share, "p", **SMALL_MANDELBROT)
    code, report = _verify(share, "mandelbrot", "--sample", "4")
    assert code == 0 and [e["verdict"] for e in report["entries"]] == ["match"] * 4, report
    assert _verify(share, "mandelbrot")[0] == 0  # no sample: integrity only
    shutil.rmtree(next((share / "runs" / "mandelbrot").iterdir()))
    code, report = _verify(share, "mandelbrot", "--sample", "2")
    assert code == 0 and sorted(e["verdict"] for e in report["entries"]) == ["ok", "ok", "unverifiable", "unverifiable"]
    assert all("no record any more" in e["note"] for e in report["entries"] if e["verdict"] == "unverifiable")


def test_cache_verify_fails_on_a_corrupt_entry(dice_env, share):
    run(dice_env, share, 0, n=2, kind="shuffled")
    store = CacheStore.for_app(share, "dice")
    path = next(info.path for info in store.entries())
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    code, report = _verify(share, "dice")
    assert code == 1 and sorted(e["verdict"] for e in report["entries"]) == ["corrupt", "ok"]
