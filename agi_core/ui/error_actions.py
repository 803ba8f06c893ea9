"""Errors as actions: where the fix of a failed job is something the page can do (discard a stale
edited plan, install the app, refresh stale pipeline steps), the error box offers it as a button beside the fix line."""

from __future__ import annotations

from dataclasses import dataclass

from .jobs import Job

__all__ = ["Action", "actions_for"]


@dataclass(frozen=True)
class Action:
    label: str
    post: str  # the URL the button posts to
    target: str  # the panel its answer replaces
    id: str


def actions_for(job: Job) -> list[Action]:
    """The buttons for a failed job's error and fix (none for a job that did not fail)."""
    if job.status != "failed":
        return []
    if job.kind == "pipeline" and "stale step" in (job.error or ""):  # refused before anything ran
        return [Action("Refresh the stale steps", "/pipeline/refresh-stale", "#steps-panel", "action-refresh-stale")]
    if not job.app:
        return []
    text = f"{job.error or ''}\n{job.fix or ''}"
    app = job.app
    actions = []
    if job.result.get("plan_file") and ("stale" in text or "plan" in (job.fix or "")):
        actions.append(Action("Discard the plan edits (plan afresh)", f"/orchestrate/{app}/plan/discard", "#plan-panel",
                              "action-discard-plan"))
    if "agi install" in text:
        actions.append(Action(f"Install {app}", f"/orchestrate/{app}/install", "#install-panel", "action-install"))
    return actions
