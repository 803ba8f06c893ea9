"""Install one host: connect, probe, put uv there, upload what it lacks, build the venv, check it.

An install fingerprint in the venv (code hashes, dependency lock, Python, modes) makes an
unchanged re-install a no-op, and a change to the app re-install only the app.
"""

from __future__ import annotations

import json
import shlex
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..app.env import AgiEnv
from ..base.errors import AgiError
from ..base.events import EventSink, HostOutput, HostStep, ignore
from ..base.modes import Mode
from ..gpus import LIBRARY_PROBE, gpu_workers, remember_gpus
from ..kernels.kinds import kind
from ..kernels.shape import ExecutionShape
from ..settings import ClusterSettings
from ..ssh import HostSession, SshError, open_session, shell_path
from .artifacts import ArtifactBuilder, Artifacts, Target, uv_binary
from .capabilities import HostInfo, probe
from .installed_hash import FINGERPRINT_FILE

__all__ = ["FINGERPRINT_SCHEMA", "HostReport", "InstallContext", "host_target", "install_host", "probe_gpu_libraries", "remote_paths"]

FINGERPRINT_SCHEMA = "agi.install.v1"
UV_ENV = "UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 UV_LINK_MODE=copy"


@dataclass
class HostReport:
    """How one host's install went."""

    host: str
    roles: list[str]
    status: str = "pending"  # installed | updated | unchanged | failed
    detail: str = ""
    cause: str | None = None
    fix: str | None = None
    seconds: float = 0.0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    info: HostInfo | None = None
    versions: dict[str, str] = field(default_factory=dict)
    gpu_libraries: dict[str, Any] = field(default_factory=dict)  # GPU hosts: numba.cuda usable, cuDF imports

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True)
class InstallContext:
    """What every host's install shares."""

    env: AgiEnv
    cluster: ClusterSettings
    modes: Mode
    builder: ArtifactBuilder

    @property
    def package(self) -> str:
        return self.env.module_name.split(".")[0]

    @property
    def shape(self) -> ExecutionShape:
        """What the modes to install for run (`ExecutionShape`): their kernel kinds say what to build."""
        return ExecutionShape.of(self.modes, compiled=self.cluster.compiled, rapids=self.cluster.rapids)

    @property
    def distribution(self) -> str:
        from ..settings.loading import read_toml

        return str(read_toml(self.env.project_dir / "pyproject.toml").get("project", {}).get("name", self.env.name))


def remote_paths(cluster: ClusterSettings, app: str) -> dict[str, str]:
    """Where agi keeps things on a host (paths may start with ``~/``)."""
    root = cluster.install.root.rstrip("/")
    return {"root": root, "uv": f"{root}/bin/uv", "wheelhouse": f"{root}/wheelhouse", "lock": f"{root}/locks/{app}.txt",
            "venv": cluster.install.venv_path(app)}


def expected_fingerprint(ctx: InstallContext, target: Target) -> dict[str, Any]:
    return {"schema": FINGERPRINT_SCHEMA, "app": ctx.env.name, "app_hash": ctx.builder.app_hash, "agi_hash": ctx.builder.agi_hash,
            "deps_inputs": ctx.builder.inputs_hash(target), "python": target.python,
            "modes": 2 if "cython" in ctx.shape.builds else 0, **({"warm": list(warm_modules(ctx))} if warm_modules(ctx) else {})}


async def install_host(host: str, roles: list[str], ctx: InstallContext, on_event: EventSink = ignore) -> HostReport:
    """Install ``host``; never raises: a failure is the report's status and cause.

    Each step is a `HostStep` event; the last one is ``done`` and names the outcome (installed,
    updated, unchanged or failed), so whoever listens can draw progress without the core printing.
    """
    report = HostReport(host, roles)
    start = time.perf_counter()
    try:
        on_event(HostStep(host, "connect"))
        async with await open_session(host, ctx.cluster.ssh) as session:
            await _install(session, report, ctx, lambda step: on_event(HostStep(host, step)),
                           lambda step: lambda line: on_event(HostOutput(host, line, step)))
    except SshError as exc:
        report.status, report.cause, report.fix = "failed", exc.message.removeprefix(f"{exc.host}: "), exc.fix
    except AgiError as exc:
        report.status, report.cause, report.fix = "failed", exc.message, exc.fix
    except Exception as exc:  # noqa: BLE001 - one host's surprise must not stop the others; it is reported
        report.status, report.cause = "failed", f"{type(exc).__name__}: {exc}"
    report.seconds = time.perf_counter() - start
    on_event(HostStep(host, report.status, done=True, failed=not report.ok))
    return report


async def _install(session: HostSession, report: HostReport, ctx: InstallContext, step: Callable[[str], None],
                   output: Callable[[str], Callable[[str], None]] = lambda step: lambda line: None) -> None:
    """The steps of one host's install; ``output(step)`` takes the lines a step's command prints
    (uv, the Cython build), as `HostOutput` events."""
    paths = remote_paths(ctx.cluster, ctx.env.name)
    step("probe")
    info = await probe(session, agi_root=paths["root"])
    report.info = info
    remember_gpus(report.host, info.devices)  # the plan and the cluster give this host's workers its GPUs
    _check_host(info, ctx)
    target = host_target(ctx, report.host, info)
    venv = paths["venv"]
    wanted = expected_fingerprint(ctx, target)
    current = _parse_json(await session.read_text(f"{venv}/{FINGERPRINT_FILE}"))
    venv_ok = (await session.run(f"test -x {shell_path(venv)}/bin/python", check=False)).ok
    if current and venv_ok and all(current.get(key) == value for key, value in wanted.items()):
        report.status, report.detail = "unchanged", "fingerprint current"
        report.versions = current.get("versions", {})
        return

    step("uv")
    uv = info.uv or await _put_uv(session, info, paths["uv"])
    step("wheels")
    artifacts = await ctx.builder.build(target)
    step("upload")
    await _upload_missing(session, artifacts, paths, report, index=ctx.cluster.install.source == "index")

    rebuild_venv = not venv_ok or not current or current.get("python") != target.python
    if rebuild_venv:
        step("venv")
        python = ctx.cluster.install.python or info.python
        await session.run(f"{UV_ENV} {shell_path(uv)} venv --clear --python {shlex.quote(python)} {shell_path(venv)}",
                          what="uv venv", on_line=output("venv"))
    step("install")
    reinstall = []
    if rebuild_venv or not current or current.get("agi_hash") != wanted["agi_hash"]:
        reinstall.append("agi-orchestrator")
    if rebuild_venv or not current or current.get("app_hash") != wanted["app_hash"]:
        reinstall.append(ctx.distribution)
    await session.run(_install_command(uv, venv, paths, artifacts, reinstall, ctx), what="uv pip install", on_line=output("install"))

    if "cython" in ctx.shape.builds and _has_pyx(artifacts):
        step("cython")
        if not info.cc:
            raise AgiError(f"the cython bit is enabled but {session.host} has no C compiler",
                           fix=f"install gcc on {session.host}, or leave the cython bit out of modes_enabled")
        await session.run(f"{shell_path(venv)}/bin/python -m agi_core.install.cython_build --verbose {shlex.quote(ctx.package)}",
                          what="building Cython kernels", on_line=output("cython"))
    for module in warm_modules(ctx):  # a JIT's kernels compiled once per host, into its on-disk cache
        step(f"warm {module}")
        await session.run(f"{shell_path(venv)}/bin/python -m agi_core.install.warm {shlex.quote(ctx.package)} {shlex.quote(module)}",
                          what=f"warming the {module} kernels")

    step("check")
    report.versions = await smoke_import(session, venv, ctx.package)
    if target.gpu:  # only where there is a GPU: a host without one never loads a GPU library
        report.gpu_libraries = await probe_gpu_libraries(session, venv, worker_environment(ctx, report.host))
    await session.write_text(f"{venv}/{FINGERPRINT_FILE}", json.dumps({**wanted, "installed_at": time.time(), "versions": report.versions}))
    if current and venv_ok and not rebuild_venv and current.get("deps_inputs") == wanted["deps_inputs"]:
        report.status, report.detail = "updated", "re-installed " + (", ".join(reinstall) or "nothing")
    else:
        report.status, report.detail = "installed", f"venv {venv}"


def host_target(ctx: InstallContext, host: str, info: HostInfo) -> Target:
    """What ``host`` installs: its Python, platform and, with the rapids bit, whether it is a GPU
    host (one of its workers owns a GPU, probed or declared: `gpus.gpu_workers`) that gets the
    app's ``gpu`` extra. Hosts without a GPU never download or install it."""
    spec = ctx.cluster.worker_map().get(host)
    gpu = ctx.shape.gpu != "off" and spec is not None and any(gpu_workers(spec, info.devices, host))
    return Target(ctx.cluster.install.python or info.python_minor, info.arch, info.glibc, gpu=gpu and bool(ctx.builder.gpu_extra()))


def worker_environment(ctx: InstallContext, host: str) -> dict[str, str]:
    """The ``env`` setting of ``host``'s workers (e.g. numba's CUDA simulator), for checks that
    must see what the workers will see."""
    spec = ctx.cluster.worker_map().get(host)
    return dict(spec.env) if spec is not None else {}


async def probe_gpu_libraries(session: HostSession, venv: str, env: dict[str, str]) -> dict[str, Any]:
    """Whether numba.cuda can use the host's GPU and whether cuDF imports, in a child of the venv's
    Python (`gpus.LIBRARY_PROBE`): ``{"numba_cuda": bool | None, "cudf": bool | None, ...}``."""
    variables = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    result = await session.run(f"env {variables} {shell_path(venv)}/bin/python -c {shlex.quote(LIBRARY_PROBE)}",
                               what="GPU library probe", check=False, timeout=180)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"numba_cuda": None, "cudf": None, "error": (result.stderr or result.stdout).strip()[-300:]}


def _check_host(info: HostInfo, ctx: InstallContext) -> None:
    if info.os != "Linux":
        raise AgiError(f"{info.host} runs {info.os or 'an unknown OS'}; worker hosts must run Linux", fix="remove it from the worker map")
    if not info.python and not ctx.cluster.install.python:
        raise AgiError(f"{info.host} has no python3 on PATH", fix='install Python 3.11+ there, or set [cluster.install] python = "3.11"')
    if info.python_version and tuple(int(p) for p in info.python_minor.split(".")) < (3, 11) and not ctx.cluster.install.python:
        raise AgiError(f"{info.host} has Python {info.python_version}; workers need 3.11 or newer",
                       fix='install a newer Python there and set [cluster.install] python = "3.11"')


async def _put_uv(session: HostSession, info: HostInfo, remote: str) -> str:
    import platform

    local = uv_binary()
    if info.os != platform.system() or info.arch != platform.machine():
        raise AgiError(f"{session.host} has no uv and is {info.os}/{info.arch}, unlike the manager ({platform.system()}/{platform.machine()})",
                       fix=f"install uv on {session.host} (https://docs.astral.sh/uv/)")
    await session.put(local, remote)
    return remote


async def _upload_missing(session: HostSession, artifacts: Artifacts, paths: dict[str, str], report: HostReport, *, index: bool) -> None:
    """Upload the wheels (and lock) the host lacks; with a package index, only our own two wheels."""
    wheelhouse = paths["wheelhouse"]
    listing = await session.run(f"mkdir -p {shell_path(wheelhouse)} && cd {shell_path(wheelhouse)} && (sha256sum -- *.whl 2>/dev/null || true)",
                                what="listing the host's wheelhouse")
    present = {line.split()[1].lstrip("*"): line.split()[0] for line in listing.stdout.splitlines() if len(line.split()) == 2}
    wanted = artifacts.files if not index else {n: artifacts.files[n] for n in (artifacts.agi_wheel, artifacts.app_wheel)}
    for name, digest in sorted(wanted.items()):
        if present.get(name) != digest:
            local = artifacts.wheelhouse / name
            await session.put(local, f"{wheelhouse}/{name}")
            report.uploaded_files += 1
            report.uploaded_bytes += local.stat().st_size
    await session.write_text(paths["lock"], artifacts.lock.read_text())


def _install_command(uv: str, venv: str, paths: dict[str, str], artifacts: Artifacts, reinstall: list[str], ctx: InstallContext) -> str:
    uv_cmd = shell_path(uv)
    wheelhouse = shell_path(paths["wheelhouse"])
    source = (f"--index-url {shlex.quote(ctx.cluster.install.index_url)}" if ctx.cluster.install.index_url else "") \
        if ctx.cluster.install.source == "index" else f"--no-index --find-links {wheelhouse}"
    flags = " ".join(f"--reinstall-package {shlex.quote(name)}" for name in reinstall)
    # The lock is the complete, pinned closure, so --no-deps: nothing outside it gets resolved
    # (agi_core's manager-only dependencies stay off the workers).
    return (f"{UV_ENV} {uv_cmd} pip install --no-deps --python {shell_path(venv)}/bin/python {source} {flags} "
            f"-r {shell_path(paths['lock'])} {wheelhouse}/{artifacts.agi_wheel} {wheelhouse}/{artifacts.app_wheel}")


def warm_modules(ctx: InstallContext) -> tuple[str, ...]:
    """The app's kernel modules that install warms (`KernelKind.build` ``"warm"``), for the modes installed."""
    return tuple(kind(name).module for name in ctx.shape.kernels if kind(name).build == "warm")


def _has_pyx(artifacts: Artifacts) -> bool:
    with zipfile.ZipFile(artifacts.wheelhouse / artifacts.app_wheel) as wheel:
        return any(name.endswith(".pyx") for name in wheel.namelist())


async def smoke_import(session: HostSession, venv: str, package: str) -> dict[str, str]:
    """Import agi_core, Dask and the app in the venv; return their versions."""
    code = ("import json, platform, agi_core, dask, distributed, " + package + "; "
            "print(json.dumps({'python': platform.python_version(), 'agi_core': agi_core.__version__, "
            "'dask': dask.__version__, 'distributed': distributed.__version__}))")
    result = await session.run(f"{shell_path(venv)}/bin/python -c {shlex.quote(code)}", what="smoke import")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _parse_json(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
