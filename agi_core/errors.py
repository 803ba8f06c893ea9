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


class RunError(AgiError):
    """A run that did not complete: a partition failed or the run was interrupted.

    ``result`` holds the partial `RunResult` (the results of the partitions that succeeded).
    """

    def __init__(self, message: str, *, fix: str | None = None, result: object = None) -> None:
        super().__init__(message, fix=fix)
        self.result = result
