"""A worker runs a partition only with the manager's code: checked when it joins, at the start or late.

At the start, `cluster.client.connect_client` compares package versions (`versions.check_versions`);
a re-built wheel keeps its version, so here each worker also says the agi_core code hash of the
install it runs (`install.installed_hash`), and the same two checks are made for every worker that
joins later (`dask_elastic.ElasticBatches` asks `admit` before it gives a worker work). A worker
with other code is

- with ``[cluster.install] auto`` (``[cluster] install = "auto"``): installed first, as `agi
  install` does for its host (`ClusterBackend.reinstall`), in the background while the run goes
  on; its nanny then restarts it on the new code, and it joins at its new address once it passes;
- otherwise, or when that install fails or changes nothing: refused. At the start that is an
  `AgiError` naming the hosts and the fix (as for versions); later, the worker is retired from
  the cluster, a warning names its host and the fix, and the record lists it as never joined.

No partition ever runs on a worker that has not passed. When the manager itself does not run
from a source tree (its own code hash is unknown), only package versions are compared.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import AgiError
from ..events import EventSink, Notice

__all__ = ["Drift", "JoinCheck", "drift_error", "join_check_for"]

#: seconds a restarted worker may take to come back after its host was installed
_RESTART_S = 60.0


@dataclass(frozen=True)
class Drift:
    """A worker whose code or package versions differ from the manager's."""

    name: str  # its Dask worker name
    address: str
    host: str  # its worker-map key (how agi reaches the host), else the address's host
    what: str  # "agi_core code 0123abcd… (this manager: 4567ef01…)", "dask 2026.1.0 (this manager: …)"


def drift_error(drifts: list[Drift], app: str) -> AgiError:
    """One error for the workers refused at the start, naming each host and what differs."""
    lines = "\n".join(f"  {d.host} (worker {d.name}): {d.what}" for d in sorted(drifts, key=lambda d: (d.host, d.name)))
    hosts = " ".join(sorted({d.host for d in drifts}))
    return AgiError(f"{len(drifts)} worker(s) run other code than this manager:\n{lines}",
                    fix=f"re-install those hosts from this manager: agi install {app or 'APP'} (hosts: {hosts}); "
                        'or set [cluster] install = "auto" to install them when they join')


class JoinCheck:
    """The manager's code hash and versions, and the verdict on each worker address.

    ``install(host)`` installs one host as `agi install` does (None: ``auto`` is off);
    ``host_of`` maps Dask worker names to worker-map keys (what the install and messages name).
    """

    def __init__(self, client: Any, backend: Any, *, app: str, app_distribution: str | None, app_version: str | None,
                 host_of: Mapping[str, str], emit: EventSink, install: Callable[[str], Awaitable[None]] | None = None,
                 manager_hash: str | None = None) -> None:
        self._client, self._backend, self._app = client, backend, app
        self._distribution, self._version = app_distribution, app_version
        self._host_of = dict(host_of)
        self._emit, self._install = emit, install
        self.want = manager_hash
        self._verdicts: dict[str, bool] = {}  # worker address -> admitted
        self._installed: set[str] = set()  # hosts installed during this run (a second drift there is refused)
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused: dict[str, str] = {}  # worker name -> why (for the record)

    # -- what differs ---------------------------------------------------------------------------

    async def drifts(self, workers: Mapping[str, tuple[str, str]]) -> list[Drift]:
        """The workers among ``workers`` (address -> (name, Dask host)) whose versions or code
        hash differ from the manager's."""
        from distributed.versions import get_versions

        from ..cluster.versions import AGI_DISTRIBUTION, Participant, compare_versions
        from ..install.installed_hash import installed_agi_hash

        if not workers:
            return []
        addresses = list(workers)
        packages = [AGI_DISTRIBUTION, *([self._distribution] if self._distribution else [])]
        manager = get_versions(packages)["packages"]
        reports = await self._client.scheduler.broadcast(msg={"op": "versions", "packages": packages}, workers=addresses,
                                                         on_error="return")
        hashes = await self._client.run(installed_agi_hash, workers=addresses, on_error="return") if self.want else {}
        found: list[Drift] = []
        for address, (name, dask_host) in workers.items():
            host = self._host_of.get(name, dask_host)
            report = reports.get(address)
            packages_there = report.get("packages", {}) if isinstance(report, dict) else {}
            for m in compare_versions(manager, [Participant("worker", name, dask_host, packages_there)],
                                      app_distribution=self._distribution, app_version=self._version):
                found.append(Drift(name, address, host, f"{m.package} {m.found or 'not installed'} (this manager: {m.manager or 'not installed'})"))
            theirs = hashes.get(address)
            if isinstance(theirs, (ImportError, AttributeError)):  # no `installed_hash` there: older agi_core
                found.append(Drift(name, address, host, f"agi_core that cannot say its code hash ({type(theirs).__name__}: "
                                                         f"{theirs}): older than this manager's"))
            elif isinstance(theirs, str) and theirs != self.want:  # (an exception of another kind: it cannot say now)
                found.append(Drift(name, address, host, f"agi_core code {theirs[:12]} (this manager: {str(self.want)[:12]})"))
        return found

    async def _workers(self) -> dict[str, tuple[str, str]]:
        identity = await self._client.scheduler.identity(n_workers=-1)
        return {address: (str(info.get("name")), str(info.get("host") or "")) for address, info in identity["workers"].items()}

    # -- at the start ----------------------------------------------------------------------------

    async def at_start(self) -> None:
        """Check the workers that joined before the run starts; with ``auto``, install the hosts
        of those that differ and wait for them to come back; raise `drift_error` for the rest."""
        workers = await self._workers()
        drifts = await self.drifts(workers)
        if drifts and self._install is not None:
            names = {d.name for d in drifts}
            await asyncio.gather(*(self._reinstall(host) for host in sorted({d.host for d in drifts})), return_exceptions=True)
            await self._restart([d.address for d in drifts])
            workers = await self._back(names)
            drifts = await self.drifts({a: w for a, w in workers.items() if w[0] in names})
        if drifts:
            raise drift_error(drifts, self._app)
        self._verdicts.update(dict.fromkeys(workers, True))

    async def _back(self, names: set[str]) -> dict[str, tuple[str, str]]:
        """The workers once every one of ``names`` runs again (or `_RESTART_S` passed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RESTART_S
        while True:
            workers = await self._workers()
            if names <= {name for name, _ in workers.values()} or loop.time() > deadline:
                return workers
            await asyncio.sleep(0.2)

    # -- later ------------------------------------------------------------------------------------

    async def admit(self, address: str, name: str, dask_host: str) -> bool:
        """Whether the worker that joined at ``address`` may take work (asked once per address)."""
        if address in self._verdicts:
            return self._verdicts[address]
        drifts = await self.drifts({address: (name, dask_host)})
        self._verdicts[address] = not drifts
        if drifts:
            host = drifts[0].host
            what = "; ".join(d.what for d in drifts)
            if self._install is not None and host not in self._installed:
                self._emit(Notice(f"worker {name} on {host} joined with other code than this manager ({what}): "
                                  f"installing {host} before it joins ([cluster.install] auto)"))
                task = asyncio.ensure_future(self._install_then_restart(address, name, host, what))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                await self._refuse(address, name, host, what)
        return not drifts

    async def _install_then_restart(self, address: str, name: str, host: str, what: str) -> None:
        try:
            done = await self._reinstall(host)
        except AgiError as exc:
            await self._refuse(address, name, host, f"{what}; installing {host} failed: {exc.message}")
            return
        if not done:
            await self._refuse(address, name, host, f"{what}; agi installs nothing for this backend's workers")
            return
        await self._restart([address])  # its nanny starts it again on the new install: a new address, checked again

    async def _reinstall(self, host: str) -> bool:
        assert self._install is not None
        self._installed.add(host)
        return bool(await self._backend.reinstall(host, self._install))

    async def _restart(self, addresses: list[str]) -> None:
        with contextlib.suppress(Exception):  # a worker without a nanny, or gone: it is checked again if it comes back
            await self._client.restart_workers(addresses, timeout=_RESTART_S, raise_for_error=False)

    async def _refuse(self, address: str, name: str, host: str, what: str) -> None:
        """Take the worker out of the cluster (nothing may run there) and say so."""
        self._verdicts[address] = False
        self.refused[name] = f"{host}: {what}"
        fix = (f"re-install it from this manager: agi install {self._app or 'APP'}"
               + ("" if self._install is not None else '; or set [cluster] install = "auto" to install it when it joins'))
        self._emit(Notice(f"refused worker {name} on {host}: it runs other code than this manager ({what}); fix: {fix}",
                          level="warning"))
        with contextlib.suppress(Exception):
            await self._client.retire_workers([address], close_workers=True)

    def report(self, backend: Any) -> Callable[[set[str]], Awaitable[str]]:
        """The report on workers that never joined: the backend's, and why each refused one was."""

        async def report(joined: set[str]) -> str:
            said = await backend.missing_workers_report(joined)
            refused = [f"{name}: refused, other code than this manager's ({why})" for name, why in sorted(self.refused.items())
                       if name not in joined]
            return "\n".join([*([said] if said else []), *refused])

        return report

    async def close(self) -> None:
        """Stop installs still running (the run is over)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task


def join_check_for(client: Any, backend: Any, spec: Any, context: Any, project: Any) -> JoinCheck:
    """The check of a Dask run's workers: ``context`` is the executor's (`ExecutionContext`),
    ``project`` the app's project folder (what `agi install` builds the app's wheel from)."""
    from ..install.code_hash import agi_code_hash

    try:
        manager_hash: str | None = agi_code_hash()
    except (AgiError, OSError):
        manager_hash = None  # not a source tree: package versions only
    install = None
    if context.cluster.install.auto and project is not None:
        async def install(host: str) -> None:
            from ..env import AgiEnv
            from ..install import install_app
            from ..modes import Mode

            env = AgiEnv(context.app, apps_path=project.parent)
            await install_app(env, context.cluster, Mode(context.job.mode), only=[host])

    return JoinCheck(client, backend, app=context.app, app_distribution=spec.app_distribution, app_version=spec.app_version,
                     host_of={w.name: w.host for w in spec.workers}, emit=context.emit, install=install,
                     manager_hash=manager_hash)
