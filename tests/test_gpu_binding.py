"""Which GPU each worker runs on, on real hardware's terms, without a GPU here: nvidia-smi's real
outputs (a sick GPU, a driver mismatch, MIG instances, UUIDs), declared GPUs, Slurm jobs' workers
(a real `dask worker` process per slot, bound by the job script's preload), and pool slots under
the rapids bit (spawned, each with its own device; the manager never initialises CUDA itself,
which a recorder of ``numba.cuda.is_available`` calls in the manager proves)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agi_core.base.errors import SettingsError
from agi_core.base.modes import Mode
from agi_core.cluster import spec_for
from agi_core.cluster.slurm import SlurmCluster
from agi_core.gpus import bind_in_job, gpu_workers, parse_gpu_list, parse_gpus, probe_gpus, with_mig, worker_env
from agi_core.plan import slots_for
from agi_core.settings import ClusterSettings, WorkerSpec
from tests.conftest import ROOT, TEST_APPS, run_agi

H100_UUIDS = ("0, NVIDIA H100 80GB HBM3, 81559, GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77\n"
              "1, NVIDIA H100 80GB HBM3, 81559, GPU-0e1f7c2a-8b4e-4c1d-9f3e-2a6b5c4d3e2f\n")
# `nvidia-smi -L` on a host whose GPU 0 is split in two MIG instances (R470+ format) and GPU 1 is not
MIG_LIST = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)\n"
            "  MIG 3g.40gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)\n"
            "  MIG 3g.40gb     Device  1: (UUID: MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb)\n"
            "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-0e1f7c2a-8b4e-4c1d-9f3e-2a6b5c4d3e2f)\n")


def fake_nvidia_smi(folder: Path, query: str, listing: str = "", *, stderr: str = "", status: int = 0) -> Path:
    """An nvidia-smi that answers ``--query-gpu`` with ``query`` and ``-L`` with ``listing``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "query.txt").write_text(query)
    (folder / "list.txt").write_text(listing)
    (folder / "stderr.txt").write_text(stderr)
    tool = folder / "nvidia-smi"
    tool.write_text(f'#!/bin/sh\ncat "{folder}/stderr.txt" >&2\n'
                    f'if [ "$1" = "-L" ]; then cat "{folder}/list.txt"; else cat "{folder}/query.txt"; fi\nexit {status}\n')
    tool.chmod(0o755)
    return folder


# ---------------------------------------------------------------- the probe


def test_one_sick_gpu_does_not_hide_the_others(tmp_path, monkeypatch):
    """nvidia-smi exits 15 when it cannot read one GPU; it still lists the others, and says why."""
    query = H100_UUIDS.splitlines()[0] + "\nUnable to determine the device handle for GPU0000:2A:00.0: Unknown Error\n" \
        + H100_UUIDS.splitlines()[1].replace("1,", "2,") + "\n"
    sick = "Unable to determine the device handle for GPU0000:2A:00.0: Unknown Error\n"
    fake_nvidia_smi(tmp_path / "bin", query, stderr=sick, status=15)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    found = probe_gpus()
    assert [g.index for g in found.gpus] == [0, 2]
    assert found.gpus[0].uuid == "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"
    assert "exited with 15" in found.error and "Unable to determine the device handle" in found.error


def test_a_driver_mismatch_means_no_gpu_and_says_why(tmp_path, monkeypatch):
    message = "Failed to initialize NVML: Driver/library version mismatch"
    fake_nvidia_smi(tmp_path / "bin", message + "\n", status=18)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    found = probe_gpus()
    assert found.gpus == [] and message in found.error


def test_mig_instances_replace_their_gpu_each_named_by_uuid(tmp_path, monkeypatch):
    assert parse_gpu_list(MIG_LIST) == {0: [("3g.40gb", "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"),
                                            ("3g.40gb", "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb")]}
    fake_nvidia_smi(tmp_path / "bin", H100_UUIDS, MIG_LIST)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    gpus = probe_gpus().gpus
    assert [(g.index, g.name, g.memory_mib, g.device[:8]) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3 MIG 3g.40gb", 40960, "MIG-c6d4"),
        (0, "NVIDIA H100 80GB HBM3 MIG 3g.40gb", 40960, "MIG-cba6"),
        (1, "NVIDIA H100 80GB HBM3", 81559, "GPU-0e1f")]
    # three workers, each on a device of its own (CUDA shows a process one MIG instance)
    owners = gpu_workers(WorkerSpec(count=4), gpus)
    assert [o.device[:8] if o else None for o in owners] == ["MIG-c6d4", "MIG-cba6", "GPU-0e1f", None]


def test_old_drivers_mig_names_and_crlf_lines_parse_too():
    old = MIG_LIST.replace("MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", "MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0")
    assert parse_gpu_list(old.replace("\n", "\r\n"))[0][0] == ("3g.40gb", "MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0")
    assert [g.uuid[:8] for g in parse_gpus(H100_UUIDS.replace("\n", "\r\n"))] == ["GPU-5d5b", "GPU-0e1f"]
    assert with_mig(parse_gpus(H100_UUIDS), "") == parse_gpus(H100_UUIDS)  # -L failed: the GPUs as listed


def test_a_remote_hosts_probe_output_gives_its_mig_instances_and_error():
    from agi_core.install.capabilities import HostInfo

    text = ("".join(f"gpu={line}\n" for line in H100_UUIDS.splitlines()) + "gpu_error=WARNING: infoROM is corrupted\n"
            + "".join(f"gpu_list={line}\n" for line in MIG_LIST.splitlines()))
    info = HostInfo.parse("10.0.0.2", text)
    assert len(info.devices) == 3 and info.devices[0].uuid.startswith("MIG-") and "infoROM" in info.gpu_error


# ---------------------------------------------------------------- declared GPUs


def test_declared_gpus_count_like_probed_ones():
    declared = WorkerSpec(count=3, capabilities=["gpu"])
    assert [worker_env(declared, o, 0)["CUDA_VISIBLE_DEVICES"] for o in gpu_workers(declared, [])] == ["0", "1", "2"]
    # more workers than the GPUs found: refused, naming the host and the fix
    with pytest.raises(SettingsError) as info:
        gpu_workers(declared, parse_gpus(H100_UUIDS), "10.0.0.5")
    assert 'host 10.0.0.5 declares capabilities = ["gpu"] for 3 workers but has 2 GPUs' in info.value.message
    assert "share_gpus = true" in info.value.fix
    # unless sharing is intended: GPU k mod n
    shared = WorkerSpec(count=3, capabilities=["gpu"], share_gpus=True)
    assert [o.device[:8] for o in gpu_workers(shared, parse_gpus(H100_UUIDS))] == ["GPU-5d5b", "GPU-0e1f", "GPU-5d5b"]
    assert [o.device for o in gpu_workers(shared, [])] == [None] * 3  # never probed, shared: nothing to pin
    simulated = WorkerSpec(count=2, capabilities=["gpu"], env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert worker_env(simulated, gpu_workers(simulated, [])[0], 0) == {"NUMBA_ENABLE_CUDASIM": "1"}


def test_a_cpu_slot_on_an_unprobed_host_is_told_it_has_no_gpu():
    """The plan treats it as a CPU slot: its worker must run the CPU kernels even if it sees a GPU."""
    cluster = ClusterSettings.model_validate({"scheduler": "10.0.0.1:8786", "workers": {"10.0.0.9": 1}})
    spec = spec_for(cluster, Mode.parse("dr"), "demo")
    assert [dict(w.env) for w in spec.workers] == [{"AGI_GPU_SLOT": "0"}]
    assert slots_for(cluster.worker_map())[0].capabilities == ()


# ---------------------------------------------------------------- Slurm


def test_slurm_gpus_must_match_the_processes_of_a_job():
    for gpus, processes, why in ((1, 2, "2 workers would share 1 GPU"), (4, 1, "3 GPUs per job would sit idle")):
        with pytest.raises(ValueError, match=why):
            ClusterSettings.model_validate({"backend": "slurm", "slurm": {"gpus": gpus, "processes": processes}})
    ClusterSettings.model_validate({"backend": "slurm", "slurm": {"gpus": 2, "processes": 2}})


def test_each_worker_of_a_slurm_gpu_job_runs_on_its_own_gpu(tmp_path):
    """The job script's worker command, run for real: two `dask worker` processes (--nworkers 2)
    that inherit the job's CUDA_VISIBLE_DEVICES each put their own GPU first."""
    inherited = "GPU-5d5ba0d6,MIG-cba663e8"  # Slurm gives indices, or UUIDs where cgroups name devices so
    cluster = ClusterSettings.model_validate({"backend": "slurm", "tls": False, "slurm": {"gpus": 2, "processes": 2}})
    options = SlurmCluster(spec_for(cluster, Mode.parse("dr"), "gpu_toy")).job_options()
    extra = options["worker_extra_args"]
    assert extra[extra.index("--preload") + 1] == "agi_core.cluster.slurm_gpu"
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None) as local, \
            Client(local) as client:
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", local.scheduler_address,
                                   "--nworkers", "2", "--nthreads", "1", "--name", "slurm-0", *extra],
                                  env={**os.environ, "CUDA_VISIBLE_DEVICES": inherited, "PYTHONPATH": str(ROOT)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
        try:
            client.wait_for_workers(2, timeout=120)
            seen = client.run(lambda: (os.environ["CUDA_VISIBLE_DEVICES"], os.environ.get("CUDA_DEVICE_ORDER")))
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    first, second = inherited.split(",")
    assert sorted(seen.values()) == sorted([(f"{first},{second}", "PCI_BUS_ID"), (f"{second},{first}", "PCI_BUS_ID")]), seen
    assert [bind_in_job("4,5,6", k) for k in range(3)] == ["4,5,6", "5,6,4", "6,4,5"]  # as dask-cuda rotates
    assert bind_in_job("", 1) is None and bind_in_job(None, 0) is None  # no list: the node's GPUs as they are


# ---------------------------------------------------------------- the pool under the rapids bit

_POOL_RUN = r"""
import asyncio, json, os, sys
import numba.cuda
record = sys.argv[3]
real = numba.cuda.is_available
def is_available():  # a recorder: cuInit happens here on a real GPU
    with open(record, "a") as f:
        f.write(f"{os.getpid()}\n")
    return real()
numba.cuda.is_available = is_available
from agi_core import AGI, AgiEnv
run = asyncio.run(AGI.run(AgiEnv(app="gpu_toy", apps_path=sys.argv[1]), mode="pr", n=4, use_cache=False,
                          cluster={"workers_data_path": sys.argv[2], "workers": {"127.0.0.1": 2}}))
parts = {pid: [r["kernel"], r["cuda_visible_devices"]] for pid, r in run.results.items()}
print(json.dumps({"manager": os.getpid(), "parts": parts, "slots": {o.id: o.slot for o in run.outcomes}}))
"""


def test_pool_slots_under_the_rapids_bit_get_their_own_gpu_and_the_manager_never_initialises_cuda(tmp_path):
    """Mode pr on a (fake) one-GPU machine with the simulator: the manager asks a child whether
    the GPU kernels run (no `is_available` call in the manager, where cuInit would poison every
    forked slot), slot 0 gets the GPU by UUID, slot 1 an empty CUDA_VISIBLE_DEVICES and the CPU kernels."""
    bin_dir = fake_nvidia_smi(tmp_path / "bin", H100_UUIDS.splitlines()[0] + "\n")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "XDG_STATE_HOME": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-c", _POOL_RUN, str(TEST_APPS), str(tmp_path / "share"), str(tmp_path / "calls")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    callers = (tmp_path / "calls").read_text().split() if (tmp_path / "calls").exists() else []
    assert str(facts["manager"]) not in callers, "numba.cuda.is_available (cuInit) ran in the manager"
    by_slot = {}
    for pid, slot in facts["slots"].items():
        by_slot.setdefault(slot, set()).add(tuple(facts["parts"][pid]))
    gpu0 = "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"
    assert by_slot == {"127.0.0.1-0": {("gpu", gpu0)}, "127.0.0.1-1": {("python", "")}}, by_slot


# ---------------------------------------------------------------- the worker's kernel choice

_CHOICE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from agi_core.kernels.selection import select_kernels
from agi_core.base.modes import Mode
choice = select_kernels("gpu_toy", Mode.RAPIDS)
print(json.dumps([choice.kind, choice.note, "numba" in sys.modules]))
"""


def test_a_worker_whose_slot_has_no_gpu_runs_the_cpu_kernels_even_where_it_sees_one():
    """The simulator makes a GPU visible to every process; the plan's word (AGI_GPU_SLOT=0) wins."""
    src = str(TEST_APPS / "gpu_toy_project" / "src")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(ROOT)}
    ask = [sys.executable, "-c", _CHOICE, src]
    cpu = json.loads(subprocess.run(ask, env={**env, "AGI_GPU_SLOT": "0"}, capture_output=True, text=True, check=True).stdout)
    assert cpu[0] == "python" and cpu[1] == f"the plan gives this worker no GPU on {os.uname().nodename}: ran the CPU kernels"
    assert cpu[2] is False  # numba was not even imported
    assert json.loads(subprocess.run(ask, env=env, capture_output=True, text=True, check=True).stdout)[0] == "gpu"


def test_a_gpu_the_kernels_cannot_use_is_named_with_numbas_error_and_require_refuses_it(tmp_path):
    """nvidia-smi lists a GPU but numba.cuda finds no driver (as with a driver too old for the
    wheels): the CPU kernels run and the note carries numba's error; rapids = "require" refuses."""
    import importlib.util

    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed (the examples extra)")
    bin_dir = fake_nvidia_smi(tmp_path / "bin", H100_UUIDS.splitlines()[0] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    (tmp_path / "libcuda.so").write_bytes(b"")  # a driver library that does not load, whatever the machine has
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", XDG_STATE_HOME=str(tmp_path / "state"),
               NUMBA_CUDA_DRIVER=str(tmp_path / "libcuda.so"))
    size = ["--set", "width=16", "--set", "height=8", "--set", "bands=2", "--set", "max_iter=20"]
    share = ["--set", f"cluster.workers_data_path={json.dumps(str(tmp_path / 'share'))}"]
    ran = run_agi("run", "mandelbrot", "--mode", "r", "--no-cache", *size, *share, env=env)
    assert ran.returncode == 0, ran.stderr
    record = json.loads(next((tmp_path / "share" / "runs").rglob("manifest.json")).read_text())
    note = record["partitions"][0]["note"]
    assert record["partitions"][0]["kernel"] == "python", record["partitions"][0]
    assert "is not usable by mandelbrot's GPU kernels (CudaSupportError" in note, note
    require = ["--set", 'cluster.rapids="require"']
    refused = run_agi("run", "mandelbrot", "--mode", "r", "--no-cache", *size, *share, *require, env=env)
    assert refused.returncode == 1 and 'rapids = "require", but the GPU kernels cannot run here' in refused.stderr, refused.stderr
    assert "CudaSupportError" in refused.stderr and "agi doctor" in refused.stderr
