"""Secrets stay out of files: a `Secret` setting is a reference ({env}/{file}), a literal is refused,
the value is read only at use, and nothing agi writes (settings, runs, snippets, steps, reports,
bundles) or prints holds it (docs/security.md, "Secrets")."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from agi_core.base.errors import SettingsError
from agi_core.settings import SshSettings, load_settings, save_settings_values
from agi_core.settings.secret_refs import Secret, SecretError
from tests.conftest import TEST_APPS, run_agi

#: the planted secret: a value no file agi writes may hold
PLANTED = "Pl4nted-s3cret-7f3a9c"
ENV_NAME = "AGI_TEST_PLANTED_SECRET"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    path = folder / "passphrase"
    path.write_text(PLANTED + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def toy_copy(tmp_path: Path) -> Path:
    """A copy of the toy app (its app_settings.toml is edited by the tests)."""
    apps = tmp_path / "apps"
    shutil.copytree(TEST_APPS / "toy_project", apps / "toy_project")
    return apps


# ---------------------------------------------------------------- the type


def test_a_reference_shows_itself_never_the_value(secret_file, monkeypatch):
    monkeypatch.setenv(ENV_NAME, PLANTED)
    ssh = SshSettings.model_validate({"key_passphrase": {"env": ENV_NAME}})
    shown = [repr(ssh), str(ssh.key_passphrase), json.dumps(ssh.model_dump()), ssh.model_dump_json()]
    assert all(PLANTED not in text for text in shown)
    assert ssh.model_dump()["key_passphrase"] == {"env": ENV_NAME}
    assert ssh.key_passphrase.reveal() == PLANTED
    from_file = SshSettings.model_validate({"key_passphrase": {"file": str(secret_file)}})
    assert PLANTED not in repr(from_file) + from_file.model_dump_json()
    assert from_file.key_passphrase.reveal() == PLANTED  # one trailing newline dropped
    assert SshSettings.model_validate(from_file.model_dump()) == from_file  # the dump reads back


def test_a_missing_variable_names_it_and_the_fix(monkeypatch):
    monkeypatch.delenv(ENV_NAME, raising=False)
    with pytest.raises(SecretError) as caught:
        Secret(env=ENV_NAME).reveal("cluster.ssh.key_passphrase")
    assert f"cluster.ssh.key_passphrase: the environment variable {ENV_NAME} is not set" in caught.value.message
    assert f"export {ENV_NAME}" in caught.value.fix


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_secret_file_others_may_read_is_refused_with_chmod(secret_file, mode):
    secret_file.chmod(mode)
    with pytest.raises(SecretError) as caught:
        Secret(file=str(secret_file)).reveal("cluster.ssh.key_passphrase")
    assert f"secret file {secret_file} is mode {mode:04o}" in caught.value.message
    assert caught.value.fix == f"chmod 600 {secret_file}"
    assert PLANTED not in caught.value.message


def test_a_missing_secret_file_names_the_errno(tmp_path):
    with pytest.raises(SecretError, match=r"cannot be read \(ENOENT"):
        Secret(file=str(tmp_path / "nope")).reveal()


@pytest.mark.parametrize("value", [{"env": "A", "file": "B"}, {"envv": "A"}, {"env": 3}, 42])
def test_a_malformed_reference_is_refused(value):
    with pytest.raises(SecretError):
        Secret.parse(value)


# ---------------------------------------------------------------- settings: a literal is refused


def test_a_literal_secret_in_app_settings_is_refused_naming_file_line_and_key(toy_copy):
    path = toy_copy / "toy_project" / "app_settings.toml"
    path.write_text(path.read_text().replace("[lab]", f'[cluster.ssh]\nkey_passphrase = "{PLANTED}"\n\n[lab]'))
    with pytest.raises(SettingsError) as caught:
        load_settings(path, _toy_args())
    line = path.read_text().splitlines().index(f'key_passphrase = "{PLANTED}"') + 1
    assert caught.value.message.startswith(f"{path}:{line}: key 'cluster.ssh.key_passphrase': a secret is never written as text")
    assert 'cluster.ssh.key_passphrase = {env = "NAME"}' in caught.value.fix
    assert PLANTED not in caught.value.message + caught.value.fix


def test_a_literal_secret_in_a_profile_is_refused(toy_copy, tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "lab.toml").write_text(f'[cluster.ssh]\nkey_passphrase = "{PLANTED}"\n')
    path = toy_copy / "toy_project" / "app_settings.toml"
    path.write_text(path.read_text().replace("pool = false", 'pool = false\nprofile = "lab"'))
    with pytest.raises(SettingsError, match=r"lab.toml:2: key 'cluster.ssh.key_passphrase'") as caught:
        load_settings(path, _toy_args(), profile_dirs=[profiles])
    assert PLANTED not in str(caught.value)


def test_set_of_a_literal_secret_writes_nothing_not_even_a_temporary_file(toy_copy):
    folder = toy_copy / "toy_project"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with pytest.raises(SettingsError) as caught:
        save_settings_values(folder / "app_settings.toml", [f'cluster.ssh.key_passphrase="{PLANTED}"'], _toy_args(), [])
    assert PLANTED not in str(caught.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    done = run_agi("run", "toy", "--apps-path", str(toy_copy), "--set", f"cluster.ssh.key_passphrase={PLANTED}")
    assert done.returncode == 1 and "call arguments: key 'cluster.ssh.key_passphrase'" in done.stderr
    assert PLANTED not in done.stdout + done.stderr


def test_agi_settings_shows_where_a_secret_is_kept_never_its_value(toy_copy):
    done = run_agi("settings", "toy", "--apps-path", str(toy_copy), "--set", f'cluster.ssh.key_passphrase={{env="{ENV_NAME}"}}',
                   env={ENV_NAME: PLANTED})
    assert done.returncode == 0, done.stderr
    assert f"*** (env {ENV_NAME})" in done.stdout and PLANTED not in done.stdout + done.stderr
    as_json = run_agi("settings", "toy", "--apps-path", str(toy_copy), "--json", env={ENV_NAME: PLANTED})
    assert json.loads(as_json.stdout)["cluster"]["ssh"]["key_passphrase"] == {"env": ENV_NAME}


def test_the_ui_settings_form_shows_the_reference_and_refuses_a_literal(toy_copy, monkeypatch):
    pytest.importorskip("jinja2")
    from agi_core import AgiEnv
    from agi_core.ui.settings_form import form_fields, save_form

    monkeypatch.setenv(ENV_NAME, PLANTED)
    env = AgiEnv(app="toy", apps_path=toy_copy)
    path = env.settings_file
    outcome = save_form(env, {"cluster.ssh.key_passphrase": f'{{env = "{ENV_NAME}"}}'})
    assert outcome.saved == ["cluster.ssh.key_passphrase"], outcome.errors
    field = next(f for f in form_fields(AgiEnv(app="toy", apps_path=toy_copy)) if f.key == "cluster.ssh.key_passphrase")
    assert field.text == f'{{env = "{ENV_NAME}"}}' and field.kind == "secret"
    before = path.read_bytes()
    refused = save_form(AgiEnv(app="toy", apps_path=toy_copy), {"cluster.ssh.key_passphrase": PLANTED})
    assert "never written as text" in refused.errors["cluster.ssh.key_passphrase"]
    assert path.read_bytes() == before and PLANTED.encode() not in before


def _toy_args():
    from agi_core import AgiEnv

    return AgiEnv(app="toy", apps_path=TEST_APPS).app_class.Args


# ---------------------------------------------------------------- the scan


def _holders(root: Path, needle: bytes) -> list[str]:
    """Every file under ``root`` that holds ``needle``; tar.gz bundles are searched member by member."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        if needle in data:
            found.append(str(path))
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
                found += [f"{path}!{m.name}" for m in tar.getmembers() if m.isfile() and needle in tar.extractfile(m).read()]
    return found


def test_no_file_a_run_a_snippet_a_step_a_report_or_an_export_writes_holds_the_secret(toy_copy, secret_file, tmp_path):
    """The secret is set (environment variable and file) and named by the settings; every file the
    commands write, under the share, the run's out/, the steps file, the snippet and the bundle, and
    everything they print, is searched for it."""
    work = tmp_path / "work"
    share = work / "share"
    share.mkdir(parents=True)
    env = {ENV_NAME: PLANTED}
    apps = str(toy_copy)
    saved = run_agi("settings", "toy", "--apps-path", apps, "--set", f'cluster.ssh.key_passphrase={{file="{secret_file}"}}')
    assert saved.returncode == 0, saved.stderr
    sets = ["--set", f'cluster.workers_data_path="{share}"', "--set", f'cluster.ssh.key_passphrase={{env="{ENV_NAME}"}}']
    outputs = []

    def agi(*args: str) -> subprocess.CompletedProcess[str]:
        done = run_agi(*args, cwd=work, env=env)
        assert done.returncode == 0, f"agi {' '.join(args)}: {done.stderr}"
        outputs.append(done.stdout + done.stderr)
        return done

    run_id = json.loads(agi("run", "toy", "--apps-path", apps, *sets, "--set", "write_files=true", "--json").stdout)["run_id"]
    agi("snippet", "toy", "run", "--apps-path", apps, *sets, "--out", str(work / "snippet.py"))
    agi("steps", "add", "toy", "run", "--apps-path", apps, "--id", "first", *sets)
    agi("runs", "report", run_id, "--share", str(share))
    agi("runs", "export", run_id, "--share", str(share), "--out", str(work / "run.tar.gz"), "--with-cache")
    written = {p.name for p in work.iterdir()}
    assert {"share", "snippet.py", "lab_steps.toml", "run.tar.gz"} <= written
    assert any(p.name == "manifest.json" for p in share.rglob("*")) and any("/out/" in str(p) for p in share.rglob("*"))
    # the scan can find it: the secret file itself, and a member of a bundle that held it
    assert _holders(secret_file.parent, PLANTED.encode()) == [str(secret_file)]
    control = tmp_path / "control"
    control.mkdir()
    with tarfile.open(control / "b.tar", "w") as tar:
        tar.add(secret_file, arcname="run/leak.txt")
    (control / "b.tar.gz").write_bytes(gzip.compress((control / "b.tar").read_bytes()))
    (control / "b.tar").unlink()
    assert _holders(control, PLANTED.encode()) == [f"{control / 'b.tar.gz'}!run/leak.txt"]
    assert _holders(work, PLANTED.encode()) == []
    assert _holders(toy_copy, PLANTED.encode()) == []
    assert not [text for text in outputs if PLANTED in text]


# ---------------------------------------------------------------- a real encrypted key on a real sshd


def test_an_encrypted_client_key_is_decrypted_with_the_named_passphrase(rig_hosts, tmp_path, monkeypatch, secret_file):
    from agi_core.ssh import SshError
    from agi_core.ssh.connect import open_session

    key = tmp_path / "id_encrypted"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PLANTED, "-C", "encrypted", "-f", str(key)], check=True)
    h1 = rig_hosts.hosts[0]
    with (h1.home / ".ssh" / "authorized_keys").open("a") as keys:
        keys.write(Path(f"{key}.pub").read_text())
    base = {"user": "root", "key": str(key), "known_hosts": str(rig_hosts.known_hosts), "connect_timeout": 5}
    monkeypatch.setenv(ENV_NAME, PLANTED)

    async def hostname(ssh: SshSettings) -> str:
        session = await open_session(h1.ip, ssh)
        try:
            return (await session.run("hostname")).stdout.strip()
        finally:
            await session.close()

    assert asyncio.run(hostname(SshSettings.model_validate(base | {"key_passphrase": {"env": ENV_NAME}}))) == h1.name
    with pytest.raises(SshError, match="client key is encrypted") as caught:
        asyncio.run(hostname(SshSettings.model_validate(base)))
    assert "key_passphrase" in caught.value.fix
    secret_file.write_text("not-the-passphrase\n")
    with pytest.raises(SshError, match="client key could not be decrypted") as caught:
        asyncio.run(hostname(SshSettings.model_validate(base | {"key_passphrase": {"file": str(secret_file)}})))
    assert f"file {secret_file}" in caught.value.fix and PLANTED not in str(caught.value)
