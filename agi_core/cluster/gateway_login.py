"""Logging in to a Dask Gateway: the client, its auth object, and what the Gateway's refusals mean.

Apart from `gateway` (the backend's life cycle) because these need no cluster: they read only
``[cluster.gateway]``, and each failure of the Gateway's API (refused credentials, an address
nobody answers, an option it does not offer) becomes one `AgiError` here, worded the same
wherever the API is called (`GatewayCluster` at start, on close, or when it attaches).
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from dask_gateway import Gateway  # the registry turns its absence into the extra's name

from ..base.errors import AgiError
from .gateway_options import GatewayOptions

__all__ = ["api_error", "gateway_auth", "open_gateway"]


def gateway_auth(options: GatewayOptions) -> Any:
    """The `dask_gateway` auth object of ``options``; secrets are read now, from their reference."""
    from dask_gateway.auth import BasicAuth, JupyterHubAuth, KerberosAuth

    if options.auth == "basic":
        if options.password is None:
            raise AgiError('[cluster.gateway] auth = "basic" needs a password reference',
                           fix='set [cluster.gateway] password = {env = "DASK_GATEWAY_PASSWORD"} '
                               '(or {file = "~/.config/agi/gateway"})')
        return BasicAuth(options.username or getpass.getuser(), options.password.reveal("cluster.gateway.password"))
    if options.auth == "jupyterhub":
        token = (options.api_token.reveal("cluster.gateway.api_token") if options.api_token
                 else os.environ.get("JUPYTERHUB_API_TOKEN"))
        if not token:
            raise AgiError('[cluster.gateway] auth = "jupyterhub" needs an API token',
                           fix='set [cluster.gateway] api_token = {env = "JUPYTERHUB_API_TOKEN"}, or run inside JupyterHub')
        return JupyterHubAuth(api_token=token)
    if options.auth == "kerberos":
        return KerberosAuth()
    return None  # "none": dask-gateway's default (its config, or no auth)


def open_gateway(options: GatewayOptions) -> Any:
    """An asynchronous `dask_gateway.Gateway` client of ``options`` (no API call yet)."""
    if not options.address:
        raise AgiError('backend = "gateway" needs the Gateway\'s address',
                       fix='set [cluster.gateway] address = "http://HOST:PORT" (ask its administrator)')
    return Gateway(options.address, proxy_address=options.proxy_address, auth=gateway_auth(options), asynchronous=True)


def api_error(options: GatewayOptions, exc: BaseException, doing: str = "logging in") -> AgiError:
    """One `AgiError` for what the Gateway's API answered: 401/403 (the credentials), a refused
    connection (the address), anything else (quoted)."""
    status = getattr(exc, "status", None)
    if status in (401, 403):
        user = f" as {options.username or getpass.getuser()}" if options.auth == "basic" else ""
        secret = options.password or options.api_token
        where = f" (read from {secret})" if secret is not None else ""
        return AgiError(f"the Dask Gateway at {options.address} refused the credentials{user}: {status} "
                        f"{'Unauthorized' if status == 401 else 'Forbidden'} (auth = \"{options.auth}\"{where})",
                        fix="check [cluster.gateway] auth, username and the password or token it references")
    if isinstance(exc, OSError) or type(exc).__name__.startswith("ClientConnector"):
        return AgiError(f"cannot reach the Dask Gateway at {options.address}: {exc}",
                        fix="check [cluster.gateway] address and that the Gateway runs (GET /api/health)")
    return AgiError(f"the Dask Gateway at {options.address} failed while {doing}: {type(exc).__name__}: {exc}",
                    fix="check [cluster.gateway] cluster_options against what the Gateway offers (Gateway.cluster_options())")
