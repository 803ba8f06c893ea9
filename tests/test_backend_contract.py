"""The backend contract: the template start cleans up after a failed launch, the hooks decide what
the rest of agi asks (Slurm's answers here, a plugin's in test_backend_plugin), closing stops
processes without dead time (a zombie is stopped), and a spec names no backend but by name."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from agi_core import AgiError, Mode
from agi_core.cluster import ClusterSpec, cluster_spec
from agi_core.cluster.backend import ClusterBackend
from agi_core.cluster.detached import running, stop_groups
from agi_core.cluster.warm import mismatch
from agi_core.install.installer import hosts_of
from agi_core.settings import ClusterSettings


def settings(**cluster) -> ClusterSettings:
    return ClusterSettings.model_validate(cluster)


def test_a_failed_launch_closes_what_it_started():
    class Failing(ClusterBackend):
        process: subprocess.Popen | None = None

        async def launch(self, emit=None) -> None:
            self.process = subprocess.Popen(["sleep", "60"], start_new_session=True)
            raise AgiError("the scheduler did not start", fix="none")

        async def close(self) -> None:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                self.process.wait()

    backend = Failing(cluster_spec(settings(), Mode.CLUSTER))
    with pytest.raises(AgiError, match="did not start"):
        asyncio.run(backend.start())
    assert backend.process is not None and backend.process.returncode is not None  # stopped by the template's close


def _zombie() -> subprocess.Popen:
    """A process group whose only process has exited but is not reaped yet (a zombie)."""
    proc = subprocess.Popen(["true"], start_new_session=True)
    stat = Path(f"/proc/{proc.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    return proc


def test_a_zombie_counts_as_stopped_and_a_live_group_as_running():
    zombie = _zombie()
    try:
        assert subprocess.run(["bash", "-c", f"kill -0 -- -{zombie.pid}"]).returncode == 0  # what the old poll waited on
        assert subprocess.run(["bash", "-c", running([zombie.pid])]).returncode != 0
        live = subprocess.Popen(["sleep", "60"], start_new_session=True)
        assert subprocess.run(["bash", "-c", running([zombie.pid, live.pid])]).returncode == 0
        done = subprocess.run(["bash", "-c", stop_groups([zombie.pid, live.pid])])
        assert done.returncode == 0 and live.wait(timeout=10) == -15  # SIGTERM was enough: no SIGKILL
        assert subprocess.run(["bash", "-c", stop_groups([live.pid])]).returncode == 0  # nothing left: ends at once
    finally:
        zombie.wait()


def test_the_slurm_backend_answers_the_hooks():
    cluster = settings(backend="slurm", pool=True, slurm={"jobs": 2, "processes": 2, "cores": 8, "gpus": 2, "login": "hpc@login01"})
    spec = cluster_spec(cluster, Mode.CLUSTER | Mode.POOL, app="toy")
    assert [w.slot for w in spec.workers] == ["slurm-0", "slurm-1", "slurm-2", "slurm-3"]
    assert {w.nthreads for w in spec.workers} == {4} and not any(w.gpu for w in spec.workers)  # GPUs only with the rapids bit
    assert all(w.gpu for w in cluster_spec(cluster, Mode.CLUSTER | Mode.RAPIDS, app="toy").workers)
    assert spec.options["jobs"] == 2 and "slurm" not in {f for f in ClusterSpec.__dataclass_fields__}
    assert hosts_of(cluster) == {"hpc@login01": ["Slurm workers: 4 (shared venv)"]}
    bigger = cluster_spec(settings(backend="slurm", slurm={"jobs": 2, "processes": 2, "cores": 8, "gpus": 2, "memory": "8GB",
                                                           "login": "other", "pending_timeout": 5}), Mode.CLUSTER | Mode.POOL, app="toy")
    # the login node and the queue timeout change nothing that runs: only the memory differs
    assert mismatch({"identity": spec.identity()}, bigger) == "[cluster.slurm] memory differ"


def test_a_spec_round_trips_its_backends_options_and_ignores_fields_it_does_not_know():
    spec = cluster_spec(settings(backend="slurm", slurm={"jobs": 3}), Mode.CLUSTER, app="toy")
    data = spec.to_json()
    assert ClusterSpec.from_json(data) == spec
    assert ClusterSpec.from_json({**data, "retired_field": {"jobs": 1}}) == spec  # a warm cluster of an older agi


def test_the_default_hooks_keep_the_worker_map_and_the_ssh_install_roles():
    cluster = settings(scheduler="10.0.0.1:8786", workers={"10.0.0.2": 2})
    assert hosts_of(cluster) == {"10.0.0.1": ["scheduler"], "10.0.0.2": ["2 workers"]}
    spec = cluster_spec(cluster, Mode.CLUSTER, app="toy")
    assert spec.options == {} and "options" not in spec.identity()
    with pytest.raises(AgiError, match="no scheduler"):  # the ssh backend reaches hosts: it needs one
        cluster_spec(settings(workers={"10.0.0.2": 2}), Mode.CLUSTER, app="toy")


def test_the_built_in_table_repeats_the_entry_points_of_pyproject():
    import tomllib

    from agi_core.settings.backend_plugins import BUILTIN_BACKENDS, GROUP

    declared = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]
    assert declared == {name: entry["class"] for name, entry in BUILTIN_BACKENDS.items()}
