"""Which host names mean "this machine"."""

from __future__ import annotations

import functools
import ipaddress
import socket

__all__ = ["LOCAL_HOST", "is_local_host"]

LOCAL_HOST = "127.0.0.1"


@functools.lru_cache(maxsize=256)
def _is_own_address(address: str) -> bool:
    """An address is this machine's when a socket can bind to it (no DNS, no interface listing)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def is_local_host(host: str) -> bool:
    """True when ``host`` names this machine: loopback, its hostname, or one of its addresses.

    Names other than this machine's own are not looked up (that would wait on DNS): use
    addresses in worker maps.

    >>> is_local_host("localhost"), is_local_host("127.0.0.1"), is_local_host("192.0.2.7")
    (True, True, False)
    """
    name = host.strip().lower()
    if name in ("localhost", "localhost.localdomain", socket.gethostname().lower()):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or _is_own_address(str(address))
