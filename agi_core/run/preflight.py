"""Checks and preparations before a run starts anything: kernels, and the app's environment.

Everything here fails early, before a run folder exists, with the reason and the fix: a missing
compiled kernel, an app dependency missing where the partitions would run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.errors import AgiError
from ..base.events import EventSink, Notice, Phase
from ..base.hosts import is_local_host
from ..kernels.kinds import kind as kernel_kind
from ..kernels.selection import select_kernels

if TYPE_CHECKING:
    from ..app.env import AgiEnv
    from .request import RunRequest

__all__ = ["Prepared", "local_worker_python", "prepare"]


@dataclass(frozen=True)
class Prepared:
    kernel_note: str = ""  # e.g. "no GPU on h2: ran the CPU kernels"
    python: Path | None = None  # the interpreter for worker processes on this machine; None: this one
    kernel_kind: str | None = None  # the kernels local workers run; None on a cluster (each worker picks)


def prepare(env: AgiEnv, request: RunRequest, emit: EventSink) -> Prepared:
    shape = request.shape
    if shape.cluster:  # an unknown backend, or one whose package is missing, fails here
        from ..cluster.registry import backend_class

        backend_class(request.cluster.backend)
    # without the cluster bit the workers are this machine's: the backend (its module, SSH) is not asked
    workers_here = not shape.cluster or all(is_local_host(host) for host in request.cluster.worker_map())
    if "cython" in shape.builds and workers_here:  # remote hosts compiled theirs at `agi install`
        _compile_kernels(env, emit)
    note, kind = "", None
    # with the pool executor and GPU kernels, whether they run is asked of a child of the workers'
    # Python: CUDA initialised here would fail every slot process forked from this one
    pooled_gpu = shape.executor == "pool" and shape.gpu != "off"
    python = local_worker_python(env, request, emit) if pooled_gpu else None
    if not shape.cluster:  # on a cluster, each worker picks its kernels (and records which)
        chosen = select_kernels(env.module_name.split(".")[0], shape, gpu_check="child" if pooled_gpu else "here",
                                python=str(python) if python else None)  # fails early if a kernel is missing
        note, kind = chosen.note, chosen.kind
        if shape.gpu == "require" and not kernel_kind(chosen.kind).gpu:
            why = chosen.note.removesuffix(": ran the CPU kernels")
            raise AgiError(f'rapids = "require", but the GPU kernels cannot run here: {why}',
                           fix="check this machine with `agi doctor APP` (nvidia-smi, the driver, the app's gpu extra: "
                               "numba-cuda or cuDF), or set rapids = true to run the CPU kernels (the record says so)")
    if not pooled_gpu:
        python = local_worker_python(env, request, emit)
    return Prepared(kernel_note=note, python=python, kernel_kind=kind)


def local_worker_python(env: AgiEnv, request: RunRequest, emit: EventSink) -> Path | None:
    """The interpreter for worker processes on this machine: None (this one) when it has every
    dependency of the app, else the app's own environment. Mode 0 runs in this process: a missing
    dependency is an error naming it and the fix."""
    from ..app.interpreter import app_python, check_in_process

    if request.executor == "sequential":
        check_in_process(env)
        return None
    if request.shape.cluster and not any(is_local_host(host) for host in request.cluster.worker_map()):
        return None  # remote workers run the venv `agi install` built on their host
    chosen = app_python(env, request.cluster.install, on_event=emit)
    if chosen.source == "manager":
        return None
    emit(Notice(f"workers on this machine run {chosen.executable}: {chosen.reason}"))
    return chosen.executable


def _compile_kernels(env: AgiEnv, emit: EventSink) -> None:
    """Compile the app's .pyx kernels in its source folder when missing or older than their source."""
    from ..install.cython_build import build_in_place, stale_pyx

    package_dir = env.src_dir / env.module_name.split(".")[0]
    if stale_pyx(package_dir):
        emit(Phase("compiling", f"the Cython kernels of {env.name} in {package_dir} (once; reused until the .pyx changes)"))
        build_in_place(package_dir)
