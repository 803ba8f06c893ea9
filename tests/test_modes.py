import pytest

from agi_core import Mode, ModeError


@pytest.mark.parametrize("value, expected", [
    (0, 0), (15, 15), ("7", 7), ("dcp", 7), ("pcd", 7), ("r", 8), ("", None), ("POOL|CLUSTER", 5),
    ("pool | rapids", 9), (Mode.CYTHON, 2),
])
def test_parse_accepts_valid_forms(value, expected):
    if expected is None:
        with pytest.raises(ModeError):
            Mode.parse(value)
    else:
        assert int(Mode.parse(value)) == expected


@pytest.mark.parametrize("value", [-1, 16, 3.0, True, None, "x", "pp", "dq", "POOL|GPU", "1.5", [1]])
def test_parse_rejects_everything_else_and_lists_valid_forms(value):
    with pytest.raises(ModeError) as info:
        Mode.parse(value)
    assert "0-15" in str(info.value) and "p c d r" in str(info.value)
    assert info.value.fix


def test_prints_as_int_and_letters():
    assert Mode.parse(13).letters == "pdr"
    assert str(Mode.parse("dp")) == "5 (pd)"
    assert str(Mode(0)) == "0 (-)"
    for value in range(16):
        assert int(Mode.parse(Mode(value).letters or 0)) == value  # letters round-trip
