"""The contract every executor implements, and the data that crosses it (job, outcome).

An executor runs a checked `WorkPlan` on its slots, asking a `GraphDriver` what may run, and
yields one `Outcome` per partition as soon as it is known. The runner calls, in this order:
``await start()`` (before any thread starts: local pools fork here), then iterates
``execute(plan, driver)``, then ``await retries()``, and finally ``await close()`` — or
``kill()`` on Ctrl-C or an error. Executors are picked by name from `agi_core.executors.registry`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..kernels.shape import ExecutionShape

if TYPE_CHECKING:
    from ..base.events import EventSink
    from ..plan import GraphDriver, WorkPlan
    from ..provenance import ClusterRecord
    from ..settings import ClusterSettings

__all__ = ["NOTE_SEPARATOR", "ExecutionContext", "Executor", "InFlight", "JobSpec", "Outcome", "settle", "skipped_outcomes"]

#: joins an outcome's notes: its kernels' note first (a fallback taken), then what the cache did
NOTE_SEPARATOR = "; "


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run partitions of one run; small and picklable."""

    src_dir: Path
    module_name: str
    class_name: str | None
    args: Mapping[str, Any]
    mode: int
    out_dir: Path
    run_id: str = ""
    #: where workers store the results they compute (``<share>/cache/<app>``); None: no cache
    cache_dir: Path | None = None
    #: the kernel kind the keys were made for: a worker running another kind does not store
    cache_kernel: str = ""
    #: partitions whose entries are replaced (``--refresh``), not kept
    refresh: tuple[str, ...] = ()
    #: the share: declared inputs' relative paths start there (and reads of undeclared files are
    #: noted while the cache is on)
    inputs_base: Path | None = None
    #: cache hits recomputed for the audit (``--audit``): partition id -> its entry's digest, which
    #: the worker compares the fresh result with (`agi_core.cache.audit`)
    audit: Mapping[str, str] = field(default_factory=dict)
    #: times a partition may run again after its worker was lost (``[cluster] retries``)
    retries: int = 2
    #: the id of the manager's cache key (`cache.auth.CacheKey.id`): a worker holding another key stores nothing
    cache_key_id: str = ""
    #: the umask of what workers create on the share (`share_access`: ``[cluster.share] group_access``); None: left as it is
    share_umask: int | None = None
    #: the environment variable naming the batch job or pod a worker runs in (`ClusterBackend.job_id_env`); "": none
    job_id_env: str = ""
    #: the kernel kinds to run, best first (`RunRequest.shape.kernels`), and what a kernel module's
    #: ``set_threads`` is told (`ExecutionShape.kernel_threads`)
    kernels: tuple[str, ...] = ("python",)
    kernel_threads: int = 0


@dataclass(slots=True)
class Outcome:
    """What happened to one partition: its record (`provenance.PartitionRecord`: the same fields,
    the same names; its log line is `provenance.lines.partition_line`), and beside it what only
    the run needs while it runs: ``result`` (the value `App.work` returned), ``line`` (the
    record line, made where it ran), ``digest`` (an audited result's SHA-256) and ``result_pickle``.

    ``retries``: how often it started before on a worker that was lost (its ``work()`` ran that
    many times more). ``status``: ``ok``, ``failed``, ``skipped`` (a dependency did not succeed) or ``cached`` (its
    result was known before dispatch). ``cache``: ``hit``, ``miss``, ``stored``, ``corrupt``
    (its entry was damaged, and it was computed again), ``untrusted`` (its entry did not
    authenticate under the owner's key: never loaded, computed again), ``audited`` (a hit recomputed for
    the audit, same result) or ``mismatch`` (a hit recomputed for the audit, another result: it
    replaced the entry), empty without the cache; ``cache_key`` its cache key; ``result_location``
    where its result is kept (a cache entry's path).
    """

    id: str
    slot: str
    status: str
    host: str = ""
    worker: str = ""
    start: float = 0.0
    end: float = 0.0
    kernel: str = ""
    device: str = ""
    error: str | None = None
    note: str = ""
    retries: int = 0
    outputs: tuple[str, ...] = ()  # files it declared with ctx.output(), relative to the run's out/
    result: Any = field(default=None, repr=False)
    line: bytes = field(default=b"", repr=False)  # its record line, made where it ran (`provenance.lines`); emptied once recorded
    cache: str = ""
    cache_key: str = ""
    result_location: str = ""
    job_id: str = ""  # the batch job or pod whose worker ran it (`JobSpec.job_id_env`); "" outside one
    #: files work() opened for reading that are not among its declared inputs (`file_reads`)
    undeclared_reads: tuple[str, ...] = ()
    digest: str = ""  # an audited result's SHA-256 (``cache`` audited or mismatch); "" otherwise
    #: the slot whose worker ran it when that is not ``slot`` (Dask moved its task off a lost worker); "" otherwise
    ran_slot: str = ""
    #: ``result`` pickled, where the worker already pickled it for its cache entry: sent back as it
    #: is instead of a second pickle (`wire.pack_outcomes`); never sent itself
    result_pickle: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "cached")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Positional fields: pickles several times faster than the generic dataclass path,
        # which matters when a pool slot sends back 50,000 outcomes.
        return (Outcome, (self.id, self.slot, self.status, self.host, self.worker, self.start, self.end, self.kernel,
                          self.device, self.error, self.note, self.retries, self.outputs, self.result, self.line, self.cache,
                          self.cache_key, self.result_location, self.job_id, self.undeclared_reads, self.digest, self.ran_slot))

    @classmethod
    def hit(cls, pid: str, slot: str, kernel: str, note: str, result: Any, key: str, location: str) -> Outcome:
        """A cache hit's outcome: the same as ``Outcome(pid, slot, "cached", kernel=kernel, note=note,
        result=result, cache="hit", cache_key=key, result_location=location)``, by position (three
        times faster: a re-run of 100,000 partitions makes 100,000 of them).

        >>> Outcome.hit("p1", "s0", "python", "n", 42, "ab", "/c/x.pack") == Outcome(
        ...     "p1", "s0", "cached", kernel="python", note="n", result=42, cache="hit", cache_key="ab", result_location="/c/x.pack")
        True
        """
        return cls(pid, slot, "cached", "", "", 0.0, 0.0, kernel, "", None, note, 0, (), result, b"", "hit", key, location)

    def add_note(self, more: str) -> None:
        """Append ``more`` to the note (`NOTE_SEPARATOR` between them)."""
        self.note = f"{self.note}{NOTE_SEPARATOR}{more}" if self.note else more

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def cache_hit(self) -> bool:
        """Its result was known before dispatch (status ``cached``)."""
        return self.status == "cached"


@dataclass(frozen=True)
class InFlight:
    """A partition running now: where (slot, host, the worker's pid) and since when (epoch seconds,
    as the worker's clock said when it started the partition)."""

    id: str
    slot: str
    host: str
    pid: int
    since: float
    worker: str = ""  # the Dask worker's address, for the executor that stops it

    def where(self) -> str:
        return f"slot {self.slot} (host {self.host}, pid {self.pid})"


@dataclass(frozen=True)
class ExecutionContext:
    """What an executor is given: the run, the job its workers load, the cluster settings, where
    to send events, and the interpreter for worker processes on this machine (None: this one)."""

    run_id: str
    app: str
    job: JobSpec
    cluster: ClusterSettings
    emit: EventSink
    python: Path | None = None
    app_distribution: str | None = None  # the app's [project] name and version, for the cluster's version check
    app_version: str | None = None
    keys: Mapping[str, str] = field(default_factory=dict)  # partition id -> cache key; empty without the cache
    shape: ExecutionShape = field(default_factory=ExecutionShape)  # the request's (`RunRequest.shape`)


class Executor(abc.ABC):
    """Runs a plan's partitions on its slots and yields each `Outcome` as soon as it is known.

    Each partition runs on the slot the plan assigns it (a cluster may move it off a lost
    worker, and the outcome then names the worker that really ran it), after its dependencies;
    a failed partition does not stop the others, but the driver skips its descendants.
    """

    #: the registry name, e.g. "pool"
    name: ClassVar[str]

    def __init__(self, context: ExecutionContext) -> None:
        self.context = context
        self.job = context.job

    async def start(self, plan: WorkPlan) -> None:
        """Start what runs the partitions (processes, a cluster). Called once, before `execute`."""

    @abc.abstractmethod
    def execute(self, plan: WorkPlan, driver: GraphDriver) -> AsyncIterator[Outcome]:
        """Run every partition the driver hands out; yield outcomes in completion order,
        including ``skipped`` ones. (Results known from the start, e.g. cache hits, are not
        in ``plan``: the runner reports them.)"""

    async def retries(self) -> dict[str, int]:
        """Partition id → how often it was retried after its worker died (for the record)."""
        return {}

    async def in_flight(self) -> list[InFlight]:
        """The partitions running now, asked often (about once a second) while the run goes:
        cheap, and never blocked by a worker that does not answer. Empty where the executor
        cannot tell (then nothing is watched)."""
        return []

    async def stop_worker(self, item: InFlight, reason: str) -> None:
        """Stop the worker process running ``item`` (it hung): the partition is retried on
        another slot within ``[cluster] retries``, or fails with ``reason``; whatever else that
        worker had not started runs elsewhere. Returns without waiting for the process to go."""
        raise NotImplementedError(f"the {self.name} executor cannot stop a worker")

    def workers(self) -> dict[str, dict[str, Any]]:
        """Worker name → facts for the record (versions, capabilities), once known."""
        return {}

    def describe(self) -> ClusterRecord | None:
        """Where the run ran, for the record: the Dask scheduler of a cluster run, else None."""
        return None

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop everything this executor started, politely; safe to call twice and after errors."""

    def kill(self) -> None:
        """Stop at once (Ctrl-C, an error): no waiting for running partitions."""

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def settle(driver: GraphDriver, outcomes: Iterable[Outcome], slot_of: Mapping[str, str]) -> Iterator[Outcome]:
    """Tell the driver how each of ``outcomes`` went, and give each back, followed by the outcomes
    of the partitions its failure skipped: the one loop every executor runs on what comes back."""
    for outcome in outcomes:
        skipped = driver.complete(outcome.id, ok=outcome.ok, result=outcome.result)
        yield outcome
        if skipped:
            yield from skipped_outcomes(driver, skipped, slot_of)


def skipped_outcomes(driver: GraphDriver, ids: list[str], slot_of: Mapping[str, str]) -> list[Outcome]:
    """Outcomes for partitions the driver skipped after a failure, naming the failed dependency."""
    return [Outcome(pid, slot_of.get(pid, ""), "skipped", error=f"dependency {driver.failed_dependency(pid)} did not succeed")
            for pid in ids]
