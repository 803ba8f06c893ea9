"""Compile an app's Cython kernels (``*.pyx``) in place, next to their sources.

Run on each host by `agi install` (``python -m agi_core.install.cython_build PACKAGE``, in the
host's venv), and on the manager before a local run with the cython bit when the compiled module
is missing or older than its source.

>>> from pathlib import Path
>>> find_pyx(Path("/nonexistent"))
[]
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import AgiError

__all__ = ["build_in_place", "find_pyx", "stale_pyx"]


def find_pyx(package_dir: Path) -> list[Path]:
    return sorted(package_dir.rglob("*.pyx")) if package_dir.is_dir() else []


def _compiled(pyx: Path) -> Path:
    return pyx.with_name(pyx.stem + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))


def stale_pyx(package_dir: Path) -> list[Path]:
    """The .pyx files without a compiled module for this Python, or older than their source."""
    return [p for p in find_pyx(package_dir) if not _compiled(p).is_file() or _compiled(p).stat().st_mtime < p.stat().st_mtime]


@contextlib.contextmanager
def _captured_output(log: Path) -> Iterator[None]:
    """Send this process's stdout/stderr, and the compiler it spawns, to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("wb") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def build_in_place(package_dir: Path) -> list[Path]:
    """Compile every .pyx under ``package_dir`` (a package folder) and return the built modules."""
    sources = find_pyx(package_dir)
    if not sources:
        return []
    if shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
        raise AgiError(f"cannot compile {sources[0]}: no C compiler on this host", fix="install gcc (or leave out the cython bit)")
    try:
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension
    except ImportError as exc:
        raise AgiError(f"cannot compile {sources[0]}: {exc.name} is not installed",
                       fix="install cython and setuptools (agi install adds them when the cython bit is enabled)") from None
    include = []
    if importlib.util.find_spec("numpy") is not None:
        import numpy

        include.append(numpy.get_include())
    package = package_dir.name
    built = []
    with tempfile.TemporaryDirectory(prefix="agi-cython-") as tmp:
        log = Path(tmp) / "build.log"
        for pyx in sources:
            relative = pyx.relative_to(package_dir).with_suffix("")
            name = ".".join([package, *relative.parts])
            # Built on the host that runs it, so tuned for its CPU; no silent FMA contraction, so
            # the kernels' arithmetic is exactly what their source says.
            extension = Extension(name, [str(pyx)], include_dirs=include,
                                  extra_compile_args=["-O3", "-march=native", "-ffp-contract=off"])
            try:
                with _captured_output(log):
                    modules = cythonize([extension], build_dir=tmp, quiet=True, language_level=3, force=True)
                    dist = Distribution({"ext_modules": modules, "script_name": "agi-cython", "script_args": ["build_ext"]})
                    command = dist.get_command_obj("build_ext")
                    command.build_temp = str(Path(tmp) / "temp")
                    command.build_lib = str(Path(tmp) / "lib")
                    command.ensure_finalized()
                    command.run()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - Cython/distutils raise many kinds, even SystemExit
                tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-20:]) if log.exists() else ""
                raise AgiError(f"compiling {pyx} failed ({type(exc).__name__}: {exc}):\n{tail}",
                               fix=f"fix the error in {pyx.name}, or leave out the cython bit") from None
            output = Path(tmp) / "lib" / command.get_ext_filename(name)
            target = _compiled(pyx)
            tmp_target = target.with_name(f".{target.name}.tmp{os.getpid()}")
            shutil.copy2(output, tmp_target)
            os.replace(tmp_target, target)  # a running process keeps the old module; new imports get the new one
            built.append(target)
    return built


def _package_dir(argument: str) -> Path:
    path = Path(argument)
    if path.is_dir():
        return path
    spec = importlib.util.find_spec(argument)
    if spec is None or not spec.submodule_search_locations:
        raise AgiError(f"no package named {argument!r} in this environment", fix="pass a package folder or an installed package name")
    return Path(list(spec.submodule_search_locations)[0])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m agi_core.install.cython_build PACKAGE_DIR_OR_NAME\n"
              "Compile every .pyx in the package in place; print the built files as JSON.")
        return 0 if args and args[0] in ("-h", "--help") else 2
    try:
        built = build_in_place(_package_dir(args[0]))
    except AgiError as exc:
        print(f"error: {exc.message}\nfix: {exc.fix}", file=sys.stderr)
        return 1
    print(json.dumps([str(p) for p in built]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
