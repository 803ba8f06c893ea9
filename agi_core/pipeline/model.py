"""`Step` and `Pipeline`: what ``lab_steps.toml`` holds, validated as a graph.

A step is either a generated snippet (kind ``install``, ``distrib`` or ``run``: the Python of that
`AGI.*` call, with the app, mode, ``--set`` overrides and the settings hash it came from) or a
plain Python script (kind ``python``). Steps name the steps they depend on; the pipeline refuses
duplicate ids, unknown dependencies and cycles, naming them.

>>> steps = [Step(id="a", kind="python", code="print(1)"), Step(id="b", kind="python", code="", deps=["a"])]
>>> Pipeline(steps=steps).order()
['a', 'b']
>>> Pipeline(steps=[Step(id="a", kind="python", code="", deps=["b"])]).order()
Traceback (most recent call last):
...
agi_core.pipeline.model.PipelineError: step 'a' depends on 'b', which is not a step
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..base.errors import AgiError

__all__ = ["AGI_KINDS", "STEPS_SCHEMA", "Pipeline", "PipelineError", "Step", "StepKind", "check_step_id", "id_from"]

STEPS_SCHEMA = "agi.lab_steps.v1"
StepKind = Literal["install", "distrib", "run", "python"]
#: the kinds that are generated snippets of an `AGI.*` call (and so can go stale)
AGI_KINDS = ("install", "distrib", "run")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PipelineError(AgiError):
    """``lab_steps.toml`` is invalid (duplicate ids, unknown deps, cycles), or a step cannot run."""


def check_step_id(step_id: str) -> str:
    """``step_id`` when it is a valid step id; else a `PipelineError` that says what is allowed."""
    if not _ID.match(step_id):
        raise PipelineError(f"step id {step_id!r} is not valid: it must start with a letter or digit and hold only "
                            "letters, digits, _ . -", fix="choose another id (--id)")
    return step_id


def id_from(text: str) -> str:
    """A valid step id made from ``text`` (a file name, an app): other characters become ``_``.

    >>> id_from("my plot (v2)")
    'my_plot_v2'
    """
    cleaned = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_.-]", "_", text)).strip("_.-")
    return cleaned or "step"


class Step(BaseModel):
    """One step of a pipeline, as ``[[steps]]`` in ``lab_steps.toml``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="unique within the file: letters, digits, _ . -")
    kind: StepKind
    description: str = ""
    deps: list[str] = Field(default_factory=list, description="ids of the steps that must succeed first")
    app: str | None = Field(default=None, description="the app of an install/distrib/run step")
    apps_path: list[str] | None = Field(default=None, description="the apps folders the snippet was made with")
    mode: str | None = Field(default=None, description="the --mode the snippet was made with (None: settings)")
    set: list[str] = Field(default_factory=list, description="the --set overrides the snippet was made with")
    no_cache: bool = False
    settings_hash: str | None = Field(default=None, description="hash of the app's settings when generated")
    settings_values: dict[str, str] | None = Field(
        default=None, description="the resolved args and cluster settings when generated, by dotted key (values as JSON): "
        "what a stale step's reason names")
    snippet_api: str | None = None
    source: str | None = Field(default=None, description="python steps: the file the code was copied from")
    source_sha256: str | None = None
    generated: str | None = None
    code: str = Field(description="the Python the step runs")
    origin: dict[str, Any] | None = Field(default=None, description="where an imported step came from")

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"step id {value!r} must start with a letter or digit and hold only letters, digits, _ . -")
        return value

    @property
    def is_snippet(self) -> bool:
        return self.kind in AGI_KINDS


class Pipeline(BaseModel):
    """The steps of one ``lab_steps.toml``, in file order."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: str = Field(default=STEPS_SCHEMA, alias="schema")
    steps: list[Step] = Field(default_factory=list)

    def ids(self) -> list[str]:
        return [step.id for step in self.steps]

    def get(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        known = ", ".join(self.ids()) or "none"
        raise PipelineError(f"no step {step_id!r} in the pipeline (steps: {known})", fix="`agi steps list` shows the steps")

    def graph(self) -> Any:
        """The dependency graph (networkx ``DiGraph``, edge dep → step), after checking that every
        id is unique, every dep is a step, and there is no cycle."""
        import networkx as nx

        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise PipelineError(f"duplicate step id {step.id!r}", fix="give each step its own id")
            seen.add(step.id)
        graph = nx.DiGraph()
        graph.add_nodes_from(self.ids())
        for step in self.steps:
            for dep in step.deps:
                if dep not in seen:
                    raise PipelineError(f"step {step.id!r} depends on {dep!r}, which is not a step",
                                        fix=f"add step {dep!r}, or remove it from the deps of {step.id!r}")
                graph.add_edge(dep, step.id)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            return graph
        path = " → ".join([edge[0] for edge in cycle] + [cycle[0][0]])
        raise PipelineError(f"the steps' deps form a cycle: {path}", fix="remove one of these deps")

    def order(self) -> list[str]:
        """Every step, deps first; among steps free at the same time, file order."""
        import networkx as nx

        position = {step_id: i for i, step_id in enumerate(self.ids())}
        return list(nx.lexicographical_topological_sort(self.graph(), key=position.__getitem__))

    def downstream(self, step_ids: Iterable[str]) -> set[str]:
        """``step_ids`` and every step that depends on them, directly or not."""
        import networkx as nx

        graph = self.graph()
        chosen: set[str] = set()
        for step_id in step_ids:
            self.get(step_id)
            chosen |= {step_id} | nx.descendants(graph, step_id)
        return chosen
