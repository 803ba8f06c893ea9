"""The page's long actions as background jobs: install, run, a pipeline run. Each calls the same
core function the CLI does and gives it the job's event sink (``on_event=`` / ``emit=``)."""

from __future__ import annotations

from typing import Any

from ..base.errors import AgiError
from .apps import env_for
from .config import UiConfig
from .jobs import Job, Jobs
from .plans import plan_file

__all__ = ["IMAGE_SUFFIXES", "start_install", "start_pipeline", "start_run"]

from .run_process import IMAGE_SUFFIXES


def start_run(jobs: Jobs, config: UiConfig, app: str, *, mode: str | None = None) -> Job:
    """Run ``app`` with its saved settings (and its edited plan, when the page saved one), in a
    process of its own (`ui.detached`): it goes on when `agi ui` stops."""
    from ..run import resolve
    from .detached import run_detached

    env = env_for(config, app)
    edited = plan_file(config, env)
    plan = edited if edited.exists() else None
    request = resolve(env, mode=mode, cluster=config.share_override() or None, plan=plan)

    async def work(job: Job) -> dict[str, Any]:
        return await run_detached(job, config.state_dir() / "runs" / job.id, request.to_json())

    return jobs.start("run", f"run {app}" + (" (edited plan)" if plan else ""), work, app=app)


def start_install(jobs: Jobs, config: UiConfig, app: str) -> Job:
    """Install ``app`` on every host of its worker map; HostStep events give each host's status."""
    from ..agi import AGI

    env = env_for(config, app)

    async def work(job: Job) -> dict[str, Any]:
        report = await AGI.install(env, cluster=config.share_override() or None, on_event=job.emit)
        return {"app": app, "report": str(report)[:4000]}

    return jobs.start("install", f"install {app}", work, app=app, cancellable=False)  # never stopped half-way through a host


def start_pipeline(jobs: Jobs, config: UiConfig, *, steps: tuple[str, ...] = (), from_step: str | None = None) -> Job:
    """Run the pipeline (all, some steps, or from one on); StepStarted/StepFinished give the status."""
    from ..pipeline import run_pipeline
    from ..pipeline.runner import PipelineRunError

    file = config.steps_file.absolute()
    if not file.exists():
        raise AgiError(f"{file} has no steps yet", fix="add a step from the ORCHESTRATE page (snippet → add as a pipeline step)")

    async def work(job: Job) -> dict[str, Any]:
        try:
            record = await run_pipeline(file, steps=steps, from_step=from_step, emit=job.emit)
        except PipelineRunError as exc:
            exc.ui_result = {"pipeline_run": exc.record.pipeline_run, "status": exc.record.status}  # type: ignore[attr-defined]
            raise
        return {"pipeline_run": record.pipeline_run, "status": record.status,
                "steps": {s.id: {"status": s.status, "runs": s.run_ids} for s in record.steps}}

    title = "pipeline: " + (" ".join(steps) if steps else f"from {from_step}" if from_step else "all steps")
    return jobs.start("pipeline", title, work)
