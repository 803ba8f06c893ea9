"""The flight_telemetry example: its generated dataset, its one dataframe code path, and its runs."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys

import pandas as pd
import pytest

from agi_core import AGI, AgiEnv
from tests.conftest import ROOT

pytest.importorskip("pyarrow")

SMALL = {"flights": 6, "min_rows": 600, "max_rows": 3000}
SRC = ROOT / "apps" / "flight_telemetry_project" / "src"


@pytest.fixture
def env() -> AgiEnv:
    return AgiEnv(app="flight_telemetry")


def run(env, tmp_path, mode, **args):
    return asyncio.run(AGI.run(env, mode=mode, cluster={"workers_data_path": str(tmp_path / "share")},
                               data_dir=str(tmp_path / "data"), **{**SMALL, **args}))


def test_the_dataset_is_made_once_from_its_seed_and_partitions_are_files_weighted_by_size(env, tmp_path):
    plan = asyncio.run(AGI.get_distrib(env, mode=0, data_dir=str(tmp_path / "data"), **SMALL))
    files = sorted((tmp_path / "data").glob("parquet-*/flight-*.parquet"))
    assert [p.id for p in plan.partitions] == [f.stem for f in files] and len(files) == 6
    assert [p.weight for p in plan.partitions] == [float(f.stat().st_size) for f in files]
    assert len({p.weight for p in plan.partitions}) > 1  # flights differ in length
    assert all(p.prefers == ("gpu",) and not p.needs for p in plan.partitions)
    stamps = [f.stat().st_mtime_ns for f in files]
    again = asyncio.run(AGI.get_distrib(env, mode=0, data_dir=str(tmp_path / "data"), **SMALL))
    assert [f.stat().st_mtime_ns for f in files] == stamps and again.fingerprint == plan.fingerprint  # not regenerated
    # the same seed elsewhere gives the same files, byte for byte
    asyncio.run(AGI.get_distrib(env, mode=0, data_dir=str(tmp_path / "other"), **SMALL))
    other = sorted((tmp_path / "other").glob("parquet-*/flight-*.parquet"))
    assert [f.read_bytes() for f in other] == [f.read_bytes() for f in files]


def test_mode_0_and_the_pool_give_the_same_fleet_summary_table_and_plot(env, tmp_path):
    first = run(env, tmp_path, 0)
    pooled = run(env, tmp_path, 1, format="csv")  # the CSV dataset holds the same numbers
    for result in (first, pooled):
        assert result.status == "ok" and result.value["flights"] == 6
        assert (result.out_dir / "fleet_summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a = pd.read_csv(first.out_dir / "fleet_summary.csv")
    b = pd.read_csv(pooled.out_dir / "fleet_summary.csv")
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)
    assert set(a["phase"]) == {"taxi", "climb", "cruise", "descent"}
    assert a["rows"].sum() == first.value["rows"] == sum(len(pd.read_parquet(f)) for f in (tmp_path / "data").glob("parquet-*/*.parquet"))


def test_reduce_combines_per_file_sums_exactly(env, tmp_path):
    sys.path.insert(0, str(SRC))
    try:
        from flight_telemetry.app import combine
        from flight_telemetry.kernels import summarise_file
    finally:
        sys.path.remove(str(SRC))
    result = run(env, tmp_path, 0)
    files = sorted((tmp_path / "data").glob("parquet-*/*.parquet"))
    together = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    together.to_parquet(tmp_path / "all.parquet")
    expected = combine([summarise_file(tmp_path / "all.parquet")])
    got = pd.read_csv(result.out_dir / "fleet_summary.csv")
    pd.testing.assert_frame_equal(got, expected.astype(got.dtypes.to_dict()), rtol=1e-5)  # one file of every row: the same


def test_the_rapids_bit_without_a_gpu_runs_pandas_and_never_imports_cudf(tmp_path):
    """Mode 8 here: the CPU kernels, said in the record; in a child, to see what it imported."""
    code = ("import asyncio, json, sys; from agi_core import AGI, AgiEnv; "
            f"r = asyncio.run(AGI.run(AgiEnv(app='flight_telemetry'), mode='r', flights=2, min_rows=300, max_rows=400, "
            f"data_dir={str(tmp_path / 'data')!r}, cluster={{'workers_data_path': {str(tmp_path)!r}}})); "
            "rec = json.loads(r.manifest.read_text()); "
            "print(json.dumps([[p['kernel'], p['note']] for p in rec['partitions']] + [sorted(m for m in sys.modules if m.split('.')[0] in ('cudf', 'numba', 'cupy'))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    *parts, gpu_modules = json.loads(out.stdout.strip().splitlines()[-1])
    if importlib.util.find_spec("cudf") is None:
        assert {kind for kind, _ in parts} == {"python"}
        assert all(note.startswith("no GPU on ") or "not usable" in note for _, note in parts), parts
    assert gpu_modules == []
