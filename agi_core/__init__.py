"""agi_core: run a Python app's partitions on one machine or a Dask cluster, with one call.

>>> from agi_core import AGI, AgiEnv, Mode
>>> Mode.parse("dp")
<Mode.POOL|CLUSTER: 5>

The public names are imported when first used: an app's ``from agi_core import App`` (in every
worker process) loads the app contract, not the whole orchestrator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AGI",
    "AgiEnv",
    "AgiError",
    "App",
    "AppNotFoundError",
    "Mode",
    "ModeError",
    "Partition",
    "PlanError",
    "RunError",
    "RunResult",
    "SettingsError",
    "WorkContext",
    "WorkPlan",
]

# public name -> the module that defines it
_WHERE = {
    "AGI": ".agi", "RunResult": ".run", "App": ".app", "Partition": ".app", "WorkContext": ".app", "AgiEnv": ".app.env",
    "AgiError": ".base.errors", "AppNotFoundError": ".base.errors", "ModeError": ".base.errors", "PlanError": ".base.errors",
    "RunError": ".base.errors", "SettingsError": ".base.errors", "Mode": ".base.modes", "WorkPlan": ".plan",
}

if TYPE_CHECKING:
    from .agi import AGI
    from .app import App, Partition, WorkContext
    from .app.env import AgiEnv
    from .base.errors import AgiError, AppNotFoundError, ModeError, PlanError, RunError, SettingsError
    from .base.modes import Mode
    from .plan import WorkPlan
    from .run import RunResult


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'agi_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value  # once found, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
