"""Stopping detached processes on the rig when one host's link is cut: the host that answers is
stopped, the one that cannot answer is given up after ``[cluster.ssh] connect_timeout``, not after
the stop's own 30 s and each tether's 10 s (what a run's close waited after a cut link)."""

from __future__ import annotations

import asyncio

import pytest

from agi_core.cluster.detached import DetachedProcesses
from agi_core.settings import SshSettings

pytestmark = pytest.mark.rig

STOP_TIMEOUT_S = 30  # the stop's own limit per host (`DetachedProcesses.stop_all`)


def test_stop_all_gives_up_a_host_whose_link_is_cut(rig_hosts, tmp_path):
    h1, h3 = rig_hosts.hosts[0], rig_hosts.hosts[2]
    ssh = SshSettings(user="root", key=str(rig_hosts.client_key), known_hosts=str(rig_hosts.known_hosts), connect_timeout=2)

    async def scenario() -> None:
        hosts = DetachedProcesses(ssh, fan_out=4)
        for host in (h1, h3):
            await hosts.launch(host.ip, "worker", "sleeper", "sleep 600", log=str(tmp_path / f"sleeper-{host.name}.log"))
        await hosts.tether_all()
        h3.cut_link()
        # before the fix: 30 s for the stop on h3, then 10 s for its tether
        await asyncio.wait_for(hosts.stop_all(), STOP_TIMEOUT_S)

    try:
        asyncio.run(scenario())
        assert h1.run("pgrep -f '[s]leep 600' || true").stdout.strip() == ""  # the host that answers: stopped
        assert h3.run("pgrep -f '[s]leep 600' || true").stdout.strip() != ""  # given up: its link is cut
    finally:
        h3.restore_link()
        h3.kill_strays()  # the sleeper it was given up with
