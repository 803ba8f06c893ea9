"""Which TCP connections a cluster needs: the port matrix of its settings, and the firewall
rules it implies (``agi cluster ports APP``, docs/cluster.md).

Every connection is TCP and is opened by the side named first:

- the manager (the machine running ``agi``) reaches each remote host's SSH port to install and
  start the Dask processes, and the scheduler's port to submit work;
- every worker reaches the scheduler's port;
- the scheduler, the manager and the other workers reach each worker's port (results and
  dependencies travel between workers); the scheduler reaches each nanny's port;
- a browser reaches the scheduler's dashboard port.

A backend decides its own rules (`ClusterBackend.port_rules`): those here (`host_port_rules`) are
for a scheduler and workers on the hosts the settings name; a batch backend names the nodes its
scheduler picks as a group (`COMPUTE_NODES`).

>>> from agi_core.settings import ClusterSettings
>>> cluster = ClusterSettings.model_validate({"scheduler": "10.0.0.1:8786", "workers": {"10.0.0.2": 2}})
>>> [(r.source, r.destination, r.ports) for r in port_rules(cluster) if r.ports == "8786"]
[('manager', '10.0.0.1', '8786'), ('10.0.0.2', '10.0.0.1', '8786')]
>>> firewall_rules(port_rules(cluster), manager="10.0.0.9")["10.0.0.1"][0]
'ufw allow proto tcp from 10.0.0.9 to any port 22'
>>> firewall_rules(port_rules(cluster), style="nft", manager="10.0.0.9")["10.0.0.2"][1]
'nft add rule inet filter input ip saddr 10.0.0.1 tcp dport 32768-60999 accept'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..base.hosts import HostAddress, is_local_host
from ..settings.schema import ClusterSettings

__all__ = ["ANY_PORT", "BROWSER", "COMPUTE_NODES", "MANAGER", "PortRule", "firewall_rules", "host_port_rules", "port_rules"]

#: how the rules name the machine that runs ``agi`` (``--manager ADDRESS`` puts its address there)
MANAGER = "manager"
#: the source of dashboard connections
BROWSER = "browser"
#: how the rules name the nodes a batch scheduler runs the worker jobs on
COMPUTE_NODES = "compute nodes"
#: the port range of a process that binds any free port (Linux's ephemeral range)
ANY_PORT = "32768:60999"


@dataclass(frozen=True)
class PortRule:
    """One TCP connection the cluster needs: ``source`` connects to ``destination:ports``."""

    source: str
    destination: str
    ports: str  # "22", "8786" or a range "9000:9099"
    purpose: str
    setting: str  # the key that sets ``ports``

    @property
    def any_port(self) -> bool:
        """True when the process binds any free port: the firewall must open the whole range."""
        return self.ports == ANY_PORT


def _host(text: str) -> str:
    return HostAddress.parse(text).host


def _where(text: str) -> str:
    """A host of the settings as the rules name it: `MANAGER` for this machine."""
    return MANAGER if is_local_host(text) else _host(text)


def port_rules(cluster: ClusterSettings) -> list[PortRule]:
    """The connections ``cluster``'s settings need, in the order a run makes them, as its
    backend says (`ClusterBackend.port_rules`); empty when nothing crosses a network."""
    from ..settings.backend_plugins import load_backend

    backend = load_backend(cluster.backend)
    return backend.port_rules(cluster, backend.options_of(cluster))


def host_port_rules(cluster: ClusterSettings) -> list[PortRule]:
    """The connections of a scheduler and workers on the hosts ``cluster`` names (the worker
    map, ``[cluster] scheduler``); empty when every process runs on this machine."""
    dask = cluster.dask
    worker_ports = (dask.worker_ports or ANY_PORT).replace("-", ":")
    nanny_ports = (dask.nanny_ports or ANY_PORT).replace("-", ":")
    worker_setting = "[cluster.dask] worker_ports" + ("" if dask.worker_ports else ' (unset: any free port; set e.g. "9000:9099")')
    nanny_setting = "[cluster.dask] nanny_ports" + ("" if dask.nanny_ports else ' (unset: any free port; set e.g. "9100:9199")')
    rules: list[PortRule] = []
    scheduler = cluster.scheduler_address()
    # this machine, however the settings name it, is the manager; a worker-map key may carry its SSH port
    ssh_ports = {_where(key): HostAddress.parse(key).port or cluster.ssh.port for key in cluster.worker_map()}
    workers = list(ssh_ports)
    scheduler_host = _where(str(scheduler.with_port(None))) if scheduler else MANAGER
    remote = [host for host in dict.fromkeys([scheduler_host, *workers]) if host != MANAGER]
    if not remote:
        return []
    scheduler_port = str(scheduler.port if scheduler and scheduler.port else dask.scheduler_port)
    rules += [PortRule(MANAGER, host, str(ssh_ports.get(host, cluster.ssh.port)), "SSH: install, start and stop the Dask processes",
                       "[cluster.ssh] port" if ssh_ports.get(host, cluster.ssh.port) == cluster.ssh.port else "[cluster.workers] key")
              for host in remote]
    rules.append(PortRule(MANAGER, scheduler_host, scheduler_port, "the client submits work", "[cluster] scheduler"))
    rules += [PortRule(host, scheduler_host, scheduler_port, "the worker joins the scheduler", "[cluster] scheduler")
              for host in dict.fromkeys(workers) if host != scheduler_host]
    for host in dict.fromkeys(workers):
        sources = [s for s in dict.fromkeys([scheduler_host, MANAGER, *workers]) if s != host]
        rules += [PortRule(source, host, worker_ports, "reach the worker (tasks, results, dependencies)", worker_setting)
                  for source in sources]
        if scheduler_host != host:
            rules.append(PortRule(scheduler_host, host, nanny_ports, "the scheduler reaches the nanny", nanny_setting))
    if dask.dashboard_port is not None:
        rules.append(PortRule(BROWSER, scheduler_host, str(dask.dashboard_port), "Dask dashboard", "[cluster.dask] dashboard_port"))
    return rules


def firewall_rules(rules: list[PortRule], *, style: Literal["ufw", "nft"] = "ufw", manager: str | None = None,
                   browser: str = "any") -> dict[str, list[str]]:
    """Destination → the commands that let its inbound connections in: ``ufw allow ...``, or
    ``nft add rule inet filter input ...`` for the ``inet filter`` table of Debian's and Red Hat's
    default nftables setup (the input chain's policy is yours to set to drop).

    ``manager`` is the manager's address as the cluster sees it (``<manager>`` when not given);
    ``browser`` where dashboard users connect from; compute nodes stay ``<compute nodes>``, a
    group only the HPC admins can name.
    """
    names = {MANAGER: manager or f"<{MANAGER}>", BROWSER: browser, COMPUTE_NODES: f"<{COMPUTE_NODES}>"}
    by_host: dict[str, list[str]] = {}
    for rule in rules:
        source = names.get(rule.source, rule.source)
        line = _ufw(source, rule.ports) if style == "ufw" else _nft(source, rule.ports)
        lines = by_host.setdefault(names.get(rule.destination, rule.destination), [])
        if line not in lines:
            lines.append(line)
    return by_host


def _ufw(source: str, ports: str) -> str:
    return f"ufw allow proto tcp from {source} to any port {ports}"


def _nft(source: str, ports: str) -> str:
    family = "ip6" if ":" in source and not source.startswith("<") else "ip"
    match = "" if source == "any" else f"{family} saddr {source} "
    return f"nft add rule inet filter input {match}tcp dport {ports.replace(':', '-')} accept"
