"""A Dask worker preload for tests: the worker runs "from the venv" ``$AGI_TEST_VENV`` (its
``sys.prefix``), whose install fingerprint says which agi_core code it has (`install.installed_hash`).
It stands in for a host whose `agi install` is older than the manager's code. The fingerprint
counts only for an agi_core imported from under the venv, so the venv gets a link to this
checkout's agi_core (``site/agi_core``), first on the path; a preload listed before any that
imports agi_core."""

import importlib.util
import os
import sys
from pathlib import Path

if os.environ.get("AGI_TEST_VENV"):
    venv = Path(os.environ["AGI_TEST_VENV"])
    link = venv / "site" / "agi_core"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            # the agi_core this worker would import (Dask runs a copy of this file, elsewhere)
            link.symlink_to(Path(importlib.util.find_spec("agi_core").origin).parent, target_is_directory=True)
        except FileExistsError:  # another worker of the same venv made it first
            pass
    for name in [name for name in sys.modules if name == "agi_core" or name.startswith("agi_core.")]:
        del sys.modules[name]  # imported again, from the venv
    sys.path.insert(0, str(link.parent))
    sys.prefix = str(venv)
