"""One-off: move agi_core's top-level modules into the folders that show the layers, rewriting imports.

Run from the repository root (``python scripts/regroup_modules.py``); safe to run twice (a module
already moved is skipped). It `git mv`s each module, then rewrites in every tracked text file:

- relative imports inside agi_core (resolved from the file's old place, re-made from its new one);
- dotted names ``agi_core.<old>`` (absolute imports, mock targets, ``python -m`` commands, docs);
- paths ``agi_core/<old>.py`` (docs).

``settings`` and ``app`` become packages whose ``__init__`` re-exports what the module exported, so
``from agi_core.settings import ClusterSettings`` and ``from agi_core.app import App`` stay true.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

#: old top-level module -> its new dotted name under agi_core
MOVES = {
    **{name: f"base.{name}" for name in ("errors", "events", "modes", "hosts", "paths", "atomic", "quantities",
                                          "stalls", "share_io", "share_access", "lifeline", "main_guard")},
    "settings": "settings.loading",
    "settings_assignments": "settings.assignments",
    "settings_errors": "settings.wording",
    "settings_schema": "settings.schema",
    "settings_tables": "settings.tables",
    "secret_refs": "settings.secret_refs",
    "backend_plugins": "settings.backend_plugins",
    "app": "app.contract",
    "env": "app.env",
    "app_python": "app.interpreter",
    "kernels": "kernels.selection",
    "kernel_kinds": "kernels.kinds",
    "execution_shape": "kernels.shape",
    "capabilities": "install.capabilities",
}
#: packages whose __init__ re-exports a module's public names (the old module path stays importable)
FACADES = {"settings": "loading", "app": "contract"}
PACKAGE_DOCS = {
    "base": "The bottom layer: errors, events, modes, host strings, paths and file helpers that every other\n"
            "layer uses. Nothing here imports agi_core outside ``base``.",
    "settings": "App settings: ``app_settings.toml`` validated by pydantic, merged with profiles and call arguments.\n\n"
                "The public names are re-exported here from `loading` (the files) and `schema` (the models).",
    "app": "The app contract (`contract`: App, Partition, WorkContext), how an app is found and loaded (`env`:\n"
           "AgiEnv) and which Python runs it on this machine (`interpreter`). ``from agi_core.app import App`` is\n"
           "the contract.",
    "kernels": "Kernel kinds: the table of kinds (`kinds`), the execution shape derived from a mode (`shape`),\n"
               "and the choice of an app's kernel module for a run (`selection`).",
}

#: what the rewrite cannot see: paths built from ``__file__`` or joined from parts (path, old, new)
HAND_EDITS = [
    ("agi_core/app/env.py", 'Path(__file__).resolve().parent.parent / "apps"', 'Path(__file__).resolve().parents[2] / "apps"'),
    ("agi_core/app/interpreter.py", "_AGI_DIR = Path(__file__).resolve().parent  #", "_AGI_DIR = Path(__file__).resolve().parents[1]  #"),
    ("tests/test_code_hash.py", 'source_copy / "agi_core" / "kernels.py", "\\n\\ndef _later():\\n    from .run import runner\\n"',
     'source_copy / "agi_core" / "kernels" / "selection.py", "\\n\\ndef _later():\\n    from ..run import runner\\n"'),
    ("tests/test_code_hash.py", "    from agi_core import AgiEnv, paths\n", "    from agi_core import AgiEnv\n    from agi_core.base import paths\n"),
    ("tests/test_kernel_kinds.py", "from agi_core import AGI, AgiEnv, AgiError, kernel_kinds\n",
     "from agi_core import AGI, AgiEnv, AgiError\nfrom agi_core.kernels import kinds as kernel_kinds\n"),
    ("agi_core/executors/sequential.py", "(`app_python.check_in_process` fails", "(`app.interpreter.check_in_process` fails"),
    # the doctests live in the modules now, not in the packages that re-export them
    ("tests/test_doctests.py", '"agi_core.app", ', '"agi_core.app.contract", '),
    ("tests/test_doctests.py", '"agi_core.settings", ', '"agi_core.settings.loading", '),
]

ROOT = Path.cwd()
#: the old modules this run moved (a second run moves none: names that are packages now stay)
MOVED_NOW: set[str] = set()
PKG = ROOT / "agi_core"


def module_path(dotted: str) -> Path:
    return PKG.joinpath(*dotted.split(".")).with_suffix(".py")


def new_name(absolute: str) -> str:
    """``agi_core.x.y`` after the moves (only the top-level part can have moved)."""
    parts = absolute.split(".")
    if len(parts) >= 3 and (PKG / parts[1] / f"{parts[2]}.py").exists():
        return absolute  # already a module of the new package (a second run)
    if parts[1:2] and parts[1] not in MOVED_NOW and (PKG / parts[1]).is_dir():
        return absolute  # a package now (kernels, settings, app): on a second run, it names the package
    if len(parts) >= 2 and parts[0] == "agi_core" and parts[1] in MOVES:
        target = MOVES[parts[1]]
        if parts[1] in FACADES and len(parts) == 2:
            target = parts[1]  # the package re-exports the module's names
        return ".".join(["agi_core", target, *parts[2:]])
    return absolute


def move_files() -> dict[str, str]:
    """git mv each module still at the top; return {old dotted file module: new dotted file module}."""
    moved = {}
    for old, new in MOVES.items():
        source = PKG / f"{old}.py"
        if not source.exists():
            continue
        target = module_path(new)
        target.parent.mkdir(exist_ok=True)
        init = target.parent / "__init__.py"
        if not init.exists():
            package = target.parent.name
            init.write_text(f'"""{PACKAGE_DOCS[package]}\n"""\n')
            subprocess.run(["git", "add", str(init)], check=True)
        subprocess.run(["git", "mv", str(source), str(target)], check=True)
        moved[f"agi_core.{old}"] = f"agi_core.{new}"
        MOVED_NOW.add(old)
    return moved


_RELATIVE = re.compile(r"^(?P<indent>[ \t]*)from (?P<dots>\.+)(?P<module>[\w.]*) import (?P<names>\([^)]*\)|[^\n]*)", re.M)


def _relative(from_module: str, target: str) -> str:
    """``from <here> import`` text for ``target`` seen from module ``from_module`` (a file module)."""
    here = from_module.split(".")[:-1]  # the package the file is in
    there = target.split(".")
    common = 0
    while common < min(len(here), len(there)) and here[common] == there[common]:
        common += 1
    dots = "." * (len(here) - common + 1)
    return dots + ".".join(there[common:])


def rewrite_relative(text: str, old_module: str, new_module: str, is_init: bool) -> str:
    old_package = old_module.split(".") if is_init else old_module.split(".")[:-1]
    new_from = new_module + (".__init__" if is_init else "")

    def fix(match: re.Match[str]) -> str:
        dots, module = match["dots"], match["module"]
        base = old_package[: len(old_package) - len(dots) + 1]
        absolute = ".".join(base + ([module] if module else []))
        names = match["names"]
        if not module:  # from . import a, b: the names may be modules that moved
            plain = [n.strip() for n in names.strip("()").split(",") if n.strip()]
            moved = [n for n in plain if f"{absolute}.{n.split(' as ')[0]}" in _moved_modules(absolute)]
            if moved:
                if len(moved) != len(plain):
                    raise SystemExit(f"{new_module}: split by hand: {match.group(0)}")
                parents = {new_name(f"{absolute}.{n.split(' as ')[0]}").rpartition(".")[0] for n in moved}
                if len(parents) != 1:
                    raise SystemExit(f"{new_module}: split by hand: {match.group(0)}")
                return f"{match['indent']}from {_relative(new_from, parents.pop())} import {names}"
        target = new_name(absolute)
        if target.removeprefix("agi_core.") in FACADES and (new_module.startswith(target + ".") or not _exported(target, names)):
            target = f"{target}.{FACADES[target.removeprefix('agi_core.')]}"  # inside the package, or a name it does not re-export
        return f"{match['indent']}from {_relative(new_from, target)} import {names}"

    return _RELATIVE.sub(fix, text)


def _exported(facade: str, names: str) -> bool:
    """Whether every name of ``from <facade> import names`` is one the facade re-exports."""
    package = facade.removeprefix("agi_core.")
    source = (PKG / package / f"{FACADES[package]}.py").read_text()
    found = re.search(r"^__all__ = \[(.*?)\]", source, re.S | re.M)
    exported = set(re.findall(r'"(\w+)"', found.group(1))) if found else set()
    wanted = {n.strip().split(" as ")[0] for n in re.sub(r"#[^\n]*", "", names).strip("()").split(",") if n.strip()}
    submodules = {n for n in wanted if (PKG / package / f"{n}.py").exists() or n in {MOVES[o].split(".")[-1] for o in MOVES
                                                                                      if MOVES[o].startswith(package + ".")}}
    return wanted - submodules <= exported


def _moved_modules(package: str) -> set[str]:
    return {f"agi_core.{old}" for old in MOVES} if package == "agi_core" else set()


def rewrite_absolute(text: str) -> str:
    olds = sorted(MOVES, key=len, reverse=True)
    dotted = re.compile(r"\bagi_core\.(" + "|".join(olds) + r")(?![\w])")
    text = dotted.sub(lambda m: new_name(m.group(0)), text)
    text = re.sub(r"\bfrom agi_core import (" + "|".join(olds) + r")\b(?=\s*(#|$))",
                  lambda m: f"from {new_name('agi_core.' + m.group(1)).rpartition('.')[0]} import {m.group(1)}", text, flags=re.M)
    facade_import = re.compile(r"^(?P<indent>[ \t]*)from agi_core\.(?P<package>" + "|".join(FACADES) + r") import (?P<names>\([^)]*\)|[^\n]*)", re.M)
    text = facade_import.sub(lambda m: m.group(0) if _exported(f"agi_core.{m['package']}", m["names"]) else
                             m.group(0).replace(f"agi_core.{m['package']} ", f"agi_core.{m['package']}.{FACADES[m['package']]} ", 1), text)
    slashed = re.compile(r"\bagi_core/(" + "|".join(olds) + r")\.py\b")
    return slashed.sub(lambda m: "agi_core/" + MOVES[m.group(1)].replace(".", "/") + ".py", text)


def write_facades() -> None:
    """The two packages that stand where a module stood re-export its public names."""
    for package, module in FACADES.items():
        init = PKG / package / "__init__.py"
        source = (PKG / package / f"{module}.py").read_text()
        found = re.search(r"^__all__ = \[(.*?)\]", source, re.S | re.M)
        if found is None or "\nfrom ." in init.read_text():
            continue
        names = re.findall(r'"(\w+)"', found.group(1))
        body = init.read_text().rstrip("\n")
        listed = "".join(f"    {name},\n" for name in names)
        quoted = "".join(f'    "{name}",\n' for name in names)
        init.write_text(f"{body}\n\nfrom .{module} import (\n{listed})\n\n__all__ = [\n{quoted}]\n")


def fix_lazy_names() -> None:
    """agi_core/__init__.py finds its public names by module string: point those at the new places."""
    init = PKG / "__init__.py"
    text = init.read_text()
    for old in MOVES:
        if old not in FACADES:
            text = text.replace(f'"{"." + old}"', f'"{"." + MOVES[old]}"')
    init.write_text(text)


def main() -> None:
    moved = move_files()
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], capture_output=True, text=True,
                               check=True).stdout.split()
    reverse = {new: old for old, new in moved.items()}
    for name in files + untracked:
        path = ROOT / name
        if path.resolve() == Path(__file__).resolve():
            continue  # its own tables name the old modules
        if not path.is_file() or path.suffix not in (".py", ".md", ".toml", ".pyx", ".txt", ".cfg", ".ini", ".sh", ".yml", ".yaml", ""):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        updated = text
        if path.suffix == ".py" and path.is_relative_to(PKG):
            parts = path.relative_to(ROOT).with_suffix("").parts
            is_init = parts[-1] == "__init__"
            current = ".".join(parts[:-1] if is_init else parts)
            old = reverse.get(current, current)
            if "from ." in updated:
                updated = rewrite_relative(updated, old, current, is_init)
        updated = rewrite_absolute(updated)
        if updated != text:
            path.write_text(updated)
    write_facades()
    fix_lazy_names()
    for name, old, new in HAND_EDITS:
        path = ROOT / name
        path.write_text(path.read_text().replace(old, new))
    print(f"moved {len(moved)} modules", file=sys.stderr)


if __name__ == "__main__":
    main()
