from pathlib import Path

import pytest
from pydantic import BaseModel

from agi_core import AgiEnv, SettingsError
from agi_core.settings import ClusterSettings, load_settings, parse_assignment, save_settings_values


class Args(BaseModel):
    width: int = 10
    name: str = "x"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_precedence_call_over_file_over_profile_over_defaults(tmp_path):
    profiles = tmp_path / "settings"
    profiles.mkdir()
    write(profiles / "lab.toml", '[cluster]\npool = true\nscheduler = "10.0.0.1:8786"\nworkers_data_path = "/srv/p"\n'
                                 '[cluster.workers]\n"10.0.0.2" = 4\n[cluster.ssh]\nuser = "agi"\nport = 2222\n')
    app = write(tmp_path / "app_settings.toml", '[args]\nwidth = 20\n[cluster]\nprofile = "lab"\nscheduler = "10.0.0.9:8786"\n'
                                                 '[cluster.ssh]\nport = 22\n')
    settings = load_settings(app, Args, profile_dirs=[profiles], args={"name": "call"}, cluster={"workers_data_path": "/call"})
    assert settings.args.width == 20 and settings.args.name == "call"  # file, then call
    assert settings.cluster.pool is True  # from the profile
    assert settings.cluster.scheduler == "10.0.0.9:8786"  # the app file beats the profile
    assert settings.cluster.ssh.user == "agi" and settings.cluster.ssh.port == 22  # tables merge key by key
    assert settings.cluster.workers["10.0.0.2"].count == 4
    assert settings.share == Path("/call")
    assert load_settings(app, Args, profile_dirs=[profiles]).args.name == "x"  # default


def test_worker_map_is_replaced_not_merged(tmp_path):
    profiles = tmp_path / "settings"
    profiles.mkdir()
    write(profiles / "lab.toml", '[cluster.workers]\n"10.0.0.2" = 4\n')
    app = write(tmp_path / "app_settings.toml", '[cluster]\nprofile = "lab"\n[cluster.workers]\n"10.0.0.3" = 1\n')
    assert list(load_settings(app, Args, profile_dirs=[profiles]).cluster.workers) == ["10.0.0.3"]


@pytest.mark.parametrize("text, expected", [
    ("[args]\nwidth = \n", ["invalid TOML", "line 2"]),
    ('[args]\nwidth = "wide"\n', ["key 'args.width'", "valid integer", "'wide'"]),
    ("[cluster]\npool = 3\n", ["key 'cluster.pool'", "boolean", "3 (int)"]),
    ('[cluster.workers]\n"10.0.0.2" = -1\n', ['cluster.workers."10.0.0.2".count', "greater than or equal to 0", "-1"]),
    ("[cluster]\npoool = true\n", ["unknown key 'cluster.poool'"]),
    ("[args]\nwidht = 3\n", ["unknown argument 'args.widht'"]),
    ("args = 3\n", ["[args] must be a table"]),
    ('[cluster]\nprofile = "nope"\n', ["no profile named 'nope'"]),
    # a union names its key once, with every branch's complaint (not pydantic's branch names)
    ('[cluster]\nrapids = "always"\n', ["key 'cluster.rapids': input should be a valid boolean", "or input should be 'require', found 'always'"]),
])
def test_errors_name_file_key_expected_and_found(tmp_path, text, expected):
    path = write(tmp_path / "app_settings.toml", text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, Args, profile_dirs=[tmp_path])
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message
    assert info.value.fix


@pytest.mark.parametrize("cluster_bit", ["false", "true"])
def test_a_bad_scheduler_is_refused_whatever_the_mode(apps_copy, cluster_bit):
    """Every value is checked when read, not when a mode first uses it."""
    path = apps_copy / "toy_project" / "app_settings.toml"
    path.write_text(f'[cluster]\ncluster_enabled = {cluster_bit}\nscheduler = "10.0.0.1:notaport"\n')
    with pytest.raises(SettingsError) as info:
        AgiEnv(app="toy", apps_path=apps_copy).settings()
    assert info.value.message == (f"{path}:3: key 'cluster.scheduler': invalid host '10.0.0.1:notaport': "
                                  "port 'notaport' is not a number from 1 to 65535, found '10.0.0.1:notaport' (str)")
    assert "HOST:PORT" in info.value.fix and "[IPv6]:PORT" in info.value.fix  # the accepted forms


def test_a_bad_worker_map_key_is_named(apps_copy):
    path = apps_copy / "toy_project" / "app_settings.toml"
    path.write_text('[cluster.workers]\n"10.0.0.2" = 1\n"node 3" = 2\n"[fe80::1]:2222" = 1\n')
    with pytest.raises(SettingsError) as info:
        AgiEnv(app="toy", apps_path=apps_copy).settings()
    assert info.value.message == (f"{path}:3: key 'cluster.workers.\"node 3\"': invalid host 'node 3': "
                                  "not a host name or address, found 'node 3' (str)")


def test_host_strings_are_checked_in_call_overrides_and_assignments(tmp_path):
    path = write(tmp_path / "app_settings.toml", "[args]\nwidth = 3\n")
    with pytest.raises(SettingsError, match=r"call arguments: key 'cluster.scheduler': invalid host '\[::1\]:x'"):
        load_settings(path, Args, cluster={"scheduler": "[::1]:x"})
    with pytest.raises(SettingsError, match="key 'cluster.scheduler'"):
        save_settings_values(path, ["cluster.scheduler=10.0.0.1:notaport"], Args, [])
    assert path.read_text() == "[args]\nwidth = 3\n"
    saved = save_settings_values(path, ['cluster.scheduler="[fe80::1]:8786"', 'cluster.workers."fe80::2"=1'], Args, [])
    assert saved.cluster.scheduler_address().port == 8786 and list(saved.cluster.worker_map()) == ["fe80::2"]


def test_unknown_argument_suggests_the_close_one(tmp_path):
    path = write(tmp_path / "app_settings.toml", "[args]\nwidht = 3\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, Args)
    assert "did you mean 'width'" in info.value.fix


def test_parse_assignment():
    assert parse_assignment("width=800") == (["args", "width"], 800)
    assert parse_assignment("cluster.pool=true") == (["cluster", "pool"], True)
    assert parse_assignment('cluster.workers."10.0.0.2"=2') == (["cluster", "workers", "10.0.0.2"], 2)
    assert parse_assignment("name=hello world") == (["args", "name"], "hello world")
    for bad in ("novalue", "=3", "other.key=1"):
        with pytest.raises(SettingsError):
            parse_assignment(bad)


def test_save_keeps_comments_and_unknown_tables(tmp_path):
    path = write(tmp_path / "app_settings.toml", "# my notes\n[args]\nwidth = 3  # small\n\n[lab]\nowner = 'me'\n")
    settings = save_settings_values(path, ["width=42", "cluster.pool=true", 'cluster.workers."10.0.0.2"=2'], Args, [])
    text = path.read_text()
    assert "# my notes" in text and "[lab]" in text and "owner = 'me'" in text
    assert settings.args.width == 42 and settings.cluster.pool and settings.cluster.workers["10.0.0.2"].count == 2
    assert load_settings(path, Args).args.width == 42


@pytest.mark.parametrize("assignment", ["width=wide", "cluster.pool=3", 'cluster.workers."h"=-2', "widht=3"])
def test_failed_save_writes_nothing(tmp_path, assignment):
    original = "[args]\nwidth = 3\n"
    path = write(tmp_path / "app_settings.toml", original)
    with pytest.raises(SettingsError) as info:
        save_settings_values(path, [assignment], Args, [])
    assert str(path) in str(info.value)
    assert path.read_text() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app_settings.toml"]  # no temporary left


def test_mode_from_bits_and_local_worker_map():
    cluster = ClusterSettings.model_validate({"pool": True, "rapids": True, "workers": {"127.0.0.1": 3, "10.0.0.2": 5}})
    assert int(cluster.mode) == 9
    assert sum(spec.count for spec in cluster.local_worker_map().values()) == 3
    assert list(ClusterSettings().local_worker_map()) == ["127.0.0.1"]  # no local entry: this machine, a slot per core


def test_env_settings_reads_the_app_file(toy_env):
    settings = toy_env.settings(args={"n": 2})
    assert settings.args.n == 2 and settings.path == toy_env.settings_file
    assert settings.hash != toy_env.settings(args={"n": 3}).hash
    assert settings.hash == toy_env.settings(args={"n": 2}).hash


def test_settings_hash_ignores_key_order(tmp_path):
    a = write(tmp_path / "a.toml", "[args]\nwidth = 1\nname = 'q'\n")
    b = write(tmp_path / "b.toml", "[args]\nname = 'q'\nwidth = 1\n")
    assert load_settings(a, Args).hash == load_settings(b, Args).hash


def test_bundled_app_settings_validate():
    env = AgiEnv(app="mandelbrot")
    assert env.settings().args.bands > 1


@pytest.mark.parametrize("text, line, key, suggestion", [
    ("[cluster]\npool = true\npoool = true\n", 3, "cluster.poool", "did you mean 'cluster.pool'?"),
    ("[cluster]\npool = false\n\n[cluster.dask]\nschedular_port = 1\n", 5, "cluster.dask.schedular_port",
     "did you mean 'cluster.dask.scheduler_port'?"),
    ('[cluster.workers."10.0.0.2"]\ncont = 2\n', 2, 'cluster.workers."10.0.0.2".cont', "did you mean 'cluster.workers.\"10.0.0.2\".count'?"),
    ("# my settings\n[args]\nwidth = 3\nwidht = 3\n", 4, "args.widht", "did you mean 'width'?"),
])
def test_an_unknown_key_names_its_line_and_the_close_known_key(tmp_path, text, line, key, suggestion):
    path = write(tmp_path / "app_settings.toml", text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, Args)
    assert f"{path}:{line}: unknown" in info.value.message and f"'{key}'" in info.value.message
    assert suggestion in (info.value.fix or "")


@pytest.mark.parametrize("value", ['"yes"', '"true"', "1", '"on"'])
def test_settings_booleans_are_strict(tmp_path, value):
    path = write(tmp_path / "app_settings.toml", f"[cluster]\npool = {value}\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, Args)
    assert f"{path}:2: key 'cluster.pool': input should be a valid boolean" in info.value.message
    assert "pool = true (or false)" in (info.value.fix or "")
    assert load_settings(write(path, "[cluster]\npool = true\n"), Args).cluster.pool is True


def test_an_unquoted_date_says_to_quote_it(tmp_path):
    path = write(tmp_path / "app_settings.toml", "")
    with pytest.raises(SettingsError) as info:
        load_settings(path, Args, args=dict([parse_assignment("name=2024-01-01")[0][1:] + [parse_assignment("name=2024-01-01")[1]]]))
    assert "found 2024-01-01 (a TOML date, not text)" in info.value.message and "datetime" not in info.value.message
    assert """--set 'name="2024-01-01"'""" in (info.value.fix or "")
    assert load_settings(path, Args, args={"name": parse_assignment('name="2024-01-01"')[1]}).args.name == "2024-01-01"
