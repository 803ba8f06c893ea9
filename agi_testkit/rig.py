"""Fake SSH hosts on this machine, for real multi-host tests (DESIGN.md §12).

Each host is a network namespace with its own IPv4 address on a private bridge, plus its own
hostname, ``/root`` (its home) and process table (UTS, mount and PID namespaces from ``unshare``),
running a real OpenSSH server with a throw-away host key. The hosts have no default route: they
reach each other and the bridge address (``rigctl``), nothing else.

    with Rig(prefix="demo", subnet="10.231.7.0/24").up(3) as rig:
        h1 = rig.hosts[0]          # h1 = 10.231.7.11, h2 = .12, ...
        h1.crash(); h1.restart()   # power-cut and reboot (same key, home and IP)
        h1.cut_link(); h1.restore_link()

Connect as root with ``rig.client_key`` and check host keys against ``rig.known_hosts`` (names and
IPs of every host). The root namespace cannot resolve h1..hN: connect by IP.

Needs root, iproute2, util-linux (``unshare``, ``nsenter``), procps (``sysctl``) and openssh-server;
`rig_available()` says why not. ``python -m agi_testkit.rig_cli --help`` (``scripts/rig``) drives a manual rig.
The recipe, timings and pitfalls behind this module are in ../shared/reference/test-rig.md.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

__all__ = [
    "MANUAL_PREFIX",
    "MANUAL_STATE_DIR",
    "MANUAL_SUBNET",
    "Rig",
    "RigBusy",
    "RigError",
    "RigHost",
    "rig_available",
    "up_free_rig",
]

SSHD = "/usr/sbin/sshd"
TOOLS = ("ip", "unshare", "nsenter", "ssh-keygen", "sysctl")
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # what sshd gives a session
HOST_IP_OFFSET = 10  # host hN gets subnet address 10+N (h1 = .11), as in the reference recipe
IFNAME_MAX = 15  # Linux interface names: 15 characters
PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,9}")
MANUAL_PREFIX = "agim"
MANUAL_SUBNET = "10.231.0.0/24"
MANUAL_STATE_DIR = Path("/tmp/agi-rig-manual")
TEST_PREFIX = "agit"
TEST_FIRST_SUBNET = "10.231.100.0/24"
POLL_S = 0.02

SSHD_CONFIG = """\
Port 22
ListenAddress {ip}
HostKey {host_key}
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp internal-sftp
PrintMotd no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
LogLevel INFO
"""

# The host's "init": hostname, its own /root and /etc/hosts, then sshd as PID 1 of the host.
# Arguments come as $0..$3 so no path ever needs shell quoting.
HOST_INIT = 'hostname "$0" && mount --bind "$1" /root && mount --bind "$2" /etc/hosts && exec {sshd} -D -e -f "$3"'


class RigError(RuntimeError):
    """The rig could not be brought up, changed or torn down; the message says which step failed."""


class RigBusy(RigError):
    """Another live process owns a rig with this prefix."""


# ---------------------------------------------------------------- small system helpers


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a short system command; on failure raise `RigError` with its stderr (the useful part)."""
    proc = subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RigError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _namespaces() -> list[str]:
    """Names of all network namespaces (``ip netns list`` prints "name (id: N)")."""
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _links() -> list[str]:
    """Names of all links in the root namespace (``veth@ifN`` shortened to ``veth``)."""
    out = _run(["ip", "-o", "link", "show"]).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _netns_pids(namespace: str) -> list[int]:
    """Root-namespace PIDs of every live process in a network namespace (none if it is gone)."""
    out = _run(["ip", "netns", "pids", namespace], check=False).stdout
    return [int(word) for word in out.split()]


def _kill(pid: int) -> None:
    """SIGKILL, ignoring a process that is already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_netns(namespace: str, timeout: float = 5.0) -> None:
    """Kill every process in the namespace and wait until the kernel lists none.

    ``ip netns del`` does not kill anything, and a process left behind keeps the namespace (and its
    address) alive without a name, so this must run, and finish, first.
    """
    deadline = time.monotonic() + timeout
    while pids := _netns_pids(namespace):
        if time.monotonic() > deadline:
            raise RigError(f"processes {pids} in namespace {namespace} survive SIGKILL")
        for pid in pids:
            _kill(pid)
        time.sleep(POLL_S)


def _namespace_pid1(pids: Sequence[int]) -> int | None:
    """Which of ``pids`` is PID 1 of its own PID namespace (the host's sshd), by ``NSpid`` in /proc."""
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            ids = line.split()[1:] if line.startswith("NSpid:") else []
            if len(ids) >= 2 and ids[-1] == "1":
                return pid
    return None


def _disable_ipv6(ifname: str) -> None:
    """Turn IPv6 off on a root-namespace link before it goes up: no link-local chatter, no DAD."""
    knob = Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6")
    if knob.exists():
        knob.write_text("1\n")


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    root = str(path)
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return sorted((p for p in points if p == root or p.startswith(root + "/")), key=len, reverse=True)


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


# ---------------------------------------------------------------- availability


def rig_available() -> str | None:
    """None when a rig can run here, else the reason to skip (for ``pytest.skip``).

    Namespaces can be forbidden even for root (containers without CAP_SYS_ADMIN, seccomp), so the
    last check really creates a throw-away namespace with a veth and a PID namespace, then deletes it.
    """
    if os.geteuid() != 0:
        return "the multi-host rig needs root (network namespaces, bridges, bind mounts)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"the multi-host rig needs {', '.join(missing)} (apt-get install iproute2 util-linux procps openssh-client)"
    if not os.access(SSHD, os.X_OK):
        return f"the multi-host rig needs {SSHD} (apt-get install openssh-server)"
    return _probe_namespaces()


def _probe_namespaces() -> str | None:
    """Create and delete a namespace, a veth into it and a PID namespace inside it."""
    name = f"agiprobe{os.getpid() % 100000}"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name],
        ["ip", "netns", "exec", name, "unshare", "--uts", "--mount", "--pid", "--fork", "--mount-proc", "true"],
    ]
    try:
        for step in steps:
            proc = _run(step, check=False, timeout=10)
            if proc.returncode != 0:
                return f"network namespaces are not permitted here: `{' '.join(step)}`: {proc.stderr.strip()}"
        return None
    finally:
        _run(["ip", "link", "del", name], check=False)
        _run(["ip", "netns", "del", name], check=False)


# ---------------------------------------------------------------- one host


@dataclass
class RigHost:
    """One fake host: its network namespace, address, files and running "init" (unshare → sshd).

    ``dir`` holds what a real host would keep on disk: host key, sshd config, home, log.
    """

    name: str
    ip: str
    namespace: str
    veth: str  # root-namespace end of the host's "cable" (on the bridge)
    dir: Path
    home: Path
    hosts_file: Path  # the /etc/hosts the host sees
    host_key_pub: str  # "ssh-ed25519 AAAA...", as in known_hosts
    _init: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def init_pid(self) -> int | None:
        """Root-namespace PID of the host's unshare process, recorded so a later CLI call finds it."""
        try:
            return int((self.dir / "init.pid").read_text())
        except (OSError, ValueError):
            return None

    # -- state

    def pids(self) -> list[int]:
        """Root-namespace PIDs of every process on this host (``ip netns pids``)."""
        return _netns_pids(self.namespace)

    def sshd_pid(self) -> int | None:
        """Root-namespace PID of the host's PID 1 (its sshd), None when the host is down."""
        return _namespace_pid1(self.pids())

    def is_running(self) -> bool:
        return self.sshd_pid() is not None

    def link_is_up(self) -> bool:
        flags = Path(f"/sys/class/net/{self.veth}/flags").read_text()
        return bool(int(flags, 16) & 0x1)  # IFF_UP

    # -- life cycle

    def start(self) -> None:
        """Start the host's init without waiting for sshd (see `wait_ssh`).

        ``ip netns exec`` and ``unshare`` both exec, so the child's PID is unshare's; with
        ``--kill-child`` its death SIGKILLs the host's PID 1 and the kernel then kills the whole PID
        namespace. A new session keeps a terminal's Ctrl-C away from the hosts.
        """
        init = HOST_INIT.format(sshd=SSHD)
        argv = ["ip", "netns", "exec", self.namespace,
                "unshare", "--uts", "--mount", "--pid", "--fork", "--kill-child=KILL", "--mount-proc",
                "/bin/sh", "-c", init, self.name, str(self.home), str(self.hosts_file), str(self.sshd_config)]
        with self.log.open("ab") as log:
            self._init = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        (self.dir / "init.pid").write_text(f"{self._init.pid}\n")

    def wait_ssh(self, timeout: float = 10.0) -> None:
        """Wait until TCP port 22 accepts; raise with the tail of sshd's log if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.ip, 22), timeout=0.5):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
                    raise RigError(f"{self.name} ({self.ip}): sshd does not accept after {timeout} s: {exc}\n{tail}") from exc
            time.sleep(0.05)

    def crash(self, timeout: float = 5.0) -> None:
        """Power-cut: SIGKILL the host's init, so every process on it dies; returns when all are gone.

        The namespace, address and files stay, so clients now get "connection refused" at once.
        """
        pid = self.init_pid
        if pid is not None and pid in self.pids():  # never kill a recycled PID that is not ours
            _kill(pid)
        self._reap()
        _kill_netns(self.namespace, timeout)

    def restart(self, timeout: float = 10.0) -> None:
        """Reboot: crash if needed, then start sshd again with the same key, home and IP."""
        self.crash()
        self.start()
        self.wait_ssh(timeout)

    def _reap(self) -> None:
        """Collect our unshare child's exit status so it does not linger as a zombie."""
        if self._init is not None:
            try:
                self._init.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self._init = None

    # -- faults and checks

    def cut_link(self) -> None:
        """Unplug the cable (root end of the veth down): processes live on, packets are dropped."""
        _run(["ip", "link", "set", self.veth, "down"])

    def restore_link(self, wait: bool = True) -> None:
        """Plug the cable back; with ``wait``, return once sshd (if running) is reachable again."""
        _run(["ip", "link", "set", self.veth, "up"])
        if wait and self.is_running():
            self.wait_ssh()

    def kill_strays(self, timeout: float = 5.0) -> list[int]:
        """Kill every process on the host except its init and sshd; return the PIDs killed."""
        keep = {self.init_pid, self.sshd_pid()}
        strays = [pid for pid in self.pids() if pid not in keep]
        for pid in strays:
            _kill(pid)
        deadline = time.monotonic() + timeout
        while set(strays) & set(self.pids()):
            if time.monotonic() > deadline:
                raise RigError(f"{self.name}: processes survive SIGKILL: {sorted(set(strays) & set(self.pids()))}")
            time.sleep(POLL_S)
        return strays

    def run(self, cmd: str | Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a command on the host (all its namespaces, via nsenter) for test assertions; never raises on exit status.

        A string goes through ``/bin/sh -c``. HOME and PATH are what an SSH session there gets.
        """
        pid1 = self.sshd_pid()
        if pid1 is None:
            raise RigError(f"{self.name} is not running (crashed?): restart() it first")
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        full = ["nsenter", f"--target={pid1}", "--net", "--uts", "--mount", "--pid", "--wd=/root", "--", *argv]
        env = {"HOME": "/root", "PATH": HOST_PATH, "LANG": "C.UTF-8"}
        return subprocess.run(full, check=False, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)

    def reset_home(self, authorized_keys: str, wipe: bool = False) -> None:
        """Put the client key back as the only authorized key; with ``wipe``, empty the home first."""
        if wipe:
            for child in self.home.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(ssh_dir / "authorized_keys", authorized_keys)


# ---------------------------------------------------------------- the rig


class Rig:
    """N fake hosts on a private bridge; `up` brings them up, `down` always leaves nothing.

    Everything the rig creates is named ``{prefix}-...`` (namespaces, links, bridge by default), so a
    rig with another prefix and subnet (a test session beside a manual rig) is never touched. Only
    one live process may own a prefix: `up` takes an abstract-socket lock (released by the kernel
    when the owner dies, no file left), so `up` can safely sweep the leftovers of a crashed owner.
    """

    def __init__(self, prefix: str = MANUAL_PREFIX, subnet: str = MANUAL_SUBNET, *,
                 bridge: str | None = None, state_dir: Path | str | None = None) -> None:
        if not PREFIX_RE.fullmatch(prefix):
            raise RigError(f"rig prefix {prefix!r}: use 1-10 lowercase letters/digits, starting with a letter")
        self.prefix = prefix
        self.subnet = ipaddress.IPv4Network(subnet)
        self.bridge = bridge or f"{prefix}-br"
        if len(self.bridge) > IFNAME_MAX:
            raise RigError(f"bridge name {self.bridge!r} is longer than {IFNAME_MAX} characters")
        self._state_dir = Path(state_dir or f"/tmp/agi-rig-{prefix}").absolute()
        if self._state_dir in (Path("/"), Path("/tmp"), Path("/root"), Path.home()):
            raise RigError(f"state dir {self._state_dir} would be deleted by down(): pick a dedicated one")
        self._hosts: list[RigHost] = []
        self._lock: socket.socket | None = None

    # -- properties

    @property
    def hosts(self) -> list[RigHost]:
        return list(self._hosts)

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def client_key(self) -> Path:
        """Private key that every host accepts for root (``.pub`` beside it)."""
        return self._state_dir / "client_key"

    @property
    def known_hosts(self) -> Path:
        """known_hosts with every host by name and IP: connect with strict host-key checking."""
        return self._state_dir / "known_hosts"

    @property
    def bridge_ip(self) -> str:
        """The root namespace's address on the bridge ("rigctl" inside the hosts)."""
        return str(self.subnet.network_address + 1)

    def host(self, name: str) -> RigHost:
        for host in self._hosts:
            if host.name == name:
                return host
        raise RigError(f"no host {name!r} in this rig (hosts: {', '.join(h.name for h in self._hosts) or 'none'})")

    def __repr__(self) -> str:
        return f"Rig(prefix={self.prefix!r}, subnet='{self.subnet}', hosts={[h.name for h in self._hosts]})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- up / down / reset

    def up(self, n: int = 3, timeout: float = 10.0) -> Rig:
        """Bring up hosts h1..hN (after sweeping leftovers of a crashed rig with this prefix)."""
        if not 1 <= n <= self.subnet.num_addresses - HOST_IP_OFFSET - 2:
            raise RigError(f"{n} hosts do not fit in {self.subnet}")
        if len(f"{self.prefix}-h{n}") > IFNAME_MAX:
            raise RigError(f"prefix {self.prefix!r} is too long for {n} hosts")
        self._acquire_lock()
        try:
            self._sweep()
            self._check_subnet_free()
            self._make_state(n)
            self._make_bridge()
            self._hosts = [self._make_host(i) for i in range(1, n + 1)]
            self._write_trust_files()
            self._save()
            for host in self._hosts:
                host.start()
            for host in self._hosts:
                host.wait_ssh(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Kill every host process, delete namespaces, links and bridge, remove the state dir.

        Idempotent, and it also removes leftovers of an earlier rig with this prefix.
        """
        if self._lock is None:
            self._acquire_lock()
        try:
            for host in self._hosts:
                _crash_quietly(host)
            self._sweep()
        finally:
            self._hosts = []
            self._release_lock()

    def reset(self, wipe_homes: bool = False, timeout: float = 10.0) -> None:
        """Bring every host back to a clean running state (a per-test reset, about 0.1 s when clean).

        Links go back up, crashed hosts restart, stray processes (anything but sshd) die, and the
        trust files (known_hosts, authorized_keys) are rewritten in case a test edited them.
        """
        self._write_trust_files(wipe_homes=wipe_homes)
        for host in self._hosts:
            if not host.link_is_up():
                host.restore_link(wait=False)
            if not host.is_running():
                host.restart(timeout)
        for host in self._hosts:
            host.wait_ssh(timeout)
            # after the probe: it makes sshd fork a short-lived pre-auth child, which goes too
            host.kill_strays()

    # -- persistence (so separate CLI calls find the rig)

    @classmethod
    def load(cls, state_dir: Path | str) -> Rig:
        """The rig described by ``state_dir/rig.json`` (written by `up`), e.g. for the manual CLI."""
        path = Path(state_dir) / "rig.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RigError(f"no rig is up in {state_dir} (no rig.json)") from None
        rig = cls(data["prefix"], data["subnet"], bridge=data["bridge"], state_dir=state_dir)
        rig._hosts = [_host_from_json(item) for item in data["hosts"]]
        return rig

    def _save(self) -> None:
        hosts = [{"name": h.name, "ip": h.ip, "namespace": h.namespace, "veth": h.veth, "dir": str(h.dir),
                  "home": str(h.home), "hosts_file": str(h.hosts_file), "host_key_pub": h.host_key_pub}
                 for h in self._hosts]
        data = {"prefix": self.prefix, "subnet": str(self.subnet), "bridge": self.bridge, "hosts": hosts}
        (self._state_dir / "rig.json").write_text(json.dumps(data, indent=2) + "\n")

    # -- building blocks

    def _acquire_lock(self) -> None:
        """Claim the prefix with an abstract unix socket: the kernel frees it when we exit or die."""
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lock.bind(f"\0agi-rig-{self.prefix}")
        except OSError:
            lock.close()
            raise RigBusy(f"another live process owns the rig prefix {self.prefix!r}") from None
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _sweep(self) -> None:
        """Remove everything named after this prefix: processes, veths, namespaces, bridge, state, mounts."""
        ours = f"{self.prefix}-"
        namespaces = [ns for ns in _namespaces() if ns.startswith(ours)]
        for ns in namespaces:
            _kill_netns(ns)
        for link in _links():
            # delete veths before their namespace: netns teardown is asynchronous in the kernel
            if link.startswith(ours) and link != self.bridge:
                _run(["ip", "link", "del", link], check=False)
        for ns in namespaces:
            _run(["ip", "netns", "del", ns])
        if self.bridge in _links():
            _run(["ip", "link", "del", self.bridge])
        for point in _mounts_under(self._state_dir):  # the binds live in the hosts' namespaces; belt and braces
            _run(["umount", "-l", point], check=False)
        shutil.rmtree(self._state_dir, ignore_errors=True)

    def _check_subnet_free(self) -> None:
        """Refuse a subnet that another interface already uses: two bridges on it would misroute."""
        out = _run(["ip", "-o", "-4", "addr", "show"]).stdout
        for line in out.splitlines():
            words = line.split()
            ifname, addr = words[1], ipaddress.IPv4Interface(words[3])
            if addr.network.overlaps(self.subnet):
                raise RigError(f"subnet {self.subnet} is already used by {ifname} ({addr}): pick another subnet")

    def _make_state(self, n: int) -> None:
        """State dir, client key, and the /etc/hosts every host sees."""
        self._state_dir.mkdir(parents=True)
        self._state_dir.chmod(0o755)  # sshd (as root) reads homes under it; nothing secret for others but keys
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir must exist
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{self.prefix}-client", "-f", str(self.client_key)])
        lines = ["127.0.0.1 localhost", f"{self.bridge_ip} rigctl"]
        lines += [f"{self._ip(i)} h{i}" for i in range(1, n + 1)]
        (self._state_dir / "hosts").write_text("\n".join(lines) + "\n")

    def _make_bridge(self) -> None:
        _run(["ip", "link", "add", "name", self.bridge, "type", "bridge"])
        _disable_ipv6(self.bridge)
        _run(["ip", "addr", "add", f"{self.bridge_ip}/{self.subnet.prefixlen}", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])

    def _make_host(self, i: int) -> RigHost:
        """Files (host key, sshd config, home) and network (namespace, veth on the bridge) of host i."""
        name = f"h{i}"
        hdir = self._state_dir / name
        (hdir / "home").mkdir(parents=True)
        key = hdir / "ssh_host_ed25519_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}-hostkey", "-f", str(key)])
        pub = " ".join(Path(f"{key}.pub").read_text().split()[:2])
        host = RigHost(name=name, ip=self._ip(i), namespace=f"{self.prefix}-{name}", veth=f"{self.prefix}-{name}",
                       dir=hdir, home=hdir / "home", hosts_file=self._state_dir / "hosts", host_key_pub=pub)
        host.sshd_config.write_text(SSHD_CONFIG.format(ip=host.ip, host_key=key))
        _run([SSHD, "-t", "-f", str(host.sshd_config)])
        self._make_host_network(host)
        return host

    def _make_host_network(self, host: RigHost) -> None:
        """Namespace with IPv6 off, veth pair (inner end eth0), address, and deliberately no default route."""
        ns = host.namespace
        _run(["ip", "netns", "add", ns])
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw",
              "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        _run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _disable_ipv6(host.veth)
        _run(["ip", "link", "set", host.veth, "master", self.bridge, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{host.ip}/{self.subnet.prefixlen}", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def _write_trust_files(self, wipe_homes: bool = False) -> None:
        """known_hosts (name and IP of every host) and each host's authorized_keys."""
        lines = [f"{h.name},{h.ip} {h.host_key_pub}\n" for h in self._hosts]
        self.known_hosts.write_text("".join(lines))
        client_pub = Path(f"{self.client_key}.pub").read_text()
        for host in self._hosts:
            host.reset_home(client_pub, wipe=wipe_homes)

    def _ip(self, i: int) -> str:
        return str(self.subnet.network_address + HOST_IP_OFFSET + i)


def _crash_quietly(host: RigHost) -> None:
    """Crash a host during teardown; a host that will not die is left to the sweep's error."""
    try:
        host.crash()
    except RigError:
        pass


def _host_from_json(item: dict[str, str]) -> RigHost:
    return RigHost(name=item["name"], ip=item["ip"], namespace=item["namespace"], veth=item["veth"],
                   dir=Path(item["dir"]), home=Path(item["home"]), hosts_file=Path(item["hosts_file"]),
                   host_key_pub=item["host_key_pub"])


def up_free_rig(n: int = 3, base: str = TEST_PREFIX, first_subnet: str = TEST_FIRST_SUBNET, slots: int = 8,
                timeout: float = 10.0) -> Rig:
    """Bring up a rig in the first slot no live process owns: prefix ``{base}{k}``, the k-th /24 after
    ``first_subnet``. Lets two test sessions on one machine run side by side."""
    first = ipaddress.IPv4Network(first_subnet)
    for k in range(slots):
        subnet = ipaddress.IPv4Network((int(first.network_address) + k * first.num_addresses, first.prefixlen))
        try:
            return Rig(f"{base}{k}", str(subnet)).up(n, timeout)
        except RigBusy:
            continue
    raise RigBusy(f"all {slots} rig slots {base}0..{base}{slots - 1} are owned by live processes")
