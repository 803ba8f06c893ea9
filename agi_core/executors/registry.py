"""Executors by name, imported only when asked for (the Dask one pulls in distributed).

>>> executor_name(Mode.parse("dp")), executor_name(Mode.parse("p")), executor_name(Mode(0))
('dask', 'pool', 'sequential')
"""

from __future__ import annotations

import importlib

from ..base.errors import AgiError
from ..base.modes import Mode
from ..kernels.shape import ExecutionShape
from .base import ExecutionContext, Executor

__all__ = ["create_executor", "executor_name", "known_executors"]

#: name -> dotted path of the class (as `cluster.registry.known_backends`); a new executor is one
#: module and one line here
known_executors: dict[str, str] = {
    "sequential": "agi_core.executors.sequential.SequentialExecutor",
    "pool": "agi_core.executors.pool.PoolExecutor",
    "dask": "agi_core.executors.dask.DaskExecutor",
}


def executor_name(mode: Mode) -> str:
    """The executor a mode runs on: the cluster bit wins, then the pool bit, else sequential
    (`ExecutionShape.of`; a request has it as ``request.shape.executor``)."""
    return ExecutionShape.of(mode).executor


def create_executor(name: str, context: ExecutionContext) -> Executor:
    """A new executor of the given registry name."""
    try:
        target = known_executors[name]
    except KeyError:
        raise AgiError(f"unknown executor '{name}'", fix=f"use one of: {', '.join(known_executors)}") from None
    module_name, _, class_name = target.rpartition(".")
    cls: type[Executor] = getattr(importlib.import_module(module_name), class_name)
    return cls(context)
