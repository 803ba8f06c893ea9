"""The port rules of the Dask Gateway backend (`GatewayCluster.port_rules`, ``agi cluster ports``).

Apart from `gateway` because they are read from ``[cluster.gateway]`` alone, before any cluster
exists and without the `dask_gateway` client (the ``gateway`` extra) installed.

>>> [(r.source, r.destination, r.ports) for r in gateway_port_rules(GatewayOptions(address="https://gw.lab:8443"))]
[('manager', 'gw.lab', '8443')]
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..base.hosts import HostAddress
from .gateway_options import GatewayOptions
from .ports import MANAGER, PortRule

__all__ = ["gateway_port_rules"]


def gateway_port_rules(options: GatewayOptions) -> list[PortRule]:
    """The manager reaches the Gateway only: its API, and the scheduler and dashboard through its
    proxy (the same address unless ``proxy_address`` names another). The Gateway's own
    scheduler-worker traffic is its administrator's (docs/gateway.md)."""
    url = urlsplit(options.address or "http://GATEWAY:80")
    host, port = url.hostname or "GATEWAY", str(url.port or (443 if url.scheme == "https" else 80))
    if not options.proxy_address:
        return [PortRule(MANAGER, host, port, "the Gateway: its API, the scheduler and dashboard through its proxy",
                         "[cluster.gateway] address")]
    proxy = HostAddress.parse(options.proxy_address.split("://")[-1])
    return [PortRule(MANAGER, host, port, "the Gateway's API and the dashboard", "[cluster.gateway] address"),
            PortRule(MANAGER, proxy.host, str(proxy.port or 8786), "the scheduler, through the Gateway's proxy",
                     "[cluster.gateway] proxy_address")]
