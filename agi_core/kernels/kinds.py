"""The kernel kinds, as one table: what each is, which mode bit asks for it, how install prepares it.

An app keeps the same functions in one module per kind (``kernels.py``, ``kernels_cy``,
``kernels_numba.py``, ``kernels_gpu.py``). Kernel selection (`kernels`), preflight, install,
doctor, the cache keys, the settings and the web UI all read this table, so a new kind is one row
here (and its module in the app): nothing else tests a mode bit to find kernels.

The mode stays four bits. The cython bit (2) asks for *compiled CPU kernels*; which kind is
``[cluster] compiled`` (default ``"cython"``; ``"numba"``: the app's ``kernels_numba``). The rapids
bit (8) asks for the GPU kinds, with the CPU kernels as the fallback where a worker has no GPU.

>>> [k.name for k in kinds()]
['python', 'cython', 'numba', 'gpu']
>>> kind("numba").module, kind("numba").bit, kind("numba").build
('kernels_numba', 2, 'warm')
>>> compiled_kinds()
('cython', 'numba')
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base.errors import SettingsError

__all__ = ["CPU_FALLBACK", "KINDS", "KernelKind", "compiled_kinds", "gpu_kinds", "kind", "kinds", "preference", "setting_keys"]


@dataclass(frozen=True)
class KernelKind:
    """One kind of kernels.

    ``build``: what ``agi install`` (and a local run's preflight) does for it: ``""`` nothing,
    ``"cython"`` compile the app's ``.pyx`` files (a C compiler needed), ``"warm"`` import the
    module and call its ``warm()`` (a JIT's on-disk cache filled once per host). ``fallback``:
    when it cannot run on a worker, the next kind of the preference list runs (the record says
    why); without it, a missing module is an error before anything runs. Whether it can run: the
    module imports, and its ``why_unavailable()`` is empty (or its ``available()`` true); a GPU
    kind also needs a GPU this process may use (`gpus.gpu_here`).
    """

    name: str  # recorded per partition, part of the cache key
    module: str  # the app's module: f"{package}.{module}"
    bit: int  # the mode bit that asks for it (0: none, the default kind)
    letter: str  # that bit's letter in a mode ("" for none)
    build: str = ""  # "", "cython" or "warm"
    gpu: bool = False  # runs on a GPU (device cuda:0), only where a worker owns one
    fallback: bool = False  # unavailable on a worker: the next kind runs instead of an error
    extra: str = ""  # the app's optional-dependency extra that install adds for it ("gpu")
    help: str = ""
    label: str = ""  # as a sentence names it ("Cython kernels"); default: the name

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def device(self) -> str:
        return "cuda:0" if self.gpu else "cpu"


#: the table; the first row is the default kind, which every app has (``kernels.py`` or the package)
KINDS: tuple[KernelKind, ...] = (
    KernelKind("python", "kernels", 0, "", help="the reference kernels (kernels.py)", label="Python"),
    KernelKind("cython", "kernels_cy", 2, "c", build="cython", help="compiled Cython kernels (kernels_cy.pyx)", label="Cython"),
    KernelKind("numba", "kernels_numba", 2, "c", build="warm", extra="numba", help="numba.njit CPU kernels (kernels_numba.py)"),
    KernelKind("gpu", "kernels_gpu", 8, "r", gpu=True, fallback=True, extra="gpu",
               help="GPU kernels (kernels_gpu.py) where a worker has a GPU, the CPU kernels elsewhere", label="GPU"),
)
#: the kind that runs without the cython bit, and under the rapids bit where no GPU kind can
CPU_FALLBACK = "python"


def kinds() -> tuple[KernelKind, ...]:
    """The table, read now (a test may add a row)."""
    return KINDS


def kind(name: str) -> KernelKind:
    """The row named ``name``."""
    for row in kinds():
        if row.name == name:
            return row
    raise SettingsError(f"unknown kernel kind {name!r}: expected one of {', '.join(k.name for k in kinds())}",
                        fix="use a kind of agi_core.kernels.kinds.KINDS (docs/modes.md, 'Kernel kinds')")


def compiled_kinds() -> tuple[str, ...]:
    """The kinds the cython bit may ask for: compiled CPU kernels (``[cluster] compiled``)."""
    return tuple(k.name for k in kinds() if k.bit == 2 and not k.gpu)


def gpu_kinds() -> tuple[str, ...]:
    return tuple(k.name for k in kinds() if k.gpu)


def preference(bits: int, compiled: str = "cython") -> tuple[str, ...]:
    """The kinds a mode's bits ask for, best first: the GPU kinds with the rapids bit, then the
    CPU kind: ``compiled`` with the cython bit, else `CPU_FALLBACK`.

    >>> preference(0), preference(2), preference(10, "numba"), preference(8)
    (('python',), ('cython',), ('gpu', 'numba'), ('gpu', 'python'))
    """
    if compiled not in compiled_kinds():
        raise SettingsError(f"[cluster] compiled = {compiled!r}: not a compiled CPU kernel kind",
                            fix=f"write one of {', '.join(repr(k) for k in compiled_kinds())}")
    gpu = [k.name for k in kinds() if k.gpu and bits & k.bit]
    cpu = compiled if bits & kind(compiled).bit else CPU_FALLBACK
    return (*gpu, cpu)


def setting_keys() -> dict[str, tuple[str, str, str]]:
    """The ``[cluster]`` keys that choose kernels, as the settings editor shows them: dotted key ->
    (label, input kind, help), from the table (read now)."""
    compiled = [kind(name) for name in compiled_kinds()]
    gpu = [kind(name) for name in gpu_kinds()]
    return {
        "cluster.cython": ("cython", "toggle", f"bit 2: compiled CPU kernels ({' or '.join(k.name for k in compiled)}: see compiled)"),
        "cluster.compiled": ("compiled", "choice:" + ",".join(k.name for k in compiled),
                             "the kernels the cython bit runs: " + "; ".join(f"{k.name}: {k.help}" for k in compiled)),
        "cluster.rapids": ("rapids", "rapids", "bit 8: " + "; ".join(k.help for k in gpu)),
    }
