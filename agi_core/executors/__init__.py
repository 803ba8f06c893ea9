"""Executors run a work plan's partitions and stream their outcomes back, one interface for all modes."""

from .base import NOTE_SEPARATOR, ExecutionContext, Executor, InFlight, JobSpec, Outcome
from .registry import create_executor, executor_name, known_executors

__all__ = ["NOTE_SEPARATOR", "ExecutionContext", "Executor", "InFlight", "JobSpec", "Outcome", "create_executor", "executor_name", "known_executors"]
