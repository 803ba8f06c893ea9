"""A worker runs a partition only with the manager's code: checked when it joins, at the start or late.

At the start, `cluster.client.connect_client` compares package versions (`versions.check_versions`);
a re-built wheel keeps its version, so here each worker also says the agi_core code hash of the
install it runs (`install.installed_hash`), and the same two checks are made for every worker that
joins later (`dask_elastic.ElasticBatches` asks `admit` before it gives a worker work). A worker
with other code is

- with ``[cluster.install] auto`` (``[cluster] install = "auto"``): installed first, as `agi
  install` does for its host (`ClusterBackend.reinstall`), in the background while the run goes
  on; its nanny then restarts it on the new code, and it joins at its new address once it passes.
  Workers that run one install (a shared Slurm venv, one SSH host) wait for one install of it
  (`join_install`); the record lists each install the run made (``cluster.installed``);
- otherwise, or when that install fails or changes nothing, or the restarted worker still
  differs: refused. At the start that is an `AgiError` naming the hosts and the fix (as for
  versions); later, the worker is retired from the cluster, a warning names its host and the
  fix, and the record lists it as never joined.

No partition ever runs on a worker that has not passed. When the manager itself does not run
from a source tree (its own code hash is unknown), only package versions are compared.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..base.errors import AgiError
from ..base.events import EventSink, Notice
from .join_install import Installs, install_target

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


def drift_error(drifts: list[Drift], app: str, *, targets: list[str] | None = None, failed: str = "") -> AgiError:
    """One error for the workers refused at the start, naming each host and what differs;
    ``targets``: the hosts whose install they run (`install_target`), ``failed``: why installing them failed."""
    lines = "\n".join(f"  {d.host} (worker {d.name}): {d.what}" for d in sorted(drifts, key=lambda d: (d.host, d.name)))
    hosts = " ".join(targets or sorted({d.host for d in drifts}))
    return AgiError(f"{len(drifts)} worker(s) run other code than this manager:\n{lines}" + (f"\n{failed}" if failed else ""),
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
        self._emit = emit
        self._installs = Installs(backend, install) if install is not None else None  # one per target (`join_install`)
        self.want = manager_hash
        self._verdicts: dict[str, bool] = {}  # worker address -> admitted
        self._restarted: set[str] = set()  # worker names restarted after their install (a second drift is refused)
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
        failed = ""
        if drifts and self._installs is not None:
            installs = self._installs
            names = {d.name for d in drifts}
            where = ", ".join(sorted({installs.where(d.host) for d in drifts}))
            self._emit(Notice(f"{len(drifts)} worker(s) joined with other code than this manager ({drifts[0].what}"
                              f"{', …' if len(drifts) > 1 else ''}): installing {where} before the run starts ([cluster.install] auto)"))
            # one install per target: the workers of one shared venv (or one host) wait for the same one
            results = await asyncio.gather(*(installs.install(d.host, d.name, d.what) for d in drifts), return_exceptions=True)
            failed = "; ".join(dict.fromkeys(
                f"installing {installs.where(d.host)} failed: {_cause(r)}" if isinstance(r, BaseException)
                else f"agi installs nothing for the workers on {d.host}" for d, r in zip(drifts, results, strict=True) if r is not True))
            again = [d for d, r in zip(drifts, results, strict=True) if r is True]
            self._restarted |= {d.name for d in again}
            await self._restart([d.address for d in again])
            workers = await self._back({d.name for d in again})
            drifts = await self.drifts({a: w for a, w in workers.items() if w[0] in names})
        if drifts:
            targets = sorted({install_target(self._backend, d.host) for d in drifts})
            raise drift_error(drifts, self._app, targets=targets, failed=failed)
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
            installs = self._installs
            if installs is None:
                await self._refuse(address, name, host, what)
            elif name in self._restarted:  # it came back from its restart on the new install, and still differs
                await self._refuse(address, name, host, f"{what}; still so after {installs.where(host)} was installed and it "
                                                        "restarted")
            else:
                self._emit(Notice(f"worker {name} on {host} joined with other code than this manager ({what}): "
                                  f"{installs.doing(host)} before it joins ([cluster.install] auto)"))
                install = installs.start(host, name, what)  # now: the next worker of this install waits for it
                where = installs.where(host)
                task = asyncio.ensure_future(self._install_then_restart(install, where, address, name, host, what))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return not drifts

    async def _install_then_restart(self, install: asyncio.Task[bool], where: str, address: str, name: str, host: str,
                                    what: str) -> None:
        try:
            done = await asyncio.shield(install)  # cancelled with the run, not the install the others wait for
        except Exception as exc:  # noqa: BLE001 - the worker is refused with the install's cause
            await self._refuse(address, name, host, f"{what}; installing {where} failed: {_cause(exc)}")
            return
        if not done:
            await self._refuse(address, name, host, f"{what}; agi installs nothing for this backend's workers")
            return
        self._restarted.add(name)
        await self._restart([address])  # its nanny starts it again on the new install: a new address, checked again

    async def _restart(self, addresses: list[str]) -> None:
        with contextlib.suppress(Exception):  # a worker without a nanny, or gone: it is checked again if it comes back
            await self._client.restart_workers(addresses, timeout=_RESTART_S, raise_for_error=False)

    async def _refuse(self, address: str, name: str, host: str, what: str) -> None:
        """Take the worker out of the cluster (nothing may run there) and say so."""
        self._verdicts[address] = False
        self.refused[name] = f"{host}: {what}"
        fix = (f"re-install it from this manager: agi install {self._app or 'APP'}"
               + ("" if self._installs is not None else '; or set [cluster] install = "auto" to install it when it joins'))
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

    def installed(self) -> list[str]:
        """The installs this run made for workers that joined with other code (the record's ``cluster.installed``)."""
        return self._installs.report() if self._installs is not None else []

    async def close(self) -> None:
        """Stop installs still running (the run is over)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._installs is not None:
            await self._installs.close()


def _cause(exc: BaseException) -> str:
    return exc.message if isinstance(exc, AgiError) else f"{type(exc).__name__}: {exc}"


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
            from ..app.env import AgiEnv
            from ..base.modes import Mode
            from ..install import install_app

            env = AgiEnv(context.app, apps_path=project.parent)
            await install_app(env, context.cluster, Mode(context.job.mode), only=[host])

    return JoinCheck(client, backend, app=context.app, app_distribution=spec.app_distribution, app_version=spec.app_version,
                     host_of={w.name: w.host for w in spec.workers}, emit=context.emit, install=install,
                     manager_hash=manager_hash)
