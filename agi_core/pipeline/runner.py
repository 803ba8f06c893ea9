"""`run_pipeline`: run the steps of ``lab_steps.toml`` in dependency order, independent steps at
the same time (up to ``jobs``), each in its own Python process.

* What runs: every step (default), the steps named, or ``from_step`` and everything after it.
  A dependency outside the selection counts as done. ``resume`` takes a failed or interrupted
  pipeline run: its ok steps are reused (not run again), the rest run again, and their `AGI.run`
  calls find the results the first attempt cached.
* Stale steps (`staleness`) are refused before anything runs, unless ``allow_stale``.
* A failed step stops the steps that depend on it (skipped, naming the failed dependency); the
  others finish. Ctrl-C stops the running steps (SIGINT, then SIGKILL after a grace period) and
  still writes the record.
* Each step's process gets the step tag (`agi_core.run.step`), so the records of the runs it
  makes name the step and the pipeline run, and the pipeline record lists their run ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..base.events import EventSink, StepFinished, StepStarted, ignore
from ..provenance import StepRecord
from ..run.step import step_environment
from ..snippets import STRICT_ENV
from .authoring import staleness
from .inputs import inputs_environment
from .model import Pipeline, PipelineError, Step
from .record import PipelineRecord, PipelineStore, StepRun, StepRunRef, now_iso
from .steps_file import load_pipeline

__all__ = ["DEFAULT_JOBS", "PipelineRunError", "run_pipeline", "select_steps"]

DEFAULT_JOBS = 4
STOP_GRACE_S = 15.0  # after SIGINT, how long a step may take to write its records before SIGKILL
_TAIL_LINES = 15


class PipelineRunError(PipelineError):
    """Some steps failed or were skipped; ``record`` is the pipeline record."""

    def __init__(self, message: str, *, fix: str | None = None, record: PipelineRecord) -> None:
        super().__init__(message, fix=fix)
        self.record = record


def select_steps(pipeline: Pipeline, steps: Sequence[str] = (), from_step: str | None = None) -> list[str]:
    """The ids to run, in run order: ``steps`` (those only), ``from_step`` and its dependants, or all."""
    order = pipeline.order()
    if steps and from_step:
        raise PipelineError("give step ids or --from, not both", fix="agi steps run ID ... | agi steps run --from ID")
    if from_step:
        chosen = pipeline.downstream([from_step])
    elif steps:
        for step_id in steps:
            pipeline.get(step_id)
        chosen = set(steps)
    else:
        chosen = set(order)
    return [step_id for step_id in order if step_id in chosen]


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_TAIL_LINES:])


def _ledger(path: Path) -> list[StepRunRef]:
    """The runs a step announced, in order, each with its last reported status."""
    runs: dict[str, StepRunRef] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                runs[data["run_id"]] = StepRunRef(**data)
    return list(runs.values())


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Ask a step to stop as Ctrl-C would (so its runs record themselves), then kill it."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


class _PipelineRun:
    """One pipeline run: its record, and the processes of its running steps."""

    def __init__(self, file: Path, pipeline: Pipeline, store: PipelineStore, record: PipelineRecord, run_dir: Path,
                 stale: dict[str, str], jobs: int, emit: EventSink) -> None:
        self.file, self.pipeline, self.store, self.record = file, pipeline, store, record
        self.run_dir, self.stale, self.jobs, self.emit = run_dir, stale, jobs, emit
        self.began = time.time()

    def _save(self) -> None:
        self.store.write(self.record)

    def _end(self, entry: StepRun, status: str, reason: str | None = None) -> None:
        entry.status = status  # type: ignore[assignment]
        entry.reason = reason
        if entry.started:
            entry.ended = now_iso()
        self._save()
        self.emit(StepFinished(self.record.pipeline_run, entry.id, status, entry.duration_s, tuple(entry.run_ids), reason))

    async def _run_step(self, step: Step, entry: StepRun) -> None:
        script = self.run_dir / "steps" / f"{step.id}.py"
        script.write_text(step.code)
        log = self.run_dir / "logs" / f"{step.id}.log"
        ledger = self.run_dir / "ledger" / f"{step.id}.jsonl"
        tag = StepRecord(pipeline=str(self.file), pipeline_run=self.record.pipeline_run, step=step.id, ledger=str(ledger))
        by_id = self.record.steps_by_id()
        inputs = {dep: [run.manifest for run in by_id[dep].runs] for dep in step.deps if dep in by_id}
        env = {**os.environ, **step_environment(tag), **inputs_environment(inputs), "PYTHONUNBUFFERED": "1"}
        if step.id in self.stale:
            env[STRICT_ENV] = "0"  # --allow-stale: the snippet warns (into its log) instead of refusing
        entry.status, entry.started = "running", now_iso()
        entry.script, entry.log = str(script.relative_to(self.run_dir)), str(log.relative_to(self.run_dir))
        self._save()
        self.emit(StepStarted(self.record.pipeline_run, step.id, step.kind, step.app, str(log)))
        began = time.monotonic()
        with open(log, "wb") as out:  # noqa: ASYNC230 -- a local file, opened once per step
            process = await asyncio.create_subprocess_exec(sys.executable, str(script), cwd=str(self.file.parent),
                                                           stdin=asyncio.subprocess.DEVNULL, stdout=out,
                                                           stderr=asyncio.subprocess.STDOUT, env=env)
            try:
                code = await process.wait()
            except asyncio.CancelledError:
                await _stop(process)
                entry.duration_s, entry.returncode = round(time.monotonic() - began, 3), process.returncode
                entry.runs = _ledger(ledger)
                self._end(entry, "interrupted", "the pipeline was interrupted")
                raise
        entry.duration_s, entry.returncode, entry.runs = round(time.monotonic() - began, 3), code, _ledger(ledger)
        if code == 0:
            self._end(entry, "ok")
        else:
            tail = _tail(log)
            last = tail.splitlines()[-1].strip() if tail else "(no output)"
            self._end(entry, "failed", f"exit status {code}: {last} (log: {entry.log})" + (f"\n{tail}" if tail else ""))

    async def run(self) -> PipelineRecord:
        entries = {entry.id: entry for entry in self.record.steps}
        waiting = [entry.id for entry in self.record.steps if entry.status == "pending"]
        running: dict[asyncio.Task[None], str] = {}
        try:
            while waiting or running:
                for step_id in list(waiting):
                    step = self.pipeline.get(step_id)
                    deps = [entries[dep] for dep in step.deps if dep in entries]
                    broken = [dep.id for dep in deps if dep.status in ("failed", "skipped", "interrupted")]
                    if broken:
                        waiting.remove(step_id)
                        self._end(entries[step_id], "skipped", f"dependency {broken[0]!r} did not succeed")
                    elif all(dep.status == "ok" for dep in deps) and len(running) < self.jobs:
                        waiting.remove(step_id)
                        running[asyncio.create_task(self._run_step(step, entries[step_id]))] = step_id
                if not running:
                    continue  # every step left was just skipped
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.pop(task)
                    task.result()  # a bug in the runner itself must not pass as a step outcome
        except BaseException:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for step_id in waiting:
                entries[step_id].status, entries[step_id].reason = "not_run", "the pipeline was interrupted"
            self._finish("interrupted", "interrupted by the user (Ctrl-C)")
            raise
        bad = [entry for entry in self.record.steps if entry.status not in ("ok",)]
        self._finish("failed" if bad else "ok", None)
        return self.record

    def _finish(self, status: str, error: str | None) -> None:
        self.record.status = status  # type: ignore[assignment]
        self.record.error = error
        self.record.ended = now_iso()
        self.record.duration_s = round(time.time() - self.began, 3)
        self._save()


def _reusable(previous: PipelineRecord, selected: Iterable[str]) -> dict[str, StepRun]:
    """The steps of ``previous`` that succeeded (or were reused there), by id."""
    chosen = set(selected)
    return {step.id: step for step in previous.steps if step.id in chosen and step.status == "ok"}


async def run_pipeline(file: Path, *, steps: Sequence[str] = (), from_step: str | None = None, resume: str | None = None,
                       allow_stale: bool = False, jobs: int = DEFAULT_JOBS, emit: EventSink | None = None) -> PipelineRecord:
    """Run the pipeline in ``file``; returns its record, or raises `PipelineRunError` (with the
    record) when a step failed or was skipped. See the module docstring for what runs.

    >>> import asyncio, tempfile, pathlib
    >>> from agi_core.pipeline import Step, Pipeline, save_pipeline
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "lab_steps.toml"
    >>> save_pipeline(file, Pipeline(steps=[Step(id="a", kind="python", code="print('a')"),
    ...                                     Step(id="b", kind="python", code="print('b')", deps=["a"])]))
    >>> record = asyncio.run(run_pipeline(file))
    >>> record.status, [(s.id, s.status) for s in record.steps]
    ('ok', [('a', 'ok'), ('b', 'ok')])
    """
    emit = emit or ignore
    file = Path(file).absolute()
    pipeline = load_pipeline(file)
    if jobs < 1:
        raise PipelineError(f"--jobs must be at least 1, not {jobs}", fix="agi steps run --jobs 2")
    store = PipelineStore(file)
    reused: dict[str, StepRun] = {}
    previous = None
    if resume is not None:
        if steps or from_step:
            raise PipelineError("--resume re-runs the steps of that pipeline run; it takes no step ids or --from",
                                fix=f"agi steps run --resume {resume}")
        previous = store.find(resume)
        if previous.status == "ok":
            raise PipelineError(f"pipeline run {previous.pipeline_run} finished ok: there is nothing to resume",
                                fix="run the pipeline again: agi steps run")
        if previous.status == "running":
            raise PipelineError(f"pipeline run {previous.pipeline_run} is still running (pid {previous.pid} on {previous.host})",
                                fix="wait for it, or stop it first")
        missing = [step.id for step in previous.steps if step.id not in pipeline.ids()]
        if missing:
            raise PipelineError(f"pipeline run {previous.pipeline_run} ran step(s) {', '.join(missing)}, which are no longer in {file}",
                                fix="run the pipeline again instead of resuming it")
        order = [step_id for step_id in pipeline.order() if previous.step(step_id) is not None]
        reused = _reusable(previous, order)
        selection = f"--resume {previous.pipeline_run}"
    else:
        order = select_steps(pipeline, steps, from_step)
        selection = f"--from {from_step}" if from_step else (" ".join(steps) if steps else "all")
    if not order:
        raise PipelineError(f"{file} has no steps to run", fix="add one: agi steps add APP run")
    stale = {step_id: why for step_id in order if step_id not in reused
             if (why := staleness(pipeline.get(step_id))) is not None}
    if stale and not allow_stale:
        listed = "; ".join(f"{step_id}: {why}" for step_id, why in stale.items())
        raise PipelineError(f"stale step(s), not run: {listed}",
                            fix=f"regenerate them (agi steps refresh {' '.join(stale)}), or run them as they are with --allow-stale")

    run_id, run_dir = store.new_run_dir()
    record = PipelineRecord(pipeline_run=run_id, file=str(file), selection=selection, jobs=jobs,
                            resumed_from=previous.pipeline_run if previous else None)
    for step_id in order:
        step = pipeline.get(step_id)
        entry = StepRun(id=step.id, kind=step.kind, app=step.app, deps=list(step.deps), stale=stale.get(step_id))
        if step_id in reused:
            done = reused[step_id]
            entry = entry.model_copy(update={"status": "ok", "reused_from": done.reused_from or previous.pipeline_run,  # type: ignore[union-attr]
                                             "runs": done.runs, "reason": "ok in an earlier run: not run again"})
        record.steps.append(entry)
    runner = _PipelineRun(file, pipeline, store, record, run_dir, stale, jobs, emit)
    store.write(record)
    for entry in record.steps:
        if entry.reused_from:
            emit(StepFinished(run_id, entry.id, "reused", 0.0, tuple(entry.run_ids), entry.reason))
    await runner.run()
    if record.status != "ok":
        failed = [entry.id for entry in record.steps if entry.status == "failed"]
        skipped = [entry.id for entry in record.steps if entry.status == "skipped"]
        message = f"pipeline run {run_id}: step(s) failed: {', '.join(failed)}" + (f"; skipped: {', '.join(skipped)}" if skipped else "")
        first = next(entry for entry in record.steps if entry.status == "failed")
        raise PipelineRunError(message + (f"\n{first.id}: {first.reason}" if first.reason else ""),
                               fix=f"fix the step, then `agi steps run --resume {run_id}` (ok steps are not run again)", record=record)
    return record
