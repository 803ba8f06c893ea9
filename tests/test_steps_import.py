"""`agi steps import`: AGILAB's lab_stages.toml (and older lab_steps.toml) become pipeline steps:
AGI.* stages on an app found here become snippet steps that run, other code becomes python steps,
ids, depends_on and the sequence order are kept, and what did not convert is reported with why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agi_core.pipeline import PipelineError, load_pipeline
from agi_core.pipeline.agilab import import_agilab

from .conftest import TEST_APPS, run_agi

# An AGILAB ORCHESTRATE run snippet of the kind its older pages wrote (AGI.run with keywords)
AGI_RUN_STAGE = '''
import asyncio
from agi_cluster.agi_distributor import AGI
from agi_env import AgiEnv

APPS_PATH = "{apps}"
APP = "toy_project"

async def main():
    app_env = AgiEnv(apps_path=APPS_PATH, app=APP, verbose=1)
    res = await AGI.run(app_env, mode=0, scheduler=None, workers=None, workers_data_path="{share}", n=3)
    print(res)
    return res

if __name__ == "__main__":
    asyncio.run(main())
'''

# Newer AGILAB snippets: module constants, json.loads payloads and a RunRequest
REQUEST_STAGE = """\
import asyncio
import json
from agi_cluster.agi_distributor import AGI, RunRequest
from agi_env import AgiEnv

APP = "mandelbrot_project"
RUN_PARAMS = json.loads('{"bands": 4, "width": 64}')
RUN_DATA_OUT = json.loads('null')

async def main():
    app_env = AgiEnv(apps_path="/nowhere/agilab/apps/builtin", app=APP, verbose=1)
    request = RunRequest(params=RUN_PARAMS, stages=[], data_out=RUN_DATA_OUT, mode=AGI.PYTHON_MODE,
                         scheduler=None, workers=None, rapids_enabled=False)
    return await AGI.run(app_env, request=request)
"""

LAB_STAGES = '''\
[__meta__]
schema = "agilab.lab_stages.v1"
version = 1
mandel__sequence = [1, 0, 3, 2]

[[toy]]
id = "render"
D = "Square the numbers"
Q = "Run the toy app on three partitions"
M = "gpt-x"
C = """{agi_run}"""
E = "/home/someone/agilab/apps/toy_project"
R = "agi.run"
produces = ["toy/out"]

[[toy]]
id = "plot"
D = "Plot the squares"
C = "open('plot.txt', 'w').write('plotted')\\n"
R = "runpy"
depends_on = ["render"]
consumes = ["toy/out"]
NB_CELL_ID = "cell-3"
NB_CONTEXT_IDS = ["markdown-2"]

[[toy]]
id = "ask"
Q = "A prompt never turned into code"
depends_on = "plot"

[[toy]]
id = "report"
D = "Report"
C = "print('report')"
depends_on = ["ask"]

[[toy]]
id = "prose"
D = "Old-style description in C"
C = "Load JSON cases and validate them."
depends_on = ["render"]

[__meta__.mandel__automation]
max_workers = 2
'''

# module mandel as an inline array of inline tables: (D, Q, C), C written as a TOML basic string
MANDEL = [
    ("Preview the partitions", None, "env = AgiEnv(app='mandelbrot')\nARGS = {'bands': 4}\nplan = AGI.get_distrib(env, scheduler=None, **ARGS)"),
    ("Render with a RunRequest", None, REQUEST_STAGE),
    ("Computed argument", None, "env = AgiEnv(app='mandelbrot')\nAGI.run(env, mode=0, bands=compute())"),
    ("An app that is not here", "fly", "env = AgiEnv(active_app=Path('/x/flight_project'))\nAGI.run(env, mode=4)"),
]


def _inline_module() -> str:
    rows = [f"  {{ D = {json.dumps(d)}, " + (f"Q = {json.dumps(q)}, " if q else "") + f"C = {json.dumps(c)}, R = \"agi.run\" }},"
            for d, q, c in MANDEL]
    return "mandel = [\n" + "\n".join(rows) + "\n]\n"


def _write_lab_stages(folder: Path, share: Path) -> Path:
    path = folder / "lab_stages.toml"
    agi_run = AGI_RUN_STAGE.format(apps=TEST_APPS, share=share)
    # the [[toy]] tables, then the inline array of module mandel (a top-level key: before any table)
    path.write_text(_inline_module() + "\n" + LAB_STAGES.format(agi_run=agi_run))
    return path


def test_lab_stages_import_keeps_ids_deps_order_and_every_key(tmp_path, share):
    result = import_agilab(_write_lab_stages(tmp_path, share))
    assert result.schema == "agilab.lab_stages.v1"
    steps = {step.id: step for step in result.steps}
    # mandel is chained in its __sequence order (no depends_on there); toy keeps its depends_on
    assert list(steps) == ["mandel-2", "mandel-1", "mandel-4", "mandel-3", "render", "plot", "report"]
    assert [(s.kind, s.app, s.deps) for s in result.steps[:4]] == [
        ("run", "mandelbrot", []), ("distrib", "mandelbrot", ["mandel-2"]),
        ("python", None, ["mandel-1"]), ("python", None, ["mandel-4"])]
    assert steps["mandel-2"].mode == "1" and steps["mandel-2"].set == ["bands=4", "width=64"]
    assert steps["mandel-1"].set == ["bands=4"] and steps["mandel-1"].code.startswith("# agi.snippet.v1  kind=distrib  app=mandelbrot")
    assert steps["render"].kind == "run" and steps["render"].app == "toy" and steps["render"].set[-1] == "n=3"
    assert steps["render"].apps_path == [str(TEST_APPS)]  # found through the stage's own AgiEnv(apps_path=...)
    assert steps["plot"].deps == ["render"] and steps["plot"].kind == "python"
    assert steps["report"].deps == ["plot"]  # its dep 'ask' has no code: it takes the place of ask's deps
    assert steps["render"].description == "Square the numbers"

    # nothing is lost: the other keys are in origin, the AGILAB code of a converted stage too
    render, plot = steps["render"].origin, steps["plot"].origin
    assert render["stage"]["Q"].startswith("Run the toy") and render["stage"]["M"] == "gpt-x"
    assert render["stage"]["E"].endswith("toy_project") and render["stage"]["produces"] == ["toy/out"]
    assert "AGI.run(app_env" in render["code"] and render["module"] == "toy" and render["index"] == 0
    assert plot["stage"]["NB_CELL_ID"] == "cell-3" and plot["stage"]["consumes"] == ["toy/out"]

    where = {note.where.split(": ", 1)[1]: note.why for note in result.as_python + result.skipped}
    assert "`compute()` is not a literal value" in where["module mandel stage 3"]
    assert "app 'flight' is not found here" in where["module mandel stage 4"]
    assert where["module toy stage 3 (id ask)"] == "no code (C): nothing to run"
    assert "not Python" in where["module toy stage 5 (id prose)"]
    assert steps["mandel-3"].origin["not_converted"] == where["module mandel stage 3"]


def test_cli_import_writes_a_pipeline_whose_agi_step_runs_ok(tmp_path, share):
    source = _write_lab_stages(tmp_path, share)
    done = run_agi("steps", "import", str(source), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "7 step(s) from" in done.stdout and "not converted" in done.stdout
    assert "module toy stage 3 (id ask)" in done.stdout and "skipped: no code (C)" in done.stdout

    pipeline = load_pipeline(tmp_path / "lab_steps.toml")
    assert pipeline.ids()[:2] == ["mandel-2", "mandel-1"] and pipeline.get("plot").origin["stage"]["NB_CONTEXT_IDS"] == ["markdown-2"]
    assert pipeline.order().index("render") < pipeline.order().index("plot") < pipeline.order().index("report")

    # the imported snippet runs as a script, from any directory, and makes an ok run of toy
    script = tmp_path / "render.py"
    script.write_text(pipeline.get("render").code)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    ran = subprocess.run([sys.executable, str(script)], cwd=share, env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "status: ok" in ran.stdout and "value: 5" in ran.stdout  # 0 + 1 + 4
    assert f"record: {share}" in ran.stdout

    again = run_agi("steps", "import", str(source), cwd=tmp_path)
    assert again.returncode == 1 and "already has step(s) 'mandel-2'" in again.stderr and "--replace" in again.stderr
    replaced = run_agi("steps", "import", str(source), "--replace", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert len(load_pipeline(tmp_path / "lab_steps.toml").steps) == 7


def test_old_lab_steps_format_without_meta_is_chained_in_file_order(tmp_path):
    path = tmp_path / "lab_steps.toml"
    path.write_text('''\
flight = [
  { D = "Ingest", Q = "Load the scenario", M = "", C = "APP = 'flight_project'\\ndata_in = 'flight/in'", R = "runpy" },
  { D = "Explain", Q = "No code yet", M = "" },
  { D = "Export", Q = "Write the results", M = "", C = "data_out = 'flight/out'", E = "flight/.venv", R = "runpy" },
]
''')
    result = import_agilab(path)
    assert result.schema is None
    assert [(s.id, s.kind, s.deps, s.description) for s in result.steps] == [
        ("flight-1", "python", [], "Ingest"), ("flight-3", "python", ["flight-1"], "Export")]
    assert result.steps[1].origin["stage"]["E"] == "flight/.venv"
    assert [note.why for note in result.skipped] == ["no code (C): nothing to run"]


def test_lab_steps_v1_with_step_tables(tmp_path):
    path = tmp_path / "lab_steps.toml"
    path.write_text('[__meta__]\nschema = "agilab.lab_steps.v1"\n\n[[steps]]\nD = "one"\nC = "print(1)"\n\n'
                    '[[steps]]\nD = "two"\nC = "print(2)"\nR = "runpy"\n')
    result = import_agilab(path)
    assert result.schema == "agilab.lab_steps.v1"
    assert [(s.id, s.deps) for s in result.steps] == [("steps-1", []), ("steps-2", ["steps-1"])]


@pytest.mark.parametrize(("text", "message"), [
    ('flight = [ { D = "a", C = "print(1)" ', "invalid TOML"),
    ('[__meta__]\nschema = "agilab.other.v3"\n[[m]]\nC = "x = 1"\n', "schema 'agilab.other.v3' is not"),
    ('[[m]]\nid = "a"\nC = "x = 1"\ndepends_on = ["ghost"]\n', "module m stage 1 (id a): depends_on 'ghost', which is not a stage id"),
    ('[[m]]\nid = "a"\nC = "x = 1"\ndepends_on = ["b"]\n[[m]]\nid = "b"\nC = "x = 2"\ndepends_on = ["a"]\n',
     "module m stage 1 (id a): the stages' depends_on form a cycle: a → b → a"),
    ('[[m]]\nid = "a"\nC = "x = 1"\n[[m]]\nid = "a"\nC = "x = 2"\n', "module m stage 2 (id a): id 'a' is also the id of"),
    ('schema = "agi.lab_steps.v1"\n[[steps]]\nid = "a"\nkind = "python"\ncode = ""\n', "agi_core's own pipeline"),
    ('title = "not a pipeline"\n', "no AGILAB stages"),
])
def test_invalid_files_are_errors_naming_the_file_and_stage(tmp_path, text, message):
    path = tmp_path / "lab_stages.toml"
    path.write_text(text)
    with pytest.raises(PipelineError) as caught:
        import_agilab(path)
    assert str(path) in caught.value.message and message in caught.value.message
    assert caught.value.fix


def test_import_help_explains_with_an_example():
    done = run_agi("steps", "import", "--help")
    assert done.returncode == 0
    assert "lab_stages.toml" in done.stdout and "Example:" in done.stdout and "--replace" in done.stdout


def test_the_docs_example_imports_and_runs(tmp_path):
    # docs/pipelines.md "Coming from AGILAB": its lab_stages.toml, `agi steps import`, then `agi steps run`
    docs = (Path(__file__).resolve().parent.parent / "docs" / "pipelines.md").read_text()
    section = docs.split("## Coming from AGILAB", 1)[1]
    (tmp_path / "lab_stages.toml").write_text(section.split('```toml title="lab_stages.toml"\n', 1)[1].split("```", 1)[0])
    shown = section.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}  # the run's default share: here, not in ~

    done = run_agi("steps", "import", "lab_stages.toml", "--file", "agilab_steps.toml", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    printed = [line.rstrip() for line in done.stdout.splitlines()]
    assert printed == shown[1:shown.index("$ agi steps run --file agilab_steps.toml")]

    ran = run_agi("steps", "run", "--file", "agilab_steps.toml", cwd=tmp_path, env=env, timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "pipeline run" in ran.stdout and "ok" in ran.stdout


@pytest.mark.parametrize(("code", "expected"), [
    (("env = AgiEnv(apps_dir='/a', active_app=Path('/a/flight_project'), install_type=1)\n"
      "AGI.install(env, modes_enabled=AGI.PYTHON_MODE | AGI.DASK_MODE, verbose=1, scheduler='127.0.0.1', workers={'127.0.0.1': 2})"),
     ("install", "flight", "/a", 5, ['cluster.scheduler="127.0.0.1"', 'cluster.workers={"127.0.0.1" = 2}'], ["verbose"])),
    ("ARGS = {'files': '*.csv', 'ratio': 0.5}\nAGI.get_distrib(app_env, **ARGS)",
     ("distrib", None, None, None, ['files="*.csv"', "ratio=0.5"], [])),
    ("AGI.run(env, request=RunRequest(params={'n': 2}, stages=[{'name': 'a'}]))", "RunRequest stages"),
    ("AGI.install(env)\nAGI.run(env)", "it calls AGI 2 times (install, run)"),
    ("AGI.serve(env)", "AGI.serve has no agi_core step kind"),
    ("N = 1\nN = 2\nAGI.run(env, n=N)", "`N` is assigned more than once"),
    ("AGI.run(env, label=f'{x}')", "is not a literal value"),
])
def test_agilab_calls_are_read_without_running_them(code, expected):
    from agi_core.pipeline.agilab_code import read_agi_call

    call = read_agi_call(code)
    if isinstance(expected, str):
        assert isinstance(call, str) and expected in call
    else:
        assert (call.kind, call.app, call.apps_path, call.mode, call.assignments, call.dropped) == expected


def test_a_file_with_no_code_to_import_is_an_error_that_writes_nothing(tmp_path):
    # AGILAB's oldest lab_steps.toml held prose in C: nothing to run, so nothing is written
    (tmp_path / "old.toml").write_text('[[steps]]\nD = "Load"\nC = "Load JSON cases and validate them."\n'
                                       'E = "case_id"\nR = "validated_cases"\n')
    done = run_agi("steps", "import", "old.toml", cwd=tmp_path)
    assert done.returncode == 1 and "no stage has Python code to import" in done.stderr
    assert "module steps stage 1" in done.stdout and "not Python" in done.stdout
    assert not (tmp_path / "lab_steps.toml").exists()
