"""One error hierarchy for the whole product.

Every error carries *what* failed and *where* (file, key, host, partition) in its message, and
the *fix* separately, so the CLI can print both without a traceback.
"""

from __future__ import annotations

__all__ = [
    "AgiError",
    "AppNotFoundError",
    "ModeError",
    "PlanError",
    "RunError",
    "SettingsError",
    "ShareError",
    "Terminated",
]


class AgiError(Exception):
    """Base of every error agi_core raises on purpose.

    >>> err = AgiError("the share is missing", fix="create /srv/share")
    >>> str(err)
    'the share is missing'
    >>> err.fix
    'create /srv/share'
    """

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class ModeError(AgiError, ValueError):
    """A mode that is not an int 0-15, a `Mode` flag, or letters from ``p c d r``."""


class SettingsError(AgiError):
    """A settings file or value that cannot be read or does not validate."""


class AppNotFoundError(AgiError, LookupError):
    """An app name that matches no app folder."""


class PlanError(AgiError):
    """A work plan that cannot be built, read, or does not validate."""


class ShareError(AgiError):
    """A file on the share that could not be written or read: full (ENOSPC), read-only (EROFS),
    over quota, or not permitted. The message names the path and the errno (`share_io`)."""


class RunError(AgiError):
    """A run that did not complete: a partition failed or the run was interrupted.

    ``result`` holds the partial `RunResult` (the results of the partitions that succeeded).
    """

    def __init__(self, message: str, *, fix: str | None = None, result: object = None) -> None:
        super().__init__(message, fix=fix)
        self.result = result


class Terminated(SystemExit):
    """A run stopped by SIGTERM, after it stopped its workers and recorded ``interrupted``.

    A `SystemExit` with code 143 (128 + SIGTERM), as the signal's default would have ended the
    process, but after the cleanup: uncaught in a script, it exits 143 without a traceback;
    ``agi`` says ``terminated`` and exits 143.
    """

    def __init__(self, message: str = "terminated by SIGTERM") -> None:
        super().__init__(143)
        self.message = message
