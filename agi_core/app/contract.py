"""The app contract: what an app implements and what it receives.

An app is a Python package whose `App` subclass splits its work into `Partition`s (manager side),
computes one partition at a time (worker side), and optionally combines the results.

>>> from pydantic import BaseModel
>>> class Args(BaseModel):
...     n: int = 3
>>> class Squares(App):
...     Args = Args
...     def plan(self, args):
...         return [Partition(id=f"p{i}", weight=1.0, payload=i) for i in range(args.n)]
...     def work(self, part, ctx):
...         return part.payload ** 2
...     def reduce(self, results, ctx):
...         return sum(results.values())
>>> app = Squares()
>>> [p.id for p in app.plan(Args())]
['p0', 'p1', 'p2']
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from pydantic import BaseModel

__all__ = ["App", "Partition", "WorkContext"]


@dataclass(frozen=True, slots=True)
class Partition:
    """One unit of work.

    ``weight`` is its expected cost (any unit, only ratios matter); ``payload`` is JSON-able data the
    worker needs; ``deps`` are ids of partitions whose results this one receives; ``needs`` are
    capabilities a slot must have (e.g. ``"gpu"``); ``reads`` names the args its result depends
    on, for its cache key (None: all of them), so changing another arg does not recompute it;
    ``prefers`` are capabilities that make a slot better for it: with the rapids bit, a
    ``prefers=("gpu",)`` partition counts as ``[cluster] gpu_speed`` times faster on a GPU slot;
    ``inputs`` are the files or folders it reads, whose state (size and modification time, or
    content hash with ``[cache] inputs = "hash"``) enters its cache key, so a changed input file
    recomputes it (relative paths are relative to the share, see docs/cache.md).

    The weight is kept as a float, whatever number the app gives, so a plan written to JSON and
    read back is the same plan:

    >>> Partition("a", weight=3).weight
    3.0
    """

    id: str
    weight: float = 1.0
    payload: Any = None
    deps: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] | None = None
    prefers: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if type(self.weight) is not float:  # an int weight read back from JSON as 3.0 must be the same plan
            try:
                object.__setattr__(self, "weight", float(self.weight))
            except (TypeError, ValueError):
                raise TypeError(f"partition {self.id!r}: weight must be a number, not {self.weight!r}") from None
            except OverflowError:  # an int too large for a float
                raise ValueError(f"partition {self.id!r}: weight must be a finite number, not {self.weight!r}") from None
        if not math.isfinite(self.weight):  # JSON has no NaN or infinity: such a plan could not be saved
            raise ValueError(f"partition {self.id!r}: weight must be a finite number, not {self.weight!r}")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Positional fields: the generic path for slotted dataclasses is several times slower,
        # and plans of 100,000 partitions travel to worker processes.
        return (Partition, (self.id, self.weight, self.payload, self.deps, self.needs, self.reads, self.prefers, self.inputs))


@dataclass(slots=True)
class WorkContext:
    """What `App.work` receives beside its partition.

    ``args`` are the run's validated arguments, ``kernels`` the kernel module the mode selected (plain, Cython or GPU), ``kernel_kind`` its
    name, ``device`` where it runs (``"cpu"`` or ``"cuda:0"``), ``out_dir`` the run's output folder
    on the share, ``deps`` the results of the partition's dependencies by id.
    """

    args: BaseModel
    kernels: ModuleType
    kernel_kind: str
    device: str
    out_dir: Path
    log: logging.Logger
    slot: str = "local-0"
    deps: Mapping[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    def output(self, name: str) -> Path:
        """The path of an output file ``name`` in ``out_dir``, recorded as this partition's output
        (the run record lists it). Folders in ``name`` are created.

        >>> import tempfile
        >>> ctx = WorkContext(args=None, kernels=None, kernel_kind="python", device="cpu", out_dir=Path(tempfile.mkdtemp()),
        ...                   log=logging.getLogger("demo"))
        >>> ctx.output("tiles/t1.png").name, ctx.outputs
        ('t1.png', ['tiles/t1.png'])
        """
        path = self.out_dir / name
        if not path.resolve().is_relative_to(self.out_dir.resolve()):
            raise ValueError(f"output {name!r} is outside the run's out folder {self.out_dir}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.outputs.append(path.relative_to(self.out_dir).as_posix())
        return path


class App:
    """Base class of every app. Subclass it and implement `plan` and `work`.

    ``Args`` is a pydantic model of the app's arguments; its defaults are overridden by the
    ``[args]`` table of ``app_settings.toml`` and then by call arguments.
    """

    Args: ClassVar[type[BaseModel]]
    #: True when a plan of no partitions is a normal outcome (e.g. "nothing new to process"); by
    #: default `plan` returning no partitions is an error: args or inputs that select nothing
    allow_empty_plan: ClassVar[bool] = False

    def plan(self, args: BaseModel) -> list[Partition]:
        """Split the work into partitions (manager side). An empty list is an error unless the
        class sets ``allow_empty_plan = True``."""
        raise NotImplementedError(f"{type(self).__name__}.plan() is not implemented")

    def work(self, part: Partition, ctx: WorkContext) -> Any:
        """Compute one partition (worker side) and return its result (any picklable value)."""
        raise NotImplementedError(f"{type(self).__name__}.work() is not implemented")

    def reduce(self, results: Mapping[str, Any], ctx: WorkContext) -> Any:
        """Combine the partition results by id (manager side). By default, return them as they are."""
        return dict(results)

