"""agi_core: run a Python app's partitions on one machine or a Dask cluster, with one call.

>>> from agi_core import AGI, AgiEnv, Mode
>>> Mode.parse("dp")
<Mode.POOL|CLUSTER: 5>
"""

from .agi import AGI, RunResult
from .app import App, Partition, WorkContext
from .env import AgiEnv
from .errors import AgiError, AppNotFoundError, ModeError, PlanError, RunError, SettingsError
from .modes import Mode
from .plan import WorkPlan

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
