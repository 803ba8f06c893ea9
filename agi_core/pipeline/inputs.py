"""`step_inputs`: inside a step, the runs made by the steps it depends on.

A python step that post-processes what an earlier step computed needs that step's run: its
record names the outputs folder, the result and the args. `agi steps run` passes the runs of
each dependency to the step's process (one environment variable, JSON); `step_inputs` reads them
back as `RunRecord` objects. Reused steps (``--resume``) pass the runs of the run that did them.

>>> step_inputs()  # outside a pipeline: no inputs
{}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..base.errors import AgiError
from ..provenance import RunRecord, read_record

__all__ = ["INPUTS_ENV", "inputs_environment", "step_inputs"]

INPUTS_ENV = "AGI_PIPELINE_INPUTS"


def inputs_environment(runs: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The environment variable that gives a step its deps' runs: dep id → their manifest paths."""
    return {INPUTS_ENV: json.dumps({dep: list(manifests) for dep, manifests in runs.items()})}


def step_inputs() -> dict[str, list[RunRecord]]:
    """Dep step id → the records of the runs it made (in order), for the step running now.

    A python step reads its input from them, e.g. the image the ``render`` step wrote::

        from pathlib import Path
        from agi_core.pipeline import step_inputs

        (render,) = step_inputs()["render"]
        image = Path(render.out_dir) / "mandelbrot.png"
    """
    text = os.environ.get(INPUTS_ENV)
    if not text:
        return {}
    try:
        runs = json.loads(text)
    except ValueError:
        raise AgiError(f"environment variable {INPUTS_ENV} is not JSON", fix=f"unset {INPUTS_ENV} (only `agi steps run` sets it)") from None
    return {dep: [read_record(Path(manifest)) for manifest in manifests] for dep, manifests in runs.items()}
