"""Fixtures: the repository's real data, and the actprm command line that the module must agree
with (ACTPRM_BIN, set by tests/python.rs to the binary `cargo test` built)."""

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
PRM800K_TEST = ROOT / "tests/data/prm800k_phase1_test.parquet"
PB_SUBSET = ROOT / "tests/data/pb_subset.json"


def actprm_bin() -> str:
    found = os.environ.get("ACTPRM_BIN") or str(ROOT / "target/debug/actprm")
    if not os.path.exists(found):
        pytest.fail(f"no actprm command line at {found}: run `cargo build` (or set ACTPRM_BIN)")
    return found


def run_cli(*args: str) -> str:
    done = subprocess.run(
        [actprm_bin(), *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"actprm {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def prm800k() -> pa.Table:
    return pq.read_table(PRM800K_TEST)


@pytest.fixture(scope="session")
def cli_scored(tmp_path_factory) -> pa.Table:
    """`actprm score` on the PRM800K test file: its parts, in order."""
    out = tmp_path_factory.mktemp("cli") / "scored"
    run_cli("score", "-i", str(PRM800K_TEST), "-o", str(out), "--quiet")
    parts = sorted(out.glob("part-*.parquet"))
    assert parts, f"no parts in {out}"
    return pa.concat_tables([pq.read_table(p) for p in parts])


@pytest.fixture(scope="session")
def model():
    import actprm

    return actprm.Model()
