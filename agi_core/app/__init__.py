"""The app contract (`contract`: App, Partition, WorkContext), how an app is found and loaded (`env`:
AgiEnv) and which Python runs it on this machine (`interpreter`). ``from agi_core.app import App`` is
the contract.
"""

from .contract import (
    App,
    Partition,
    WorkContext,
)

__all__ = [
    "App",
    "Partition",
    "WorkContext",
]
