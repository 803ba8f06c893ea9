"""``python -m agi_core.install.warm [--check] PACKAGE MODULE``: an app's kernel module, on a host.

A kernel kind whose `KernelKind.build` is ``"warm"`` (numba's ``kernels_numba``) compiles on its
first call; `agi install` runs this in the host's venv so that the compiled code is in the JIT's
on-disk cache before any worker needs it (the module's ``warm()`` compiles on a tiny input).
``--check`` (`agi doctor`) only says whether the module imports and can run there: one JSON
string, "" when it can, else why not.
"""

from __future__ import annotations

import importlib
import json
import sys

__all__ = ["main", "warm", "why_not"]


def why_not(package: str, module: str) -> str:
    """Why ``package.module`` cannot run in this Python ("" when it can): it does not import, or
    its ``why_unavailable()`` says why."""
    try:
        loaded = importlib.import_module(f"{package}.{module}")
    except ImportError as exc:
        return f"{package}.{module} does not import ({type(exc).__name__}: {exc})"
    return str(getattr(loaded, "why_unavailable", lambda: "")() or "")


def warm(package: str, module: str) -> str:
    """Import ``package.module`` and call its ``warm()``; what was done, for the log."""
    why = why_not(package, module)
    if why:
        raise SystemExit(f"{package}.{module} cannot run on this host: {why}")
    hook = getattr(importlib.import_module(f"{package}.{module}"), "warm", None)
    if not callable(hook):
        return f"{package}.{module} has no warm(): compiled on first use"
    hook()
    return f"{package}.{module} compiled"


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    if args[:1] == ["--check"]:
        print(json.dumps(why_not(*args[1:3])))
        return 0
    print(warm(*args[:2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
