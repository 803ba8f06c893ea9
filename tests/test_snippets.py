"""Generated snippets (`agi snippet`): they run from any directory, agree with the CLI, and say
when the settings changed since they were generated."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest

from agi_core import AgiEnv
from agi_core.base.errors import SettingsError
from agi_core.run import resolve
from agi_core.snippets import SNIPPET_API, StaleSnippetError, check_snippet, render_snippet

from .conftest import TEST_APPS, run_agi


def _snippet(tmp_path: Path, *args: str, name: str = "snippet.py") -> tuple[Path, str]:
    target = tmp_path / name
    done = run_agi("snippet", *args, "--out", str(target))
    assert done.returncode == 0, done.stderr
    return target, target.read_text()


def _run_snippet(path: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if k != "AGI_STRICT_SNIPPETS"} | (env or {})
    return subprocess.run([sys.executable, str(path)], cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180, check=False)


def _fields(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def _runs(share: Path) -> set[str]:
    folder = share / "runs" / "toy"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


@pytest.mark.parametrize(("mode", "no_cache"), [("0", False), ("p", True)])
def test_run_snippet_round_trip(tmp_path, share, mode, no_cache):
    extra = ["--no-cache"] if no_cache else []
    options = ["--apps-path", str(TEST_APPS), "--mode", mode, "--set", "offset=3", "--set", f"cluster.workers_data_path={share}"]
    path, text = _snippet(tmp_path, "toy", "run", *options, *extra)
    assert text.startswith(f"# {SNIPPET_API}  kind=run  app=toy")
    assert f"use_cache={not no_cache}," in text
    assert f"apps_path=[{str(TEST_APPS)!r}]" in text

    done = _run_snippet(path, tmp_path / "elsewhere")  # not the repository: no relative path may matter
    assert done.returncode == 0, done.stderr
    assert "settings changed" not in done.stderr
    out = _fields(done.stdout)
    assert out["status"] == "ok"
    record = json.loads(Path(out["record"]).read_text())
    assert record["run_id"] == out["run id"]
    assert Path(out["record"]).is_relative_to(share)

    cli = run_agi("run", "toy", *options, "--json", "--no-progress", *extra)
    assert cli.returncode == 0, cli.stderr
    cli_out = json.loads(cli.stdout)
    cli_record = json.loads(Path(cli_out["manifest"]).read_text())
    assert out["value"] == repr(cli_out["value"]) == repr(sum(i * i + 3 for i in range(6)))
    assert record["plan"]["fingerprint"] == cli_record["plan"]["fingerprint"]
    assert record["mode"] == cli_record["mode"]
    assert record["args"] == cli_record["args"]
    # the snippet's run resolves to the settings hash in its header (nothing changed)
    assert f"SETTINGS_HASH = {record['settings_hash']!r}" in text
    assert record["settings_hash"] == cli_record["settings_hash"]
    if no_cache:
        assert record["cache"] is None and cli_record["cache"] is None


def test_distrib_snippet_same_fingerprint_as_cli(tmp_path):
    options = ["--apps-path", str(TEST_APPS), "--mode", "p", "--set", "n=8", "--set", "chain=true"]
    path, text = _snippet(tmp_path, "toy", "distrib", *options)
    assert "plan = await AGI.get_distrib(" in text
    done = _run_snippet(path, tmp_path / "elsewhere")
    assert done.returncode == 0, done.stderr
    out = _fields(done.stdout)
    cli = run_agi("distrib", "toy", *options, "--json")
    assert cli.returncode == 0, cli.stderr
    plan = json.loads(cli.stdout)
    assert out["fingerprint"] == plan["fingerprint"]
    assert int(out["partitions"]) == len(plan["partitions"]) == 8


def test_stale_settings_warn_then_strict_error(tmp_path, apps_copy, share):
    path, _ = _snippet(tmp_path, "toy", "run", "--apps-path", str(apps_copy), "--set", f"cluster.workers_data_path={share}")
    settings_file = apps_copy / "toy_project" / "app_settings.toml"
    old_hash = resolve(AgiEnv(app="toy", apps_path=apps_copy), cluster={"workers_data_path": str(share)}).settings_hash

    fresh = _run_snippet(path, tmp_path / "elsewhere")  # unchanged settings: no warning
    assert fresh.returncode == 0, fresh.stderr
    assert "settings changed" not in fresh.stderr

    # the snippet pins n=6 in its call; the settings now say 5: it is stale all the same
    settings_file.write_text(settings_file.read_text().replace("n = 6", "n = 5"))
    new_hash = resolve(AgiEnv(app="toy", apps_path=apps_copy), cluster={"workers_data_path": str(share)}).settings_hash
    assert new_hash != old_hash
    warned = _run_snippet(path, tmp_path / "elsewhere")
    assert warned.returncode == 0, warned.stderr
    assert "warning: settings changed" in warned.stderr
    for part in (old_hash, new_hash, str(settings_file), "agi snippet toy run"):
        assert part in warned.stderr
    assert _fields(warned.stdout)["value"] == repr(sum(i * i for i in range(6)))  # it ran what it pins

    before = _runs(share)
    strict = _run_snippet(path, tmp_path / "elsewhere", env={"AGI_STRICT_SNIPPETS": "1"})
    assert strict.returncode != 0
    assert "settings changed" in strict.stderr and "agi snippet toy run" in strict.stderr
    assert "status:" not in strict.stdout
    assert _runs(share) == before  # nothing ran: no new run folder


def test_check_uses_the_generation_overrides(apps_copy):
    """The hash covers the settings file + profile with the snippet's --set overrides applied:
    editing a key the snippet overrode changes nothing; editing another one is a change."""
    env = AgiEnv(app="toy", apps_path=apps_copy)
    overrides = {"args": {"n": 4}, "cluster": {}}
    generated = resolve(env, args={"n": 4}).settings_hash
    assert check_snippet(env, generated, overrides=overrides, strict=True)
    settings_file = apps_copy / "toy_project" / "app_settings.toml"
    settings_file.write_text(settings_file.read_text().replace("n = 6", "n = 5"))
    assert check_snippet(env, generated, overrides=overrides, strict=True)
    settings_file.write_text(settings_file.read_text().replace("pool = false", "pool = true"))
    err = io.StringIO()
    assert not check_snippet(env, generated, overrides=overrides, strict=False, stream=err)
    assert generated in err.getvalue() and str(settings_file) in err.getvalue()
    with pytest.raises(StaleSnippetError):
        check_snippet(env, generated, overrides=overrides, strict=True)
    with pytest.raises(SettingsError, match="snippet API"):
        check_snippet(env, generated, api="agi.snippet.v0")


def test_install_snippet_compiles(tmp_path):
    done = run_agi("snippet", "toy", "install", "--apps-path", str(TEST_APPS), "--mode", "c",
                   "--set", 'cluster.workers."127.0.0.1"=2', "--set", "cluster.scheduler=127.0.0.1:8786")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    compile(text, "install_snippet.py", "exec")
    assert "report = await AGI.install(" in text
    assert "modes_enabled=2," in text and "workers={'127.0.0.1': 2}," in text and "scheduler='127.0.0.1:8786'," in text
    assert 'if __name__ == "__main__":' in text


def test_a_long_worker_map_wraps_under_its_bracket_in_every_kind():
    # the template indents the install call one level deeper (it sits in a try:): its wrapped
    # values line up under their opening bracket there too, as in the run and distrib calls
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    request = resolve(env, mode="d", workers={f"10.0.0.{i}": 2 for i in range(1, 12)})
    for kind, indent in (("install", 12), ("distrib", 8), ("run", 8)):
        text = render_snippet(kind, request, env)
        compile(text, f"{kind}_snippet.py", "exec")
        lines = text.splitlines()
        first = next(k for k, line in enumerate(lines) if line.startswith(" " * indent + "workers={"))
        column = lines[first].index("{") + 1
        assert lines[first + 1] == " " * column + "'10.0.0.2': 2,", kind


def test_render_is_pure_and_rejects_unknown_kinds():
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    request = resolve(env, mode="p")
    from datetime import datetime

    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert render_snippet("run", request, env, generated=when) == render_snippet("run", request, env, generated=when)
    with pytest.raises(SettingsError, match="unknown snippet kind"):
        render_snippet("deploy", request, env)


def test_cli_help_and_errors(tmp_path):
    helped = run_agi("snippet", "--help")
    assert helped.returncode == 0 and "AGI_STRICT_SNIPPETS" in helped.stdout and "--no-cache" in helped.stdout
    assert "snippet" in run_agi("--help").stdout
    bad = run_agi("snippet", "toy", "distrib", "--apps-path", str(TEST_APPS), "--no-cache")
    assert bad.returncode != 0 and "run snippets only" in bad.stderr
    unknown = run_agi("snippet", "toy", "run", "--apps-path", str(TEST_APPS), "--set", "nn=3")
    assert unknown.returncode == 1 and "did you mean 'n'" in unknown.stderr


def test_app_found_in_cwd_apps_is_named_by_absolute_path(tmp_path):
    """`agi snippet` run where ./apps holds the app: the snippet names that folder absolutely."""
    done = run_agi("snippet", "toy", "distrib", cwd=TEST_APPS.parent)
    assert done.returncode == 0, done.stderr
    assert f"apps_path=[{str(TEST_APPS)!r}]" in done.stdout
    bundled = run_agi("snippet", "mandelbrot", "distrib", cwd=tmp_path)
    assert bundled.returncode == 0, bundled.stderr
    assert "env = AgiEnv(app='mandelbrot')" in bundled.stdout
