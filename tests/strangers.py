"""What a stranger tries against a cluster's ports: connect a Dask client and run ``id -un`` as its
owner, or talk to a worker's or nanny's port directly (which answers ``run`` requests too).

Two strangers, the ones docs/security.md names: one speaking plain TCP (any local user or LAN host
with ``distributed`` installed), and one speaking TLS with a certificate of its own CA (a holder of
another cluster's credentials: another app's, yesterday's warm cluster's). `attempts` returns what
each got; a test asserts all were refused, after a control (`run_as`) showed that the cluster's own
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
    except Exception as exc:  # noqa: BLE001 - whatever stopped it (a refused handshake: OSError, TimeoutError)
        return f"refused: {type(exc).__name__}: {exc}"
    try:
        return f"ran as {await asyncio.wait_for(run_as(client), timeout * 3)}"
    finally:
        await client.close()


async def _try_port(address: str, security: Any, timeout: float) -> str:
    """Ask a worker's or nanny's port who it is, as the first step of sending it work."""
    from distributed.comm import connect

    args = security.get_connection_args("client") if security is not None else {}
    try:
        comm = await connect(address, timeout=timeout, **args)
    except Exception as exc:  # noqa: BLE001 - whatever stopped it
        return f"refused: {type(exc).__name__}: {exc}"
    try:
        await comm.write({"op": "identity", "reply": True})
        reply = await asyncio.wait_for(comm.read(), timeout)
    except Exception as exc:  # noqa: BLE001 - whatever stopped it
        return f"refused: {type(exc).__name__}: {exc}"
    finally:
        await comm.close()
    return f"answered: {str(reply)[:80]}"


async def _ports(owner: Any) -> list[str]:
    """The worker and nanny addresses of ``owner``'s cluster (asked with the owner's client)."""
    workers = (await owner.scheduler.identity(n_workers=-1))["workers"]
    return sorted({*workers, *(w["nanny"] for w in workers.values() if w.get("nanny"))})


async def attempts(address: str, *, owner: Any = None, timeout: float = 3.0) -> dict[str, str]:
    """Each stranger's outcome against the scheduler at ``address`` (``tls://`` or ``tcp://``):
    ``"refused: …"`` or ``"ran as USER"``; with ``owner`` (the cluster's own client), also
    against each worker's and nanny's port (``"answered: …"`` when one talks to them)."""
    other_ca = make_credentials(["127.0.0.1"]).security()  # a valid certificate, of another cluster
    targets = {"scheduler": address, **{f"port {port}": port for port in (await _ports(owner) if owner is not None else [])}}
    tries = {}
    for what, target in targets.items():
        host_port = target.split("://", 1)[1]
        connect = _try if what == "scheduler" else _try_port
        tries[f"{what}: plain tcp client"] = connect(f"tcp://{host_port}", None, timeout)
        tries[f"{what}: tls client of another CA"] = connect(f"tls://{host_port}", other_ca, timeout)
    outcomes = await asyncio.gather(*tries.values())
    return dict(zip(tries, outcomes, strict=True))


def assert_refused(outcomes: dict[str, str]) -> None:
    """Every stranger was refused, at the scheduler and at every worker's and nanny's port (the
    message lists what each got)."""
    assert any(what.startswith("port ") for what in outcomes), f"no worker port was tried: {outcomes}"
    assert all(outcome.startswith("refused") for outcome in outcomes.values()), outcomes
