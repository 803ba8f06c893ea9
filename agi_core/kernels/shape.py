"""How a run executes, derived once from its mode and settings: `ExecutionShape`.

`run.resolve` stores the shape on the `RunRequest`; the executors, the planner, preflight, install
and the cluster spec read its fields, not the mode's bits. The mode's bits are read here only.

>>> from agi_core.base.modes import Mode
>>> shape = ExecutionShape.of(Mode.parse("dpcr"), compiled="numba")
>>> shape.executor, shape.kernels, shape.pooled, shape.kernel_threads, shape.gpu
('dask', ('gpu', 'numba'), True, 1, 'prefer')
>>> ExecutionShape.of(Mode(0)).executor, ExecutionShape.of(Mode(0)).kernels
('sequential', ('python',))
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..base.modes import Mode
from .kinds import kind, preference

__all__ = ["ExecutionShape"]


class ExecutionShape(BaseModel):
    """The executor, the kernel kinds in preference order, threads, and the GPU policy of a run."""

    model_config = ConfigDict(frozen=True)

    executor: Literal["sequential", "pool", "dask"] = "sequential"
    #: kernel kinds, best first (`kernel_kinds.preference`); the last is the CPU kind that runs
    #: wherever the ones before it cannot
    kernels: tuple[str, ...] = ("python",)
    #: partitions already run one per core (the pool bit): a kernel gets one thread, and a Dask
    #: worker the host's cores as threads
    pooled: bool = False
    cluster: bool = False
    #: "off": no GPU kernels; "prefer": GPU kernels where a worker may use a GPU, the CPU kind
    #: elsewhere (recorded); "require": a worker without a GPU is an error before anything runs
    gpu: Literal["off", "prefer", "require"] = "off"

    @classmethod
    def of(cls, mode: Mode | int, *, compiled: str = "cython", rapids: bool | str = True) -> ExecutionShape:
        """The shape of ``mode``; ``compiled``: the ``[cluster] compiled`` kind the cython bit asks
        for; ``rapids``: the ``[cluster] rapids`` value (``"require"`` makes the GPU policy strict)."""
        bits = int(mode)
        kernels = preference(bits, compiled)
        wants_gpu = any(kind(name).gpu for name in kernels)
        return cls(executor="dask" if bits & Mode.CLUSTER else "pool" if bits & Mode.POOL else "sequential",
                   kernels=kernels, pooled=bool(bits & Mode.POOL), cluster=bool(bits & Mode.CLUSTER),
                   gpu=("require" if rapids == "require" else "prefer") if wants_gpu else "off")

    @property
    def kernel_threads(self) -> int:
        """What a kernel module's ``set_threads`` is told: 1 when a partition already runs per core,
        else 0 (its own default: every core)."""
        return 1 if self.pooled else 0

    @property
    def cpu_kernel(self) -> str:
        """The CPU kind: what runs where no GPU kind can."""
        return self.kernels[-1]

    @property
    def builds(self) -> tuple[str, ...]:
        """What install (and a local run) prepares for these kinds: ``"cython"``, ``"warm"``."""
        return tuple(dict.fromkeys(kind(name).build for name in self.kernels if kind(name).build))
