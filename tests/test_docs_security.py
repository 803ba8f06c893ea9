"""docs/security.md cannot drift: every test it cites as proof exists.

A reference is ``tests/FILE.py::test_name`` or ``FILE.py::test_name`` (a file of tests/), optionally
with a parameter id (``[unsigned]``); a following ``::test_other`` in the same table cell is in the
same file, and a name cut short with ``…`` must begin some test's name. Tests are found with ast:
functions named ``test_*``, at the top of the file or in a class.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "security.md"
_REF = re.compile(r"(?:(?:tests/)?(test_\w+\.py))?::(test_\w+)(…)?")


def cited(text: str) -> list[tuple[int, str, str, bool]]:
    """(line, file, test name, is a prefix) of each reference; ``::name`` alone takes the file before it."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for cell in line.split("|"):
            current = None
            for match in _REF.finditer(cell):
                current = match.group(1) or current
                if current is None:
                    raise AssertionError(f"{PAGE.name}:{number}: '::{match.group(2)}' follows no test file")
                found.append((number, current, match.group(2), bool(match.group(3))))
    return found


def names_of_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")}


def test_the_reader_finds_files_continuations_and_prefixes():
    text = "| x | `tests/test_a.py::test_one[p]`, `::test_two` |\n| `test_b.py::test_thr…` |\n"
    assert cited(text) == [(1, "test_a.py", "test_one", False), (1, "test_a.py", "test_two", False),
                           (2, "test_b.py", "test_thr", True)]


def test_every_test_docs_security_cites_exists():
    references = cited(PAGE.read_text())
    assert len(references) >= 20  # the page's tables cite tests: the reader must find them
    missing = []
    for line, file, name, prefix in references:
        path = ROOT / "tests" / file
        names = names_of_tests(path) if path.is_file() else set()
        if not (any(n.startswith(name) for n in names) if prefix else name in names):
            missing.append(f"{PAGE.name}:{line}: tests/{file}::{name}{'…' if prefix else ''}")
    assert not missing, "docs/security.md cites tests that do not exist:\n" + "\n".join(missing)
