"""actprm in Ray Data: a callable class for ``Dataset.map_batches`` that opens the model once per
actor and scores each batch in process (no ``actprm`` process per task).

    import ray, actprm.ray
    ds = ray.data.read_parquet("s3://bucket/trajectories/")
    scored = ds.map_batches(
        actprm.ray.Scorer,
        fn_constructor_kwargs={"path": None, "threads": 2},
        batch_format="pyarrow",
        concurrency=4,          # actors, each with its own model
        num_cpus=2,             # or num_gpus=1 with device="cuda"
    )
    scored.write_parquet("s3://bucket/scored/")

A batch's rows come back in order; rows that cannot be scored stay in the output with null score
columns and ``reject_column``/``reject_reason`` set (``rejects="column"``), so a Ray job never
loses a row; ``rejects="raise"`` fails the task instead. See docs/ray.md for the trade-off
against ``actprm filter --ray`` (units, resume, exactly-once commits).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import pyarrow as pa

from . import Model


class Scorer:
    """Scores Ray Data batches (``batch_format="pyarrow"``) with one model per actor."""

    def __init__(
        self,
        path: Optional[Union[str, os.PathLike]] = None,
        device: str = "cpu",
        threads: int = 0,
        problem_column: Optional[str] = None,
        steps_column: Optional[str] = None,
        step_separator: Optional[str] = None,
        rejects: str = "column",
        **settings: Any,
    ):
        if rejects not in ("column", "raise"):
            raise ValueError(
                f'rejects={rejects!r}: a map_batches function returns one table, so "column" '
                '(rejected rows kept with their reason) or "raise" (the task fails)'
            )
        self.model = Model(path, device=device, threads=threads, **settings)
        self.columns = (problem_column, steps_column, step_separator)
        self.rejects = rejects

    def __call__(self, batch: pa.Table) -> pa.Table:
        problem, steps, separator = self.columns
        return self.model.score(
            batch,
            problem_column=problem,
            steps_column=steps,
            step_separator=separator,
            rejects=self.rejects,
        )
