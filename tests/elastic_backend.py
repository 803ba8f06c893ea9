"""A test backend whose workers come late, never, or leave: the embedded cluster of real Dask
worker processes (`InProcessCluster`), but the slots named in ``[cluster.elastictest]`` are not
started with the others.

- ``late = {slot = "FILE"}``: that slot's worker (a real Nanny + worker process) starts when FILE
  exists, so the test, not a timer, decides when it joins.
- ``never = ["slot"]``: that slot's worker never starts (its "report" says so).
- ``leave = {slot = "FILE"}``: that slot's worker is closed (its nanny too) when FILE exists.
- ``drift = {slot = "DIR"}``: that slot's worker (late ones only) runs "from the venv" DIR
  (`tests/drift_preload.py`), whose ``.agi-install.json`` says its agi_core code hash; the
  backend's `reinstall` writes the manager's hash there, as `agi install` would (once FILE
  exists, with ``reinstall_gate = "FILE"``: the test decides how long the install takes).
- ``lifetime = {slot = SECONDS}``: that slot's worker retires after SECONDS (Dask's ``--lifetime``,
  no restart), as a Slurm job's before its walltime (the workers started with the cluster share
  one lifetime: the largest given for them); ``drain = SECONDS``: the run
  drains such workers that long before (`ClusterBackend.drain_window`); ``replace = "FILE"``: the
  backend's `retiring` creates FILE (the gate of a late worker: the "replacement job").

Registered for a test with `register` (the built-in table of backends, as an installed plugin would be).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import dask
from pydantic import BaseModel, ConfigDict, Field

from agi_core.base.events import EventSink, ignore
from agi_core.base.lifeline import MANAGER_PID_ENV, PRELOAD
from agi_core.cluster.inprocess import InProcessCluster

NAME = "elastictest"
DRIFT_PRELOAD = str(Path(__file__).with_name("drift_preload.py"))


class ElasticTestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    late: dict[str, str] = Field(default_factory=dict)
    never: list[str] = Field(default_factory=list)
    leave: dict[str, str] = Field(default_factory=dict)
    drift: dict[str, str] = Field(default_factory=dict)
    lifetime: dict[str, float] = Field(default_factory=dict)
    drain: float | None = None
    replace: str = ""
    reinstall_gate: str = ""


class ElasticTestCluster(InProcessCluster):
    Options = ElasticTestOptions

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._late: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.reinstalls: list[str] = []
        self.retiring_workers: list[str] = []

    async def launch(self, emit: EventSink = ignore) -> None:
        options = self.options
        held = set(options.late) | set(options.never)
        full = self.spec
        self.spec = dataclasses.replace(full, workers=tuple(w for w in full.workers if w.slot not in held))
        lifetimes = [options.lifetime[w.slot] for w in self.spec.workers if w.slot in options.lifetime]
        lifetime = {"distributed.worker.lifetime.duration": f"{max(lifetimes):g}s",
                    "distributed.worker.lifetime.restart": False} if lifetimes else {}
        try:
            with dask.config.set(lifetime):  # the nannies pass their config to their workers
                await super().launch(emit)
        finally:
            self.spec = full
        for slot, gate in options.late.items():
            worker = next(w for w in full.workers if w.slot == slot)
            self._tasks.append(asyncio.ensure_future(self._start_when(worker, gate)))
        for slot, gate in options.leave.items():
            self._tasks.append(asyncio.ensure_future(self._leave_when(slot, gate)))

    async def _start_when(self, worker: Any, gate: str) -> None:
        from distributed import Nanny

        while not os.path.exists(gate):
            await asyncio.sleep(0.05)
        venv = self.options.drift.get(worker.slot)
        nanny = Nanny(self.address, name=worker.name, host=worker.bind_host, nthreads=worker.nthreads or 1,
                      local_directory=self.spec.dask.local_directory,
                      env={**dict(worker.env), MANAGER_PID_ENV: str(os.getpid()), **({"AGI_TEST_VENV": venv} if venv else {})},
                      preload=[*([DRIFT_PRELOAD] if venv else []), PRELOAD], silence_logs=40, dashboard=False, security=self.security(),
                      **({"lifetime": f"{lifetime:g}s", "lifetime_restart": False}
                         if (lifetime := self.options.lifetime.get(worker.slot)) else {}))
        self._late.append(nanny)
        await nanny

    async def _leave_when(self, slot: str, gate: str) -> None:
        while not os.path.exists(gate):
            await asyncio.sleep(0.05)
        cluster = self._cluster
        name = next(w.name for w in self.spec.workers if w.slot == slot)
        nanny = cluster.workers.get(name) if cluster is not None else None
        nanny = nanny or next((n for n in self._late if n.name == name), None)
        if nanny is not None:
            await nanny.close()

    def drain_window(self) -> float | None:
        return self.options.drain

    async def retiring(self, worker: str, *, work_left: bool, emit: EventSink = ignore) -> None:
        self.retiring_workers.append(worker)
        if self.options.replace and work_left:
            Path(self.options.replace).touch()

    async def missing_workers_report(self, joined: set[str]) -> str:
        never = [w.name for w in self.spec.workers if w.slot in self.options.never and w.name not in joined]
        return "\n".join(f"{name}: not started (test backend: never)" for name in never)

    async def reinstall(self, host: str, install: Any) -> bool:
        """`agi install` of a drifted worker's host, as this backend fakes it: its venv's
        fingerprint gets the manager's code hash (``reinstalls`` counts the calls)."""
        from agi_core.install.code_hash import agi_code_hash
        from agi_core.install.installed_hash import FINGERPRINT_FILE

        self.reinstalls.append(host)
        while self.options.reinstall_gate and not os.path.exists(self.options.reinstall_gate):
            await asyncio.sleep(0.05)
        for venv in self.options.drift.values():
            (Path(venv) / FINGERPRINT_FILE).write_text(json.dumps({"agi_hash": agi_code_hash()}))
        return True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for nanny in self._late:
            with contextlib.suppress(Exception):
                await nanny.close()
        self._late = []
        await super().close()


def register(monkeypatch: Any) -> None:
    """Make ``[cluster] backend = "elastictest"`` known for this test."""
    from agi_core.settings import backend_plugins

    monkeypatch.setitem(backend_plugins.BUILTIN_BACKENDS, NAME, {"class": f"{__name__}:ElasticTestCluster", "err": "tests only"})
