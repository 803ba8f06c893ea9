"""`GatewayCluster` (backend ``gateway``): a Dask cluster asked of a Dask Gateway (docs/gateway.md).

A Gateway runs clusters for its users on whatever it fronts (Kubernetes, Slurm/PBS, YARN, local
processes); agi only speaks its client API (`dask_gateway`, the optional extra ``gateway``). `start`
logs in (a wrong password is refused here, on the first API call, before any cluster exists),
asks for a cluster with ``[cluster.gateway] cluster_options``, scales it to ``workers`` (or lets
it adapt between ``adaptive.minimum`` and ``maximum``), waits for the workers, ships the app's
environment to them (`env_shipping`) and maps the plan's slots ``gateway-0`` … to the workers'
names, which the Gateway chooses itself. `close` shuts the cluster down, unless
``shutdown_on_close = false`` keeps it warm: it is then recorded as the app's warm cluster, so the
next run attaches to it by its Gateway name, and ``agi cluster down APP`` stops it.

The scheduler connection goes through the Gateway's proxy (``gateway://``) with the TLS
credentials the Gateway made for this cluster: agi's own `tls` setting does not apply.

Its contract hooks: options `GatewayOptions` (``[cluster.gateway]``), the worker map of its slots,
``install_kind = "ship"`` (`agi install` prepares no host: the run ships the environment), the
port rules of a Gateway (one address, `gateway_ports`), the identity of a warm cluster (address,
user, options). Logging in and the wording of the API's refusals are `gateway_login`, which imports
`dask_gateway`: without the extra, this module does not import, and the registry names the extra.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..base.errors import AgiError
from ..base.events import EventSink, Notice, Phase, ignore
from ..base.hosts import slot_name
from .backend import ClusterBackend, ProcessRecord
from .gateway_login import api_error, open_gateway
from .gateway_options import GATEWAY_HOST, GatewayOptions
from .gateway_ports import gateway_port_rules
from .spec import ClusterSpec

__all__ = ["GatewayCluster", "slot_names"]


def slot_names(workers: list[str], slots: int) -> dict[str, str]:
    """Slot -> worker name: the joined workers in name order fill ``gateway-0`` …; slots
    beyond them (an adaptive cluster not at its maximum yet) are left out: their partitions run
    on any worker.

    >>> slot_names(["b7", "a3"], 3)
    {'gateway-0': 'a3', 'gateway-1': 'b7'}
    """
    return {slot_name(GATEWAY_HOST, k): name for k, name in enumerate(sorted(workers)[:slots])}


class GatewayCluster(ClusterBackend):
    """A cluster of a Dask Gateway, for one run or kept warm between runs."""

    Options = GatewayOptions
    job_id_env = "HOSTNAME"  # a Kubernetes pod's name (its container's hostname): the record names the pod
    places_workers = True  # the Gateway places the scheduler and workers
    install_kind = "ship"  # images nobody logs into: the run ships the environment (env_shipping)

    def __init__(self, spec: ClusterSpec, *, warm: bool = False) -> None:
        super().__init__(spec)
        self.gateway_options: GatewayOptions = self.options
        self.warm_cluster = warm  # started by `agi cluster up`: recorded by the caller, never stopped by a run
        self.attached = False  # found again from a warm cluster's state (`attach`): `close` stops it
        self.name: str | None = None  # the Gateway's name of the cluster
        self._gateway: Any = None
        self._cluster: Any = None  # dask_gateway.GatewayCluster (asynchronous)
        self._security: Any = None
        self._names: dict[str, str] = {}
        self.shipped: Any = None  # env_shipping.ShipReport of this start

    # -- the Gateway ----------------------------------------------------------------------------

    async def _login(self) -> None:
        """Open the Gateway and make a first API call: a wrong password or an unreachable
        address fails here, naming the Gateway, before anything is started."""
        self._gateway = open_gateway(self.gateway_options)
        try:
            await self._gateway.list_clusters()
        except Exception as exc:  # noqa: BLE001 - aiohttp's and the Gateway's errors, turned into one message
            raise api_error(self.gateway_options, exc) from None

    # -- life cycle -------------------------------------------------------------------------------

    async def launch(self, emit: EventSink = ignore) -> None:
        """Log in, ask for the cluster, scale it, wait for the workers, ship the environment
        (`start`, the template, stops the cluster when any of it fails)."""
        options = self.gateway_options
        await self._login()
        emit(Phase("cluster", f"asking the Dask Gateway at {options.address} for a cluster"))
        try:
            self._cluster = await asyncio.wait_for(
                self._gateway.new_cluster(cluster_options=None, shutdown_on_close=False, **options.cluster_options),
                options.start_timeout)
        except TimeoutError:
            raise AgiError(f"the Dask Gateway at {options.address} gave no cluster within {options.start_timeout:g} s",
                           fix="check the Gateway's logs and its capacity, or raise [cluster.gateway] start_timeout") from None
        except AgiError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. an unknown cluster option (ValueError), a 4xx/5xx
            raise api_error(options, exc, doing="creating a cluster") from None
        self.name = self._cluster.name
        self.address, self.dashboard = self._cluster.scheduler_address, self._cluster.dashboard_link
        self._security = self._cluster.security
        if options.adaptive is not None:
            await self._cluster.adapt(minimum=options.adaptive.minimum, maximum=options.adaptive.maximum)
        else:
            await self._cluster.scale(options.workers)
        emit(Phase("cluster", f"Gateway cluster {self.name}: waiting for {options.worker_count} worker(s)"))
        from .client import open_client

        client = await open_client(self.address, security=self._security, timeout=self.spec.dask.connect_timeout)
        try:
            try:
                await client.wait_for_workers(options.worker_count, timeout=options.start_timeout)
            except TimeoutError:
                joined = len((await client.scheduler.identity(n_workers=-1))["workers"])
                raise AgiError(f"only {joined} of {options.worker_count} worker(s) of Gateway cluster {self.name} joined within "
                               f"{options.start_timeout:g} s", fix="check the Gateway's capacity and its worker logs, "
                               "or raise [cluster.gateway] start_timeout") from None
            if options.ship_environment:
                await self._ship(client, emit)
            identity = await client.scheduler.identity(n_workers=-1)
            self._names = slot_names([str(w.get("name")) for w in identity["workers"].values()], options.slots)
        finally:
            await client.close()
        await self._forget()  # the API session is not needed until `close` (which opens one by name)

    async def _ship(self, client: Any, emit: EventSink) -> None:
        from .env_shipping import ship_environment

        if not self.spec.project_dir:
            raise AgiError("shipping the app's environment needs its project folder in the cluster spec",
                           fix="build the spec with spec_for(..., project_dir=env.project_dir)")
        self.shipped = await ship_environment(client, app=self.spec.app, project_dir=self.spec.project_dir,
                                              root=self.gateway_options.env_root, emit=emit)
        if self.shipped.shipped:
            emit(Notice(f"the app's environment was shipped to Gateway cluster {self.name} "
                        f"({self.shipped.bytes / 1e6:.1f} MB in {self.shipped.seconds:.1f} s)"))

    async def close(self) -> None:
        """Shut the Gateway cluster down, or, with ``shutdown_on_close = false`` on a run's own
        cluster, leave it running and record it as the app's warm cluster."""
        if not self.gateway_options.shutdown_on_close and not self.attached and not self.warm_cluster and self._names:
            self._record_warm()
            await self._forget()
            return
        await self._stop()

    def _record_warm(self) -> None:
        from .warm import WarmClusters

        WarmClusters.default().save(self.spec.app, self.spec, self)

    async def _stop(self) -> None:
        """Shut the cluster down (by name: also one this process only attached to) and close the Gateway."""
        name, self.name = self.name, None
        gateway = self._gateway
        try:
            if name is not None:
                if gateway is None:
                    gateway = self._gateway = open_gateway(self.gateway_options)
                with contextlib.suppress(Exception):  # already gone: the Gateway stops what it lost itself
                    await gateway.stop_cluster(name)
        finally:
            await self._forget()

    async def _forget(self) -> None:
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.shutdown_on_close = False  # stopped above by name, or kept warm
            await cluster.close()
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            await gateway.close()

    # -- what a client needs ----------------------------------------------------------------------

    def security(self) -> Any:
        return self._security

    def worker_names(self) -> dict[str, str]:
        """Slot -> the Gateway's name of its worker (`slot_names`); before the workers joined,
        the slots themselves (only their count matters then)."""
        return dict(self._names) or {w.slot: w.slot for w in self.spec.workers[: self.gateway_options.worker_count]}

    async def missing_workers_report(self, joined: set[str]) -> str:
        return f"Gateway cluster {self.name} at {self.gateway_options.address}: see its worker logs on the Gateway" if self.name else ""

    def started(self) -> tuple[ProcessRecord, ...]:
        return ((ProcessRecord(GATEWAY_HOST, "scheduler", "scheduler", 0, f"Gateway cluster {self.name}"),)
                if self.name else ())

    def dry_run(self) -> str:
        return self.gateway_options.describe(self.spec.app)

    # -- what the rest of agi asks before a cluster exists ----------------------------------------

    @classmethod
    def implied_worker_map(cls, cluster: Any, options: GatewayOptions) -> dict[str, Any]:
        """The slots ``gateway-0`` … (`GatewayOptions.slots`): the Gateway places the workers."""
        return options.worker_map()

    @classmethod
    def port_rules(cls, cluster: Any, options: GatewayOptions) -> list[Any]:
        return gateway_port_rules(options)

    @classmethod
    def identity(cls, options: GatewayOptions) -> dict[str, Any]:
        """Another Gateway, user or cluster options is another cluster (the worker count, the
        secrets' references and where environments go are not)."""
        return options.identity()

    # -- warm clusters ----------------------------------------------------------------------------

    @classmethod
    def warm(cls, spec: ClusterSpec) -> GatewayCluster:
        return cls(spec, warm=True)

    def state(self) -> dict[str, Any]:
        return {"address": self.address, "dashboard": self.dashboard, "processes": [], "gateway_cluster": self.name,
                "worker_names": dict(self._names)}

    @classmethod
    def attach(cls, spec: ClusterSpec, state: dict[str, Any]) -> GatewayCluster:
        """The warm cluster ``state`` names, found again on the Gateway by its name: its address
        and this cluster's TLS credentials come from the Gateway (nothing secret is on disk)."""
        backend = cls(spec, warm=True)
        backend.attached = True
        backend.name = state.get("gateway_cluster")
        backend.address, backend.dashboard = state.get("address", ""), state.get("dashboard")
        backend._names = dict(state.get("worker_names") or {})
        if backend.name:
            backend._security = _run_apart(backend._fetch_security())
        return backend

    async def _fetch_security(self) -> Any:
        gateway = open_gateway(self.gateway_options)
        try:
            cluster = await gateway.connect(self.name, shutdown_on_close=False)
        except Exception as exc:  # noqa: BLE001 - a stopped cluster: the client's connection fails, and says so
            await gateway.close()
            return AgiError(f"Gateway cluster {self.name} is gone: {exc}", fix=f"agi cluster down {self.spec.app}")
        try:
            return cluster.security
        finally:
            await cluster.close()
            await gateway.close()


def _run_apart(coroutine: Any) -> Any:
    """Run ``coroutine`` to the end on an event loop of its own thread (`attach` is synchronous
    and may be called from a running loop); an `AgiError` it returns becomes None (no credentials:
    the connection then fails, naming the scheduler)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = pool.submit(asyncio.run, coroutine).result()
    return None if isinstance(result, AgiError) else result

