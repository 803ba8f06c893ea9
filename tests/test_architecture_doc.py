"""docs/architecture.md stays true: every module it names is where it says.

The page is how a newcomer finds the home of a change; a module moved or split without updating it
sends them to a file that is not there. Checked: each ``x.py`` of the layer diagram (under the
folder whose section it is in), and each path ``a/b.py`` the prose names (under agi_core/, or the
repository root for tests/, agi_testkit/, benchmarks/, scripts/)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "agi_core"
_MODULE = re.compile(r"(?<![\w/.\-])((?:[a-z_]+/)*[a-z_]+\.py)\b")
_ROOT_FOLDERS = ("tests/", "agi_testkit/", "benchmarks/", "scripts/", "apps/")


def _where(name: str, section: str | None) -> Path:
    if name.startswith(_ROOT_FOLDERS):
        return ROOT / name
    if "/" in name or section is None:
        return PACKAGE / name
    return PACKAGE / section / name


def named_modules(text: str) -> list[tuple[str, Path]]:
    """(how the page names it, where that file must be) for every module the page names."""
    diagram, prose = text.split("```", 2)[1], text.split("```", 2)[2]
    found, section = [], None
    for line in diagram.splitlines():
        head = re.match(r"^([a-z_]+)/\s", line)
        if head:
            section = head.group(1)
        elif re.match(r"^[a-z_]+\.py\s", line):
            section = None  # a top-level module's own line (agi.py)
        found += [(name, _where(name, section)) for name in _MODULE.findall(line)]
    for name in _MODULE.findall(prose):
        found.append((name, _where(name, None)))
    return found


def test_every_module_the_architecture_page_names_exists():
    named = named_modules(DOC.read_text())
    assert len(named) > 100  # the page names the modules of every layer
    missing = sorted({f"{name} (looked for {path.relative_to(ROOT)})" for name, path in named if not path.is_file()})
    assert missing == []


def test_every_folder_of_agi_core_has_a_section_on_the_page():
    text = DOC.read_text().split("```", 2)[1]
    sections = set(re.findall(r"^([a-z_]+)/\s", text, re.M)) | set(re.findall(r"^([a-z_]+)/, ", text, re.M))
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {"testing"}
    assert folders - sections == set()


def test_the_check_sees_a_module_that_is_not_there():
    page = "```\nrun/     request.py  ok\n         gone.py  moved away\nagi.py   facade\n```\nsee `cache/store.py` and `nowhere/x.py`\n"
    missing = {name for name, path in named_modules(page) if not path.is_file()}
    assert missing == {"gone.py", "nowhere/x.py"}
