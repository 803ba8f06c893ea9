"""Authenticated cache entries (`agi_core.cache.auth`): a pickle planted on the share by someone
without the owner's key is never unpickled, whatever checksums they recompute."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import stat
from pathlib import Path

from agi_core import AGI
from agi_core.cache import CacheStore
from agi_core.cache.auth import KEY_ENV, CacheKey, ensure_key, worker_key
from agi_core.cache.entries import encode_single
from agi_core.cache.packs import INDEX_SUFFIX, PackWriter, list_indexes, read_bodies, read_index
from agi_core.executors import JobSpec
from agi_core.executors.partition_runner import PartitionRunner
from agi_core.provenance import read_record
from tests.conftest import TEST_APPS, run_agi


class _Canary:
    """Unpickling this creates the canary file: the attacker's code running in the reader."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def run(env, share, **kwargs):
    return asyncio.run(AGI.run(env, cluster={"workers_data_path": str(share)}, **kwargs))


def plant_in_pack(cache: Path, key: str, body: bytes) -> Path:
    """What a writer of the share can do: rewrite the pack holding ``key`` with ``body`` in its
    place, the sizes and SHA-256 sums of the index recomputed (and the old tag kept: a replay)."""
    for path in list_indexes(cache / "packs"):
        index = read_index(path)
        if key not in index.position:
            continue
        writer = PackWriter(cache / "packs", prefix=index.prefix)
        for i, old, _ in read_bodies(index, range(len(index.keys))):
            writer.add(index.keys[i], body if index.keys[i] == key else old, partition=index.partitions[i],
                       tag=index.tags[i], **index.common)
        written = writer.flush()
        index.index.unlink()
        index.pack.unlink()
        return written
    raise AssertionError(f"no pack holds {key}")


def test_a_planted_pickle_is_not_unpickled_the_record_says_untrusted_and_the_answer_is_right(toy_env, share, tmp_path):
    first = run(toy_env, share, mode=0, n=4)
    key = next(p.cache_key for p in read_record(first.manifest).partitions if p.id == "p2")
    canary = tmp_path / "canary"
    pack = plant_in_pack(share / "cache" / "toy", key, pickle.dumps(_Canary(canary)))

    again = run(toy_env, share, mode=0, n=4)
    assert not canary.exists()  # the planted pickle never ran
    record = read_record(again.manifest)
    part = next(p for p in record.partitions if p.id == "p2")
    assert part.cache == "untrusted" and str(pack) in (part.note or "")
    assert {p.id: p.cache for p in record.partitions if p.id != "p2"} == {"p0": "hit", "p1": "hit", "p3": "hit"}
    assert again.value == first.value and again.results["p2"] == first.results["p2"]
    warnings = [w for w in record.warnings if "untrusted" in w]
    assert len(warnings) == 1 and "1 cache entry" in warnings[0] and str(pack) in warnings[0]

    third = run(toy_env, share, mode=0, n=4)  # the fresh result replaced it
    assert {p.cache for p in read_record(third.manifest).partitions} == {"hit"} and not canary.exists()


def test_a_sealed_pack_authenticates_every_entry_in_one_check_and_a_replayed_seal_does_not(share, tmp_path):
    store = CacheStore.for_app(share, "toy", key=ensure_key())
    writer = store.writer()
    keys = [f"{i:02x}" * 32 for i in range(3)]
    for i, key in enumerate(keys):
        writer.add(key, {"i": i}, partition=f"p{i}")
    pack = writer.flush()
    index = read_index(pack.with_suffix(INDEX_SUFFIX))
    assert index.seal and store.key.check_seal(index.columns_sha256, index.seal)
    assert [entry.result for _, entry, _ in store.load_many(store.view(set(keys)), keys)] == [{"i": 0}, {"i": 1}, {"i": 2}]

    # Someone who can write the share swaps a result and keeps the old seal: the columns changed
    # (the result's SHA-256), so the seal does not check, and each entry's own tag decides.
    canary = tmp_path / "canary"
    evil = pickle.dumps(_Canary(canary))
    replay = PackWriter(store.packs_dir, prefix=index.prefix, seal=lambda _digest: index.seal)
    for i, body, _ in read_bodies(index, range(3)):
        replay.add(index.keys[i], evil if i == 1 else body, partition=index.partitions[i], tag=index.tags[i], **index.common)
    planted = replay.flush()
    index.index.unlink()
    index.pack.unlink()
    assert read_index(planted.with_suffix(INDEX_SUFFIX)).seal == index.seal
    loaded = {key: (entry, problem) for key, entry, problem in store.load_many(store.view(set(keys)), keys)}
    assert loaded[keys[1]][0] is None and ": untrusted: " in loaded[keys[1]][1] and not canary.exists()
    assert loaded[keys[0]][0].result == {"i": 0} and loaded[keys[2]][0].result == {"i": 2}  # their own tags still check


def test_an_untagged_single_file_entry_and_a_tag_made_under_another_key_are_untrusted(share, tmp_path):
    store = CacheStore.for_app(share, "toy", key=ensure_key())
    canary = tmp_path / "canary"
    evil = pickle.dumps(_Canary(canary))
    old = "ab" * 32
    single = store.entry_path(old)
    single.parent.mkdir(parents=True)
    single.write_bytes(encode_single({"key": old, "partition": "p0"}, evil))  # the older layout: no tag at all
    other = CacheStore.for_app(share, "toy", key=CacheKey(os.urandom(32)))  # someone else's key
    forged = "cd" * 32
    other.put(forged, _Canary(canary), partition="p1")
    for key in (old, forged):
        (_, entry, problem), = store.load_many(store.view({key}), [key])
        assert entry is None and ": untrusted: " in problem
    assert not canary.exists()

    out = run_agi("cache", "verify", "toy", "--share", str(share), "--json")
    assert out.returncode == 1 and not canary.exists()
    verdicts = {e["key"]: e["verdict"] for e in json.loads(out.stdout)["entries"]}
    assert verdicts == {old: "untrusted", forged: "untrusted"}


def test_the_key_is_made_once_private_and_a_worker_with_another_key_stores_nothing(tmp_path, monkeypatch):
    path = tmp_path / "state" / "agi_core" / "cache.key"
    key = ensure_key(path)
    assert ensure_key(path) == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    monkeypatch.setenv(KEY_ENV, str(other))  # what a stale warm cluster's worker holds
    assert worker_key(key.id).check("ab" * 32, "cd" * 32, None, key.tag("ab" * 32, "cd" * 32, None)) is False
    job = JobSpec(TEST_APPS / "toy_project" / "src", "toy", None, {"n": 1}, 0, tmp_path / "out", run_id="r",
                  cache_dir=tmp_path / "cache", cache_kernel="python", cache_key_id=key.id)
    outcome = PartitionRunner(job).run(__import__("agi_core").Partition("p0", payload={"i": 0}), "s", key="ef" * 32)
    assert outcome.status == "ok" and outcome.cache == "miss"
    assert "not the manager's" in outcome.note and "agi cluster down" in outcome.note
    assert not list((tmp_path / "cache").rglob(f"*{INDEX_SUFFIX}"))


def test_a_sealed_pack_of_small_entries_is_checked_whole_and_a_flipped_byte_still_names_its_entry(share):
    store = CacheStore.for_app(share, "toy", key=ensure_key())
    writer = store.writer()
    keys = [f"{i:02x}" * 32 for i in range(4)]
    for i, key in enumerate(keys):
        writer.add(key, f"result {i}", partition=f"p{i}")
    pack = writer.flush()
    index = read_index(pack.with_suffix(INDEX_SUFFIX))
    assert index.pack_sha256  # small entries: the pack has a checksum of its own, under the seal
    assert [entry.result for _, entry, _ in store.load_many(store.view(set(keys)), keys)] == [f"result {i}" for i in range(4)]

    data = bytearray(pack.read_bytes())
    data[index.offsets[2] + index.sizes[2] - 2] ^= 0xFF  # inside entry 2's pickle, the index unchanged
    pack.write_bytes(bytes(data))
    loaded = {key: (entry, problem) for key, entry, problem in store.load_many(store.view(set(keys)), keys)}
    assert loaded[keys[2]][0] is None and "checksum does not match" in loaded[keys[2]][1]
    assert [loaded[keys[i]][0].result for i in (0, 1, 3)] == ["result 0", "result 1", "result 3"]

    big = store.writer()
    big.add("ff" * 32, b"x" * (100 << 10), partition="big")
    assert not read_index(big.flush().with_suffix(INDEX_SUFFIX)).pack_sha256  # big entries: each checked on its own
