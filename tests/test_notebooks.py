"""docs/notebooks.md runs in a real Jupyter kernel (nbclient + ipykernel), as a user's notebook
would: its console commands first, then its ```python notebook cells in order in one kernel (a
cell marked ``interrupt`` is interrupted with the kernel's interrupt once a partition finished).
Then a generated snippet is pasted into a cell unchanged, run, and interrupted.

The kernel is this test environment's interpreter, through a kernelspec made in a temporary
folder (``JUPYTER_PATH``); each notebook has its own share (``XDG_DATA_HOME``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agi_core.provenance import RunStore
from tests.conftest import TEST_APPS
from tests.test_docs import DOCS, read_page

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the test extra")
pytest.importorskip("ipykernel", reason="ipykernel is in the test extra")

PAGE = DOCS / "notebooks.md"
KERNEL = "agi-core-tests"
_CELL = re.compile(r"^```python notebook( interrupt)?\s*$")


@dataclass
class Cell:
    source: str
    interrupt: bool = False


def notebook_cells(path: Path) -> list[Cell]:
    """The page's ```python notebook cells, in order (``interrupt``: the test interrupts it)."""
    cells, current = [], None
    for line in path.read_text().splitlines():
        opening = _CELL.match(line)
        if current is None and opening:
            current = Cell("", interrupt=bool(opening.group(1)))
        elif current is not None and line.startswith("```"):
            current.source = current.source.rstrip("\n")
            cells.append(current)
            current = None
        elif current is not None:
            current.source += line + "\n"
    return cells


@dataclass
class Executed:
    cells: list[Any]  # nbformat cells, with their outputs
    interrupted: list[int]  # indexes of the cells that were interrupted
    share: Path
    work: Path


def _kernelspec(root: Path) -> None:
    folder = root / "kernels" / KERNEL
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "agi_core tests", "language": "python"}))


async def _wait_for_a_logged_partition(share: Path, task: asyncio.Task[Any], timeout: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not task.done():
        if any(p.stat().st_size for p in share.glob("runs/*/*/partitions.jsonl")):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the cell to interrupt never logged a finished partition")


async def _execute(cells: list[Cell], work: Path, share: Path) -> tuple[list[Any], list[int]]:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.source) for c in cells])
    client = nbclient.NotebookClient(notebook, kernel_name=KERNEL, timeout=300, allow_errors=True,
                                     resources={"metadata": {"path": str(work)}})
    interrupted = []
    async with client.async_setup_kernel():
        for index, cell in enumerate(cells):
            if not cell.interrupt:
                await client.async_execute_cell(notebook.cells[index], index)
                continue
            running = asyncio.create_task(client.async_execute_cell(notebook.cells[index], index))
            await _wait_for_a_logged_partition(share, running)
            await client.km.interrupt_kernel()
            await running
            interrupted.append(index)
    return notebook.cells, interrupted


def _snippet(work: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "agi_core.cli", "snippet", *args], cwd=work, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Executed:
    """The page's commands and cells, then a pasted snippet run and a pasted snippet interrupted,
    in one kernel: run once for the tests of this module."""
    root = tmp_path_factory.mktemp("notebook")
    work, data = root / "work", root / "data"
    work.mkdir()
    _kernelspec(root / "jupyter")
    env = {**os.environ, "XDG_DATA_HOME": str(data), "XDG_STATE_HOME": str(root / "state"), "COLUMNS": "200",
           "JUPYTER_PATH": str(root / "jupyter"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("AGI_STRICT_SNIPPETS", None)
    page = read_page(PAGE)
    for command in page.commands:  # the page's console commands (e.g. `agi snippet ... -o render.py`)
        done = subprocess.run(["bash", "-c", command.text], cwd=work, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == command.exit, f"{command.text}: {done.stderr[-2000:]}"
    cells = notebook_cells(PAGE)
    pasted = _snippet(work, env, "mandelbrot", "run", "--mode", "p", "--set", "width=160", "--set", "height=120")
    slow = _snippet(work, env, "toy", "run", "--apps-path", str(TEST_APPS), "--mode", "p", "--no-cache", "--set", "n=12",
                    "--set", "sleep=0.5", "--set", 'cluster.workers={"127.0.0.1"=2}')
    cells += [Cell(pasted), Cell(slow, interrupt=True)]
    with pytest.MonkeyPatch.context() as patch:  # the kernel inherits this process's environment
        for name in ("XDG_DATA_HOME", "XDG_STATE_HOME", "JUPYTER_PATH"):
            patch.setenv(name, env[name])
        patch.delenv("AGI_STRICT_SNIPPETS", raising=False)
        outputs, interrupted = asyncio.run(_execute(cells, work, data / "agi_core" / "share"))
    return Executed(outputs, interrupted, data / "agi_core" / "share", work)


def _texts(cell: Any) -> list[str]:
    """Every text a cell showed: streams, and the text/plain and text/html of its displays and results."""
    texts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            texts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            texts += [str(output.data.get("text/plain", "")), str(output.data.get("text/html", ""))]
    return texts


def _errors(cell: Any) -> list[str]:
    return [output.ename for output in cell.outputs if output.output_type == "error"]


def test_the_page_has_cells_and_one_to_interrupt():
    cells = notebook_cells(PAGE)
    assert len(cells) >= 5 and sum(c.interrupt for c in cells) == 1
    assert any("%run render.py" in c.source for c in cells) and any('mode="dp"' in c.source for c in cells)


def test_every_cell_runs_in_a_real_kernel(executed):
    for index, cell in enumerate(executed.cells):
        if index not in executed.interrupted:
            assert _errors(cell) == [], f"cell {index} failed:\n{cell.source}\n{cell.outputs}"
    pool, dask = executed.cells[0], executed.cells[1]
    assert "ok in" in "".join(_texts(pool)) and "48/48 partitions ok" in "".join(_texts(pool))
    assert "'ok'" in _texts(pool)[-2] and "mandelbrot.png" in _texts(pool)[-2]
    assert "Dask scheduler tls://" in "".join(_texts(dask)) and "48/48 partitions ok" in "".join(_texts(dask))


def test_progress_in_a_notebook_is_one_display_without_escape_codes(executed):
    for cell in executed.cells:
        for text in _texts(cell):
            assert "\x1b[" not in text, f"raw escape codes in the output of:\n{cell.source}"
    displays = [o for o in executed.cells[0].outputs if o.output_type == "display_data"]
    assert len(displays) == 1  # updated in place, not one output per update
    assert "<progress" in displays[0].data["text/html"]


def test_a_generated_snippet_runs_unchanged_in_a_cell(executed):
    ran, pasted = executed.cells[2], executed.cells[-2]
    for cell in (ran, pasted):  # %run render.py, and the snippet's text pasted as a cell
        assert _errors(cell) == []
        fields = dict(line.split(": ", 1) for line in "".join(_texts(cell)).splitlines() if ": " in line)
        assert fields["status"] == "ok" and Path(fields["record"]).is_file()
    assert "asyncio.run() cannot be called" not in str(pasted.outputs)


def test_the_kernels_interrupt_stops_the_run_and_records_it(executed):
    awaited, snippet = executed.interrupted
    assert _errors(executed.cells[awaited]) == ["CancelledError"]  # how ipykernel ends an interrupted awaiting cell
    shown = "".join(_texts(executed.cells[awaited]))
    assert "interrupted in" in shown and "resume it with await AGI.run(env, resume=" in shown
    resumed = "".join(_texts(executed.cells[awaited + 1]))
    assert "48/48 partitions ok" in resumed and "from the cache" in resumed
    assert _errors(executed.cells[snippet]) == ["KeyboardInterrupt"]
    assert "interrupted" in "".join(_texts(executed.cells[snippet]))
    statuses = {record.app.name: record.status for record in RunStore(executed.share).list("toy")}
    assert statuses == {"toy": "interrupted"}
    mandelbrot = [r.status for r in RunStore(executed.share).list("mandelbrot")]
    assert mandelbrot.count("interrupted") == 1 and mandelbrot[0] == "ok"  # the resumed run is the newest
