"""App settings: ``app_settings.toml`` validated by pydantic, merged with profiles and call arguments.

The public names are re-exported here from `loading` (the files) and `schema` (the models).
"""

from .loading import (
    CacheSettings,
    ClusterSettings,
    DaskSettings,
    InstallSettings,
    Settings,
    SshSettings,
    WorkerSpec,
    assignments_to_overrides,
    call_overrides,
    load_settings,
    parse_assignment,
    save_settings_values,
)

__all__ = [
    "CacheSettings",
    "ClusterSettings",
    "DaskSettings",
    "InstallSettings",
    "Settings",
    "SshSettings",
    "WorkerSpec",
    "assignments_to_overrides",
    "call_overrides",
    "load_settings",
    "parse_assignment",
    "save_settings_values",
]
