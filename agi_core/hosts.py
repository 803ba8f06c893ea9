"""Which host names mean "this machine"."""

from __future__ import annotations

import functools
import ipaddress
import socket

__all__ = ["is_local_host", "LOCAL_HOST"]

LOCAL_HOST = "127.0.0.1"


@functools.cache
def _own_names() -> frozenset[str]:
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:  # an unresolvable own hostname is common on laptops and containers
        pass
    return frozenset(names)


def is_local_host(host: str) -> bool:
    """True when ``host`` names this machine (loopback, its hostname, or one of its addresses).

    >>> is_local_host("localhost"), is_local_host("127.0.0.1"), is_local_host("192.0.2.7")
    (True, True, False)
    """
    name = host.strip().lower()
    if name in ("localhost", "localhost.localdomain"):
        return True
    try:
        if ipaddress.ip_address(name).is_loopback:
            return True
    except ValueError:
        pass
    return name in _own_names()
