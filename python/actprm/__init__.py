"""actprm from Python: the scoring engine of the ``actprm`` command line, Arrow in and out.

    import actprm
    model = actprm.Model()                     # the embedded default PRM (or Model("path/to/model"))
    scored = model.score(table)                # a pyarrow.Table: your columns + step_mean, first_error, ...
    actprm.eval(["processbench.json"])         # the metrics dict of `actprm eval`
    actprm.sql("SELECT ...", tables={"t": scored})

``data`` is anything that exports the Arrow C stream interface (``__arrow_c_stream__``): a
pyarrow Table, RecordBatch or RecordBatchReader, a polars DataFrame, a DuckDB relation; a pandas
DataFrame and a Hugging Face ``datasets.Dataset`` are converted through pyarrow (no copy for the
latter). See docs/python.md.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
from typing import Any, Iterable, Iterator, Mapping, Optional, Tuple, Union

import pyarrow as pa


def _find_onnxruntime() -> None:
    """Points ORT_DYLIB_PATH at an installed onnxruntime(-gpu) wheel's library when the one the
    module was built to use (.deps/ort of its checkout) is not there."""
    from . import _actprm

    if os.environ.get("ORT_DYLIB_PATH") or os.path.exists(_actprm.ort_library_path()):
        return
    for package in ("onnxruntime", "onnxruntime_gpu"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            found = sorted(glob.glob(os.path.join(folder, "capi", "libonnxruntime.so*")))
            if found:
                os.environ["ORT_DYLIB_PATH"] = found[0]
                return


_find_onnxruntime()

from . import _actprm  # noqa: E402

__version__ = _actprm.__version__

__all__ = ["Model", "RejectedRowsError", "eval", "sql", "__version__"]

REJECTS = ("raise", "return", "column")


class RejectedRowsError(ValueError):
    """Rows that could not be scored (empty steps, a null problem, ...). ``.rejects`` holds them
    with ``reject_row``, ``reject_column`` and ``reject_reason``; ``.scored`` holds the rows that
    were scored. Pass ``rejects="return"`` or ``rejects="column"`` to get them without raising."""

    def __init__(self, message: str, scored: pa.Table, rejects: pa.Table):
        super().__init__(message)
        self.scored = scored
        self.rejects = rejects


def _arrow(data: Any) -> Any:
    """``data`` as something with ``__arrow_c_stream__``."""
    if hasattr(data, "__arrow_c_stream__"):
        return data
    module = type(data).__module__
    if module.startswith("datasets"):
        if getattr(data, "_indices", None) is None:
            return data.data.table  # the Arrow table the Dataset is (no copy)
        return data.with_format("arrow")[:]  # a selection or shuffle: its rows, in its order
    if module.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(
        "expected Arrow data (pyarrow Table/RecordBatch/RecordBatchReader, polars, pandas, "
        f"datasets.Dataset or anything with __arrow_c_stream__), got {type(data).__name__}"
    )


def _settings(settings: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in settings.items() if v is not None})


class Model:
    """A PRM opened once: the model folder ``path`` (default: the embedded default model) on
    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``) with ``threads`` ONNX Runtime threads
    (0: one per core). Further keyword arguments are the score settings of a pipeline file's
    score stage (``token_budget``, ``max_batch``, ``batch_rows``, ``prefix_sharing``, ``check``,
    ``tau``, ``delta_pred``, ``delta_std``, ``head_probs``, ...); an unknown one is a ValueError."""

    def __init__(
        self,
        path: Optional[Union[str, os.PathLike]] = None,
        device: str = "cpu",
        threads: int = 0,
        **settings: Any,
    ):
        self._model = _actprm.Model(
            None if path is None else os.fspath(path), device, threads, _settings(settings)
        )
        self.path = path
        self.device = device

    @property
    def info(self) -> dict:
        """version, ensemble_size (E), tau, check, delta_pred, delta_std, hidden_size, device."""
        return json.loads(self._model.info_json)

    def __repr__(self) -> str:
        info = self.info
        return (
            f"actprm.Model(version={info['version']!r}, E={info['ensemble_size']}, "
            f"tau={info['tau']:.3f}, device={info['device']!r})"
        )

    def score(
        self,
        data: Any,
        problem_column: Optional[str] = None,
        steps_column: Optional[str] = None,
        step_separator: Optional[str] = None,
        rejects: str = "raise",
    ) -> Union[pa.Table, Tuple[pa.Table, pa.Table]]:
        """Scores every row of ``data``; returns the columns and values of ``actprm score``'s
        parts (your columns, then step_mean, step_std, first_error, selected, ...).

        Rows that cannot be scored are never dropped silently. ``rejects`` says where they go:
        ``"raise"`` (default) raises :class:`RejectedRowsError` (holding both tables);
        ``"return"`` returns ``(scored, rejects)``, the rejects with ``reject_file``,
        ``reject_row`` (0-based row of ``data``), ``reject_column`` and ``reject_reason`` as in
        ``rejects/``; ``"column"`` returns every row in input order, score columns null and
        ``reject_column``/``reject_reason`` set on the rows that could not be scored."""
        _check_rejects(rejects)
        scored, rejected, every_row = self._model.score(
            _arrow(data), problem_column, steps_column, step_separator
        )
        return _rejects_as_asked(scored, rejected, every_row, rejects)

    def score_batches(
        self,
        data: Any,
        problem_column: Optional[str] = None,
        steps_column: Optional[str] = None,
        step_separator: Optional[str] = None,
        rejects: str = "raise",
    ) -> Iterator[Union[pa.Table, Tuple[pa.Table, pa.Table]]]:
        """:meth:`score`, one input batch at a time (a RecordBatchReader is read as it streams,
        so memory stays bounded); yields what :meth:`score` returns for each batch."""
        _check_rejects(rejects)
        reader = pa.RecordBatchReader.from_stream(_arrow(data))
        row = 0
        for batch in reader:
            scored, rejected, every_row = self._model.score(
                batch, problem_column, steps_column, step_separator, "input", row
            )
            row += batch.num_rows
            yield _rejects_as_asked(scored, rejected, every_row, rejects)


def _check_rejects(rejects: str) -> None:
    if rejects not in REJECTS:
        raise ValueError(f"rejects={rejects!r}: expected one of {', '.join(REJECTS)}")


def _rejects_as_asked(scored: pa.Table, rejected: pa.Table, every_row: pa.Table, rejects: str):
    if rejects == "column":
        return every_row
    if rejects == "return":
        return scored, rejected
    if rejected.num_rows:
        first = rejected.slice(0, 1).to_pylist()[0]
        raise RejectedRowsError(
            f"{rejected.num_rows} row(s) could not be scored; the first, row "
            f"{first['reject_row']}: column {first['reject_column']!r}: {first['reject_reason']} "
            '(rejects="return" or "column" keeps them; .rejects has them all)',
            scored,
            rejected,
        )
    return scored


def eval(  # noqa: A001 - the command's name
    files: Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]],
    model: Optional[Union[str, os.PathLike]] = None,
    device: str = "cpu",
    threads: int = 0,
    tau: Optional[float] = None,
    tau_from_first: bool = False,
    check: Optional[str] = None,
    token_budget: Optional[int] = None,
    max_batch: Optional[int] = None,
) -> dict:
    """``actprm eval FILES``: ProcessBench-style F1 per subset (each file or folder one subset),
    as the command's JSON report (``subsets``, ``mean_f1``, ``tau``, ``model_version``)."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    settings = _settings(
        {
            "tau": tau,
            "tau_from_first": tau_from_first,
            "check": check,
            "token_budget": token_budget,
            "max_batch": max_batch,
        }
    )
    report = _actprm.eval_files(
        [os.fspath(f) for f in files],
        None if model is None else os.fspath(model),
        device,
        threads,
        settings,
    )
    return json.loads(report)


def sql(
    query: str,
    tables: Optional[Mapping[str, Any]] = None,
    model: Optional[Union[str, os.PathLike]] = None,
    device: str = "cpu",
    threads: int = 0,
) -> pa.Table:
    """``actprm sql QUERY``: DataFusion SQL with the PRM functions (``prm_score``,
    ``prm_list_min``, ...); ``tables`` maps a name to a path (Parquet/JSON Lines file, folder,
    glob or URL, as ``--table``) or to Arrow data (a pyarrow Table, polars, pandas, ...).
    Returns the last statement's rows."""
    pairs = []
    for name, value in (tables or {}).items():
        if isinstance(value, (str, os.PathLike)):
            pairs.append((name, os.fspath(value)))
        else:
            pairs.append((name, _arrow(value)))
    return _actprm.sql(query, pairs, None if model is None else os.fspath(model), device, threads)
