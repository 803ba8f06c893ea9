"""Pytest plugin: the multi-host rig (fake SSH hosts on this machine) as fixtures.

``rig``: one rig of 3 hosts for the whole session (bring-up is well under a second, but hosts
restart in 0.1 s, so one per session is plenty). ``rig_hosts``: the same rig, reset to a clean
running state before each test. Tests that use either are marked ``rig`` (``-m "not rig"`` skips
them); where the machine cannot run a rig they skip with `rig_available()`'s reason.
"""

from __future__ import annotations

import atexit
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from agi_testkit.rig import Rig, rig_available, up_free_rig

RIG_HOSTS = 3


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rig: needs the multi-host rig (root + network namespaces + sshd)")


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection looks at the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the rig, so ``-m rig`` / ``-m "not rig"`` select them."""
    for item in items:
        if {"rig", "rig_hosts"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.rig)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the rig is up.

    By default SIGTERM ends Python without running finally blocks or atexit; as an interrupt,
    pytest stops the session and tears the fixtures down. Only in the main thread, only if nobody
    else installed a handler, and the old handler comes back afterwards.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def running_rig(n: int) -> Iterator[Rig]:
    """A rig of ``n`` hosts in a free slot, torn down on exit, on error, on interrupt and at exit.

    If this process is SIGKILLed nothing here runs; the next `up` of that slot sweeps the leftovers.
    """
    rig = up_free_rig(n)
    teardown: Callable[[], None] = rig.down
    atexit.register(teardown)
    try:
        yield rig
    finally:
        try:
            rig.down()
        finally:
            atexit.unregister(teardown)


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    """Three fake SSH hosts (h1..h3) for the session; skips where the machine cannot run them."""
    reason = rig_available()
    if reason:
        pytest.skip(reason)
    with _sigterm_as_interrupt(), running_rig(RIG_HOSTS) as the_rig:
        yield the_rig


@pytest.fixture
def rig_hosts(rig: Rig) -> Rig:
    """The session rig, reset first: every host running, every link up, no stray processes."""
    rig.reset()
    return rig
