"""The commands in the docs run, as written.

Convention for writers (docs/*.md): in a ```console block, a line starting with ``$ `` is a command;
the lines after it are sample output (not compared), except ``# exit N``, the exit status the command
must have (default 0). A block with a title (```python title="FILE"```, ```toml title="FILE"```) is
written to FILE before the page's commands run. Each page runs in order, in a fresh folder, with its own share, state and
config (``XDG_DATA_HOME``, ``XDG_STATE_HOME``, ``XDG_CONFIG_HOME``: the trusted keys) and
the test environment's ``agi`` and ``python`` first on ``PATH``. A page whose commands need a
real Slurm says so with ``<!-- docs-test: needs slurm -->``: it runs against the session's
single-node Slurm (`tests.slurm_fixtures`), or skips where that cannot run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.slurm_fixtures import slurm  # noqa: F401 - the single-node Slurm of pages that need one

DOCS = Path(__file__).resolve().parent.parent / "docs"
_FENCE = re.compile(r"^```(\w*)(.*)$")
_TITLE = re.compile(r'title="([^"]+)"')


@dataclass
class Command:
    line: int
    text: str
    exit: int = 0


_NEEDS = re.compile(r"<!-- docs-test: needs (\w+) -->")


@dataclass
class Page:
    files: dict[str, str] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)
    needs: set[str] = field(default_factory=set)  # fixtures its commands need ("slurm")


def read_page(path: Path) -> Page:
    """The files and the commands (with their expected exit status) of one docs page."""
    page, block, kind, title, body = Page(), False, "", None, []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        page.needs.update(_NEEDS.findall(line) if not block else ())
        fence = _FENCE.match(line)
        if fence and not block:
            block, kind, body = True, fence.group(1), []
            found = _TITLE.search(fence.group(2))
            title = found.group(1) if found else None
            continue
        if fence and block:
            if title:
                page.files[title] = "\n".join(body) + "\n"
            block = False
            continue
        if not block:
            continue
        body.append(line)
        if kind == "console" and line.startswith("$ "):
            page.commands.append(Command(number, line[2:]))
        elif kind == "console" and line.startswith("# exit ") and page.commands:
            page.commands[-1].exit = int(line.removeprefix("# exit ").strip())
    return page


PAGES = sorted(p for p in DOCS.glob("*.md") if read_page(p).commands)


def test_the_reader_sees_commands_files_and_exit_statuses(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text('<!-- docs-test: needs slurm -->\n```python title="a.py"\nprint(1)\n```\n\n```console\n$ python a.py\n1\n$ false\n# exit 1\n```\n'
                   "```sh\n$ not-a-command\n```\n")
    page = read_page(doc)
    assert page.files == {"a.py": "print(1)\n"} and page.needs == {"slurm"}
    assert [(c.text, c.exit, c.line) for c in page.commands] == [("python a.py", 0, 7), ("false", 1, 9)]


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_every_command_of_the_page_runs(path, tmp_path, request):
    page = read_page(path)
    for fixture in sorted(page.needs):
        request.getfixturevalue(fixture)  # e.g. slurm: up for the session, SLURM_CONF set
    work = tmp_path / "work"
    work.mkdir()
    for name, text in page.files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    # its own share and state: no warm cluster or run of another page (or of the user) is seen
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("AGI_STRICT_SNIPPETS", None)
    for command in page.commands:
        done = subprocess.run(["bash", "-c", command.text], cwd=work, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == command.exit, (
            f"{path.name}:{command.line}: `{command.text}` exited {done.returncode}, not {command.exit}\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def test_the_readmes_example_script_renders_the_image(tmp_path):
    """The README's first set-up command (``./scripts/example``: the main job on the embedded
    default, no configuration), in this test environment's venv, with its own share."""
    root = DOCS.parent
    env = {**os.environ, "AGI_VENV": str(Path(sys.executable).parent.parent), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    done = subprocess.run([str(root / "scripts" / "example"), "--set", "width=200", "--set", "height=150"], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    [image] = (tmp_path / "data").glob("agi_core/share/runs/mandelbrot/*/out/mandelbrot.png")
    assert image.stat().st_size > 0 and f"output: {image}" in done.stdout


def test_every_shell_command_of_the_docs_is_run():
    """Commands live in ```console blocks (run above); a ```sh block may only hold the set-up
    commands that the README runs from a clone (this file's test runs ./scripts/example; CI runs
    ./scripts/test)."""
    setup = {"./scripts/example", "./scripts/test", "source .venv/bin/activate"}
    unrun = []
    for path in sorted(DOCS.glob("*.md")):
        block = None
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fence = _FENCE.match(line)
            if fence:
                block = None if block is not None else fence.group(1)
            elif block in ("sh", "bash", "shell") and line.strip() and line.split("#")[0].strip() not in setup | {""}:
                unrun.append(f"{path.name}:{number}: {line.strip()}")
    assert not unrun, "shell commands no test runs (put them in a ```console block):\n" + "\n".join(unrun)
