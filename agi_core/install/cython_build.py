"""Compile an app's Cython kernels (``*.pyx``) in place, next to their sources.

Run on each host by `agi install` (``python -m agi_core.install.cython_build PACKAGE``, in the
host's venv), and on the manager before a local run with the cython bit when the compiled module
is missing or older than its source.

Each module is built by a child Python (the same interpreter) in a temporary folder: the generated
C, the object files and the compiler's output stay there, the calling process's stdout and stderr
are left alone, and only the finished extension module is moved next to its ``.pyx``, atomically.

>>> from pathlib import Path
>>> find_pyx(Path("/nonexistent"))
[]
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..base.atomic import replacing
from ..base.errors import AgiError

__all__ = ["COMPILE_ARGS", "OPENMP_ARGS", "build_in_place", "compile_args", "find_pyx", "openmp_supported", "stale_pyx"]

# Built on the host that runs them, so tuned for its CPU; -ffp-contract=off: no fused multiply-adds
# that the source does not ask for, so a kernel's arithmetic is exactly what its source says; -g0:
# no debug info (a smaller module, a faster build).
COMPILE_ARGS = ("-O3", "-march=native", "-ffp-contract=off", "-g0")
# Added to compiling and linking a .pyx that uses OpenMP (``cython.parallel``: prange), where the
# compiler has it (gcc does; Apple's clang does not): without it, prange loops run in order.
OPENMP_ARGS = ("-fopenmp",)

# Exit codes of the child build.
_CYTHON_FAILED, _C_FAILED = 3, 4

_CHILD = r"""
import json, logging, sys
from pathlib import Path
spec = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)  # setuptools says each compiler command
from Cython.Build import cythonize
from setuptools import Distribution, Extension
include = []
try:
    import numpy
    include.append(numpy.get_include())
except ImportError:
    pass
extension = Extension(spec["name"], [spec["pyx"]], include_dirs=include, extra_compile_args=spec["args"],
                      extra_link_args=spec["link_args"])
try:
    modules = cythonize([extension], build_dir=spec["tmp"], quiet=False, language_level=3, force=True)
except BaseException as exc:
    print(f"Cython: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(3)
dist = Distribution({"ext_modules": modules, "script_name": "agi-cython", "script_args": ["build_ext"]})
command = dist.get_command_obj("build_ext")
command.build_temp = str(Path(spec["tmp"]) / "temp")
command.build_lib = str(Path(spec["tmp"]) / "lib")
try:
    command.ensure_finalized()
    command.run()
except BaseException as exc:
    print(f"C compiler: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(4)
print("AGI-BUILT " + str(Path(command.build_lib) / command.get_ext_filename(spec["name"])))
"""


def find_pyx(package_dir: Path) -> list[Path]:
    """Every ``.pyx`` under ``package_dir``, sorted; none when it is not a folder."""
    return sorted(package_dir.rglob("*.pyx")) if package_dir.is_dir() else []


def _compiled(pyx: Path) -> Path:
    return pyx.with_name(pyx.stem + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))


def stale_pyx(package_dir: Path) -> list[Path]:
    """The .pyx files without a compiled module for this Python, or older than their source."""
    return [p for p in find_pyx(package_dir) if not _compiled(p).is_file() or _compiled(p).stat().st_mtime < p.stat().st_mtime]


def _uses_openmp(pyx: Path) -> bool:
    text = pyx.read_text(errors="replace")
    return "cython.parallel" in text or "cimport openmp" in text


@functools.cache
def openmp_supported() -> bool:
    """Whether the C compiler that builds extensions here (``$CC``, else Python's) compiles and links OpenMP."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    with tempfile.TemporaryDirectory(prefix="agi-openmp-") as tmp:
        source = Path(tmp) / "omp.c"
        source.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            done = subprocess.run([*cc, *OPENMP_ARGS, str(source), "-o", str(Path(tmp) / "omp")], capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return done.returncode == 0


def compile_args(pyx: Path) -> tuple[list[str], list[str]]:
    """Compiler and linker arguments for ``pyx`` on this host."""
    openmp = list(OPENMP_ARGS) if _uses_openmp(pyx) and openmp_supported() else []
    return [*COMPILE_ARGS, *openmp], openmp


def _c_compiler() -> str | None:
    cc = shlex.split(os.environ.get("CC", "")) or ["cc"]
    return shutil.which(cc[-1]) or shutil.which("gcc") or shutil.which("clang")


def build_in_place(package_dir: Path, echo: Callable[[str], None] | None = None) -> list[Path]:
    """Compile every .pyx under ``package_dir`` (a package folder) and return the built modules.

    Quiet on success, unless ``echo`` is given: it gets each module's name, then what Cython and
    the compiler printed, line by line (``agi install`` streams them to the host's log). Raises `AgiError` naming the .pyx and the cause (no C compiler, Cython or
    setuptools missing, a Cython or C error, with the tail of the compiler's output) and the fix.
    """
    package_dir = Path(package_dir).resolve()
    sources = find_pyx(package_dir)
    if not sources:
        return []
    if _c_compiler() is None:
        raise AgiError(f"cannot compile {sources[0]}: no C compiler on this host (looked for $CC, cc, gcc, clang)",
                       fix="install a C compiler (gcc) on this host, or leave out the cython bit")
    for module in ("Cython", "setuptools"):
        if importlib.util.find_spec(module) is None:
            raise AgiError(f"cannot compile {sources[0]}: {module} is not installed in {sys.prefix}",
                           fix=f"install {module.lower()} there (`agi install` adds cython and setuptools to the "
                               "wheelhouse when the cython bit is enabled), or leave out the cython bit")
    built = []
    for pyx in sources:
        name = ".".join([package_dir.name, *pyx.relative_to(package_dir).with_suffix("").parts])
        if echo is not None:
            echo(f"compiling {pyx.name} ({name})")
        with tempfile.TemporaryDirectory(prefix="agi-cython-") as tmp:
            args, link_args = compile_args(pyx)
            spec = {"name": name, "pyx": str(pyx), "tmp": tmp, "args": args, "link_args": link_args}
            try:
                done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], cwd=tmp, check=False,
                                      capture_output=True, text=True, errors="replace", timeout=900)
            except subprocess.TimeoutExpired:
                raise AgiError(f"compiling {pyx} took more than 15 minutes", fix="check the host's load and its C compiler") from None
            marker = [line for line in done.stdout.splitlines() if line.startswith("AGI-BUILT ")]
            if echo is not None:
                for line in (done.stdout + done.stderr).splitlines():
                    if line.strip() and not line.startswith("AGI-BUILT "):
                        echo(line)
            if done.returncode != 0 or not marker:
                raise _build_error(pyx, done)
            target = _compiled(pyx)
            with replacing(target) as partial:  # a running process keeps the old module; new imports get the new one
                shutil.copyfile(marker[-1].removeprefix("AGI-BUILT "), partial)
            built.append(target)
    return built


def _build_error(pyx: Path, done: subprocess.CompletedProcess) -> AgiError:
    output = "\n".join(part.strip() for part in (done.stdout, done.stderr) if part.strip())
    tail = "\n".join(output.splitlines()[-20:])
    if "Python.h" in output:
        cause, fix = "the Python headers are missing", "install the Python development headers (python3-dev / python3-devel), or use a uv-managed Python"
    elif done.returncode == _CYTHON_FAILED:
        cause, fix = "Cython rejected it", f"fix the error in {pyx.name} (line numbers above), or leave out the cython bit"
    elif done.returncode == _C_FAILED:
        cause, fix = "the C compiler failed", f"see the compiler's output above; fix {pyx.name} or the host's compiler set-up"
    else:
        cause, fix = f"the build exited with {done.returncode}", "see the output above"
    return AgiError(f"compiling {pyx} failed: {cause}:\n{tail}", fix=fix)


def _package_dir(argument: str) -> Path:
    path = Path(argument)
    if path.is_dir():
        return path
    try:
        spec = importlib.util.find_spec(argument)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise AgiError(f"no package folder or installed package named {argument!r} here ({sys.executable})",
                       fix="pass a package folder or the import name of an installed package")
    return Path(next(iter(spec.submodule_search_locations)))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m agi_core.install.cython_build [--verbose] PACKAGE_DIR_OR_IMPORT_NAME\n"
              "Compile every .pyx in the package in place; print the built files as JSON.\n"
              "--verbose: each module's name and the compiler's output, on stderr.")
        return 0 if args and args[0] in ("-h", "--help") else 2
    try:
        built = build_in_place(_package_dir(args[0]), echo=(lambda line: print(line, file=sys.stderr, flush=True)) if verbose else None)
    except AgiError as exc:
        print(f"error: {exc.message}\nfix: {exc.fix}", file=sys.stderr)
        return 1
    print(json.dumps([str(p) for p in built]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
