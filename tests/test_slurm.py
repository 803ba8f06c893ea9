"""The slurm backend against a real single-node Slurm (`tests.slurm_fixtures`): runs in modes 4
and 5, a warm cluster, a worker job cancelled mid-run, jobs pending or refused, Slurm not
reachable, install into a shared folder, and GPU jobs (gres)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv, AgiError, Mode
from agi_core.base.events import PartitionDone
from agi_core.cluster import WarmClusters, spec_for
from agi_core.cluster.manage import cluster_down, cluster_status, cluster_up
from agi_core.cluster.slurm import SlurmCluster, slot_worker_names
from agi_core.settings import ClusterSettings
from agi_testkit.slurm import PARTITION
from tests.conftest import TEST_APPS
from tests.slurm_fixtures import slurm  # noqa: F401 - the session's Slurm

SMALL = {"width": 160, "height": 120, "bands": 12, "max_iter": 100}
NODE = socket.gethostname()


def slurm_cluster(tmp_path: Path, **slurm_settings: object) -> dict[str, object]:
    """[cluster] overrides: the slurm backend, a private share and log folder, free ports, and
    (unless given) workers in this test's own Python (it sees agi_core and the apps)."""
    settings = {"jobs": 2, "memory": "512MB", "walltime": "00:10:00", "pending_timeout": 60, "python": sys.executable,
                "partition": PARTITION, "log_directory": str(tmp_path / "slurm-logs"), **slurm_settings}
    return {"backend": "slurm", "workers_data_path": str(tmp_path / "share"), "install": {"root": str(tmp_path / "agi")},
            "dask": {"scheduler_port": 0, "dashboard_port": None}, "slurm": {k: v for k, v in settings.items() if v is not None}}


def run(env: AgiEnv, tmp_path: Path, mode: object, slurm_settings: dict[str, object] | None = None, **kwargs: object):
    cluster = {**slurm_cluster(tmp_path, **(slurm_settings or {})), "min_workers": "all"}  # every job's worker does work
    return asyncio.run(AGI.run(env, mode=mode, cluster=cluster, **kwargs))


def image(result) -> bytes:
    from PIL import Image

    with Image.open(result.out_dir / "mandelbrot.png") as picture:
        return picture.tobytes()


def dask_workers() -> list[str]:
    # -ww: whole command lines (without a terminal, ps cuts them at 80 columns)
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "distributed.cli.dask_" in line]


def dask_workers_left(timeout: float = 20.0) -> list[str]:
    """The Dask processes still alive once ``timeout`` has passed (a cancelled job's worker gets
    SIGTERM from slurmstepd and closes within a second or two; Slurm may drop the job first)."""
    deadline = time.monotonic() + timeout
    while (left := dask_workers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def record_workers(seen: list[str]):
    """An event sink that lists the Dask worker processes into ``seen`` when the first partition is done."""

    def look(event: object) -> None:
        if isinstance(event, PartitionDone) and not seen:
            seen.extend(dask_workers())

    return look


@pytest.fixture(autouse=True)
def warm_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return WarmClusters.default()


@pytest.fixture(scope="module")
def reference_image(tmp_path_factory) -> bytes:
    """Mode 0 (plain Python, this process): the image every Slurm run must reproduce."""
    share = tmp_path_factory.mktemp("mode0")
    result = asyncio.run(AGI.run(AgiEnv(app="mandelbrot"), mode=0, cluster={"workers_data_path": str(share)}, **SMALL))
    return image(result)


# -- pure logic, next to the real runs below ----------------------------------------------------


def test_slots_are_the_jobs_workers():
    cluster = ClusterSettings.model_validate({"backend": "slurm", "slurm": {"jobs": 2, "processes": 2}})
    assert list(cluster.worker_map()) == ["slurm"] and cluster.worker_map()["slurm"].count == 4
    assert slot_worker_names(jobs=2, processes=2) == {"slurm-0": "slurm-0-0", "slurm-1": "slurm-0-1",
                                                     "slurm-2": "slurm-1-0", "slurm-3": "slurm-1-1"}


def test_distrib_plans_over_the_job_slots():
    env = AgiEnv(app="mandelbrot")
    plan = asyncio.run(AGI.get_distrib(env, mode="d", cluster={"backend": "slurm", "slurm": {"jobs": 3}}, **SMALL))
    assert [slot.name for slot in plan.slots] == ["slurm-0", "slurm-1", "slurm-2"]
    assert sorted(pid for ids in plan.assignment.values() for pid in ids) == sorted(p.id for p in plan.partitions)


def test_settings_errors_name_the_key():
    from agi_core.base.errors import SettingsError

    env = AgiEnv(app="mandelbrot")
    for bad, key in (({"memory": "lots"}, "cluster.slurm.memory"), ({"walltime": "soon"}, "cluster.slurm.walltime"),
                     ({"jobs": 0}, "cluster.slurm.jobs"), ({"job_extra": ["qos=high"]}, "cluster.slurm.job_extra")):
        with pytest.raises(SettingsError, match=key.replace(".", r"\.")):
            env.settings(cluster={"backend": "slurm", "slurm": bad})


def test_gpu_jobs_ask_for_gres_only_with_the_rapids_bit():
    cluster = ClusterSettings.model_validate({"backend": "slurm", "slurm": {"jobs": 1, "gpus": 2, "processes": 2}})
    with_gpu = SlurmCluster(spec_for(cluster, Mode.parse("dr"), "mandelbrot")).job_script()
    without = SlurmCluster(spec_for(cluster, Mode.parse("d"), "mandelbrot")).job_script()
    assert "#SBATCH --gres=gpu:2" in with_gpu and "--resources GPU=1" in with_gpu
    assert "--preload agi_core.cluster.slurm_gpu" in with_gpu  # each worker takes its own GPU of the job's
    assert "gres" not in without and "GPU=1" not in without and "preload" not in without


# -- real runs on the single-node Slurm ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["d", "dp"])
def test_mandelbrot_on_slurm_same_image_as_mode_0(slurm, tmp_path, reference_image, mode):  # noqa: F811
    result = run(AgiEnv(app="mandelbrot"), tmp_path, mode, **SMALL)
    assert result.status == "ok" and image(result) == reference_image
    record = json.loads(result.manifest.read_text())
    assert record["cluster"]["backend"] == "slurm" and record["cluster"]["warm"] is False
    jobs = {p["job_id"] for p in record["partitions"]}
    assert len(jobs) == 2 and all(job.isdigit() for job in jobs)  # each partition names its Slurm job ...
    assert {p["host"] for p in record["partitions"]} == {NODE}  # ... and the node it ran on
    assert all(p["worker"] == p["slot"] for p in record["partitions"])  # no fault: each ran on its slot's job
    assert {w["job_id"] for w in record["workers"].values()} == jobs
    if mode == "dp":  # the pool bit: each worker runs the job's cores as threads
        assert {w["capabilities"]["nthreads"] for w in record["workers"].values()} == {1}
    assert slurm.queue() == [] and not dask_workers_left()  # nothing left queued or running


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_warm_cluster_is_reused_then_stopped(slurm, tmp_path, reference_image, tls):  # noqa: F811
    env = AgiEnv(app="mandelbrot")
    cluster = {**slurm_cluster(tmp_path), "tls": tls}
    spec = spec_for(env.settings(cluster=cluster).cluster, Mode.parse("d"), env.name, app_distribution=env.distribution,
                    app_version=env.version())
    try:
        status = asyncio.run(cluster_up("mandelbrot", spec))
        assert status.running and [w.name for w in status.workers] == ["slurm-0", "slurm-1"]
        jobs = {p.name: p.pid for p in status.processes if p.role == "worker"}
        assert set(jobs) == {"slurm-0", "slurm-1"} and len(slurm.queue()) == 2
        for _ in range(2):  # two runs, one cluster: the same jobs serve both
            result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, **SMALL, use_cache=False))
            record = json.loads(result.manifest.read_text())
            assert record["cluster"]["warm"] is True and image(result) == reference_image
            assert record["cluster"]["scheduler"].startswith("tls://" if tls else "tcp://")
            assert {p["job_id"] for p in record["partitions"]} == {str(job) for job in jobs.values()}
        assert asyncio.run(cluster_status("mandelbrot")).running
        if tls:
            _strangers_are_refused(status.address, tmp_path / "slurm-logs" / "tls" / "mandelbrot")
    finally:
        stopped = asyncio.run(cluster_down("mandelbrot"))
    assert stopped == 3  # the scheduler and two jobs
    assert slurm.queue() == [] and not dask_workers_left()
    assert not (tmp_path / "slurm-logs" / "tls" / "mandelbrot").exists()  # nothing trusts them any more


def _strangers_are_refused(address: str, shared: Path) -> None:
    """The warm cluster's jobs read its own credentials (0700 folder, 0600 files) on the shared
    filesystem; with them a client runs code on a job, without them (plain TCP, another CA) not."""
    from agi_core.cluster.client import open_client
    from agi_core.cluster.tls import FILE_NAMES, TlsFiles, security_for
    from tests.strangers import assert_refused, attempts, run_as

    assert shared.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in shared.iterdir()} == dict.fromkeys(FILE_NAMES, 0o600)

    async def owner_and_strangers() -> tuple[str, dict[str, str]]:
        client = await open_client(address, security=security_for(TlsFiles.in_folder(shared)))
        try:
            return await run_as(client), await attempts(address, owner=client)
        finally:
            await client.close()

    owner, strangers = asyncio.run(owner_and_strangers())
    assert owner == __import__("getpass").getuser()  # the control
    assert_refused(strangers)


def test_a_cancelled_worker_job_moves_its_partitions(slurm, tmp_path):  # noqa: F811
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    cancelled: list[str] = []

    def cancel_one_job(event: object) -> None:
        if isinstance(event, PartitionDone) and not cancelled:  # mid-run: both jobs still have work queued
            jobs = subprocess.run(["squeue", "-h", "-n", "agi-toy", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split()
            cancelled.append(max(jobs))
            subprocess.run(["scancel", cancelled[0]], check=True)

    cluster = slurm_cluster(tmp_path)
    result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, n=8, sleep=0.5, on_event=cancel_one_job))
    assert result.status == "ok" and result.value == sum(i * i for i in range(8))
    record = json.loads(result.manifest.read_text())
    ids = [p["id"] for p in record["partitions"]]
    assert sorted(ids) == sorted(f"p{i}" for i in range(8)) and len(set(ids)) == 8  # each exactly once
    assert {p["status"] for p in record["partitions"]} == {"ok"}
    moved = [p for p in record["partitions"] if p["worker"] != p["slot"]]
    assert moved, "the cancelled job's queued partitions ran on the other job"
    survivor = {p["job_id"] for p in moved}
    assert len(survivor) == 1 and cancelled[0] not in survivor
    assert slurm.queue() == [] and not dask_workers_left()


def test_pending_jobs_time_out_naming_slurms_reason(slurm, tmp_path):  # noqa: F811
    with pytest.raises(AgiError, match=r"pending after \d+ s: job \d+ \(PENDING, reason: JobHeldUser\)") as info:
        run(AgiEnv(app="mandelbrot"), tmp_path, "d", {"job_extra": ["--hold"], "pending_timeout": 2, "jobs": 1}, **SMALL)
    assert "pending_timeout" in (info.value.fix or "")
    assert slurm.queue() == []  # the held job was cancelled


def test_a_job_larger_than_any_node_is_refused(slurm, tmp_path):  # noqa: F811
    with pytest.raises(AgiError, match="Slurm refused the worker job") as info:
        run(AgiEnv(app="mandelbrot"), tmp_path, "d", {"memory": "1TB", "jobs": 1}, **SMALL)
    assert "memory" in (info.value.fix or "")
    assert slurm.queue() == []


def test_an_unknown_partition_names_the_key(slurm, tmp_path):  # noqa: F811
    with pytest.raises(AgiError, match=r"\[cluster.slurm\] partition = 'nope'") as info:
        run(AgiEnv(app="mandelbrot"), tmp_path, "d", {"partition": "nope"}, **SMALL)
    assert PARTITION in (info.value.fix or "")


def test_slurm_not_reachable_is_a_clear_error(slurm, tmp_path, monkeypatch):  # noqa: F811
    dead = tmp_path / "dead.conf"  # the same Slurm, but a controller port where nothing listens
    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    lines = [f"SlurmctldPort={port}" if line.startswith("SlurmctldPort=") else line for line in slurm.conf.read_text().splitlines()]
    # a client gives up on a controller that refuses a second before MessageTimeout (default 10 s: 9 s)
    dead.write_text("\n".join([*lines, "MessageTimeout=2"]) + "\n")
    monkeypatch.setenv("SLURM_CONF", str(dead))
    with pytest.raises(AgiError, match="Unable to contact slurm controller") as info:
        run(AgiEnv(app="mandelbrot"), tmp_path, "d", **SMALL)
    assert "login node" in (info.value.fix or "")
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm client at all
    with pytest.raises(AgiError, match="`sinfo` is not on PATH"):
        run(AgiEnv(app="mandelbrot"), tmp_path, "d", **SMALL)


def test_install_builds_one_shared_venv_that_the_jobs_run(slurm, tmp_path, reference_image):  # noqa: F811
    env = AgiEnv(app="mandelbrot")
    cluster = slurm_cluster(tmp_path, python=None)  # the jobs run the venv `agi install` built
    report = asyncio.run(AGI.install(env, cluster=cluster))
    assert [(h.host, h.status) for h in report.hosts] == [("127.0.0.1", "installed")]  # once, not per node
    venv = tmp_path / "agi" / "venvs" / "mandelbrot"
    assert (venv / "bin" / "python").exists() and (venv / ".agi-install.json").exists()
    seen: list[str] = []
    result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, on_event=record_workers(seen), **SMALL))
    assert image(result) == reference_image
    assert len(seen) >= 2 and all(f"{venv}/bin/python -m distributed.cli.dask_worker" in line for line in seen), seen
    assert slurm.queue() == []


def test_install_over_ssh_from_the_login_node(slurm, rig, tmp_path, reference_image):  # noqa: F811
    """The manager off the cluster: `agi install` builds the shared venv over SSH on the login node
    (a rig host: its own /root and network, the same /tmp, as HPC nodes share a filesystem), and
    this machine's Slurm jobs then run that venv."""
    login = rig.hosts[0]
    ssh = {"user": "root", "key": str(rig.client_key), "known_hosts": str(rig.known_hosts), "connect_timeout": 3}
    cluster = {**slurm_cluster(tmp_path, python=None, login=f"root@{login.ip}"), "ssh": ssh}
    env = AgiEnv(app="mandelbrot")
    report = asyncio.run(AGI.install(env, cluster=cluster))
    assert [(h.host, h.status) for h in report.hosts] == [(f"root@{login.ip}", "installed")]
    venv = tmp_path / "agi" / "venvs" / "mandelbrot"
    assert login.run(["test", "-x", f"{venv}/bin/python"]).returncode == 0  # built there ...
    seen: list[str] = []
    result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, on_event=record_workers(seen), **SMALL))
    assert image(result) == reference_image  # ... and run here, by the jobs
    assert len(seen) >= 2 and all(f"{venv}/bin/python -m distributed.cli.dask_worker" in line for line in seen), seen


def test_ctrl_c_leaves_nothing_queued_or_running(slurm, tmp_path):  # noqa: F811
    """`agi run` interrupted mid-run: exit 130, an interrupted record, no job queued, no worker left."""
    import os
    import signal

    from tests.conftest import ROOT

    share = tmp_path / "share"
    settings = {"backend": '"slurm"', "workers_data_path": f'"{share}"', "install.root": f'"{tmp_path / "agi"}"',
                "dask.scheduler_port": "0", "slurm.jobs": "2", "slurm.memory": '"512MB"', "slurm.partition": f'"{PARTITION}"',
                "slurm.python": f'"{sys.executable}"', "slurm.log_directory": f'"{tmp_path / "logs"}"'}
    sets = [arg for key, value in settings.items() for arg in ("--set", f"cluster.{key}={value}")]
    process = subprocess.Popen(
        [sys.executable, "-m", "agi_core.cli", "--apps-path", str(TEST_APPS), "run", "toy", "--mode", "d", "--set", "n=40",
         "--set", "sleep=0.5", "--set", "write_files=true", *sets],
        cwd=ROOT, env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(share.glob("runs/toy/*/out/part-*.txt"))) < 2 and process.poll() is None:
        time.sleep(0.05)
    assert len(slurm.queue()) == 2, "the run never started its jobs"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 130, stderr
    [manifest] = share.glob("runs/toy/*/manifest.json")
    record = json.loads(manifest.read_text())
    assert record["status"] == "interrupted" and record["cluster"]["backend"] == "slurm"
    assert slurm.queue() == [] and not dask_workers_left()


def test_gpu_jobs_get_their_gres_and_the_gpu_resource(slurm, tmp_path, monkeypatch):  # noqa: F811
    """With the rapids bit, each job asks --gres=gpu:1 (the single-node Slurm declares 2 GPUs, no
    device behind them) and its worker offers Dask's GPU resource; numba's CUDA simulator, exported
    to the jobs by sbatch, stands in for the GPU itself. More GPUs than a node has: refused."""
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    env = AgiEnv(app="gpu_toy", apps_path=TEST_APPS)
    queued: list[str] = []

    def look(event: object) -> None:
        if isinstance(event, PartitionDone) and not queued:
            queued.extend(subprocess.run(["squeue", "-h", "-n", "agi-gpu_toy", "-o", "%b"], capture_output=True, text=True,
                                         check=True).stdout.split())

    cluster = {**slurm_cluster(tmp_path, gpus=1), "min_workers": "all"}  # both jobs' workers do work
    result = asyncio.run(AGI.run(env, mode="dr", cluster=cluster, n=4, need_gpu=[0, 1, 2, 3], on_event=look))
    assert result.value == sum(sum(range(64)) * (i + 1) for i in range(4))
    assert len(queued) == 2 and all(gres.endswith("gpu:1") for gres in queued), queued
    record = json.loads(result.manifest.read_text())
    assert {(p["kernel"], p["device"]) for p in record["partitions"]} == {("gpu", "cuda:0 (simulator)")}
    assert [(w["capabilities"]["gpus"], w["capabilities"]["gpu_simulated"]) for w in record["workers"].values()] == [(1.0, True)] * 2
    assert slurm.queue() == []
    with pytest.raises(AgiError, match="Slurm refused the worker job") as info:
        asyncio.run(AGI.run(env, mode="dr", cluster=slurm_cluster(tmp_path, gpus=3, processes=3, jobs=1), n=2))
    assert "gpus" in (info.value.fix or "")
    assert slurm.queue() == []


def test_each_worker_of_a_two_gpu_job_runs_on_its_own_gpu(slurm, tmp_path, monkeypatch):  # noqa: F811
    """One job, two GPUs, two workers: Slurm gives the job both GPUs in one CUDA_VISIBLE_DEVICES,
    and each worker puts its own first (`slurm_gpu`), so they do not share the first one."""
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    env = AgiEnv(app="gpu_toy", apps_path=TEST_APPS)
    cluster = slurm_cluster(tmp_path, jobs=1, gpus=2, processes=2, cores=2)
    result = asyncio.run(AGI.run(env, mode="dr", cluster=cluster, n=4, need_gpu=[0, 1, 2, 3]))
    record = json.loads(result.manifest.read_text())
    seen = sorted(w["capabilities"]["cuda_visible_devices"] for w in record["workers"].values())
    assert seen == ["0,1", "1,0"], seen
    assert {r["cuda_visible_devices"] for r in result.results.values()} <= {"0,1", "1,0"}
    assert slurm.queue() == []


def test_a_job_with_two_worker_processes_serves_two_slots(slurm, tmp_path):  # noqa: F811
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    result = run(env, tmp_path, "d", {"jobs": 1, "processes": 2, "cores": 2}, n=6)
    record = json.loads(result.manifest.read_text())
    assert result.value == sum(i * i for i in range(6))
    served = {p["slot"]: p["worker"] for p in record["partitions"]}
    assert served == {"slurm-0": "slurm-0-0", "slurm-1": "slurm-0-1"}  # each slot on its own process of the one job
    assert len({p["job_id"] for p in record["partitions"]}) == 1
    assert slurm.queue() == [] and not dask_workers_left()


def test_tls_between_the_scheduler_and_the_jobs(slurm, tmp_path, reference_image):  # noqa: F811
    """TLS by default: a run's jobs read that cluster's own CA and certificate from the shared log
    folder and talk TLS only; the folder goes with the cluster; the image is mode 0's."""
    cluster = slurm_cluster(tmp_path)
    seen: list[str] = []
    result = asyncio.run(AGI.run(AgiEnv(app="mandelbrot"), mode="d", cluster=cluster, **SMALL, on_event=record_workers(seen)))
    assert image(result) == reference_image
    record = json.loads(result.manifest.read_text())
    assert record["cluster"]["scheduler"].startswith("tls://"), record["cluster"]
    shared = tmp_path / "slurm-logs" / "tls"
    assert seen and all(f"--tls-ca-file {shared}/mandelbrot-" in worker for worker in seen), seen  # its own folder
    assert list(shared.iterdir()) == []  # removed when the cluster stopped
    spec = spec_for(ClusterSettings.model_validate(cluster), Mode.parse("d"), "mandelbrot")
    assert f"--protocol tls:// --tls-ca-file {shared}/mandelbrot-" in SlurmCluster(spec).job_script()
    assert slurm.queue() == [] and not dask_workers_left()
