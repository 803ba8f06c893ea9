"""A Dask worker preload for tests: the worker runs "from the venv" ``$AGI_TEST_VENV`` (its
``sys.prefix``), whose install fingerprint says which agi_core code it has (`install.installed_hash`).
It stands in for a host whose `agi install` is older than the manager's code."""

import os
import sys

if os.environ.get("AGI_TEST_VENV"):
    sys.prefix = os.environ["AGI_TEST_VENV"]
