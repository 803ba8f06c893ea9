"""Environment drift on the way in (issue 24 item 6): a worker that joins with other agi_core code
than the manager's is refused, naming its host and the fix, or, with ``[cluster] install =
"auto"``, installed first and then let in. Real Dask worker processes through the elastic test
backend (`tests/elastic_backend.py`): its ``drift`` option makes a late worker run "from a venv"
whose install fingerprint holds another code hash, and its `reinstall` rewrites that fingerprint
as `agi install` would; the ``ledger`` app's ledger shows which worker process ran what."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from agi_core.base.events import Notice, WorkerJoined
from agi_core.install.installed_hash import FINGERPRINT_FILE
from agi_core.settings import ClusterSettings
from tests.test_elastic import _cluster, _ledger, _record, _start, _wait, ledger_env  # noqa: F401 - the fixture


def test_install_auto_is_short_for_the_install_table_and_a_wrong_word_is_refused():
    assert ClusterSettings(install="auto").install.auto is True
    assert ClusterSettings(install="refuse").install.auto is False
    assert ClusterSettings(install={"root": "/x", "auto": True}).install.root == "/x"
    with pytest.raises(ValueError, match='install = "always": expected "auto", "refuse"'):
        ClusterSettings(install="always")


def _old_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "old-venv"
    venv.mkdir()
    (venv / FINGERPRINT_FILE).write_text(json.dumps({"agi_hash": "01d0c0de" * 8}))
    return venv


def _late_drifted_run(ledger_env, tmp_path: Path, **options):  # noqa: F811
    share, ledger, gate, late = tmp_path / "share", tmp_path / "ledger.txt", tmp_path / "gate", tmp_path / "late"
    share.mkdir()
    cluster = _cluster(share, min_workers=1, **options)
    import asyncio

    from agi_core import AGI

    plan = asyncio.run(AGI.get_distrib(ledger_env, mode="d", cluster=cluster, n=16))
    first, second = sorted(plan.assignment)
    held = [p.id for p in plan.partitions if plan.slot_of()[p.id] == first][0]
    cluster["elastictest"] = {"late": {second: str(late)}, "drift": {second: str(_old_venv(tmp_path))}}
    events: list = []
    thread, box = _start(ledger_env, cluster, {"n": 16, "ledger": str(ledger), "hold": held, "gate": str(gate)}, events)
    _wait("the held partition to start", lambda: any(pid == held for pid, _ in _ledger(ledger)), thread, box)
    late.touch()  # the drifted worker comes now
    return plan, second, ledger, gate, events, thread, box, share


def test_a_late_worker_with_other_code_is_refused_naming_its_host_and_the_fix(ledger_env, tmp_path):  # noqa: F811
    plan, second, ledger, gate, events, thread, box, share = _late_drifted_run(ledger_env, tmp_path)
    refused = _wait("the refusal", lambda: [e for e in events if isinstance(e, Notice) and "refused worker" in e.text], thread, box)
    started_with = {proc for _, proc in _ledger(ledger)}
    gate.touch()
    thread.join(120)
    assert "error" not in box, box
    text = refused[0].text
    assert f"refused worker {second} on 127.0.0.1" in text and "agi_core code 01d0c0de0" in text
    assert "agi install ledger" in text and 'install = "auto"' in text and refused[0].level == "warning"
    assert not any(isinstance(e, WorkerJoined) and e.slot == second for e in events)
    ran = Counter(pid for pid, _ in _ledger(ledger))
    assert ran == Counter({p.id: 1 for p in plan.partitions})  # every partition once, on the first worker only
    assert {proc for _, proc in _ledger(ledger)} == started_with
    record = _record(share)
    assert record["cluster"]["never_joined"] == [second]
    assert f"{second}: refused, other code than this manager's (127.0.0.1: agi_core code 01d0c0de0" in record["cluster"]["never_joined_report"]


def test_with_install_auto_the_drifted_worker_is_installed_then_joins_and_works(ledger_env, tmp_path):  # noqa: F811
    plan, second, ledger, gate, events, thread, box, share = _late_drifted_run(ledger_env, tmp_path, install="auto")
    _wait("the installed worker to join", lambda: any(isinstance(e, WorkerJoined) and e.slot == second for e in events), thread, box)
    gate.touch()
    thread.join(120)
    assert "error" not in box, box
    installing = [e for e in events if isinstance(e, Notice) and "installing 127.0.0.1 before it joins" in e.text]
    assert installing and "agi_core code 01d0c0de0" in installing[0].text
    assert not any(isinstance(e, Notice) and "refused worker" in e.text for e in events)
    ran = Counter(pid for pid, _ in _ledger(ledger))
    assert ran == Counter({p.id: 1 for p in plan.partitions})  # every partition once
    record = _record(share)
    assert record["cluster"]["never_joined"] == []
    assert any((p.get("ran_slot") or p["slot"]) == second for p in record["partitions"])  # it took work after its install


def _drifted(events: list) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice) and "joined with other code" in e.text]


def test_workers_that_run_one_install_wait_for_one_install_then_all_join(ledger_env, tmp_path):  # noqa: F811
    """Two late workers run one venv with other code (as the workers of two Slurm jobs run one
    shared venv): the first starts its install, the second waits for the same one; both restart on
    it and work, and the record lists the one install with both workers."""
    share, ledger, gate, late = tmp_path / "share", tmp_path / "ledger.txt", tmp_path / "gate", tmp_path / "late"
    installed = tmp_path / "installed"
    share.mkdir()
    cluster = _cluster(share, min_workers=1, install="auto", workers={"127.0.0.1": 3})
    import asyncio

    from agi_core import AGI

    plan = asyncio.run(AGI.get_distrib(ledger_env, mode="d", cluster=cluster, n=24))
    first, second, third = sorted(plan.assignment)
    held = [p.id for p in plan.partitions if plan.slot_of()[p.id] == first][0]
    venv = str(_old_venv(tmp_path))  # one venv, two workers
    cluster["elastictest"] = {"late": {second: str(late), third: str(late)}, "drift": {second: venv, third: venv},
                              "reinstall_gate": str(installed)}
    events: list = []
    thread, box = _start(ledger_env, cluster, {"n": 24, "ledger": str(ledger), "hold": held, "gate": str(gate)}, events)
    _wait("the held partition to start", lambda: any(pid == held for pid, _ in _ledger(ledger)), thread, box)
    late.touch()  # both drifted workers come now, and both are found drifting while the install is held
    notices = _wait("both drifts", lambda: len(_drifted(events)) == 2 and _drifted(events), thread, box)
    assert "installing 127.0.0.1 before it joins" in notices[0], notices
    assert "waiting for the install of 127.0.0.1 before it joins" in notices[1], notices
    installed.touch()
    _wait("both installed workers to join", lambda: {e.slot for e in events if isinstance(e, WorkerJoined)} >= {second, third}, thread, box)
    gate.touch()
    thread.join(120)
    assert "error" not in box, box
    assert len(_drifted(events)) == 2  # none after the restarts
    assert not any(isinstance(e, Notice) and "refused worker" in e.text for e in events)
    assert Counter(pid for pid, _ in _ledger(ledger)) == Counter({p.id: 1 for p in plan.partitions})  # every partition once
    record = _record(share)
    [install] = record["cluster"]["installed"]  # one install for both
    names = sorted(install.split("for worker(s) ")[1].split(", which")[0].split(", "))
    assert install.startswith("127.0.0.1: installed,") and names == sorted([second, third]), install
    assert "agi_core code 01d0c0de0" in install
    assert record["cluster"]["never_joined"] == []


def test_a_workers_code_hash_is_the_code_it_loaded_not_the_venv_on_disk_now(tmp_path):
    """`installed_agi_hash` in a real interpreter: a venv's fingerprint counts only for an agi_core
    imported from that venv (a checkout on the path or in the job's folder shadows it), and a
    process keeps its first answer after the venv is re-installed under it (it runs the old modules)."""
    import subprocess
    import sys

    from agi_core.install.code_hash import agi_code_hash
    from agi_core.install.source import agi_source_dir

    venv = _old_venv(tmp_path)
    (venv / "site").mkdir()
    (venv / "site" / "agi_core").symlink_to(agi_source_dir() / "agi_core", target_is_directory=True)
    probe = ("import json, sys; from pathlib import Path; sys.prefix = sys.argv[1]; sys.path.insert(0, sys.argv[2]); "
             "from agi_core.install.installed_hash import FINGERPRINT_FILE, installed_agi_hash; first = installed_agi_hash(); "
             "(Path(sys.argv[1]) / FINGERPRINT_FILE).write_text(json.dumps({'agi_hash': 'new'})); print(first, installed_agi_hash())")

    def ask(path: Path) -> list[str]:
        done = subprocess.run([sys.executable, "-c", probe, str(venv), str(path)], capture_output=True, text=True, check=True,
                              cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
        return done.stdout.split()

    assert ask(venv / "site") == ["01d0c0de" * 8] * 2  # from the venv: its fingerprint, the first answer kept
    (venv / FINGERPRINT_FILE).write_text(json.dumps({"agi_hash": "01d0c0de" * 8}))
    assert ask(agi_source_dir()) == [agi_code_hash()] * 2  # a checkout first on the path: that checkout's code
