"""The runnable examples in the public modules' docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = [
    "agi_core", "agi_core.agi", "agi_core.app.contract", "agi_core.app.env", "agi_core.base.errors", "agi_core.base.hosts", "agi_core.base.modes",
    "agi_core.settings.loading", "agi_core.settings.schema", "agi_core.ssh.session", "agi_core.ssh.remote", "agi_core.plan.balancing", "agi_core.plan.workplan", "agi_core.cache.keys", "agi_core.cache.store", "agi_core.cache.maintenance", "agi_core.cache.audit", "agi_core.cache.inputs", "agi_core.cache.keys_memo", "agi_core.executors.file_reads", "agi_core.cache.packs", "agi_core.cache.entries", "agi_core.provenance.lines", "agi_core.provenance.reruns", "agi_core.executors.attempts", "agi_core.base.quantities", "agi_core.plan.graph", "agi_core.plan.dag", "agi_core.snippets.render", "agi_core.snippets.check", "agi_core.install.cython_build",
    "agi_core.pipeline.model", "agi_core.pipeline.steps_file", "agi_core.pipeline.authoring", "agi_core.pipeline.record",
    "agi_core.pipeline.runner", "agi_core.pipeline.inputs", "agi_core.run.step", "agi_core.pipeline.agilab",
    "agi_core.pipeline.agilab_code", "agi_core.base.share_io", "agi_core.base.stalls",
    "agi_core.settings.backend_plugins", "agi_core.cluster.ports", "agi_core.cluster.slurm_names", "agi_core.cluster.slurm_options",
    "agi_core.cluster.slurm_ports", "agi_core.cluster.gateway_ports", "agi_core.cache.key_changes", "agi_core.gpus", "agi_core.gpus.probe", "agi_core.gpus.owners",
    "agi_core.gpus.libraries", "agi_core.plan.slots", "agi_core.settings.wording", "agi_core.settings.assignments",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))  # examples that run write their records here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
