"""The `agi` command line's own errors: -v anywhere, `agi run` without an app, help that shows only
the apps a user has, settings errors from the command line with their hint."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_APPS, run_agi


@pytest.mark.parametrize("where", ["before", "after the subcommand", "at the end"])
def test_verbose_works_anywhere_on_the_command_line(share, where):
    args = ["run", "toy", "--mode", "xyz", "--set", f'cluster.workers_data_path="{share}"']
    args = {"before": ["-v", *args], "after the subcommand": ["run", "-v", *args[1:]], "at the end": [*args, "-v"]}[where]
    out = run_agi("--apps-path", str(TEST_APPS), *args)
    assert out.returncode == 1 and "Traceback" in out.stderr and "error:" in out.stderr


def test_run_without_an_app_lists_the_apps(tmp_path):
    out = run_agi("run", cwd=tmp_path)  # no ./apps here: the bundled examples
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error: agi run needs an app: flight_telemetry, heat, mandelbrot" in out.stderr
    assert "fix: agi run mandelbrot" in out.stderr
    mine = run_agi("run", "--apps-path", str(TEST_APPS), cwd=tmp_path)
    assert "toy" in mine.stderr.splitlines()[0]


def test_snippet_help_shows_no_test_only_app():
    out = run_agi("snippet", "--help")
    assert out.returncode == 0 and "agi snippet heat distrib" in out.stdout
    assert "toy" not in out.stdout and "tests/apps" not in out.stdout


def test_a_date_on_the_command_line_says_to_quote_it(share):
    out = run_agi("--apps-path", str(TEST_APPS), "run", "toy", "--set", "offset=2024-01-01", "--set", f'cluster.workers_data_path="{share}"')
    assert out.returncode == 1 and "datetime" not in out.stderr
    assert "found 2024-01-01 (a TOML date, not text)" in out.stderr
    assert """fix: correct the key(s) named above: 2024-01-01 reads as a TOML date: quote it for text""" in out.stderr
    assert """--set 'offset="2024-01-01"'""" in out.stderr
