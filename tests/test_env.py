import pytest

from agi_core import AgiEnv, AppNotFoundError
from tests.conftest import TEST_APPS


@pytest.mark.parametrize("name", ["toy", "toy_project"])
def test_finds_app_with_or_without_suffix(name):
    env = AgiEnv(app=name, apps_path=TEST_APPS)
    assert env.name == "toy"
    assert env.app_class.__name__ == "Toy"
    assert env.project_dir == TEST_APPS / "toy_project"


def test_unknown_app_lists_known_apps():
    with pytest.raises(AppNotFoundError) as info:
        AgiEnv(app="toi", apps_path=TEST_APPS)
    assert "unknown app 'toi'" in str(info.value)
    assert "known apps: " in info.value.fix and ", toy" in info.value.fix and "did you mean 'toy'" in info.value.fix


def test_bundled_example_is_found_by_default():
    env = AgiEnv(app="mandelbrot_project")
    assert env.app_class.__name__ == "Mandelbrot"
    assert env.version() == "0.1.0"


def test_code_hash_changes_with_the_code(apps_copy):
    env = AgiEnv(app="toy", apps_path=apps_copy)
    before = env.code_hash()
    assert before == env.code_hash()
    source = env.src_dir / "toy" / "__init__.py"
    source.write_text(source.read_text() + "\n# changed\n")
    assert env.code_hash() != before


def test_app_without_single_package_is_a_clear_error(tmp_path):
    project = tmp_path / "apps" / "empty_project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "empty"\nversion = "0"\n')
    with pytest.raises(AppNotFoundError) as info:
        AgiEnv(app="empty", apps_path=tmp_path / "apps")
    assert "[tool.agi]" in info.value.fix


def test_git_commit_names_the_commit_and_says_dirty(tmp_path):
    import shutil
    import subprocess

    from agi_core import AgiEnv
    from tests.conftest import TEST_APPS

    repo = tmp_path / "repo"
    shutil.copytree(TEST_APPS / "toy_project", repo / "apps" / "toy_project", ignore=shutil.ignore_patterns("__pycache__"))
    env = AgiEnv(app="toy", apps_path=repo / "apps")
    assert env.git_commit() is None  # not in a repository
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    assert env.git_commit() is None  # a repository without a commit
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "toy"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert env.git_commit() == head
    (repo / "apps" / "toy_project" / "app_settings.toml").write_text("[args]\nn = 2\n")
    assert env.git_commit() == head + "+dirty"
