"""Declared input files in cache keys, end to end: real files on a real share, edited behind the
cache's back, in modes 0, p and d; and the files a partition reads without declaring them."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from unittest.mock import ANY

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agi_core import AGI, AgiEnv
from agi_core.app import Partition
from agi_core.base.errors import PlanError
from agi_core.cache import plan_keys
from agi_core.cache.inputs import InputStamper, describe_change
from agi_core.cache.keys import RunKeys, explain, payload_changes, payload_fingerprint
from agi_core.provenance import RunStore, read_record
from tests.conftest import TEST_APPS, run_agi

FILES = 4


@pytest.fixture
def texts(share: Path) -> Path:
    """A folder of FILES text files on the share: f00i.txt holds i+1 words."""
    folder = share / "texts"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"f{i:03d}.txt").write_text("word " * (i + 1))
    return folder


def run_texts(share: Path, mode: str = "0", apps: Path = TEST_APPS, **args):
    env = AgiEnv(app="texts", apps_path=apps)
    cluster = {"workers_data_path": str(share), "workers": {"127.0.0.1": 2}}
    return asyncio.run(AGI.run(env, mode=mode, args={"share": str(share), **args}, cluster=cluster))


def computed(result) -> set[str]:
    """The partitions a run computed (not from the cache)."""
    return {p.id for p in read_record(result.manifest).partitions if p.cache != "hit"}


def bump_mtime(path: Path) -> None:
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))


# -- pure logic -------------------------------------------------------------------------------


def test_an_input_stamp_changes_with_size_or_mtime_and_a_hash_only_with_content(tmp_path):
    data = tmp_path / "a.txt"
    data.write_text("hello")
    stamp, hashed = InputStamper(tmp_path).stamp(["a.txt"])["a.txt"], InputStamper(tmp_path, mode="hash").stamp(["a.txt"])["a.txt"]
    bump_mtime(data)
    assert InputStamper(tmp_path).stamp(["a.txt"])["a.txt"] != stamp
    assert InputStamper(tmp_path, mode="hash").stamp(["a.txt"])["a.txt"] == hashed
    data.write_text("jello")  # same size, new content
    assert InputStamper(tmp_path, mode="hash").stamp(["a.txt"])["a.txt"] != hashed


def test_content_hashes_are_memoised_on_the_share_so_an_unchanged_file_is_read_once(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"x" * 100_000)
    memo = tmp_path / "memo.json"
    first = InputStamper(tmp_path, mode="hash", hashes_file=memo)
    first.stamp(["big.bin"])
    first.save()
    assert first.hashed_bytes == 100_000 and memo.is_file()
    second = InputStamper(tmp_path, mode="hash", hashes_file=memo)
    assert second.stamp(["big.bin"]) == first.stamps and second.hashed_bytes == 0
    (tmp_path / "big.bin").write_bytes(b"y" * 100_000)  # same size, new mtime: the memo is not trusted
    third = InputStamper(tmp_path, mode="hash", hashes_file=memo)
    assert third.stamp(["big.bin"]) != first.stamps and third.hashed_bytes == 100_000


def test_a_folder_stamp_covers_its_listing_and_every_file_in_it(tmp_path):
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    before = InputStamper(tmp_path).stamp(["d"])
    assert set(before) == {"d", "d/a.txt", "d/sub/b.txt"}
    (folder / "c.txt").write_text("c")
    after = InputStamper(tmp_path).stamp(["d"])
    assert after["d"] != before["d"]


def test_explain_names_the_input_that_changed_and_the_place_in_a_payload(tmp_path):
    (tmp_path / "f.txt").write_text("12345")
    parts = [Partition("a", payload={"files": ["x", "y"]}, inputs=("f.txt",))]
    old = plan_keys(parts, code="c", args={}, kernel="python", stamper=InputStamper(tmp_path))
    (tmp_path / "f.txt").write_text("1234567")
    new_parts = [Partition("a", payload={"files": ["x", "z"]}, inputs=("f.txt",))]
    new = plan_keys(new_parts, code="c", args={}, kernel="python", stamper=InputStamper(tmp_path))
    reasons = explain("a", old=old, new=new, old_payloads={"a": parts[0].payload}, new_payloads={"a": new_parts[0].payload})
    assert "its payload changed: payload.files[1] was 'y', is now 'z'" in reasons
    assert "input f.txt changed: size 5 → 7" in reasons
    assert payload_changes({"n": [1]}, {"n": [1, 2]}) == ["payload.n has 2 items, had 1"]
    assert describe_change("f", "3:mtime=1000000000", "3:mtime=2000000000").startswith("input f changed: same size, modified at")


def test_a_missing_input_is_an_error_naming_partition_and_path_before_anything_runs(share, texts):
    with pytest.raises(PlanError, match=r"partition 'f000'.*input 'nothere.txt'"):
        run_texts(share, shared="nothere.txt")
    with pytest.raises(PlanError, match=r"missing input file\(s\): partition 'f000' declares input 'nothere.txt'"):
        env = AgiEnv(app="texts", apps_path=TEST_APPS)
        asyncio.run(AGI.run(env, mode=0, args={"share": str(share), "shared": "nothere.txt"}, use_cache=False,
                            cluster={"workers_data_path": str(share)}))
    assert not list(RunStore(share).list("texts")), "no run folder is made for a plan whose inputs are missing"


# -- real runs: edit, truncate, touch, replace --------------------------------------------------


@pytest.mark.parametrize("mode", ["0", "p", "d"])
def test_editing_truncating_or_touching_an_input_recomputes_exactly_its_partition_and_dependants(share, texts, mode):
    first = run_texts(share, mode)
    assert first.value["total"] == sum(range(1, FILES + 1)) and computed(first) == {"f000", "f001", "f002", "f003", "total"}
    assert computed(run_texts(share, mode)) == set(), "unchanged inputs: everything from the cache"

    (texts / "f001.txt").write_text("word " * 10)  # edited
    edited = run_texts(share, mode)
    assert computed(edited) == {"f001", "total"} and edited.value["f001"] == 10

    (texts / "f003.txt").write_text("")  # truncated
    truncated = run_texts(share, mode)
    assert computed(truncated) == {"f003", "total"} and truncated.value["f003"] == 0

    bump_mtime(texts / "f000.txt")  # touched: same size, same content
    assert computed(run_texts(share, mode)) == {"f000", "total"}


def test_with_inputs_hash_a_touch_alone_recomputes_nothing_and_an_edit_does(share, texts, apps_copy):
    settings = apps_copy / "texts_project" / "app_settings.toml"
    settings.write_text(settings.read_text() + '\n[cache]\ninputs = "hash"\n')
    assert computed(run_texts(share, apps=apps_copy)) == {"f000", "f001", "f002", "f003", "total"}
    bump_mtime(texts / "f002.txt")
    assert computed(run_texts(share, apps=apps_copy)) == set()
    (texts / "f002.txt").write_text("WORD " * 3)  # same size as before, new content
    assert computed(run_texts(share, apps=apps_copy)) == {"f002", "total"}


@pytest.mark.parametrize("mode", ["0", "p", "d"])
def test_replacing_a_file_inside_a_declared_folder_recomputes_the_partition_that_declared_it(share, texts, mode):
    first = run_texts(share, mode, folder=True)
    assert first.value["all"] == 10
    replacement = texts / "new.tmp"
    replacement.write_text("a b c d e f g h")
    os.replace(replacement, texts / "f000.txt")
    second = run_texts(share, mode, folder=True)
    assert computed(second) == {"f000", "all", "total"} and second.value["all"] == 17
    (texts / "extra.txt").write_text("one more")  # a new file in the folder: "all" and the new partition
    third = run_texts(share, mode, folder=True)
    assert computed(third) == {"extra", "all", "total"} and third.value["all"] == 19


def test_a_relative_input_is_read_from_the_share(share, texts):
    (share / "shared.txt").write_text("v1")
    assert len(computed(run_texts(share, shared="shared.txt"))) == FILES + 1
    assert computed(run_texts(share, shared="shared.txt")) == set()
    (share / "shared.txt").write_text("v2 longer")
    assert computed(run_texts(share, shared="shared.txt")) == {"f000", "f001", "f002", "f003", "total"}


def test_why_names_the_input_file_that_changed(share, texts):
    run_texts(share)
    (texts / "f003.txt").write_text("word " * 9)
    run_texts(share)
    shown = run_agi("runs", "show", "last", "--share", str(share), "--app", "texts", "--apps-path", str(TEST_APPS),
                    "--why", "f003")
    assert shown.returncode == 0, shown.stderr
    assert "input" in shown.stdout and "f003.txt changed: size 20 → 45" in shown.stdout.replace("\n", " ")
    total = run_agi("runs", "show", "last", "--share", str(share), "--app", "texts", "--apps-path", str(TEST_APPS),
                    "--why", "total", "--json")
    reasons = json.loads(total.stdout)["reasons"]
    assert reasons[0] == "dependency f003 changed:" and "f003.txt changed: size 20 → 45" in reasons[1]


# -- undeclared reads ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["0", "p", "d"])
def test_files_read_without_being_declared_are_named_per_partition_and_in_one_warning(share, texts, mode):
    (share / "notes.txt").write_text("hidden input")
    result = run_texts(share, mode, declare=False, peek="notes.txt")
    record = read_record(result.manifest)
    reads = {p.id: p.undeclared_reads for p in record.partitions}
    assert reads["f001"] == ["notes.txt", "texts/f001.txt"], reads
    assert reads["total"] == []
    assert len(record.warnings) == 1 and record.warnings[0].startswith(f"{FILES} partitions read files not in their inputs")
    declared = read_record(run_texts(share, mode, peek="").manifest)
    assert not any(p.undeclared_reads for p in declared.partitions) and not declared.warnings


def test_the_flight_telemetry_answer_follows_an_edited_flight_file(tmp_path):
    """The issue's reproduction: a data app whose payload names its file; the file changes behind
    the cache's back and the cached answer must not be served."""
    pd = pytest.importorskip("pandas")
    share = tmp_path / "share"
    env = AgiEnv(app="flight_telemetry")
    args = {"flights": 3, "min_rows": 200, "max_rows": 400, "format": "csv", "data_dir": str(share / "data")}
    cluster = {"workers_data_path": str(share)}
    first = asyncio.run(AGI.run(env, mode=0, args=args, cluster=cluster))
    victim = sorted((share / "data").rglob("*.csv"))[0]
    frame = pd.read_csv(victim)
    frame.iloc[: len(frame) // 2].to_csv(victim, index=False)
    time.sleep(0.01)
    second = asyncio.run(AGI.run(env, mode=0, args=args, cluster=cluster))
    fresh = asyncio.run(AGI.run(env, mode=0, args=args, cluster=cluster, use_cache=False))
    assert second.value["rows"] == fresh.value["rows"] < first.value["rows"]
    assert computed(second) == {victim.stem}


def test_runs_show_all_lists_the_undeclared_reads_per_partition(share, texts):
    (share / "notes.txt").write_text("hidden input")
    run_texts(share, peek="notes.txt")
    shown = run_agi("runs", "show", "last", "--share", str(share), "--app", "texts", "--apps-path", str(TEST_APPS), "--all")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert f"warning: {FILES} partitions read files not in their inputs (notes.txt)" in text
    assert "4 partitions read files not in their inputs (the cache cannot see them change)" in text


# -- the keys memo: an unchanged re-run does not hash every payload again ---------------------------


def _keys_file(result) -> Path:
    return Path(result.manifest).parent / "cache_keys.json"


def test_an_unchanged_rerun_reads_its_keys_from_the_memo_and_a_changed_input_does_not(share, texts):
    from agi_core.cache.keys import RunKeys

    first = run_texts(share)
    second = run_texts(share)
    assert computed(second) == set()
    memo = share / "cache" / "texts" / "keys"
    [memo_file] = list(memo.glob("*.json"))
    assert os.path.samefile(_keys_file(second), memo_file), "the re-run's keys are the memo, linked, not hashed again"
    assert RunKeys.from_json(_keys_file(second).read_bytes()).keys == RunKeys.from_json(_keys_file(first).read_bytes()).keys

    bump_mtime(texts / "f002.txt")  # the same plan (same fingerprint), another stamp: keyed again
    third = run_texts(share)
    assert computed(third) == {"f002", "total"} and not os.path.samefile(_keys_file(third), _keys_file(second))
    assert os.path.samefile(_keys_file(third), memo_file)  # the memo follows the newest keys of the plan
    (texts / "f001.txt").write_text("word " * 9)  # a new weight: a new plan, a memo of its own
    fourth = run_texts(share)
    assert computed(fourth) == {"f001", "total"} and len(list(memo.glob("*.json"))) == 2


def test_a_damaged_memo_is_ignored_and_the_plan_keyed_again(share, texts):
    run_texts(share)
    [memo_file] = list((share / "cache" / "texts" / "keys").glob("*.json"))
    memo_file.unlink()
    memo_file.write_text('{"schema": "agi.cache-keys.v1", "format": 1, "code": "x"')  # cut short
    again = run_texts(share)
    assert computed(again) == set() and json.loads(_keys_file(again).read_text())["keys"]


@given(st.one_of(st.integers(), st.text(), st.none(), st.booleans(), st.floats(allow_nan=False),
                 st.dictionaries(st.text(), st.integers()), st.lists(st.text())))
def test_a_payload_fingerprint_is_made_from_its_canonical_json_whatever_the_path_that_made_it(payload):
    import hashlib

    keys = plan_keys([Partition("p", payload=payload)], code="c", args={}, kernel="python")
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    expected = "=" + canonical if len(canonical) <= 32 else hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert keys.parts["p"][1] == expected == payload_fingerprint(payload)


def test_keys_read_from_a_memo_that_another_run_replaced_meanwhile_are_not_linked_as_this_runs(tmp_path):
    from agi_core.cache.keys_memo import KeysMemo, memo_id

    parts = [Partition("a", payload=1)]
    name = memo_id(fingerprint="f", code="c", kernel="python", inputs_mode="stamp")
    memo = KeysMemo(tmp_path, name)
    first = tmp_path / "first.json"
    first.write_bytes(plan_keys(parts, code="c", args={}, kernel="python").to_json())
    memo.keep(first)
    assert memo.find(parts, code="c", kernel="python", stamper=InputStamper(tmp_path)) is not None
    other = tmp_path / "other.json"  # another run of the same plan keys it again and becomes the memo
    other.write_bytes(first.read_bytes())
    memo.keep(other)
    target = tmp_path / "mine.json"
    assert memo.link_found(target) is False and not target.exists()
    # the run then writes the bytes it read: its keys file has the parts `--why` needs, though
    # the memo gave the run its keys without them (an unchanged re-run never parses them)
    assert memo.text == first.read_bytes() and RunKeys.from_json(memo.text).parts == {"a": [None, ANY, []]}
    assert memo.find(parts, code="c", kernel="python", stamper=InputStamper(tmp_path)).parts == {}


@pytest.mark.parametrize("mode", ["0", "p"])
def test_a_run_that_takes_them_from_the_cache_warns_again_of_their_undeclared_reads(share, texts, mode):
    (share / "notes.txt").write_text("hidden input")
    run_texts(share, mode, declare=False, peek="notes.txt")
    again = run_texts(share, mode, declare=False, peek="notes.txt")
    record = read_record(again.manifest)
    assert computed(again) == set()
    assert {p.id: p.undeclared_reads for p in record.partitions}["f001"] == ["notes.txt", "texts/f001.txt"]
    assert len(record.warnings) == 1 and f"{FILES} of them taken from the cache" in record.warnings[0]


def test_the_cli_prints_the_undeclared_reads_warning_without_a_terminal(share, texts):
    (share / "notes.txt").write_text("hidden input")
    shown = run_agi("run", "texts", "--apps-path", str(TEST_APPS), "--set", f"share={share}", "--set", "peek=notes.txt",
                    "--set", "cluster.workers_data_path=" + str(share))
    assert shown.returncode == 0, shown.stderr
    assert f"{FILES} partitions read files not in their inputs (notes.txt" in " ".join((shown.stdout + shown.stderr).split())


def test_keys_read_without_their_parts_match_the_whole_file_whatever_the_args_hold():
    """An unchanged re-run reads a keys file up to its parts; an arg that is itself a dict named
    "parts", or a file written with the parts in the middle (older runs), must not fool it."""
    parts = [Partition(f"p{i}", payload={"parts": {"x": i}}) for i in range(3)]
    keys = plan_keys(parts, code="c", args={"a": 1, "parts": {"b": 2}}, kernel="python")
    whole = RunKeys.from_json(keys.to_json())
    older = json.dumps({"schema": json.loads(keys.to_json())["schema"], "format": keys.format, "code": keys.code,
                        "kernel": keys.kernel, "args": keys.args, "keys": keys.keys, "parts": keys.parts,
                        "inputs": keys.inputs, "inputs_mode": keys.inputs_mode}).encode()
    for data in (keys.to_json(), older):
        alone = RunKeys.keys_only_from_json(data)
        assert alone.parts == {} and (alone.keys, alone.args, alone.code, alone.inputs_mode) == \
            (whole.keys, whole.args, whole.code, whole.inputs_mode)


@given(st.lists(st.one_of(st.integers(), st.text(max_size=40), st.none(), st.booleans(), st.lists(st.integers(), max_size=12)),
                min_size=2, max_size=2, unique_by=lambda v: json.dumps(v, sort_keys=True)))
def test_two_different_payloads_never_share_a_key_short_or_long(payloads):
    # a short payload is keyed by its text, a long one by a digest: the two kinds never meet
    keys = [plan_keys([Partition("p", payload=value)], code="c", args={}, kernel="python").keys["p"] for value in payloads]
    assert keys[0] != keys[1]
