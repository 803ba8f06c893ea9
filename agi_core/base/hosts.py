"""Host strings, parsed once: ``HostAddress`` (user, host, port; IPv6 in brackets), this machine's
name for slots, slot names, and which hosts are this machine.

Every ``user@host:port`` string in settings, on the command line or in a worker map goes through
`HostAddress.parse`; nothing else splits host strings.

>>> HostAddress.parse("agi@10.0.0.2:2222")
HostAddress(host='10.0.0.2', user='agi', port=2222)
>>> str(HostAddress.parse("[fe80::1]:22")), HostAddress.parse("fe80::1").host
('[fe80::1]:22', 'fe80::1')
>>> slot_name("10.0.0.2", 1)
'10.0.0.2-1'
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass

from .errors import AgiError

__all__ = ["LOCAL_HOST", "HostAddress", "HostAddressError", "is_local_host", "slot_name"]

#: The one name slots and worker maps use for this machine when none is given.
LOCAL_HOST = "127.0.0.1"

_FORMS = "HOST, HOST:PORT, USER@HOST:PORT, or [IPv6]:PORT (e.g. 10.0.0.2, agi@10.0.0.2:22, [fe80::1]:8786)"


class HostAddressError(AgiError, ValueError):
    """A host string that is not ``[user@]host[:port]``. A `ValueError` too, so pydantic
    validators report it against the key that held it."""


@dataclass(frozen=True, slots=True)
class HostAddress:
    """Where a host is: its name or IP (IPv6 without brackets), an optional SSH user and port."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostAddress:
        """Read ``[user@]host[:port]``; an IPv6 address takes a port only in brackets.

        >>> HostAddress.parse("10.0.0.1:notaport")
        Traceback (most recent call last):
        ...
        agi_core.base.hosts.HostAddressError: invalid host '10.0.0.1:notaport': port 'notaport' is not a number from 1 to 65535
        """
        raw = str(text).strip()
        user, at, rest = raw.rpartition("@")
        if at and not user:
            raise HostAddressError(f"invalid host {text!r}: empty user before '@'", fix=f"write {_FORMS}")
        port_text: str | None = None
        if rest.startswith("["):
            host, bracket, tail = rest[1:].partition("]")
            if not bracket or (tail and not tail.startswith(":")):
                raise HostAddressError(f"invalid host {text!r}: unbalanced brackets", fix=f"write {_FORMS}")
            port_text = tail[1:] if tail else None
            _check_ip(host, text)
        elif rest.count(":") == 1:
            host, _, port_text = rest.partition(":")
        else:
            host = rest  # a name, an IPv4 address, or a bare IPv6 address (no port)
            if ":" in host:
                _check_ip(host, text)
        if not host or any(c.isspace() or c in "/\\'\"`$;&|<>" for c in host):
            raise HostAddressError(f"invalid host {text!r}: {'no host name' if not host else 'not a host name or address'}",
                                   fix=f"write {_FORMS}")
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise HostAddressError(f"invalid host {text!r}: port {port_text!r} is not a number from 1 to 65535",
                                       fix=f"write {_FORMS}")
            port = int(port_text)
        return cls(host, user or None, port)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def url_host(self) -> str:
        """The host as it appears in a URL or ``host:port`` pair: IPv6 in brackets."""
        return f"[{self.host}]" if self.is_ipv6 else self.host

    @property
    def is_local(self) -> bool:
        """True when this names this machine (see `is_local_host`)."""
        return is_local_host(self.host)

    def with_port(self, port: int | None) -> HostAddress:
        return HostAddress(self.host, self.user, port)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{self.url_host if port else self.host}{port}"


def _check_ip(host: str, text: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise HostAddressError(f"invalid host {text!r}: {host!r} is not an IPv6 address",
                               fix=f"write {_FORMS}") from None


def slot_name(host: str, index: int) -> str:
    """The name of a worker slot (and of its Dask worker): ``<worker-map key>-<index>``."""
    return f"{host}-{index}"


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


def is_local_host(host: str | HostAddress) -> bool:
    """True when ``host`` names this machine: loopback, its hostname, or one of its addresses.
    ``host`` may be a bare name or a whole ``user@host:port`` string.

    Names other than this machine's own are not looked up (that would wait on DNS): use
    addresses in worker maps.

    >>> is_local_host("localhost"), is_local_host("agi@127.0.0.1:22"), is_local_host("192.0.2.7")
    (True, True, False)
    """
    try:
        name = (host if isinstance(host, HostAddress) else HostAddress.parse(host)).host.lower()
    except HostAddressError:
        return False
    if name in ("localhost", "localhost.localdomain", socket.gethostname().lower()):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or _is_own_address(str(address))
