"""Which GPUs a host has, which worker owns which, and whether numba.cuda and cuDF work there.

A host's GPUs are what ``nvidia-smi`` lists (run with a timeout: a missing, broken or hanging
tool means none). Whether numba.cuda can use them and whether cuDF imports is asked of a child
Python, and only where there is a GPU or numba's CUDA simulator is on: a process on a host
without a GPU never loads a GPU library. `agi install` and `agi doctor` probe every host and keep
what they found (`remember_gpus`); the work plan and the cluster read it back (`gpus_of`), so
both agree on which worker owns which GPU (`gpu_workers`): worker k of a host with n GPUs owns
GPU k when k < n (its own ``CUDA_VISIBLE_DEVICES``, as dask-cuda does) and is a CPU worker
otherwise. A host may also declare ``capabilities = ["gpu"]`` (every worker owns a GPU of its
own: a host that cannot be probed; declared GPUs count like probed ones, so worker k owns GPU k)
or ``gpus = N``; ``share_gpus = true`` says that workers sharing a GPU is intended. A simulated
GPU (``NUMBA_ENABLE_CUDASIM = "1"`` in the host's ``env``) has no device to pin.

GPUs are named by UUID where nvidia-smi gives one (``GPU-…``, or ``MIG-…`` for each MIG instance,
which CUDA shows one per process): indices can name another card where CUDA's device order is not
nvidia-smi's, and a MIG instance has no index.

>>> parse_gpus("0, NVIDIA H100 80GB HBM3, 81559\\n1, NVIDIA H100 80GB HBM3, 81559\\n")[1]
Gpu(index=1, name='NVIDIA H100 80GB HBM3', memory_mib=81559, uuid='')
>>> from agi_core.settings import WorkerSpec
>>> gpu_workers(WorkerSpec(count=3), [Gpu(0, "A100", 40960), Gpu(1, "A100", 40960)])
[WorkerGpu(device='0'), WorkerGpu(device='1'), None]
>>> gpu_workers(WorkerSpec(count=2, capabilities=["gpu"]), [])
[WorkerGpu(device='0'), WorkerGpu(device='1')]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import write_text_atomic
from .errors import SettingsError
from .hosts import HostAddress, is_local_host
from .paths import state_dir

if TYPE_CHECKING:
    from .settings import WorkerSpec

__all__ = ["GPU", "GPU_SLOT", "SIMULATOR", "Gpu", "GpuProbe", "WorkerGpu", "bind_in_job", "gpu_here", "gpu_libraries_unusable",
           "gpu_workers", "gpus_of", "library_probe", "local_gpus", "parse_gpu_list", "parse_gpus", "probe_gpus", "remember_gpus",
           "remembered_gpus", "with_mig", "worker_env", "worker_gpu_facts"]

#: the capability a GPU slot offers (``Partition(needs=("gpu",))``, ``prefers=("gpu",)``)
GPU = "gpu"
#: numba's switch for its CUDA simulator: kernels run on the CPU, as Python, with no GPU
SIMULATOR = "NUMBA_ENABLE_CUDASIM"
#: "0" in a worker's environment: the plan gives its slot no GPU, so it runs the CPU kernels even
#: where it could see one (`kernels.select_kernels`)
GPU_SLOT = "AGI_GPU_SLOT"
#: one line per GPU: ``index, name, memory in MiB, uuid``
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits")
#: every GPU and its MIG instances (``GPU 0: NAME (UUID: GPU-…)`` then ``  MIG 1g.10gb Device 0: (UUID: MIG-…)``)
NVIDIA_SMI_LIST = ("nvidia-smi", "-L")
#: seconds nvidia-smi may take: a wedged driver can make it hang for minutes; without persistence
#: mode, the first call loads the driver for every GPU (seconds each on an 8-GPU server)
NVIDIA_SMI_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Gpu:
    """One NVIDIA GPU of a host, as nvidia-smi lists it."""

    index: int
    name: str
    memory_mib: int
    uuid: str = ""  # GPU-… (MIG-… for a MIG instance); "" when nvidia-smi did not say

    def describe(self) -> str:
        """``NVIDIA H100 80GB HBM3, 81559 MiB``"""
        return f"{self.name}, {self.memory_mib} MiB"

    @property
    def device(self) -> str:
        """What ``CUDA_VISIBLE_DEVICES`` names it by: its UUID, else its index."""
        return self.uuid or str(self.index)


@dataclass(frozen=True, slots=True)
class GpuProbe:
    """What nvidia-smi said: the GPUs it listed (MIG instances instead of their GPU) and, when it
    failed or warned, its message (kept for the record and `agi doctor`)."""

    gpus: list[Gpu]
    error: str = ""


@dataclass(frozen=True, slots=True)
class WorkerGpu:
    """The GPU a worker owns: ``device`` is its ``CUDA_VISIBLE_DEVICES``; None when the GPU was
    declared by hand and no device is known (the worker sees what the host shows it)."""

    device: str | None


def parse_gpus(text: str) -> list[Gpu]:
    """The GPUs in ``nvidia-smi --query-gpu=index,name,memory.total[,uuid] --format=csv,noheader,nounits``
    output; lines that do not read as one are ignored (``[N/A]`` memory counts as 0): one GPU that
    nvidia-smi cannot read does not hide the others."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        uuid = parts.pop() if len(parts) >= 4 and parts[-1].startswith(("GPU-", "MIG-")) else ""
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        memory = parts[-1].split()[0] if parts[-1] else ""
        gpus.append(Gpu(int(parts[0]), ", ".join(parts[1:-1]), int(memory) if memory.isdigit() else 0, uuid))
    return gpus


_LIST_GPU = re.compile(r"^GPU (\d+): (.*?) \(UUID: (GPU-[^)\s]+)\)")
_LIST_MIG = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)\s]+)\)")


def parse_gpu_list(text: str) -> dict[int, list[tuple[str, str]]]:
    """The MIG instances in ``nvidia-smi -L`` output: GPU index → [(profile, MIG UUID)], for the
    GPUs that have some.

    >>> parse_gpu_list("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5d5b)\\n  MIG 3g.40gb     Device  0: (UUID: MIG-c6d4)\\n")
    {0: [('3g.40gb', 'MIG-c6d4')]}
    """
    found: dict[int, list[tuple[str, str]]] = {}
    parent = None
    for line in text.splitlines():
        if (gpu := _LIST_GPU.match(line)) is not None:
            parent = int(gpu.group(1))
        elif (mig := _LIST_MIG.match(line)) is not None and parent is not None:
            found.setdefault(parent, []).append((mig.group(1), mig.group(3)))
    return found


def with_mig(gpus: Sequence[Gpu], listing: str) -> list[Gpu]:
    """``gpus`` with each MIG-enabled GPU replaced by its MIG instances (``nvidia-smi -L``): a CUDA
    process sees one MIG instance, so each is a GPU a worker can own. Memory: the profile's
    (``3g.40gb``: 40 GiB)."""
    migs = parse_gpu_list(listing)
    out: list[Gpu] = []
    for gpu in gpus:
        for profile, uuid in migs.get(gpu.index, ()):
            size = re.search(r"(\d+)gb$", profile)
            out.append(Gpu(gpu.index, f"{gpu.name} MIG {profile}", int(size.group(1)) * 1024 if size else 0, uuid))
        if gpu.index not in migs:
            out.append(gpu)
    return out


def _nvidia_smi(args: Sequence[str], timeout: float) -> tuple[str, str]:
    """stdout and what went wrong ("" when nothing): stderr, the exit code, a timeout."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "", f"`{' '.join(args)}` did not answer within {timeout:g} s (a wedged driver?)"
    except OSError as exc:
        return "", f"`{args[0]}` could not run: {exc}"
    said = " ".join((done.stderr.strip() or done.stdout.strip()).split())[:500]
    return done.stdout, (f"`{' '.join(args)}` exited with {done.returncode}: {said}" if done.returncode else "")


def probe_gpus(timeout: float = NVIDIA_SMI_TIMEOUT) -> GpuProbe:
    """This machine's GPUs (nvidia-smi, at most ``timeout`` seconds), with MIG instances, and
    what nvidia-smi said when it failed. Its output is read whatever its exit code: one sick GPU
    (``Unable to determine the device handle``) makes it exit non-zero, and the others still count.
    Imports no GPU library."""
    if shutil.which(NVIDIA_SMI[0]) is None:
        return GpuProbe([])
    out, error = _nvidia_smi(NVIDIA_SMI, timeout)
    gpus = parse_gpus(out)
    if gpus:
        listing, list_error = _nvidia_smi(NVIDIA_SMI_LIST, timeout)
        gpus, error = with_mig(gpus, listing), error or list_error
    return GpuProbe(gpus, error)


def local_gpus(timeout: float = NVIDIA_SMI_TIMEOUT) -> list[Gpu]:
    """This machine's GPUs (`probe_gpus`); [] when there is none or the tool fails."""
    return probe_gpus(timeout).gpus


def simulated(environ: Mapping[str, str] = os.environ) -> bool:
    """True when numba's CUDA simulator is on in ``environ`` (``NUMBA_ENABLE_CUDASIM=1``)."""
    return environ.get(SIMULATOR, "0") not in ("", "0")


# -- which worker owns which GPU ------------------------------------------------------------


def gpu_workers(spec: WorkerSpec, gpus: Sequence[Gpu], host: str = "") -> list[WorkerGpu | None]:
    """For each of the ``spec.count`` workers of a host with ``gpus`` (probed), the GPU it owns,
    or None for a CPU worker.

    Declared ``capabilities = ["gpu"]``: every worker owns a GPU of its own, GPU k (a count, as
    if probed), or the k-th probed one; more workers than probed GPUs is an error unless
    ``share_gpus`` (then GPU k mod n). A simulated GPU, or shared GPUs of a host never probed: no
    device to pin (the worker sees what the host shows it). Declared ``gpus = N``: workers k < N
    own GPU k. Otherwise workers k < len(gpus) own the k-th GPU probed. ``host``: for the error.
    """
    if GPU in spec.capabilities:
        if gpus and spec.count > len(gpus) and not spec.share_gpus:
            where = f"host {host}" if host else "a host"
            raise SettingsError(f'{where} declares capabilities = ["gpu"] for {spec.count} workers but has {len(gpus)} GPU'
                                f'{"s" if len(gpus) > 1 else ""} (nvidia-smi): {spec.count - len(gpus)} would share one',
                                fix=f"set count = {len(gpus)} for {host or 'that host'} in [cluster.workers], or "
                                    "share_gpus = true there if sharing a GPU between workers is intended")
        if gpus:
            return [WorkerGpu(gpus[k % len(gpus)].device) for k in range(spec.count)]
        if spec.share_gpus or simulated(spec.env):
            return [WorkerGpu(None) for _ in range(spec.count)]
        return [WorkerGpu(str(k)) for k in range(spec.count)]
    if spec.gpus is not None:
        return [WorkerGpu(gpus[k].device if k < len(gpus) else str(k)) if k < spec.gpus else None for k in range(spec.count)]
    return [WorkerGpu(gpus[k].device) if k < len(gpus) else None for k in range(spec.count)]


def worker_env(spec: WorkerSpec, gpu: WorkerGpu | None, host_gpus: int) -> dict[str, str]:
    """The environment of one worker process: the host's ``env`` setting, and its GPU: its own
    ``CUDA_VISIBLE_DEVICES`` (CUDA then counts devices in nvidia-smi's order, ``PCI_BUS_ID``), or
    for a CPU worker an empty one where other workers own the host's GPUs, and `GPU_SLOT` = 0: it
    runs the CPU kernels even where it could see a GPU, as the plan expects.

    >>> from agi_core.settings import WorkerSpec
    >>> worker_env(WorkerSpec(count=2), None, host_gpus=1)
    {'CUDA_VISIBLE_DEVICES': '', 'AGI_GPU_SLOT': '0'}
    """
    env = dict(spec.env)
    if gpu is not None and gpu.device is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu.device
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    elif gpu is None and (host_gpus or spec.gpus):
        env["CUDA_VISIBLE_DEVICES"] = ""
    if gpu is None:
        env[GPU_SLOT] = "0"
    return env


def bind_in_job(visible: str | None, index: int) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` of worker ``index`` of a batch job (Slurm) that was given the
    GPUs ``visible`` (its inherited ``CUDA_VISIBLE_DEVICES``: indices, ``GPU-``/``MIG-`` UUIDs):
    the list rotated so that the worker's own GPU comes first, as dask-cuda does; CUDA device 0 is
    then its own, and peer access to the others still works. None when the job has no list (the
    worker sees what the node shows it).

    >>> bind_in_job("4,5,6", 1)
    '5,6,4'
    >>> bind_in_job("GPU-aa,MIG-bb", 2)
    'GPU-aa,MIG-bb'
    """
    devices = [d.strip() for d in (visible or "").split(",") if d.strip()]
    if not devices:
        return None
    k = index % len(devices)
    return ",".join(devices[k:] + devices[:k])


def gpu_here(environ: Mapping[str, str] = os.environ, *, host: str | None = None) -> tuple[bool, str]:
    """Whether this process may run GPU kernels: ``CUDA_VISIBLE_DEVICES`` does not hide every GPU
    from it, and a GPU is visible or numba's simulator is on. When not, the reason, naming the
    host, for the record.

    >>> gpu_here({"NUMBA_ENABLE_CUDASIM": "1"}, host="h1")
    (True, '')
    >>> gpu_here({"NUMBA_ENABLE_CUDASIM": "1", "CUDA_VISIBLE_DEVICES": ""}, host="h1")[0]
    False
    """
    host = host or socket.gethostname()
    if environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False, f"no GPU on {host} for this worker (CUDA_VISIBLE_DEVICES is empty: the host's GPUs belong to other workers)"
    if simulated(environ):
        return True, ""
    if os.path.exists("/dev/nvidiactl") or shutil.which(NVIDIA_SMI[0]) is not None:
        return True, ""
    return False, f"no GPU on {host}"


# -- what install and doctor found, kept for the plan and the cluster ------------------------


def _facts_file(host: str) -> Path:
    name = HostAddress.parse(host).host
    return state_dir("hosts", re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".json")


def remember_gpus(host: str, gpus: Sequence[Gpu]) -> None:
    """Keep what a probe of ``host`` (a worker-map key) found, for later plans and clusters."""
    path = _facts_file(host)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"schema": "agi.host-gpus.v1", "host": host, "gpus": [asdict(g) for g in gpus]}))


def remembered_gpus(host: str) -> list[Gpu] | None:
    """What the last probe of ``host`` found; None when it was never probed (or the file is unreadable)."""
    try:
        data = json.loads(_facts_file(host).read_text())
        return [Gpu(int(g["index"]), str(g["name"]), int(g["memory_mib"]), str(g.get("uuid", ""))) for g in data["gpus"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def gpus_of(hosts: Sequence[str] | Mapping[str, Any]) -> dict[str, list[Gpu]]:
    """Host → its GPUs: this machine's probed now, other hosts' as `agi install` / `agi doctor` last
    found them (none when never probed: declare ``capabilities`` or ``gpus`` for such hosts)."""
    here: list[Gpu] | None = None
    found = {}
    for host in hosts:
        if is_local_host(host):
            here = local_gpus() if here is None else here
            found[host] = here
        else:
            found[host] = remembered_gpus(host) or []
    return found


# -- numba.cuda and cuDF, asked of a child process -------------------------------------------

#: Run as ``python -c``: prints one JSON line. It imports numba and cudf, so it runs only where
#: a GPU is visible or the simulator is on, and in a process of its own.
LIBRARY_PROBE = r"""
import importlib.util, json
out = {"numba_cuda": None, "cudf": None}
if importlib.util.find_spec("numba") is not None:
    try:
        from numba import cuda
        out["numba_cuda"] = bool(cuda.is_available())
        if not out["numba_cuda"]:  # is_available() swallows the reason: ask for a context to hear it
            cuda.current_context()
    except Exception as exc:
        out["numba_cuda"] = False; out["numba_error"] = f"{type(exc).__name__}: {exc}"[:300]
if importlib.util.find_spec("cudf") is not None:
    try:
        import cudf
        out["cudf"] = True; out["cudf_version"] = cudf.__version__
    except Exception as exc:
        out["cudf"] = False; out["cudf_error"] = f"{type(exc).__name__}: {exc}"[:300]
print(json.dumps(out))
"""


def library_probe(python: str = sys.executable, environ: Mapping[str, str] | None = None, timeout: float = 120.0) -> dict[str, Any]:
    """Whether numba.cuda can use a GPU and whether cuDF imports, asked of a child ``python``:
    ``{"numba_cuda": bool | None, "cudf": bool | None, ...}`` (None: not installed)."""
    try:
        done = subprocess.run([python, "-c", LIBRARY_PROBE], capture_output=True, text=True, timeout=timeout, check=False,
                              env=dict(environ) if environ is not None else None)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return {"numba_cuda": None, "cudf": None, "error": "the probe did not answer"}


def _visible(gpus: list[Gpu], devices: str | None) -> list[Gpu]:
    if devices is None:
        return gpus
    wanted = [d.strip() for d in devices.split(",") if d.strip()]
    return [g for g in gpus if str(g.index) in wanted or (g.uuid and g.uuid in wanted)]


#: what `library_probe` says that the run record keeps
_LIBRARY_FACTS = ("numba_cuda", "cudf", "numba_error", "cudf_error", "error")


def worker_gpu_facts() -> dict[str, Any]:
    """This worker process's GPU facts, for the run record (run on each Dask worker): the GPUs it
    sees (``CUDA_VISIBLE_DEVICES`` applied), whether they are simulated, whether numba.cuda and
    cuDF work (asked of a child, only where there is a GPU or the simulator), and what went wrong
    (nvidia-smi's message, the libraries' errors), which ``rapids = "require"`` reports."""
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    probe = probe_gpus()
    gpus = _visible(probe.gpus, devices)
    sim = simulated()
    facts: dict[str, Any] = {"gpu_models": [g.describe() for g in gpus], "cuda_visible_devices": devices, "gpu_simulated": sim}
    if probe.error:
        facts["gpu_error"] = probe.error
    if gpus or sim:
        found = library_probe()
        facts.update({key: value for key, value in found.items() if key in _LIBRARY_FACTS})
    return facts


def gpu_libraries_unusable(workers: Mapping[str, Mapping[str, Any]]) -> str:
    """The hosts (with the libraries' errors) among Dask workers' records (``capabilities`` from
    `worker_gpu_facts`) whose GPU neither numba.cuda nor cuDF can use; "" when every one can.

    >>> gpu_libraries_unusable({"w": {"host": "h1", "capabilities": {"gpu_models": ["H100"], "numba_cuda": False,
    ...                            "numba_error": "CudaSupportError: driver too old", "cudf": None}}})
    'h1 (CudaSupportError: driver too old)'
    """
    found: dict[str, str] = {}
    for facts in workers.values():
        caps = facts.get("capabilities") or {}
        if not (caps.get("gpu_models") or caps.get("gpu_simulated")) or caps.get("numba_cuda") or caps.get("cudf"):
            continue
        errors = [str(caps[key]) for key in ("numba_error", "cudf_error", "error") if caps.get(key)]
        found.setdefault(str(facts.get("host", "?")), "; ".join(errors) or "numba-cuda and cuDF are not installed")
    return ", ".join(f"{host} ({why})" for host, why in sorted(found.items()))
