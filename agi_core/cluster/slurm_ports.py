"""The port rules of the Slurm backend (`SlurmCluster.port_rules`, ``agi cluster ports``).

The scheduler runs on the manager (the login node) and the workers on compute nodes Slurm
picks, so the rules name the compute nodes as a group.

>>> from agi_core.settings import ClusterSettings
>>> cluster = ClusterSettings.model_validate({"backend": "slurm", "slurm": {"login": "login01"}})
>>> [(r.source, r.destination) for r in slurm_port_rules(cluster, SlurmSettings(login="login01"))][:2]
[('manager', 'login01'), ('compute nodes', 'manager')]
"""

from __future__ import annotations

from ..base.hosts import HostAddress
from ..settings.schema import ClusterSettings
from .ports import ANY_PORT, BROWSER, COMPUTE_NODES, MANAGER, PortRule
from .slurm_options import SlurmSettings

__all__ = ["slurm_port_rules"]


def slurm_port_rules(cluster: ClusterSettings, slurm: SlurmSettings) -> list[PortRule]:
    """The connections of a scheduler on the manager and workers in Slurm jobs."""
    dask = cluster.dask
    worker_ports = (dask.worker_ports or ANY_PORT).replace("-", ":")
    worker_setting = "[cluster.dask] worker_ports" + ("" if dask.worker_ports else ' (unset: any free port; set e.g. "9000:9099")')
    scheduler = cluster.scheduler_address()
    # like `spec_for`: without [cluster] scheduler, it binds any free port and has no dashboard
    scheduler_port = str(scheduler.port or dask.scheduler_port) if scheduler else ANY_PORT
    scheduler_setting = "[cluster] scheduler" + ("" if scheduler else ' (unset: any free port; set e.g. "login01:8786")')
    rules: list[PortRule] = []
    if slurm.login:
        rules.append(PortRule(MANAGER, HostAddress.parse(slurm.login).host, str(cluster.ssh.port),
                              "SSH: agi install builds the shared venv", "[cluster.ssh] port"))
    rules += [
        PortRule(COMPUTE_NODES, MANAGER, scheduler_port, "workers join the scheduler", scheduler_setting),
        PortRule(MANAGER, COMPUTE_NODES, worker_ports, "scheduler and manager reach the workers", worker_setting),
        PortRule(COMPUTE_NODES, COMPUTE_NODES, worker_ports, "workers exchange results", worker_setting),
    ]
    if scheduler and dask.dashboard_port is not None:
        rules.append(PortRule(BROWSER, MANAGER, str(dask.dashboard_port), "Dask dashboard", "[cluster.dask] dashboard_port"))
    return rules
