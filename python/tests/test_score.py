"""Model.score against `actprm score`, on the 353 real PRM800K test trajectories, from every kind
of table a Python user holds; and what happens to rows and tables that cannot be scored."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import actprm
from conftest import PRM800K_TEST, ROOT, run_cli

FLOAT_LISTS = ("step_mean", "step_std", "step_head_probs")


def assert_same_rows(
    got: pa.Table, expected: pa.Table, tolerance: float = 1e-6, derived_tolerance: float = 1e-6
):
    assert got.column_names == expected.column_names
    assert got.num_rows == expected.num_rows
    for name in expected.column_names:
        a, b = got.column(name), expected.column(name)
        if name in FLOAT_LISTS:
            assert pc.list_value_length(a).equals(pc.list_value_length(b)), name
            x = np.asarray(pc.list_flatten(a).to_numpy(zero_copy_only=False), dtype=np.float64)
            y = np.asarray(pc.list_flatten(b).to_numpy(zero_copy_only=False), dtype=np.float64)
            assert np.max(np.abs(x - y)) <= tolerance, f"{name}: max diff {np.max(np.abs(x - y))}"
        elif pa.types.is_floating(a.type):
            # uncertainty is a sum of terms of order 1: the tolerance is relative
            x, y = a.to_numpy().astype(np.float64), b.to_numpy().astype(np.float64)
            worst = np.max(np.abs(x - y) / np.maximum(1.0, np.abs(y)))
            assert worst <= derived_tolerance, f"{name}: max relative diff {worst}"
        else:
            assert a.equals(b), f"column {name} differs"


def test_score_equals_the_command_lines_parts(model, prm800k, cli_scored):
    scored = model.score(prm800k)
    assert isinstance(scored, pa.Table)
    assert scored.num_rows == 353
    assert_same_rows(scored, cli_scored)
    # the scores say something: not every trajectory gets the same first error
    assert len(set(scored.column("first_error").to_pylist())) > 2


def test_info_is_the_models_as_the_command_line_reports_it(model, tmp_path):
    out = tmp_path / "s"
    run_cli("score", "-i", str(PRM800K_TEST), "-o", str(out), "--quiet")
    summary = json.loads((out / "summary.json").read_text())
    info = model.info
    assert info["ensemble_size"] == summary["ensemble_size"]
    assert info["tau"] == pytest.approx(summary["tau"])
    assert info["version"] == summary["model_version"]
    assert "E=" in repr(model)


def test_polars_pandas_and_datasets_inputs_score_as_pyarrow(model, prm800k, cli_scored):
    import datasets
    import pandas as pd
    import polars as pl

    head = prm800k.slice(0, 40)
    expected = cli_scored.slice(0, 40)
    from_polars = model.score(pl.from_arrow(head))
    from_pandas = model.score(head.to_pandas())
    from_datasets = model.score(datasets.Dataset(head))
    for got in (from_polars, from_pandas, from_datasets):
        assert got.num_rows == 40
        assert got.column("id").to_pylist() == expected.column("id").to_pylist()
        a = np.asarray(pc.list_flatten(got.column("step_mean")).to_numpy(), dtype=np.float64)
        b = np.asarray(pc.list_flatten(expected.column("step_mean")).to_numpy(), dtype=np.float64)
        assert np.max(np.abs(a - b)) <= 1e-6
    # a shuffled selection of a Dataset is scored in its own order
    picked = datasets.Dataset(head).select([5, 1, 30])
    got = model.score(picked)
    assert got.column("id").to_pylist() == [head.column("id")[i].as_py() for i in (5, 1, 30)]
    assert isinstance(pd.DataFrame(), object)


def test_score_batches_streams_the_same_rows(model, prm800k, cli_scored):
    reader = pa.RecordBatchReader.from_batches(prm800k.schema, prm800k.to_batches(max_chunksize=50))
    pieces = list(model.score_batches(reader))
    assert len(pieces) == 8  # 353 rows in batches of 50
    # other batches than the command line's 64 rows: the same steps padded beside other rows,
    # so float sums differ in the last bits; `uncertainty` (a sum over steps) shows it most
    assert_same_rows(pa.concat_tables(pieces), cli_scored, derived_tolerance=1e-5)


def test_a_response_string_is_split_into_steps(model, prm800k):
    head = prm800k.slice(0, 20)
    joined = [("\n\n".join(steps)) for steps in head.column("steps").to_pylist()]
    responses = pa.table({"problem": head.column("problem"), "response": joined})
    split = model.score(responses, steps_column="response", step_separator="\n\n")
    as_lists = model.score(head.select(["problem", "steps"]))
    assert split.column("first_error").equals(as_lists.column("first_error"))
    assert pc.list_value_length(split.column("step_mean")).equals(
        pc.list_value_length(as_lists.column("step_mean"))
    )


def bad_rows(prm800k):
    good = prm800k.slice(0, 4).select(["problem", "steps"]).to_pylist()
    rows = [good[0], {"problem": "What is 1+1?", "steps": []}, good[1], {"problem": None, "steps": ["2"]}, good[2]]
    schema = pa.schema([("problem", pa.string()), ("steps", pa.list_(pa.string()))])
    return pa.Table.from_pylist(rows, schema=schema)


def test_rows_that_cannot_be_scored_raise_with_every_reject_and_nothing_is_lost(model, prm800k):
    table = bad_rows(prm800k)
    with pytest.raises(actprm.RejectedRowsError) as raised:
        model.score(table)
    message = str(raised.value)
    assert "2 row(s) could not be scored" in message and "row 1" in message, message
    assert "steps is an empty list" in message
    assert raised.value.scored.num_rows == 3
    assert raised.value.rejects.column("reject_row").to_pylist() == [1, 3]

    scored, rejects = model.score(table, rejects="return")
    assert (scored.num_rows, rejects.num_rows) == (3, 2)
    assert rejects.column("reject_reason").to_pylist() == ["steps is an empty list", "problem is null"]
    assert rejects.column("reject_column").to_pylist() == ["steps", "problem"]

    every = model.score(table, rejects="column")
    assert every.num_rows == 5
    assert every.column("reject_reason").to_pylist() == [None, "steps is an empty list", None, "problem is null", None]
    assert every.column("step_mean").null_count == 2
    assert every.column("step_mean")[0].as_py() == scored.column("step_mean")[0].as_py()


def test_bad_tables_and_models_raise_and_the_interpreter_goes_on(model, prm800k):
    with pytest.raises(ValueError, match=r'"answer" not found.*columns: problem, steps'):
        model.score(prm800k.select(["problem", "steps"]), steps_column="answer")
    with pytest.raises(ValueError, match=r'"steps" has type Int64'):
        model.score(pa.table({"problem": ["x"], "steps": [3]}))
    with pytest.raises(TypeError, match="expected Arrow data"):
        model.score([{"problem": "x"}])
    with pytest.raises(ValueError, match="unknown setting \"token_budjet\""):
        actprm.Model(token_budjet=100)
    with pytest.raises(ValueError, match="device"):
        actprm.Model(device="tpu")
    with pytest.raises(ValueError, match="max_batch"):
        actprm.Model(max_batch=0)
    missing = ROOT / "no-such-model"
    with pytest.raises(RuntimeError, match=str(missing)):
        actprm.Model(missing)
    with pytest.raises(ValueError, match="rejects="):
        model.score(prm800k, rejects="drop")
    # the same model still scores after all of that
    assert model.score(prm800k.slice(0, 3)).num_rows == 3


def test_settings_reach_the_scorer(prm800k):
    with_probs = actprm.Model(head_probs=True, token_budget=2048).score(prm800k.slice(0, 5))
    assert "step_head_probs" in with_probs.column_names
    always = actprm.Model(tau=0.0).score(prm800k.slice(0, 5))
    assert always.column("first_error").to_pylist() == [-1] * 5


def test_an_empty_table_gives_empty_tables_with_every_column(model, prm800k, cli_scored):
    for empty in (prm800k.schema.empty_table(), prm800k.slice(0, 0)):
        scored, rejects = model.score(empty, rejects="return")
        assert scored.num_rows == 0 and rejects.num_rows == 0
        assert scored.column_names == cli_scored.column_names
        assert rejects.column_names[-4:] == ["reject_file", "reject_row", "reject_column", "reject_reason"]
