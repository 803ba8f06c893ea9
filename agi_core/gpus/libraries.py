"""Whether numba.cuda and cuDF work, asked of a child Python only where there is a GPU or numba's CUDA
simulator (a process on a host without a GPU never loads a GPU library), and what a worker reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from .model import Gpu
from .owners import simulated
from .probe import probe_gpus

__all__ = ["LIBRARY_PROBE", "gpu_libraries_unusable", "library_probe", "worker_gpu_facts"]


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
