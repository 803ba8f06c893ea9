"""What each Dask worker runs (versions, capabilities) for the run record, and ``rapids = "require"``
checked against it.

Separate from `dask` because it is asked of the workers once at start and again when workers join
late; it needs only the client and the facts, not the executor's state.
"""

from __future__ import annotations

from typing import Any

from ..base.errors import AgiError
from ..gpus import gpu_libraries_unusable

__all__ = ["require_gpus", "worker_records"]


async def worker_records(client: Any, distribution: str, source_version: str) -> dict[str, dict[str, Any]]:
    """Each Dask worker's versions and capabilities, for the run record."""
    from ..cluster import worker_facts

    records = {}
    for name, facts in (await worker_facts(client, distribution)).items():
        versions = {"python": facts.python, "agi-orchestrator": facts.agi_core, "dask": facts.dask,
                    "distributed": facts.distributed, distribution: facts.app or source_version}
        records[name] = {"host": facts.host, "versions": {k: v for k, v in versions.items() if v},
                         "capabilities": {"cores": facts.cores, "nthreads": facts.nthreads,
                                          "memory_limit": facts.memory_limit, "gpus": facts.gpus, **(facts.gpu or {})}}
    return records


def require_gpus(facts: dict[str, dict[str, Any]]) -> None:
    """``rapids = "require"``: every worker must see a GPU (or numba's simulator), checked on the
    workers themselves before anything is submitted; the error names the hosts."""
    without = sorted({fact["host"] for fact in facts.values()
                      if not (fact["capabilities"].get("gpu_models") or fact["capabilities"].get("gpu_simulated"))})
    if without:
        raise AgiError(f'rapids = "require", but workers see no GPU: no GPU on {", ".join(without)}',
                       fix="check those hosts with `agi doctor APP` (nvidia-smi, the driver, CUDA_VISIBLE_DEVICES), "
                           "remove them from the worker map, or set rapids = true to run the CPU kernels there")
    unusable = gpu_libraries_unusable(facts)  # a GPU that neither numba.cuda nor cuDF can use
    if unusable:
        raise AgiError(f'rapids = "require", but the GPU libraries cannot use the GPU of {unusable}',
                       fix="check those hosts with `agi doctor APP` (gpu libraries: the driver, the app's gpu extra), "
                           "or set rapids = true to run the CPU kernels there")
