"""One run's request, plan and life cycle: `resolve` a call into a `RunRequest`, then `Runner`."""

from .planning import chosen_plan, fresh_plan
from .request import REQUEST_SCHEMA, RunRequest, resolve
from .result import RunResult
from .resuming import resume_request
from .runner import Runner

__all__ = ["REQUEST_SCHEMA", "RunRequest", "RunResult", "Runner", "chosen_plan", "fresh_plan", "resolve", "resume_request"]
