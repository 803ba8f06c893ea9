"""The README's "In one screen" Python runs as written in every local mode, Dask ones included
(its `if __name__ == "__main__":` guard), and a script without the guard gets one clear error
from `AGI.run` instead of every Dask worker process running the app again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agi_core.provenance import RunStore
from tests.conftest import ROOT, TEST_APPS


def _readme_python() -> str:
    """The first ```python block of the README's "In one screen" section."""
    section = (ROOT / "README.md").read_text().split("## In one screen", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(script: Path, share: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(share.parent / "data"), "XDG_STATE_HOME": str(share.parent / "state")}
    return subprocess.run([sys.executable, str(script)], cwd=script.parent, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("mode", ["0", "p", "d", "dp"])
def test_the_readmes_python_runs_in_every_local_mode(tmp_path, mode):
    code = _readme_python()
    assert 'if __name__ == "__main__":' in code and code.count('mode="p"') == 2
    # the README's code with the mode the user is invited to change, and a small image
    script = tmp_path / "readme.py"
    script.write_text(code.replace('mode="p"', f"mode={mode!r}").replace("width=800", "width=160, height=120, bands=4"))
    done = _run(script, tmp_path / "share")
    assert done.returncode == 0, done.stderr[-3000:]
    image, manifest = done.stdout.split()
    assert Path(image).is_file() and Path(manifest).is_file()
    assert "Traceback" not in done.stderr


UNGUARDED = f"""
import asyncio
from agi_core import AGI, AgiEnv

env = AgiEnv(app="toy", apps_path={str(TEST_APPS)!r})
result = asyncio.run(AGI.run(env, mode="d", n=4, cluster={{"workers": {{"127.0.0.1": 2}}}}))
print(result.status)
"""


def test_an_unguarded_script_in_a_dask_mode_gets_one_clear_error(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    done = _run(script, tmp_path / "share")
    assert done.returncode == 1
    assert done.stderr.count("was called at module level of") == 1, done.stderr[-4000:]
    assert f"{script}, outside `if __name__ == \"__main__\":`" in done.stderr
    assert 'fix: put the call under `if __name__ == "__main__":`' in done.stderr
    assert "bootstrapping phase" not in done.stderr and "Nanny failed" not in done.stderr
    # the script's own run failed (recorded); its worker processes ran nothing and recorded nothing
    records = RunStore(tmp_path / "data" / "agi_core" / "share").list("toy")
    assert [r.status for r in records] == ["failed"]


SPAWNS = f"""
import asyncio, multiprocessing
from agi_core import AGI, AgiEnv

result = asyncio.run(AGI.run(AgiEnv(app="toy", apps_path={str(TEST_APPS)!r}), mode=0, n=2))  # unguarded
if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=print, args=("child ran",))
    child.start()
    child.join()
    print("child exit", child.exitcode)
"""


def test_a_spawned_child_that_reimports_an_unguarded_script_stops_with_the_error(tmp_path):
    """Any spawn child (not only Dask's) stops at the unguarded call, says why, and runs nothing."""
    script = tmp_path / "spawns.py"
    script.write_text(SPAWNS)
    done = _run(script, tmp_path / "share")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "child exit 1" in done.stdout and "child ran" not in done.stdout
    assert done.stderr.count("error: AGI.run was called at module level of") == 1
    assert "fix: put the call under" in done.stderr
    records = RunStore(tmp_path / "data" / "agi_core" / "share").list("toy")
    assert [r.status for r in records] == ["ok"]  # the parent's run only
