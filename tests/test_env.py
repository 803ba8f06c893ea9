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
