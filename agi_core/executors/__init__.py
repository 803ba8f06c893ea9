"""Executors run a work plan's partitions and stream their outcomes back, one interface for all modes."""

from .base import Executor, JobSpec, Outcome
from .local import LocalExecutor

__all__ = ["Executor", "JobSpec", "LocalExecutor", "Outcome"]
