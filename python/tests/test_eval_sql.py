"""actprm.eval and actprm.sql agree with `actprm eval` and `actprm sql`."""

import json

import pyarrow as pa
import pytest

import actprm
from conftest import PB_SUBSET, PRM800K_TEST, run_cli


def test_eval_returns_the_command_lines_report():
    report = actprm.eval(PB_SUBSET)
    cli = json.loads(run_cli("eval", str(PB_SUBSET), "--json"))
    assert report["order"] == cli["order"]
    assert report["tau"] == pytest.approx(cli["tau"])
    assert report["mean_f1"] == pytest.approx(cli["mean_f1"], abs=1e-9)
    for name, subset in cli["subsets"].items():
        assert report["subsets"][name] == pytest.approx(subset) if isinstance(subset, float) else True
        assert json.dumps(report["subsets"][name], sort_keys=True) == json.dumps(subset, sort_keys=True)


def test_eval_settings_are_checked():
    with pytest.raises(ValueError, match="check"):
        actprm.eval(PB_SUBSET, check="sometimes")


QUERY = (
    "SELECT count(*) AS n, sum(CASE WHEN first_error = -1 THEN 1 ELSE 0 END) AS clean, "
    "round(avg(prm_list_min(step_mean)), 6) AS mean_min FROM t"
)


def test_sql_over_a_scored_table_in_memory_agrees_with_the_command_line(model, prm800k, cli_scored, tmp_path):
    in_memory = actprm.sql(QUERY, tables={"t": model.score(prm800k)})
    parts = tmp_path / "scored.parquet"
    import pyarrow.parquet as pq

    pq.write_table(cli_scored, parts)
    cli = json.loads("[" + ",".join(run_cli("sql", QUERY, "--table", f"t={parts}", "--format", "jsonl").split()) + "]")
    assert in_memory.to_pylist() == [{k: v for k, v in row.items()} for row in cli]
    assert in_memory.column("n").to_pylist() == [353]


def test_sql_reads_paths_and_scores_with_prm_score():
    table = actprm.sql(
        "SELECT id, prm_score(problem, steps) AS s FROM t ORDER BY id LIMIT 3",
        tables={"t": str(PRM800K_TEST)},
    )
    assert table.num_rows == 3
    assert isinstance(table, pa.Table)
    with pytest.raises(ValueError, match="nope"):
        actprm.sql("SELECT * FROM nope")
