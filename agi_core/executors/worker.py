"""The worker side of a run: load the app once per process, then run partitions one at a time."""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Mapping
from typing import Any

from ..app import App, Partition, WorkContext
from ..env import load_app_class
from ..kernels import KernelChoice, select_kernels
from ..modes import Mode
from .base import JobSpec, Outcome

__all__ = ["PartitionRunner"]


class PartitionRunner:
    """Runs partitions of one job in the current process, catching each failure into its `Outcome`."""

    def __init__(self, job: JobSpec) -> None:
        self.job = job
        app_class = load_app_class(job.src_dir, job.module_name, job.class_name)
        self.app: App = app_class()
        self.args = app_class.Args.model_validate(dict(job.args))
        self.kernels: KernelChoice = select_kernels(job.module_name.split(".")[0], Mode(job.mode))
        self.host = socket.gethostname()
        self.worker = f"{self.host}:{os.getpid()}"
        job.out_dir.mkdir(parents=True, exist_ok=True)

    def context(self, slot: str, deps: Mapping[str, Any] | None = None) -> WorkContext:
        return WorkContext(
            args=self.args, kernels=self.kernels.module, kernel_kind=self.kernels.kind, device=self.kernels.device,
            out_dir=self.job.out_dir, log=logging.getLogger(f"agi.app.{self.job.module_name}.{slot}"), slot=slot, deps=dict(deps or {}),
        )

    def run(self, part: Partition, slot: str, deps: Mapping[str, Any] | None = None) -> Outcome:
        outcome = Outcome(part.id, slot, "ok", host=self.host, worker=self.worker, kernel=self.kernels.kind,
                          device=self.kernels.device, note=self.kernels.note)
        outcome.start = time.time()
        try:
            outcome.result = self.app.work(part, self.context(slot, deps))
        except Exception:  # noqa: BLE001 - a partition's failure is data for the record, not a crash
            outcome.status = "failed"
            outcome.error = traceback.format_exc()
        outcome.end = time.time()
        return outcome

