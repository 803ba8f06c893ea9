"""An exception from the app's own `plan()` or `reduce()`, said as every other error is: what
raised, in which app and method, and the fix (the traceback only with ``-v``).

An app that finds bad input says so with ``raise AgiError(message, fix=...)`` (docs/apps.md): the
user sees ``error: APP plan(): MESSAGE`` and its ``fix:``. Any other exception is named with its
type: ``error: APP plan() raised FileNotFoundError: ...``, with a fix that points at the app's args
(where bad input comes from) and at ``-v`` for the traceback.
"""

from __future__ import annotations

import traceback

from ..base.errors import AgiError, PlanError

__all__ = ["AppCodeError", "app_failure", "plan_error", "reduce_failure"]


class AppCodeError(PlanError):
    """The app's `plan()` raised: nothing ran and nothing was recorded."""


_TRACEBACK = "`agi -v run ...` shows the traceback"


def app_failure(app: str, method: str, exc: BaseException) -> tuple[str, str]:
    """(message, fix) for ``exc`` raised by ``App.<method>()`` of ``app``: an `AgiError` is the
    app's own message and fix; any other exception is named with its type, and the fix points at
    the app's args, where bad input comes from."""
    if isinstance(exc, AgiError):
        return f"{app} {method}(): {exc.message}", exc.fix or f"correct the input {method}() names"
    detail = str(exc).strip() or "(no message)"
    message = f"{app} {method}() raised {type(exc).__name__}: {detail}"
    if isinstance(exc, OSError) and exc.filename:
        fix = (f"check the path {exc.filename}: if an arg gives it, `agi settings {app}` shows the args and "
               "`--set KEY=VALUE` changes one")
    else:
        fix = f"check the args (`agi settings {app}`; `--set KEY=VALUE` changes one), or correct {method}()"
    return message, f"{fix}; {_TRACEBACK}"


def plan_error(app: str, exc: BaseException) -> AppCodeError:
    """The error to raise (``from exc``) when ``App.plan()`` raised ``exc``: nothing ran."""
    message, fix = app_failure(app, "plan", exc)
    return AppCodeError(message, fix=fix)


def reduce_failure(app: str, exc: BaseException, run_id: str, resumable: bool) -> tuple[str, str, str]:
    """(short message, fix, the record's error: the message and the traceback) when
    ``App.reduce()`` raised ``exc`` in run ``run_id``. When the run used the cache
    (``resumable``), every partition's result is there: resuming runs reduce() again, with the
    run's own args, and computes nothing else."""
    message, fix = app_failure(app, "reduce", exc)
    if resumable:
        fix = (f"{fix.removesuffix('; ' + _TRACEBACK)}; once reduce() is corrected, `agi run {app} --resume {run_id}` "
               f"runs only reduce() again (every partition's result is cached); {_TRACEBACK}")
    return message, fix, message + "\n" + "".join(traceback.format_exception(exc))
