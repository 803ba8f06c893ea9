"""The multi-host rig itself: real sshd hosts in namespaces, reached with asyncssh and strict host keys."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agi_testkit.rig import Rig, RigHost, rig_available

asyncssh = pytest.importorskip("asyncssh")

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parent.parent
SESSION_COMMS = {"sshd", "bash", "sh", "ps"}  # what a fresh host runs while a session lists its processes


# ---------------------------------------------------------------- helpers


def _connect(rig: Rig, host: RigHost, timeout: float = 5.0, known_hosts: Path | None = None) -> Any:
    """asyncssh connection as root with the rig's client key; host keys checked strictly."""
    return asyncssh.connect(
        host.ip, username="root", client_keys=[str(rig.client_key)],
        known_hosts=str(known_hosts or rig.known_hosts),
        agent_path=None,  # ignore any ssh-agent of the person running the tests
        config=None,  # and their ~/.ssh/config
        connect_timeout=timeout,
    )


async def _run(rig: Rig, host: RigHost, command: str, timeout: float = 5.0) -> str:
    async with _connect(rig, host, timeout) as conn:
        result = await conn.run(command, check=True, timeout=30)
        return str(result.stdout)


def ssh(rig: Rig, host: RigHost, command: str, timeout: float = 5.0) -> str:
    """Run ``command`` on ``host`` over SSH; return its stdout."""
    return asyncio.run(_run(rig, host, command, timeout))


def server_key(rig: Rig, host: RigHost) -> str:
    """The host key the server presented, as "ssh-ed25519 AAAA..."."""
    async def fetch() -> str:
        async with _connect(rig, host) as conn:
            return " ".join(conn.get_server_host_key().export_public_key().decode().split()[:2])
    return asyncio.run(fetch())


def comms(output: str) -> dict[int, str]:
    """``ps -e -o pid=,comm=`` output as {pid: command}."""
    return {int(pid): comm for pid, comm in (line.split(None, 1) for line in output.strip().splitlines())}


def host_commands(host: RigHost) -> list[str]:
    """Names of the host's processes as the root namespace sees them, without the rig's own.

    sshd forks a short-lived child per connection (also for a port probe), so counting PIDs races;
    what matters is that nothing but the rig's unshare and sshd runs there.
    """
    names = []
    for pid in host.pids():
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:  # it exited meanwhile
            continue
    return sorted(name for name in names if name not in {"unshare", "sshd"})


def leftovers(rig: Rig) -> list[str]:
    """Everything of ``rig`` still on the machine: namespaces, links, addresses, processes, files."""
    found = [f"netns {ns}" for ns in _lines(["ip", "netns", "list"]) if ns.startswith(f"{rig.prefix}-")]
    found += [f"link {line.split()[0]}" for line in _lines(["ip", "-br", "link"])
              if line.startswith(f"{rig.prefix}-") or line.split()[0] == rig.bridge]
    subnet_start = str(rig.subnet.network_address).rsplit(".", 1)[0] + "."
    found += [f"address {line}" for line in _lines(["ip", "-o", "-4", "addr"]) if f" {subnet_start}" in line]
    found += [f"process {pid}: {cmd}" for pid, cmd in _cmdlines().items() if str(rig.state_dir) in cmd]
    found += [f"state dir {rig.state_dir}"] if rig.state_dir.exists() else []
    return found


def _lines(argv: list[str]) -> list[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()


def _cmdlines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


@pytest.fixture
def needs_rig() -> None:
    reason = rig_available()
    if reason:
        pytest.skip(reason)


# ---------------------------------------------------------------- one host = one machine


def test_each_host_answers_with_its_own_name_and_home(rig_hosts: Rig) -> None:
    for host in rig_hosts.hosts:
        (host.home / "whoami.txt").write_text(f"home of {host.name}\n")

    async def ask_all() -> list[str]:
        return list(await asyncio.gather(*(_run(rig_hosts, h, "hostname; cat ~/whoami.txt") for h in rig_hosts.hosts)))

    answers = asyncio.run(ask_all())
    assert [h.name for h in rig_hosts.hosts] == ["h1", "h2", "h3"]
    assert answers == [f"{h.name}\nhome of {h.name}\n" for h in rig_hosts.hosts]


def test_known_hosts_lists_each_host_by_name_and_ip(rig_hosts: Rig) -> None:
    lines = rig_hosts.known_hosts.read_text().splitlines()
    assert lines == [f"{h.name},{h.ip} {h.host_key_pub}" for h in rig_hosts.hosts]
    assert len({h.host_key_pub for h in rig_hosts.hosts}) == 3


def test_a_wrong_host_key_is_refused(rig_hosts: Rig, tmp_path: Path) -> None:
    h1, h2 = rig_hosts.hosts[:2]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{h1.name},{h1.ip} {h2.host_key_pub}\n")  # h1's address, h2's key
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        asyncio.run(_connect_and_close(rig_hosts, h1, forged))


async def _connect_and_close(rig: Rig, host: RigHost, known_hosts: Path) -> None:
    async with _connect(rig, host, known_hosts=known_hosts):
        pass


def test_hosts_have_their_own_process_tables(rig_hosts: Rig) -> None:
    h1, h2, _ = rig_hosts.hosts
    ssh(rig_hosts, h1, "setsid nohup sleep 300 > /dev/null 2>&1 < /dev/null & echo $!")

    on_h1 = comms(ssh(rig_hosts, h1, "ps -e -o pid=,comm="))
    on_h2 = comms(ssh(rig_hosts, h2, "ps -e -o pid=,comm="))
    assert on_h1[1] == on_h2[1] == "sshd"  # each host has its own PID 1
    assert "sleep" in on_h1.values()
    assert set(on_h2.values()) <= SESSION_COMMS, on_h2
    assert (host_commands(h1), host_commands(h2)) == (["sleep"], [])  # the kernel agrees, from the root namespace

    rig_hosts.reset()
    assert "sleep" not in h1.run("ps -e -o comm=").stdout
    assert host_commands(h1) == []


def test_hosts_reach_only_the_rig_subnet(rig_hosts: Rig) -> None:
    h1 = rig_hosts.hosts[0]
    routes = ssh(rig_hosts, h1, "ip route").strip().splitlines()
    assert len(routes) == 1 and routes[0].startswith(f"{rig_hosts.subnet} dev eth0 "), routes
    assert ssh(rig_hosts, h1, "ip -6 -o addr").strip() == ""  # IPv6 is off: the links stay quiet

    start = time.monotonic()
    out = ssh(rig_hosts, h1, "timeout 5 bash -c 'exec 3<>/dev/tcp/1.1.1.1/80' 2>&1; echo rc=$?")
    assert "Network is unreachable" in out and time.monotonic() - start < 2, out
    # ... while the other hosts are reachable, by name too
    assert ssh(rig_hosts, h1, "bash -c 'exec 3<>/dev/tcp/h2/22' && echo open").strip() == "open"


# ---------------------------------------------------------------- faults


def test_crash_refuses_connections_and_restart_keeps_the_host_key(rig_hosts: Rig) -> None:
    h1, h2, _ = rig_hosts.hosts
    ssh(rig_hosts, h2, "setsid nohup sleep 300 > /dev/null 2>&1 < /dev/null &")

    h2.crash()
    assert h2.pids() == [] and not h2.is_running()
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        ssh(rig_hosts, h2, "true")
    assert time.monotonic() - start < 1  # refused at once, not a timeout
    assert ssh(rig_hosts, h1, "hostname").strip() == "h1"  # the others are untouched

    h2.restart()
    assert ssh(rig_hosts, h2, "hostname; pgrep -c sleep || true").split() == ["h2", "0"]
    assert server_key(rig_hosts, h2) == h2.host_key_pub


def test_cut_link_times_out_and_restore_reconnects(rig_hosts: Rig) -> None:
    h3 = rig_hosts.hosts[2]
    h3.cut_link()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        ssh(rig_hosts, h3, "true", timeout=2)
    assert 1.5 < time.monotonic() - start < 5
    assert h3.is_running()  # an unplugged host keeps running

    h3.restore_link()
    assert ssh(rig_hosts, h3, "hostname").strip() == "h3"


def test_reset_brings_every_host_back(rig_hosts: Rig) -> None:
    h1, h2, h3 = rig_hosts.hosts
    h1.crash()
    h2.cut_link()
    h3.run("setsid nohup sleep 300 > /dev/null 2>&1 < /dev/null &")
    assert host_commands(h3) == ["sleep"]

    rig_hosts.reset()
    assert [host_commands(h) for h in rig_hosts.hosts] == [[], [], []]
    assert [ssh(rig_hosts, h, "hostname").strip() for h in rig_hosts.hosts] == ["h1", "h2", "h3"]


# ---------------------------------------------------------------- teardown


def test_down_leaves_nothing_even_after_a_crashed_owner(needs_rig: None) -> None:
    # a process brings a rig up and is then SIGKILLed: its hosts keep running, unowned
    script = ("import json, time; from agi_testkit.rig import up_free_rig; "
              "r = up_free_rig(2); print(json.dumps([r.prefix, str(r.subnet)]), flush=True); time.sleep(60)")
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert owner.stdout is not None
        prefix, subnet = json.loads(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    rig = Rig(prefix, subnet)
    assert len(leftovers(rig)) > 5

    # the next rig with that prefix sweeps them before coming up, and down() leaves nothing
    with rig.up(1):
        assert ssh(rig, rig.hosts[0], "hostname").strip() == "h1"
    assert leftovers(rig) == []
    rig.down()  # idempotent
    assert leftovers(rig) == []


def test_cli_help_explains_the_commands() -> None:
    out = subprocess.run([str(ROOT / "scripts" / "rig"), "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHON": sys.executable}, check=True).stdout
    for command in ("up", "down", "status", "crash", "restart", "cut", "restore"):
        assert f"  {command}" in out
