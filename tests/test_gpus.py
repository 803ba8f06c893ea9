"""GPUs of hosts and workers: probing, which worker owns which GPU, placement (needs, prefers), the
rapids bit's CPU fallback and ``rapids = "require"``, on this machine (no GPU here: a declared or
simulated one). The same across real hosts: test_gpu_rig.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv, Partition
from agi_core.base.errors import PlanError
from agi_core.base.modes import Mode
from agi_core.cluster import cluster_spec
from agi_core.gpus import Gpu, gpu_here, gpu_workers, gpus_of, local_gpus, parse_gpus, remember_gpus, worker_env
from agi_core.plan import Slot, WorkPlan, balance, build_plan, slots_for
from agi_core.settings import ClusterSettings, WorkerSpec
from tests.conftest import ROOT

TEST_APPS = ROOT / "tests" / "apps"
H100 = "0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559\n"


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    """A state folder of its own: GPUs remembered by other tests (or by real installs) stay out."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def fake_nvidia_smi(folder: Path, script: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)


# ---------------------------------------------------------------- probing


def test_nvidia_smi_lines_give_index_model_and_memory():
    assert parse_gpus(H100 + "garbage\n2, Tesla T4, [N/A]\n") == [
        Gpu(0, "NVIDIA H100 80GB HBM3", 81559), Gpu(1, "NVIDIA H100 80GB HBM3", 81559), Gpu(2, "Tesla T4", 0)]


def test_local_gpus_asks_nvidia_smi_and_gives_up_on_a_hanging_one(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "ok", f"printf '{H100}'\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'ok'}:{os.environ['PATH']}")
    assert [gpu.describe() for gpu in local_gpus()] == ["NVIDIA H100 80GB HBM3, 81559 MiB"] * 2

    fake_nvidia_smi(tmp_path / "hung", "sleep 30\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'hung'}:{os.environ['PATH']}")
    assert local_gpus(timeout=0.5) == []  # a wedged driver reads as no GPU, it does not hang the probe

    fake_nvidia_smi(tmp_path / "broken", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'broken'}:{os.environ['PATH']}")
    assert local_gpus() == []


def test_what_install_found_is_what_the_plan_and_the_cluster_use(state):
    assert gpus_of(["10.0.0.2", "10.0.0.3"]) == {"10.0.0.2": [], "10.0.0.3": []}  # never probed: no GPU
    remember_gpus("agi@10.0.0.2:22", parse_gpus(H100))  # the worker-map key may carry a user and port
    found = gpus_of(["10.0.0.2", "10.0.0.3"])
    assert [len(found["10.0.0.2"]), len(found["10.0.0.3"])] == [2, 0]


# ---------------------------------------------------------------- which worker owns which GPU


def test_each_gpu_gets_a_worker_of_its_own_and_the_others_run_on_cpu():
    spec = WorkerSpec(count=3)
    gpus = parse_gpus(H100)
    owners = gpu_workers(spec, gpus)
    assert [o.device if o else None for o in owners] == ["0", "1", None]
    pci = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}  # CUDA counts devices as nvidia-smi does
    assert [worker_env(spec, o, len(gpus)) for o in owners] == [
        {"CUDA_VISIBLE_DEVICES": "0", **pci}, {"CUDA_VISIBLE_DEVICES": "1", **pci},
        {"CUDA_VISIBLE_DEVICES": "", "AGI_GPU_SLOT": "0"}]
    slots = slots_for({"10.0.0.2": spec, "10.0.0.3": WorkerSpec(count=1)}, {"10.0.0.2": gpus})
    assert [(s.name, s.capabilities) for s in slots] == [
        ("10.0.0.2-0", ("gpu",)), ("10.0.0.2-1", ("gpu",)), ("10.0.0.2-2", ()), ("10.0.0.3-0", ())]


def test_the_cluster_gives_gpu_workers_the_gpu_resource_and_their_device():
    cluster = ClusterSettings.model_validate({"scheduler": "10.0.0.1:8786", "workers": {
        "10.0.0.2": 3, "10.0.0.3": {"count": 1, "capabilities": ["gpu"], "env": {"NUMBA_ENABLE_CUDASIM": "1"}}}})
    spec = cluster_spec(cluster, Mode.CLUSTER, app="demo", gpus={"10.0.0.2": parse_gpus(H100)})
    assert [(w.name, w.gpu, dict(w.env)) for w in spec.workers] == [
        ("10.0.0.2-0", True, {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}),
        ("10.0.0.2-1", True, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}),
        ("10.0.0.2-2", False, {"CUDA_VISIBLE_DEVICES": "", "AGI_GPU_SLOT": "0"}),
        ("10.0.0.3-0", True, {"NUMBA_ENABLE_CUDASIM": "1"}),  # declared (simulated): no device to pin
    ]
    assert type(spec).from_json(json.loads(json.dumps(spec.to_json()))) == spec  # a warm cluster's state file
    # the slots of the plan say the same
    slots = slots_for(cluster.worker_map(), {"10.0.0.2": parse_gpus(H100)})
    assert [("gpu" in s.capabilities) for s in slots] == [w.gpu for w in spec.workers]


def test_a_worker_uses_a_gpu_only_where_it_has_one():
    assert gpu_here({"CUDA_VISIBLE_DEVICES": ""}, host="h2") == (
        False, "no GPU on h2 for this worker (CUDA_VISIBLE_DEVICES is empty: the host's GPUs belong to other workers)")
    assert gpu_here({"NUMBA_ENABLE_CUDASIM": "1"}, host="h1") == (True, "")
    if not Path("/dev/nvidiactl").exists() and not any((Path(p) / "nvidia-smi").exists() for p in os.environ["PATH"].split(":")):
        assert gpu_here({}, host="h3") == (False, "no GPU on h3")


# ---------------------------------------------------------------- placement


def test_prefers_gpu_goes_to_gpu_slots_first_weighted_by_the_speed_factor():
    slots = [Slot("g-0", "g", capabilities=("gpu",)), Slot("c-0", "c"), Slot("c-1", "c")]
    parts = [Partition(f"p{i}", 1.0, prefers=("gpu",)) for i in range(7)] + [Partition(f"q{i}", 1.0) for i in range(2)]
    plan = balance(parts, slots, speeds={"gpu": 8.0})
    assert plan == {"g-0": [f"p{i}" for i in range(7)], "c-0": ["q0"], "c-1": ["q1"]}  # 7/8 of GPU time beats a CPU slot
    # where the GPU slot is busy enough, a CPU slot finishes a preferring partition first: it goes there
    busy = balance([Partition(f"p{i}", 1.0, prefers=("gpu",)) for i in range(12)], slots, speeds={"gpu": 8.0})
    assert (len(busy["g-0"]), busy["c-0"], busy["c-1"]) == (10, ["p8"], ["p9"])  # GPU 10/8 = 1.25, CPUs 1 each
    # without the rapids bit (no speed factor) a preference changes nothing: an even spread
    even = balance(parts, slots)
    assert sorted(len(ids) for ids in even.values()) == [3, 3, 3]


def test_prefers_gpu_in_a_dag_too():
    slots = [Slot("g-0", "g", capabilities=("gpu",)), Slot("c-0", "c")]
    parts = [Partition("root", 1.0)] + [Partition(f"p{i}", 4.0, deps=("root",), prefers=("gpu",)) for i in range(4)]
    plan = balance(parts, slots, speeds={"gpu": 4.0})
    assert set(plan["g-0"]) >= {f"p{i}" for i in range(4)}


def test_needs_gpu_stays_on_gpu_slots_whatever_the_load():
    slots = [Slot("g-0", "g", capabilities=("gpu",)), Slot("c-0", "c"), Slot("c-1", "c")]
    plan = balance([Partition(f"n{i}", 5.0, needs=("gpu",)) for i in range(3)] + [Partition("x", 1.0)], slots)
    assert plan["g-0"] == ["n0", "n1", "n2"]


def test_prefers_is_kept_in_the_plan_file_and_its_fingerprint():
    slots = [Slot("g-0", "g", capabilities=("gpu",)), Slot("c-0", "c")]
    plain = build_plan("demo", {}, [Partition("a", 1.0)], slots)
    preferring = build_plan("demo", {}, [Partition("a", 1.0, prefers=("gpu",))], slots, speeds={"gpu": 2.0})
    assert plain.fingerprint != preferring.fingerprint
    again = WorkPlan.from_json(preferring.to_json())
    assert again.partitions[0].prefers == ("gpu",) and again.fingerprint == preferring.fingerprint


def test_needs_gpu_with_no_gpu_anywhere_fails_before_anything_runs_naming_the_hosts(state):
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    with pytest.raises(PlanError) as info:
        asyncio.run(AGI.get_distrib(env, mode="d", scheduler="10.0.0.1:8786", workers={"10.0.0.2": 1, "10.0.0.3": 2},
                                    need_gpu=[1, 3]))
    message = str(info.value)
    assert "partition 'p1' (and 1 more) needs gpu" in message
    assert "no GPU on 10.0.0.2 (1 worker), 10.0.0.3 (2 workers)" in message
    assert 'capabilities = ["gpu"]' in info.value.fix


def test_rapids_require_names_the_hosts_without_a_gpu(state):
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    remember_gpus("10.0.0.4", parse_gpus(H100))  # found by `agi install`: 2 GPUs for 3 workers
    workers = {"10.0.0.2": {"count": 1, "capabilities": ["gpu"]}, "10.0.0.3": 1, "10.0.0.4": 3}
    cluster = {"scheduler": "10.0.0.1:8786", "workers": workers, "rapids": "require"}
    with pytest.raises(PlanError) as info:
        asyncio.run(AGI.get_distrib(env, mode="dr", cluster=cluster))
    assert 'rapids = "require", but workers have no GPU: no GPU on 10.0.0.3 (1 worker), 10.0.0.4 (1 worker)' in str(info.value)
    # the same settings with rapids = true: a plan, whose CPU slots run the CPU kernels
    plan = asyncio.run(AGI.get_distrib(env, mode="dr", cluster={**cluster, "rapids": True}))
    assert [s.name for s in plan.slots if "gpu" in s.capabilities] == ["10.0.0.2-0", "10.0.0.4-0", "10.0.0.4-1"]


# ---------------------------------------------------------------- a real local cluster, one simulated GPU


def test_a_mixed_local_cluster_runs_gpu_partitions_on_the_gpu_worker_and_records_the_cpu_fallback(state, tmp_path):
    """Two Dask workers on this machine: one owns the (simulated) GPU, one does not."""
    env = AgiEnv(app="gpu_toy", apps_path=TEST_APPS)
    cluster = {"workers": {"127.0.0.1": {"count": 2, "gpus": 1, "env": {"NUMBA_ENABLE_CUDASIM": "1"}}},
               "workers_data_path": str(tmp_path / "share"), "gpu_speed": 4.0}
    result = asyncio.run(AGI.run(env, mode="dr", cluster=cluster, n=6, prefer_gpu=[0, 1, 2]))
    record = json.loads(result.manifest.read_text())
    parts = {p["id"]: p for p in record["partitions"]}
    gpu_slot, cpu_slot = "127.0.0.1-0", "127.0.0.1-1"
    # p0-p2 prefer the GPU, 4 times faster there: 0.75 of GPU time; p4 fills it up to 1.75, p3 and p5 go to the CPU
    assert {pid for pid, p in parts.items() if p["slot"] == gpu_slot} == {"p0", "p1", "p2", "p4"}
    for pid in ("p0", "p1", "p2", "p4"):  # run by the numba.cuda kernel, on the simulator
        assert (parts[pid]["kernel"], parts[pid]["device"], parts[pid]["note"]) == ("gpu", "cuda:0 (simulator)", "CUDA simulator")
    on_cpu = [p for p in parts.values() if p["slot"] == cpu_slot]
    assert sorted(p["id"] for p in on_cpu) == ["p3", "p5"]
    for p in on_cpu:
        assert (p["kernel"], p["device"]) == ("python", "cpu")
        assert p["note"].startswith(f"no GPU on {os.uname().nodename} for this worker"), p["note"]
    assert result.value == sum(sum(range(64)) * (i + 1) for i in range(6))  # the same numbers on either kernel
    # the run's summary names each worker's kernel note once (what `agi runs show` prints as "kernels:")
    kernel_notes = {p["note"].split("; ")[0] for p in parts.values()}  # after "; ": what the cache did
    assert len(kernel_notes) == 2 and set(record["kernel_note"].split("; ")) == kernel_notes
    workers = {w["slot"]: w["capabilities"] for w in record["workers"].values()}
    assert (workers[gpu_slot]["gpus"], workers[gpu_slot]["cuda_visible_devices"], workers[gpu_slot]["gpu_simulated"]) == (1.0, "0", True)
    assert workers[gpu_slot]["numba_cuda"] is True
    assert (workers[cpu_slot]["gpus"], workers[cpu_slot]["cuda_visible_devices"]) == (0.0, "")


def test_the_rapids_bit_in_this_process_uses_the_simulated_gpu(tmp_path):
    """Mode 8 runs in this process: with numba's simulator on, the GPU kernels run; here in a
    child, so that this process never loads numba.cuda."""
    code = ("import asyncio, json, sys; from agi_core import AGI, AgiEnv; "
            f"r = asyncio.run(AGI.run(AgiEnv(app='gpu_toy', apps_path={str(TEST_APPS)!r}), mode='r', n=2, "
            f"cluster={{'workers_data_path': {str(tmp_path)!r}}})); "
            "rec = json.loads(r.manifest.read_text()); "
            "print(json.dumps([[p['kernel'], p['device']] for p in rec['partitions']] + [rec['kernel_note']]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [["gpu", "cuda:0 (simulator)"]] * 2 + ["CUDA simulator"]
