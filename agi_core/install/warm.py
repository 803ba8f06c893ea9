"""``python -m agi_core.install.warm PACKAGE MODULE``: compile an app's JIT kernels once, on the host.

A kernel kind whose `KernelKind.build` is ``"warm"`` (numba's ``kernels_numba``) compiles on its
first call; `agi install` runs this in the host's venv so that the compiled code is in the JIT's
on-disk cache before any worker needs it. The module's ``warm()`` compiles on a tiny input.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["main", "warm"]


def warm(package: str, module: str) -> str:
    """Import ``package.module`` and call its ``warm()``; what was done, for the log."""
    loaded = importlib.import_module(f"{package}.{module}")
    why = getattr(loaded, "why_unavailable", lambda: "")()
    if why:
        raise SystemExit(f"{package}.{module} cannot run on this host: {why}")
    hook = getattr(loaded, "warm", None)
    if not callable(hook):
        return f"{package}.{module} has no warm(): compiled on first use"
    hook()
    return f"{package}.{module} compiled"


def main(argv: list[str] | None = None) -> int:
    package, module = (argv if argv is not None else sys.argv[1:])[:2]
    print(warm(package, module))
    return 0


if __name__ == "__main__":
    sys.exit(main())
