"""The agi_core code hash of the install a process runs from: what a joining worker says about itself.

A worker joins a run only with the code the manager runs (issue 24, "environment drift"). Package
versions alone do not show it: a re-built wheel keeps its version. The install writes the code hash
it installed into the venv's fingerprint (`host.FINGERPRINT_FILE`, ``agi_hash``); a process that
runs agi_core from a source tree (this machine's workers, a shared checkout) has the hash of that
tree (`code_hash.agi_code_hash`). Runs on workers (``client.run``), so it imports nothing of the
installer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import AgiError

__all__ = ["FINGERPRINT_FILE", "installed_agi_hash"]

#: the install fingerprint in each venv that `agi install` builds (code hashes, lock, Python, modes)
FINGERPRINT_FILE = ".agi-install.json"


def installed_agi_hash() -> str | None:
    """This process's agi_core code hash: its venv's fingerprint, else its source tree's; None
    when it has neither (agi_core installed by other means: only package versions can be compared)."""
    try:
        recorded = json.loads((Path(sys.prefix) / FINGERPRINT_FILE).read_text()).get("agi_hash")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded:
        return str(recorded)
    from .code_hash import agi_code_hash

    try:
        return agi_code_hash()
    except (AgiError, OSError):
        return None
