"""Sizes as people write them: one letter and ``…iB`` are powers of 1024, ``…B`` powers of 1000."""

import pytest

from agi_core.base.quantities import parse_size
from tests.conftest import run_agi


@pytest.mark.parametrize("text, size", [("500M", 500 * 1024**2), ("2g", 2 * 1024**3), ("100k", 100 * 1024),
                                        ("2GiB", 2 * 1024**3), ("1.5 MiB", 1_572_864), ("1024", 1024)])
def test_one_letter_and_iec_units_are_powers_of_1024(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text, size", [("2GB", 2 * 10**9), ("500 MB", 500 * 10**6), ("3kb", 3000)])
def test_si_units_are_powers_of_1000_as_byte_size_reads_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "", "5X", "-1", "G"])
def test_a_text_that_is_not_a_size_names_itself_and_the_units(text):
    with pytest.raises(ValueError, match=r"is not a size: write a number and a unit: K, M, G, T or KiB"):
        parse_size(text)


def test_gc_names_the_option_and_the_units_of_a_bad_size(tmp_path):
    bad = run_agi("cache", "gc", "--max-size", "2 pages", "--share", str(tmp_path))
    assert bad.returncode == 2 and "'--max-size'" in bad.stderr and "powers of 1000" in " ".join(bad.stderr.split())
