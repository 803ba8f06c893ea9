"""Detached processes on hosts: started with ``setsid nohup``, found again by PID, stopped by group.

Each process runs in its own session (its PID is its process group), so it survives the SSH
connection and this process, and stopping its group stops its children too. Hosts are reached
over SSH, or through a local shell for this machine; at most ``fan_out`` hosts at a time, so
hundreds of hosts stay manageable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ..settings import SshSettings
from ..ssh import HostSession, SshError, Tether, open_session, shell_path
from .backend import ProcessRecord

__all__ = ["DetachedProcesses", "stop_groups"]

#: seconds stopped processes get between SIGTERM and SIGKILL (a Dask worker closes in a few tens of ms)
TERM_GRACE = 2.0


def running(pids: Iterable[int]) -> str:
    """A shell test, true while a process of the groups ``pids`` still runs.

    A zombie does not count: it has exited and freed its ports and memory, and only waits for
    init to reap it, which some inits (a container's, a VM's) do seconds later; ``kill -0``
    would wait for that too."""
    groups = " ".join(str(pid) for pid in pids)
    return (f"ps -e -o pgid=,stat= | awk 'BEGIN {{ n = split(\"{groups}\", g, \" \"); for (i = 1; i <= n; i++) want[g[i]] }} "
            "($1 in want) && $2 !~ /^Z/ { found = 1 } END { exit !found }'")


def stop_groups(pids: Iterable[int], *, grace: float = TERM_GRACE) -> str:
    """The shell command that stops the process groups ``pids``: SIGTERM, then as soon as none
    runs, done; SIGKILL for what is left after ``grace`` s. Returns at once when none runs any
    more (nothing to signal), with no fixed sleep: the close costs what the processes take."""
    pids = list(pids)
    groups = " ".join(f"-{pid}" for pid in pids)
    steps = max(1, round(grace / 0.02))
    return (f"kill -TERM -- {groups} 2>/dev/null || exit 0; i=0; while [ $i -lt {steps} ]; do {running(pids)} || exit 0; "
            f"sleep 0.02; i=$((i + 1)); done; kill -KILL -- {groups} 2>/dev/null; true")


class DetachedProcesses:
    """Sessions to hosts, and the detached processes started (or found) through them."""

    def __init__(self, ssh: SshSettings, fan_out: int, processes: Iterable[ProcessRecord] = ()) -> None:
        self.ssh = ssh
        self.processes: list[ProcessRecord] = list(processes)
        self._sessions: dict[str, HostSession] = {}
        self._fan_out = asyncio.Semaphore(fan_out)
        self._tethers: list[tuple[str, Tether]] = []  # (host, its tether)

    async def session(self, host: str) -> HostSession:
        """The (cached) session to ``host``, a worker-map key; raises `SshError` naming the host."""
        if host not in self._sessions:
            async with self._fan_out:
                if host not in self._sessions:
                    self._sessions[host] = await open_session(host, self.ssh)
        return self._sessions[host]

    async def launch(self, host: str, role: str, name: str, command: str, *, log: str, env: str = "") -> ProcessRecord:
        """Start ``command`` detached on ``host``, its output in ``log``; returns its record."""
        session = await self.session(host)
        folder = log.rsplit("/", 1)[0]
        # `cd … || exit` and `env VAR=…` avoid the two traps of backgrounding over SSH (see test-rig.md)
        script = (f"mkdir -p {shell_path(folder)} && cd {shell_path(folder)} || exit 1; "
                  f"setsid nohup env {env} {command} > {shell_path(log)} 2>&1 < /dev/null & echo $!")
        async with self._fan_out:
            result = await session.run(script, what=f"starting the {role} {name}", timeout=30)
        process = ProcessRecord(host, role, name, int(result.stdout.strip().splitlines()[-1]), log)
        self.processes.append(process)
        return process

    async def _answers(self, session: HostSession) -> bool:
        """Whether the host answers a no-op within ``[cluster.ssh] connect_timeout``: an open
        connection to a host whose link was cut takes commands and never answers, and stopping
        its processes would wait the stop's whole 30 s (then 10 s per tether) for nothing."""
        try:
            return (await session.run("true", check=False, timeout=self.ssh.connect_timeout)).ok
        except Exception:  # noqa: BLE001 - timed out, or the connection is gone
            return False

    async def alive(self, process: ProcessRecord) -> bool:
        session = await self.session(process.host)
        return (await session.run(f"kill -0 {process.pid}", check=False, timeout=10)).ok

    async def tail(self, process: ProcessRecord, lines: int = 15) -> str:
        """The end of the process's log, or why it cannot be read."""
        try:
            session = await self.session(process.host)
            return (await session.run(f"tail -n {lines} {shell_path(process.log)}", check=False, timeout=10)).stdout
        except SshError as exc:
            return f"(cannot read the log: {exc.message})"

    async def tether_all(self, *, cleanup: str = "", hosts: Iterable[str] | None = None) -> None:
        """Tie every process started so far to this one: on each host, a watch that stops them
        (SIGTERM, then SIGKILL) when this process lets go of it, or dies, even by SIGKILL (its
        SSH connection, or its pipe, closes). Not for warm clusters, which are meant to outlive us.
        ``cleanup``: a shell command the watch runs first (deleting the cluster's files).
        ``hosts``: only the processes on these (a host that came back after the others were tied)."""
        first = f"{cleanup}; " if cleanup else ""
        only = None if hosts is None else set(hosts)
        by_host: dict[str, list[int]] = {}
        for process in self.processes:
            if only is None or process.host in only:
                by_host.setdefault(process.host, []).append(process.pid)
        for host, pids in by_host.items():
            session = await self.session(host)
            # released by `stop_all` once the processes are stopped: it then finds nothing to signal and ends at once
            self._tethers.append((host, await session.tether(f"cat > /dev/null; {first}{stop_groups(pids, grace=3.0)}")))

    async def stop_all(self, *, cleanup: str = "") -> None:
        """Stop every process by its group, host by host: SIGTERM, then SIGKILL for what is left
        after `TERM_GRACE` s (`stop_groups`: done as soon as none runs); then close the sessions. Hosts that cannot be reached are skipped (they took their
        processes with them, or will be cleaned up when they return). ``cleanup``: a shell
        command run first on each host (deleting the cluster's files), in the same round trip."""
        by_host: dict[str, list[int]] = {}
        for process in self.processes:
            by_host.setdefault(process.host, []).append(process.pid)
        self.processes = []

        unreachable: set[str] = set()

        async def stop(host: str, pids: list[int]) -> None:
            try:
                session = await self.session(host)
                if not await self._answers(session):
                    unreachable.add(host)
                    return
                first = f"{cleanup}; " if cleanup else ""
                await session.run(f"{first}{stop_groups(pids)}", check=False, timeout=30)
            except Exception:  # noqa: BLE001 - a host that is gone took its processes with it
                unreachable.add(host)

        await asyncio.gather(*(stop(host, pids) for host, pids in by_host.items()))
        tethers, self._tethers = self._tethers, []
        # a host that does not answer would hold each release for its whole timeout; closing the
        # session below lets go of its tether too (the watch stops the processes if it ever hears)
        await asyncio.gather(*(tether.release() for host, tether in tethers if host not in unreachable))
        sessions, self._sessions = self._sessions, {}
        await asyncio.gather(*(session.close() for session in sessions.values()), return_exceptions=True)
