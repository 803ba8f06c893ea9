"""`AgiEnv`: find an app by name, load its `App` subclass and its settings.

>>> env = AgiEnv(app="mandelbrot_project")
>>> env.name, env.app_class.__name__
('mandelbrot', 'Mandelbrot')
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..base.errors import AppNotFoundError
from ..settings.loading import Settings, load_settings, read_toml
from .contract import App

__all__ = ["AgiEnv", "default_apps_paths", "discover_apps"]

_PROJECT_SUFFIX = "_project"
_CODE_SUFFIXES = {".py", ".pyx", ".pxd", ".toml", ".c", ".cu"}
# The examples that ship with agi_core (source checkout: <repo>/apps).
BUNDLED_APPS = Path(__file__).resolve().parents[2] / "apps"


def default_apps_paths() -> list[Path]:
    """Where apps are looked for when no ``apps_path`` is given: ``./apps``, then the bundled examples."""
    paths = [Path.cwd() / "apps", BUNDLED_APPS]
    unique: list[Path] = []
    for path in paths:
        if path.is_dir() and path.resolve() not in [p.resolve() for p in unique]:
            unique.append(path)
    return unique


def _short_name(folder: Path) -> str:
    return folder.name.removesuffix(_PROJECT_SUFFIX)


def discover_apps(apps_paths: Iterable[Path]) -> dict[str, Path]:
    """Map app name (without ``_project``) to its project folder; the first path wins."""
    found: dict[str, Path] = {}
    for root in apps_paths:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and (folder / "pyproject.toml").is_file():
                found.setdefault(_short_name(folder), folder)
    return found


class AgiEnv:
    """An app, found by name, with its code, settings file and the profiles folder.

    ``app`` may carry the ``_project`` suffix or not. ``apps_path`` (a folder or a list of them)
    replaces the default search path (``./apps`` then the bundled examples). ``settings_path`` is
    the folder of shared cluster profiles (default: ``settings/`` beside the apps folder).
    """

    def __init__(
        self,
        app: str,
        *,
        apps_path: str | Path | Iterable[str | Path] | None = None,
        settings_path: str | Path | None = None,
        verbose: int = 0,
    ) -> None:
        self.apps_path_given = apps_path is not None  # a request for this app must name the folder again
        if apps_path is None:
            self.apps_paths = default_apps_paths()
        elif isinstance(apps_path, (str, Path)):
            self.apps_paths = [Path(apps_path).expanduser().absolute()]
        else:
            self.apps_paths = [Path(p).expanduser().absolute() for p in apps_path]
        self.verbose = verbose
        self.name = app.removesuffix(_PROJECT_SUFFIX)
        known = discover_apps(self.apps_paths)
        if self.name not in known:
            import difflib  # only for a did-you-mean: not on every run's path

            close = difflib.get_close_matches(self.name, sorted(known), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            where = ", ".join(str(p) for p in self.apps_paths) or "(no apps folder found)"
            raise AppNotFoundError(
                f"unknown app '{app}': no folder '{self.name}{_PROJECT_SUFFIX}' with a pyproject.toml in {where}",
                fix=f"{hint}known apps: {', '.join(sorted(known)) or '(none)'}; or pass apps_path= / --apps-path",
            )
        self.project_dir = known[self.name]
        self.settings_file = self.project_dir / "app_settings.toml"
        self.profile_dirs = (
            [Path(settings_path).expanduser().absolute()] if settings_path else [self.project_dir.parent.parent / "settings"]
        )
        self.src_dir, self.module_name, self.class_name = self._locate_app_class()
        self._app_class: type[App] | None = None
        self._git: subprocess.Popen[str] | None = None  # `prefetch_git_commit`'s git status, not read yet

    # -- code -------------------------------------------------------------------------------

    def _locate_app_class(self) -> tuple[Path, str, str | None]:
        """Read ``[tool.agi] app = "package.module:Class"`` or fall back to the single package in src/."""
        pyproject = read_toml(self.project_dir / "pyproject.toml")
        src_dir = self.project_dir / "src"
        target = pyproject.get("tool", {}).get("agi", {}).get("app")
        if target:
            module, _, cls = target.partition(":")
            return src_dir, module, cls or None
        packages = [p for p in sorted(src_dir.glob("*/__init__.py"))] if src_dir.is_dir() else []
        if len(packages) != 1:
            raise AppNotFoundError(
                f"{self.project_dir}: cannot tell which package is the app (found {len(packages)} in src/)",
                fix=f'add [tool.agi] app = "package.module:Class" to {self.project_dir / "pyproject.toml"}',
            )
        return src_dir, packages[0].parent.name, None

    @property
    def app_class(self) -> type[App]:
        """The app's `App` subclass (imported on first use)."""
        if self._app_class is None:
            try:
                self._app_class = load_app_class(self.src_dir, self.module_name, self.class_name)
            except ModuleNotFoundError:
                from .interpreter import check_in_process

                check_in_process(self)  # a declared dependency missing here: say which, and the fix
                raise
        return self._app_class

    def code_hash(self) -> str:
        """SHA-256 over the app's source files, so a record can tell which code ran."""
        digest = hashlib.sha256()
        files = [self.project_dir / "pyproject.toml"]
        if self.src_dir.is_dir():
            files += sorted(p for p in self.src_dir.rglob("*") if p.suffix in _CODE_SUFFIXES and "__pycache__" not in p.parts)
        for path in files:
            digest.update(str(path.relative_to(self.project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    @property
    def distribution(self) -> str:
        """The app's distribution name (``[project] name``), as installed on workers."""
        return str(read_toml(self.project_dir / "pyproject.toml").get("project", {}).get("name", self.name))

    def version(self) -> str:
        return str(read_toml(self.project_dir / "pyproject.toml").get("project", {}).get("version", "0"))

    def prefetch_git_commit(self) -> None:
        """Start the ``git status`` that `git_commit` reads, in the background: ``agi run`` calls this
        first, so git works while the run's machinery loads (the answer is read once, by the next
        `git_commit`)."""
        if self._git is None:
            try:
                self._git = self._start_git_status()
            except OSError:
                self._git = None

    def _start_git_status(self) -> subprocess.Popen[str]:
        return subprocess.Popen(["git", "status", "--porcelain=v2", "--branch", "--untracked-files=normal", "--", "."],
                                cwd=self.project_dir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                text=True)

    def git_commit(self) -> str | None:
        """The commit of the repository holding the app, with ``+dirty`` when it has local changes.

        One ``git status`` gives both (its ``branch.oid`` header is the commit): a run pays for one
        process, not two.
        """
        process, self._git = self._git, None
        try:
            process = process or self._start_git_status()
            stdout, _ = process.communicate(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            if process is not None:
                process.kill()
                process.wait()
            return None
        lines = stdout.splitlines() if process.returncode == 0 else []
        commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
        if commit is None or commit == "(initial)":
            return None
        return commit + ("+dirty" if any(not line.startswith("#") for line in lines) else "")

    # -- settings ---------------------------------------------------------------------------

    def settings(self, *, args: Mapping[str, Any] | None = None, cluster: Mapping[str, Any] | None = None) -> Settings:
        """The app's resolved settings, with call overrides on top (read fresh on every call)."""
        return load_settings(self.settings_file, self.app_class.Args, profile_dirs=self.profile_dirs, args=args, cluster=cluster)

    def __repr__(self) -> str:
        return f"AgiEnv(app={self.name!r}, project_dir={str(self.project_dir)!r})"


def load_app_class(src_dir: Path, module_name: str, class_name: str | None, *, prefer_installed: bool = False) -> type[App]:
    """Import an app's package and return its `App` subclass.

    On the manager the app's ``src`` folder comes first (the code being edited). Cluster workers
    pass ``prefer_installed``: the package `agi install` put in their venv (with its compiled
    kernels) wins, and the source folder is only a fallback for workers on this machine.
    """
    src = str(src_dir)
    top = module_name.split(".")[0]
    if not (prefer_installed and importlib.util.find_spec(top) is not None):
        if src in sys.path:
            sys.path.remove(src)
        sys.path.insert(0, src)
        loaded = sys.modules.get(top)
        origin = getattr(loaded, "__file__", None)
        if loaded is not None and (origin is None or not Path(origin).resolve().is_relative_to(src_dir.resolve())):
            # Another app folder's package of the same name was imported before: forget it, so
            # this app's own code is what runs.
            for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                del sys.modules[name]
            importlib.invalidate_caches()
    module = importlib.import_module(module_name)
    if class_name:
        cls = getattr(module, class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, App)):
            raise AppNotFoundError(f"{module_name}:{class_name} is not an App subclass",
                                   fix="point [tool.agi] app at a class that subclasses agi_core.App")
        return cls
    candidates = [obj for obj in vars(module).values() if inspect.isclass(obj) and issubclass(obj, App) and obj is not App]
    if len(candidates) != 1:
        raise AppNotFoundError(
            f"package '{module_name}' exposes {len(candidates)} App subclasses in its __init__",
            fix='expose exactly one, or add [tool.agi] app = "package.module:Class" to the app\'s pyproject.toml',
        )
    return candidates[0]
