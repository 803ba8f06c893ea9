"""A real single-node Slurm on this machine, for the Slurm backend's tests (DESIGN.md §12).

Debian's packages (``munge``, ``slurmctld``, ``slurmd``, ``slurm-client``), run as root from a
temporary folder: munged with its own key and socket, slurmctld and slurmd in the foreground,
each started (and stopped) by its PID; no systemd, nothing in /etc touched. The ``slurm.conf`` is
minimal: ``proctrack/linuxproc``, ``task/none``, ``select/cons_tres``, no accounting, one node
(this hostname) whose CPUs, ``RealMemory`` and GPUs (``Gres=gpu:2``, plain files as devices) are declared (``config_overrides``: a small machine
can still run a few one-core jobs at once), and one partition, ``debug``. Client commands find it
through ``SLURM_CONF``.

    with SingleNodeSlurm.up() as slurm:   # about 2 s
        os.environ["SLURM_CONF"] = str(slurm.conf)   # `slurm.env()` has it
        subprocess.run(["sbatch", "--wrap", "hostname"], env={**os.environ, **slurm.env()})

`slurm_available()` says why it cannot run here (not root, packages missing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PARTITION", "SingleNodeSlurm", "slurm_available"]

DAEMONS = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd"}
CLIENTS = {"sbatch": "slurm-client", "squeue": "slurm-client", "sinfo": "slurm-client", "scancel": "slurm-client"}
PARTITION = "debug"


def _find(tool: str) -> str | None:
    return shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.access(p, os.X_OK)), None)


def slurm_available() -> str | None:
    """None when a single-node Slurm can run here, else the reason (for ``pytest.skip``)."""
    if os.geteuid() != 0:
        return "a single-node Slurm needs root (munged, slurmctld and slurmd run as root here)"
    missing = sorted({package for tool, package in {**DAEMONS, **CLIENTS}.items() if _find(tool) is None})
    if missing:
        return f"a single-node Slurm needs Debian's packages {', '.join(missing)} (apt-get install slurmctld slurmd slurm-client munge)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


@dataclass
class SingleNodeSlurm:
    """munged, slurmctld and slurmd of one node, all in ``folder``."""

    folder: Path
    node: str = field(default_factory=socket.gethostname)
    cpus: int = 8
    memory_mb: int = 8192
    gpus: int = 2  # declared GPUs (gres), with no device behind them: jobs may ask --gres=gpu:N
    pids: dict[str, int] = field(default_factory=dict)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    def env(self) -> dict[str, str]:
        """What Slurm's client commands need to find this Slurm."""
        return {"SLURM_CONF": str(self.conf)}

    @classmethod
    @contextlib.contextmanager
    def up(cls, *, timeout: float = 60.0) -> Iterator[SingleNodeSlurm]:
        """A running Slurm whose node is idle, torn down on exit (jobs cancelled, daemons stopped
        by PID, the folder deleted)."""
        slurm = cls(Path(tempfile.mkdtemp(prefix="agi-slurm-")))
        try:
            slurm.start(timeout=timeout)
            yield slurm
        finally:
            slurm.stop()
            shutil.rmtree(slurm.folder, ignore_errors=True)

    # -- bring-up -------------------------------------------------------------------------------

    def write_config(self) -> None:
        f = self.folder
        for sub in ("state", "spool", "log"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        munge = f / "munge"
        munge.mkdir(exist_ok=True)
        munge.chmod(0o755)  # clients must reach the socket
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        # GPUs without a GPU: Slurm only stat()s a gres's device files (task/none confines nothing),
        # so plain files stand in for /dev/nvidia*: jobs may ask --gres=gpu:N, N up to `gpus`
        devices = f / "dev"
        devices.mkdir(exist_ok=True)
        for index in range(self.gpus):
            (devices / f"nvidia{index}").touch()
        (f / "gres.conf").write_text(f"AutoDetect=off\nNodeName={self.node} Name=gpu File={devices}/nvidia[0-{self.gpus - 1}]\n")
        self.conf.write_text("\n".join([
            "ClusterName=agitest",
            f"SlurmctldHost={self.node}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge / 'munge.sock'}",
            f"StateSaveLocation={f / 'state'}", f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}", f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'log/slurmctld.log'}", f"SlurmdLogFile={f / 'log/slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none", "MpiDefault=none",
            # the node's declared CPUs and memory count, not what slurmd finds (a 2-core test machine)
            "SlurmdParameters=config_overrides", "ReturnToService=2",
            "KillWait=2", "MinJobAge=30", "InactiveLimit=0", "SlurmctldTimeout=30", "SlurmdTimeout=60",
            "GresTypes=gpu",
            f"NodeName={self.node} CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:{self.gpus} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.folder / "log" / f"{name}.out").open("wb")
        # its own session: a Ctrl-C of the tests does not reach it; stop() does, by PID
        process = subprocess.Popen([_find(name) or name, *args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **self.env()}, start_new_session=True)
        log.close()
        self._processes.append(process)
        self.pids[name] = process.pid

    def start(self, *, timeout: float = 60.0) -> None:
        self.write_config()
        munge = self.folder / "munge"
        self._spawn("munged", "-F", "--force", f"--socket={munge / 'munge.sock'}", f"--key-file={munge / 'munge.key'}",
                    f"--pid-file={munge / 'munged.pid'}", f"--seed-file={munge / 'munged.seed'}",
                    f"--log-file={self.folder / 'log/munged.log'}")
        self._wait(lambda: (munge / "munge.sock").exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._spawn("slurmd", "-D", "-N", self.node, "-f", str(self.conf))
        self._wait(self._node_idle, timeout, "the node did not become idle")

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], check=False, capture_output=True, text=True, env={**os.environ, **self.env()}, timeout=30)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            dead = [p for p in self._processes if p.poll() is not None]
            if dead:
                break
            time.sleep(0.2)
        raise RuntimeError(f"single-node Slurm: {what}:\n{self.logs()}")

    def logs(self) -> str:
        """The end of every daemon's log (for failures)."""
        parts = []
        for path in sorted((self.folder / "log").glob("*")):
            lines = path.read_text(errors="replace").splitlines()[-10:]
            parts.append(f"--- {path.name}:\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- what tests ask -------------------------------------------------------------------------

    def queue(self) -> list[str]:
        """Every job Slurm still lists (``JOBID STATE``), ours or not."""
        out = subprocess.run(["squeue", "-h", "-o", "%i %T"], check=False, capture_output=True, text=True, env={**os.environ, **self.env()}, timeout=30)
        return out.stdout.split("\n")[:-1] if out.returncode == 0 else [f"squeue failed: {out.stderr.strip()}"]

    # -- teardown -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged by PID (SIGTERM, then SIGKILL)."""
        if self._processes and self.conf.exists():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["scancel", "--user", "root"], check=False, env={**os.environ, **self.env()}, capture_output=True, timeout=30)
                deadline = time.monotonic() + 15
                while self.queue() and time.monotonic() < deadline:
                    time.sleep(0.3)
        for process in reversed(self._processes):  # slurmd, slurmctld, munged
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self._processes.clear()
        self.pids.clear()
