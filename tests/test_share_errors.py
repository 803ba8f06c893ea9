"""A share that cannot be written (read-only, or full at the start, at the final record write, or
while cached outputs are restored): an `error:` naming the path and the errno with a `fix:`, a
record that says what happened, no truncated file and no run folder `agi runs list` cannot show.

The shares are real mounts (a read-only bind mount, a small tmpfs) filled by the test at the
right moment: these tests need root, and skip with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agi_core import AGI
from agi_core.base.errors import ShareError
from agi_core.provenance import RunStore
from tests.conftest import ROOT, TEST_APPS, run_agi

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs or a read-only bind mount needs root")


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount here (mount {' '.join(args)}: {done.stderr.strip()})")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_share(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: small enough to fill in milliseconds."""
    share = tmp_path / "share"
    share.mkdir()
    _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(share))
    yield share
    _umount(share)


@pytest.fixture
def read_only_share(tmp_path: Path) -> Iterator[Path]:
    source, share = tmp_path / "source", tmp_path / "share"
    source.mkdir()
    share.mkdir()
    _mount("--bind", str(source), str(share))
    try:
        _mount("-o", "remount,bind,ro", str(share))
        yield share
    finally:
        _umount(share)


def fill(share: Path, leave: int = 0) -> None:
    """Fill the share's file system, leaving about ``leave`` bytes free."""
    stat = os.statvfs(share)
    with open(share / "filler", "wb", buffering=0) as handle:
        try:
            handle.write(b"x" * max(0, stat.f_bavail * stat.f_frsize - leave))
            while not leave:
                handle.write(b"x" * 4096)
        except OSError:  # full
            pass


def run_toy(share: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    return run_agi("run", "toy", "--apps-path", str(TEST_APPS), "--mode", "0", "--no-cache",
                   "--set", f'cluster.workers_data_path="{share}"', *sets)


def test_a_read_only_share_is_an_error_naming_the_path_and_erofs(read_only_share):
    out = run_toy(read_only_share)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"error: Read-only file system (EROFS) starting the run at {read_only_share}" in out.stderr
    assert "fix: the share is mounted read-only" in out.stderr


def test_a_share_full_at_start_leaves_no_run_folder(small_share):
    fill(small_share)
    out = run_toy(small_share)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "error: No space left on device (ENOSPC) starting the run at" in out.stderr and str(small_share) in out.stderr
    assert "fix: free space on the file system of" in out.stderr
    assert list((small_share / "runs" / "toy").iterdir()) == []  # nothing `agi runs list` could not show
    listed = run_agi("runs", "list", "--share", str(small_share))
    assert listed.returncode == 0 and "toy" not in listed.stdout


FILL_AT_THE_END = """
import asyncio, os, sys
from pathlib import Path
from agi_core import AGI, AgiEnv

share = Path(sys.argv[2])

def fill_on_the_last(outcome):
    if outcome.id == "p5":  # the share fills up before the final record is written
        with open(share / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"x" * 65536)
            except OSError:
                pass

asyncio.run(AGI.run(AgiEnv(app="toy", apps_path=sys.argv[1]), mode=0, n=6, use_cache=False,
                    cluster={"workers_data_path": str(share)}, on_outcome=fill_on_the_last))
"""


def test_a_share_full_at_the_final_record_write_reads_failed_with_the_cause(small_share):
    done = subprocess.run([sys.executable, "-c", FILL_AT_THE_END, str(TEST_APPS), str(small_share)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "ShareError: No space left on device (ENOSPC) writing the run record" in done.stderr
    assert "the run itself ended ok" in done.stderr
    # The manager is gone now: the record must not read "abandoned" but say why it ended.
    (record,) = RunStore(small_share).list("toy")
    assert record.status == "failed", record.error
    assert record.error.startswith("No space left on device (ENOSPC) writing the run record")
    assert str(small_share / "runs" / "toy" / record.run_id) in record.error
    shown = run_agi("runs", "show", record.run_id, "--share", str(small_share))
    assert "failed" in shown.stdout and "ENOSPC" in shown.stdout and "abandoned" not in shown.stdout


def test_a_share_full_while_cached_outputs_are_restored_leaves_no_truncated_file(small_share, toy_env):
    settings = {"mode": 0, "n": 2, "write_files": True, "file_kb": 256, "cluster": {"workers_data_path": str(small_share)}}
    first = asyncio.run(AGI.run(toy_env, **settings))  # two 256 KiB outputs, in out/ and in the cache
    fill(small_share, leave=128 * 1024)  # room for a run's record, not for a 256 KiB output
    with pytest.raises(ShareError) as info:
        asyncio.run(AGI.run(toy_env, **settings))
    assert info.value.message.startswith("No space left on device (ENOSPC) restoring a cached output to ")
    assert "free space" in (info.value.fix or "")
    record = next(r for r in RunStore(small_share).list("toy") if r.run_id != first.run_id)
    assert record.status == "failed" and "ENOSPC" in (record.error or "") and "restoring a cached output" in (record.error or "")
    out = Path(record.out_dir or "")
    assert sorted(p.name for p in out.iterdir()) == []  # neither a truncated part-*.txt nor a temporary file
    assert (Path(first.out_dir) / "part-0.txt").stat().st_size == 256 * 1024
