"""Where agi_core's own source tree is: what workers get a wheel of, and what the code hash reads.

Its own module, below both `artifacts` (which builds the wheel) and `code_hash` (which hashes the
tree), so that neither imports the other for it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from ..base.errors import AgiError

__all__ = ["AGI_DISTRIBUTION", "BuildError", "agi_source_dir"]

AGI_DISTRIBUTION = "agi-orchestrator"


class BuildError(AgiError):
    pass


def agi_source_dir() -> Path:
    """The source tree agi_core runs from (workers get a wheel built from it)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name") if pyproject.is_file() else None
    if name != AGI_DISTRIBUTION:
        raise BuildError(f"agi_core runs from {root}, which is not its source tree (no pyproject.toml of {AGI_DISTRIBUTION})",
                         fix="install agi_core from a source checkout (pip install -e .) to install workers")
    return root
