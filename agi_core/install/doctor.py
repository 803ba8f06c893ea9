"""Check every host without changing anything: SSH, Python, uv, venv and its fingerprint, Dask
versions against the manager's, GPU, and that the share is the same directory everywhere."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..app.env import AgiEnv
from ..base import paths
from ..base.errors import AgiError
from ..base.modes import Mode
from ..gpus import GPU, gpu_workers, remember_gpus
from ..kernels.kinds import kind
from ..kernels.shape import ExecutionShape
from ..settings import ClusterSettings
from ..ssh import HostSession, SshError, open_session, shell_path
from .artifacts import ArtifactBuilder, cpu_extras
from .capabilities import HostInfo, probe
from .host import (
    FINGERPRINT_FILE,
    InstallContext,
    expected_fingerprint,
    host_target,
    probe_gpu_libraries,
    remote_paths,
    smoke_import,
    worker_environment,
)
from .installer import hosts_of

__all__ = ["Check", "DoctorReport", "HostChecks", "doctor_app"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str | None = None


@dataclass
class HostChecks:
    host: str
    roles: list[str]
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def add(self, name: str, ok: bool, detail: str = "", fix: str | None = None) -> None:
        self.checks.append(Check(name, ok, detail, fix))


@dataclass
class DoctorReport:
    hosts: list[HostChecks]
    share: str | None
    warnings: list[str] = field(default_factory=list)  # not failures: settings that weaken the cluster (plain TCP)

    @property
    def ok(self) -> bool:
        return all(host.ok for host in self.hosts)


def _manager_versions() -> dict[str, str]:
    versions = {}
    for name in ("dask", "distributed"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


async def doctor_app(env: AgiEnv, settings: ClusterSettings, mode: Mode) -> DoctorReport:
    """Run every check on every host of ``settings`` (resolved, as for `install_app`), concurrently.
    Never raises for a host's problem: it is a failed check."""
    shape = ExecutionShape.of(mode, compiled=settings.compiled, rapids=settings.rapids)
    ctx = InstallContext(env, settings, mode, ArtifactBuilder(env, paths.cache_dir(), cython="cython" in shape.builds,
                                                              find_links=settings.install.find_links, extras=cpu_extras(shape)))
    share = settings.workers_data_path
    token_file, token = _write_token(Path(share).expanduser()) if share else (None, "")
    try:
        hosts = hosts_of(settings)
        limit = asyncio.Semaphore(settings.install.concurrency)

        async def one(host: str) -> HostChecks:
            async with limit:
                return await _check_host(host, hosts[host], ctx, share, token)

        results = await asyncio.gather(*(one(host) for host in hosts))
    finally:
        if token_file is not None:
            token_file.unlink(missing_ok=True)
    from ..cluster.tls import insecure_warning

    warning = insecure_warning(settings.tls)
    return DoctorReport(list(results), share, [warning] if warning else [])


def _write_token(share: Path) -> tuple[Path | None, str]:
    token = secrets.token_hex(16)
    folder = share / ".agi-doctor"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / token
        path.write_text(token)
    except OSError as exc:
        raise AgiError(f"the share {share} is not writable on the manager: {exc.strerror}",
                       fix="create it (the same path on every node) or fix [cluster] workers_data_path") from None
    return path, token


async def _check_host(host: str, roles: list[str], ctx: InstallContext, share: str | None, token: str) -> HostChecks:
    checks = HostChecks(host, roles)
    try:
        session = await open_session(host, ctx.cluster.ssh)
    except SshError as exc:
        checks.add("ssh", False, exc.message.removeprefix(f"{exc.host}: "), exc.fix)
        return checks
    async with session:
        checks.add("ssh", True, "local" if type(session).__name__ == "LocalSession" else "connected")
        try:
            await _run_checks(session, checks, ctx, share, token)
        except SshError as exc:
            checks.add("host", False, exc.message.removeprefix(f"{exc.host}: "), exc.fix)
    return checks


async def _run_checks(session: HostSession, checks: HostChecks, ctx: InstallContext, share: str | None, token: str) -> None:
    paths = remote_paths(ctx.cluster, ctx.env.name)
    info = await probe(session, agi_root=paths["root"])
    fix_install = f"agi install {ctx.env.name}"
    checks.add("python", bool(info.python), f"{info.python} {info.python_version}".strip() or "no python3", None if info.python else "install Python 3.11+")
    checks.add("uv", bool(info.uv), info.uv_version or "missing", None if info.uv else fix_install)
    venv = paths["venv"]
    stored = await session.read_text(f"{venv}/{FINGERPRINT_FILE}")
    if stored is None:
        checks.add("venv", False, f"no install in {venv}", fix_install)
    else:
        data = json.loads(stored)
        target = host_target(ctx, checks.host, info)
        wanted = expected_fingerprint(ctx, target)
        stale = [key for key, value in wanted.items() if data.get(key) != value]
        checks.add("venv", not stale, f"{venv}" + (f" is stale ({', '.join(stale)} changed)" if stale else ", fingerprint current"),
                   fix_install if stale else None)
        try:
            versions = await smoke_import(session, venv, ctx.package)
        except SshError as exc:
            checks.add("versions", False, f"import failed: {exc.message.splitlines()[-1][-200:]}", fix_install)
        else:
            manager = _manager_versions()
            mismatched = [f"{n} {versions.get(n)} (manager {manager[n]})" for n in manager if versions.get(n) != manager[n]]
            checks.add("versions", not mismatched, ", ".join(mismatched) or f"dask {versions.get('dask')}, distributed {versions.get('distributed')}",
                       "install the same dask/distributed on the manager, then " + fix_install if mismatched else None)
        await _check_kernels(session, checks, ctx, venv)
    remember_gpus(checks.host, info.devices)  # the plan and the cluster give this host's workers its GPUs
    _check_gpu(checks, ctx, info)
    await _check_gpu_libraries(session, checks, ctx, info, venv if stored is not None else None)
    if share:
        seen = await session.read_text(f"{share}/.agi-doctor/{token}")
        same = seen is not None and seen.strip() == token
        checks.add("share", same, share + (" is the manager's share" if same else " is not the manager's share here"),
                   None if same else f"mount the manager's share at {share} on {session.host}")



async def _check_kernels(session: HostSession, checks: HostChecks, ctx: InstallContext, venv: str) -> None:
    """Each compiled CPU kernel kind the modes ask for (`ExecutionShape.kernels`; the GPU kinds have
    their own checks) imports in the app's venv and can run there (`install.warm --check`)."""
    for name in ctx.shape.kernels:
        row = kind(name)
        if row.gpu or not row.build:
            continue
        command = f"{shell_path(venv)}/bin/python -m agi_core.install.warm --check {shlex.quote(ctx.package)} {row.module}"
        result = await session.run(command, what=f"{name} kernels check", check=False, timeout=180)
        try:
            why = str(json.loads(result.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            why = " ".join((result.stderr or result.stdout).split())[-300:] or "the check printed nothing"
        checks.add(f"{name} kernels", not why, why or f"{ctx.package}.{row.module} imports",
                   f"agi install {ctx.env.name} --modes {''.join(sorted(ctx.modes.letters))}" if why else None)


def _check_gpu(checks: HostChecks, ctx: InstallContext, info: HostInfo) -> None:
    """The host's GPUs as nvidia-smi lists them, and which of its workers own one."""
    spec = ctx.cluster.worker_map().get(checks.host)
    try:
        owners = sum(1 for gpu in gpu_workers(spec, info.devices, checks.host) if gpu) if spec is not None else 0
    except AgiError as exc:  # more workers declared than GPUs found
        checks.add("gpu", False, exc.message, exc.fix)
        return
    declared = spec is not None and (GPU in spec.capabilities or spec.gpus is not None)
    found = (", ".join(info.gpus) or "none found") + (f" (nvidia-smi: {info.gpu_error})" if info.gpu_error else "")
    detail = found + (f"; {owners} of {spec.count} workers own a GPU" if spec is not None else "") + (" (declared)" if declared else "")
    wants_gpu = ctx.shape.gpu != "off" and spec is not None
    require = ctx.cluster.rapids == "require"
    short = wants_gpu and spec is not None and owners < spec.count
    fix = None
    if short:
        fix = ('rapids = "require" fails on this host: give it a GPU, or remove it from the worker map' if require
               else "its workers without a GPU run the CPU kernels (the record says so)")
    checks.add("gpu", not (short and require), detail, fix)


async def _check_gpu_libraries(session: HostSession, checks: HostChecks, ctx: InstallContext, info: HostInfo,
                               venv: str | None) -> None:
    """On a GPU host with the rapids bit: can numba.cuda use the GPU, does cuDF import (in a child
    of the app's venv; never on a host without a GPU)."""
    if venv is None or ctx.shape.gpu == "off" or not host_target(ctx, checks.host, info).gpu:
        return
    found = await probe_gpu_libraries(session, venv, worker_environment(ctx, checks.host))
    usable = bool(found.get("numba_cuda")) or bool(found.get("cudf"))
    detail = f"numba.cuda {_said(found.get('numba_cuda'))}, cuDF {_said(found.get('cudf'))}"
    errors = [found[key] for key in ("numba_error", "cudf_error", "error") if found.get(key)]
    detail += f" ({'; '.join(errors)})" if errors else ""  # what numba.cuda or cuDF raised: the driver, a missing library
    checks.add("gpu libraries", usable, detail, None if usable else f"agi install {ctx.env.name} (the app's gpu extra)")


def _said(value: object) -> str:
    return {True: "usable", False: "broken", None: "not installed"}.get(value, str(value))  # type: ignore[call-overload]
