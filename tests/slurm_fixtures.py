"""Fixtures: a real single-node Slurm (`agi_testkit.slurm`) for the whole session.

``slurm``: munged, slurmctld and slurmd started once (about 2 s), ``SLURM_CONF`` pointing at it
for the session, torn down at its end (jobs cancelled, daemons stopped by PID). Where it cannot
run (not root, Debian's slurm packages missing) the tests that use it skip with the reason.
Import the fixture into a test module: ``from tests.slurm_fixtures import slurm``.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator

import pytest

from agi_testkit.slurm import SingleNodeSlurm, slurm_available

__all__ = ["slurm"]


@pytest.fixture(scope="session")
def slurm() -> Iterator[SingleNodeSlurm]:
    reason = slurm_available()
    if reason:
        pytest.skip(reason)
    with SingleNodeSlurm.up() as cluster:
        atexit.register(cluster.stop)  # also when the session is cut short
        previous = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(cluster.conf)
        try:
            yield cluster
        finally:
            if previous is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = previous
