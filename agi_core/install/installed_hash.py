"""The agi_core code hash of the install a process runs from: what a joining worker says about itself.

A worker joins a run only with the code the manager runs (issue 24, "environment drift"). Package
versions alone do not show it: a re-built wheel keeps its version. The install writes the code hash
it installed into the venv's fingerprint (`host.FINGERPRINT_FILE`, ``agi_hash``); a process that
runs agi_core from a source tree (this machine's workers, a shared checkout) has the hash of that
tree (`code_hash.agi_code_hash`). The fingerprint counts only when agi_core is imported from that
venv: a Slurm job runs ``python -m distributed.cli.dask_worker`` in the folder it was submitted
from and with its environment, so a checkout there or on ``PYTHONPATH`` shadows the venv's
agi_core, and the worker runs that code whatever the venv holds. Runs on workers
(``client.run``), so it imports nothing of the installer.

The answer is the one a process gave first, kept for its life: what it says is the code it has
loaded, not what lies on disk now. A worker that loaded its code before its venv was rebuilt (a
shared Slurm venv that another run, or `agi install`, changed under a warm cluster) still runs
the old modules; read afresh, the fingerprint would let it in with them. The join check asks
before any partition runs, so the first answer is that of the code the worker runs; a worker
restarted by its nanny is a new process and reads the rebuilt install.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

from ..base.errors import AgiError

__all__ = ["FINGERPRINT_FILE", "installed_agi_hash"]

#: the install fingerprint in each venv that `agi install` builds (code hashes, lock, Python, modes)
FINGERPRINT_FILE = ".agi-install.json"


@functools.cache  # the code this process loaded (see the module's docstring), not the install on disk now
def installed_agi_hash() -> str | None:
    """This process's agi_core code hash: its venv's fingerprint, else its source tree's; None
    when it has neither (agi_core installed by other means: only package versions can be compared)."""
    try:
        recorded = json.loads((Path(sys.prefix) / FINGERPRINT_FILE).read_text()).get("agi_hash") if _from_prefix() else None
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded:
        return str(recorded)
    from .code_hash import agi_code_hash

    try:
        return agi_code_hash()
    except (AgiError, OSError):
        return None


def _from_prefix() -> bool:
    """Whether agi_core is imported from this process's venv (``sys.prefix``), whose fingerprint
    then says its code; paths as Python found them (a venv reached through a link stays under its prefix)."""
    import agi_core

    prefix = os.path.abspath(sys.prefix).rstrip(os.sep) + os.sep
    return os.path.abspath(str(agi_core.__file__)).startswith(prefix)
