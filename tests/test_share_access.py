"""Permissions on the share (`agi_core.base.share_access`): what a run creates is 0750/0640 by default
(0770/0660 for a lab group that writes), and no cache entry or run record is loaded from a folder
others can write. Mode bits are checked, so this holds when the tests run as root."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from agi_core import AGI
from agi_core.base.share_access import ShareAccess, UnsafeFolder
from agi_core.provenance import RunStore, read_record
from tests.conftest import TEST_APPS, run_agi


def run(env, share, group_access: str | None = None, **kwargs):
    cluster = {"workers_data_path": str(share), **({"share": {"group_access": group_access}} if group_access else {})}
    return asyncio.run(AGI.run(env, cluster=cluster, **kwargs))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("group_access", "folders", "files", "run_mode"),
                         [("read", 0o750, 0o640, "p"), ("write", 0o770, 0o660, 0), ("none", 0o700, 0o600, 0)])
def test_what_a_run_creates_on_the_share_has_the_modes_of_group_access(toy_env, share, group_access, folders, files, run_mode):
    result = run(toy_env, share, group_access, mode=run_mode, n=3, write_files=True)
    cache = share / "cache" / "toy"
    made_folders = [share / "runs", share / "runs" / "toy", result.run_dir, result.out_dir, share / "cache", cache, cache / "packs"]
    made_files = [result.manifest, *result.out_dir.iterdir(), *(cache / "packs").iterdir()]
    assert {str(p): oct(mode(p)) for p in made_folders} == {str(p): oct(folders) for p in made_folders}
    assert {str(p): oct(mode(p)) for p in made_files} == {str(p): oct(files) for p in made_files}


def test_a_world_writable_cache_folder_is_refused_with_the_fix(toy_env, share):
    run(toy_env, share, mode=0, n=2)
    cache = share / "cache" / "toy"
    cache.chmod(0o777)
    with pytest.raises(UnsafeFolder) as caught:
        run(toy_env, share, mode=0, n=2)
    assert f"{cache} is writable by other users (mode 0777)" in caught.value.message
    assert caught.value.fix == f"chmod o-w {cache}"
    out = run_agi("run", "toy", "--apps-path", str(TEST_APPS), "--set", f'cluster.workers_data_path="{share}"', "--set", "args.n=2")
    assert out.returncode != 0 and f"fix: chmod o-w {cache}" in out.stderr and "writable by other users" in out.stderr
    verify = run_agi("cache", "verify", "toy", "--share", str(share))
    assert verify.returncode != 0 and f"chmod o-w {cache}" in verify.stderr
    cache.chmod(0o750)  # the fix: the next run uses the cache again
    assert {p.cache for p in read_record(run(toy_env, share, mode=0, n=2).manifest).partitions} == {"hit"}


def test_a_group_writable_cache_is_refused_by_default_and_used_with_the_lab_setting(toy_env, share):
    run(toy_env, share, "write", mode=0, n=2)  # a lab group's cache: 0770
    with pytest.raises(UnsafeFolder) as caught:
        run(toy_env, share, mode=0, n=2)
    assert "writable by its group" in caught.value.message and 'group_access = "write"' in caught.value.fix
    assert caught.value.fix.startswith(f"chmod g-w {share / 'cache' / 'toy'}")
    again = run(toy_env, share, "write", mode=0, n=2)
    assert {p.cache for p in read_record(again.manifest, ShareAccess.of("write")).partitions} == {"hit"}
    with pytest.raises(UnsafeFolder, match="writable by its group"):  # its records too: read only by those who allow it
        read_record(again.manifest)


def test_a_run_record_in_a_folder_others_can_write_is_not_read(toy_env, share):
    result = run(toy_env, share, mode=0, n=2)
    result.run_dir.chmod(0o777)
    with pytest.raises(UnsafeFolder, match="writable by other users"):
        read_record(result.manifest)
    listed = RunStore(share).list("toy")
    assert [(r.run_id, r.status) for r in listed] == [(result.run_id, "unreadable")] and "chmod o-w" not in listed[0].error
    shown = run_agi("runs", "show", result.run_id, "--share", str(share))
    assert shown.returncode != 0 and f"fix: chmod o-w {result.run_dir}" in shown.stderr
    result.run_dir.chmod(0o750)
    result.manifest.chmod(0o666)  # the record itself
    with pytest.raises(UnsafeFolder, match=f"{result.manifest} is writable by other users"):
        read_record(result.manifest)
    result.manifest.chmod(0o640)
    assert read_record(result.manifest, ShareAccess.of("read")).run_id == result.run_id


def test_a_sticky_world_writable_share_like_tmp_is_fine(toy_env, share):
    share.chmod(0o1777)
    run(toy_env, share, mode=0, n=2)
    again = run(toy_env, share, mode=0, n=2)
    assert {p.cache for p in read_record(again.manifest).partitions} == {"hit"}
    assert json.loads(run_agi("runs", "list", "--share", str(share), "--json").stdout)[0]["status"] == "ok"
