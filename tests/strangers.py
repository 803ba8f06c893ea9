"""What a stranger tries against a cluster port: connect a Dask client and run ``id -un`` as its owner.

Two strangers, the ones docs/security.md names: one speaking plain TCP (any local user or LAN host
with ``distributed`` installed), and one speaking TLS with a certificate of its own CA (a holder of
another cluster's credentials: another app's, yesterday's warm cluster's). `attempts` returns what
each got; a test asserts both were refused, after a control (`run_as`) showed that the cluster's own
client does run the same command, so a refusal is the credentials' doing, not a dead cluster's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agi_core.cluster.tls import make_credentials

__all__ = ["assert_refused", "attempts", "run_as"]


async def run_as(client: Any) -> str:
    """The user ``id -un`` names on a worker of ``client``'s cluster."""

    def whoami() -> str:  # a local function: pickled by value, so workers need not import this module
        import os

        return os.popen("id -un").read().strip()

    return str(await client.submit(whoami, pure=False))


async def _try(address: str, security: Any, timeout: float) -> str:
    from distributed import Client

    try:
        client = await Client(address, asynchronous=True, timeout=timeout, security=security, set_as_default=False)
    except (OSError, asyncio.TimeoutError, TimeoutError) as exc:  # what Dask raises for a refused handshake
        return f"refused: {type(exc).__name__}: {exc}"
    try:
        return f"ran as {await asyncio.wait_for(run_as(client), timeout * 3)}"
    finally:
        await client.close()


async def attempts(address: str, *, timeout: float = 3.0) -> dict[str, str]:
    """Each stranger's outcome against the scheduler at ``address`` (``tls://`` or ``tcp://``):
    ``"refused: …"`` or ``"ran as USER"``."""
    host_port = address.split("://", 1)[1]
    other_ca = make_credentials(["127.0.0.1"]).security()  # a valid certificate, of another cluster
    plain, other = await asyncio.gather(_try(f"tcp://{host_port}", None, timeout),
                                        _try(f"tls://{host_port}", other_ca, timeout))
    return {"plain tcp client": plain, "tls client of another CA": other}


def assert_refused(outcomes: dict[str, str]) -> None:
    """Every stranger was refused (the message lists what each got)."""
    assert all(outcome.startswith("refused") for outcome in outcomes.values()), outcomes
