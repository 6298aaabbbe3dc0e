//! `actprm._actprm`: the scoring engine of the command line, called from Python. Batches cross
//! the boundary through the Arrow C stream interface (no copy); scoring runs with the GIL
//! released; every error, a panic included, reaches Python as an exception. The Python package
//! (`python/actprm/`) wraps this module in the documented API.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use arrow::datatypes::SchemaRef;
use arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use actprm::model::ModelOptions;
use actprm::pipeline::score::{BatchScorer, ScoreSettings, Scorer};
use actprm::pipeline::PipelineError;
use actprm::source::ColumnMapping;

/// An opened PRM: the model folder (or the embedded default) loaded once, then any number of
/// tables scored by it.
#[pyclass(frozen, module = "actprm._actprm")]
struct Model {
    scorer: Mutex<BatchScorer>,
    info: String,
}

#[pymethods]
impl Model {
    /// `settings` is a JSON object of score-stage keys (`token_budget`, `check`, ...).
    #[new]
    #[pyo3(signature = (path=None, device="cpu", threads=0, settings="{}"))]
    fn new(
        py: Python<'_>,
        path: Option<PathBuf>,
        device: &str,
        threads: usize,
        settings: &str,
    ) -> PyResult<Self> {
        let model = model_options(path, device, threads)?;
        let settings: ScoreSettings = settings_from_json(settings, "Model")?;
        let scorer = Scorer {
            model,
            columns: ColumnMapping::default(),
            settings,
        };
        let opened = py.detach(|| guarded(|| BatchScorer::open(&scorer)))?;
        let scorer = opened.map_err(pipeline_error)?;
        let info = serde_json::to_string(scorer.info()).map_err(runtime_error)?;
        Ok(Self {
            scorer: Mutex::new(scorer),
            info,
        })
    }

    /// The model's version, ensemble size, tau and check rule, as JSON.
    #[getter]
    fn info_json(&self) -> &str {
        &self.info
    }

    /// Scores every batch of `data` (anything with `__arrow_c_stream__`); returns the tables
    /// (scored, rejects, every_row).
    #[pyo3(signature = (data, problem_column=None, steps_column=None, step_separator=None, origin="input", first_row=0))]
    // one argument per Python keyword
    #[allow(clippy::too_many_arguments)]
    fn score<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        problem_column: Option<String>,
        steps_column: Option<String>,
        step_separator: Option<String>,
        origin: &str,
        first_row: u64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let reader = import_stream(data)?;
        let columns = ColumnMapping {
            problem: problem_column,
            steps: steps_column,
            step_separator,
            split: None,
        };
        let input_schema = reader.schema();
        let result = py.detach(|| {
            guarded(|| {
                let mut scorer = self.scorer.lock().map_err(|_| poisoned())?;
                let mut scored = Vec::new();
                let mut rejects = Vec::new();
                let mut every_row = Vec::new();
                let mut row = first_row;
                for batch in reader {
                    let batch = batch.map_err(PipelineError::from)?;
                    let part = scorer.score(&batch, &columns, origin, row)?;
                    row += batch.num_rows() as u64;
                    scored.push(part.scored);
                    rejects.push(part.rejects);
                    every_row.push(part.every_row);
                }
                if scored.is_empty() {
                    // no batch at all: score an empty one for the output schemas
                    let empty = RecordBatch::new_empty(input_schema);
                    let part = scorer.score(&empty, &columns, origin, row)?;
                    scored.push(part.scored);
                    rejects.push(part.rejects);
                    every_row.push(part.every_row);
                }
                Ok::<_, PipelineError>((scored, rejects, every_row))
            })
        })?;
        let (scored, rejects, every_row) = result.map_err(pipeline_error)?;
        let tables = [
            export_table(py, scored)?,
            export_table(py, rejects)?,
            export_table(py, every_row)?,
        ];
        PyTuple::new(py, tables)
    }
}

/// `actprm eval FILES` with the command line's settings (a JSON object): the report as JSON.
#[pyfunction]
#[pyo3(signature = (files, model=None, device="cpu", threads=0, settings="{}"))]
fn eval_files(
    py: Python<'_>,
    files: Vec<PathBuf>,
    model: Option<PathBuf>,
    device: &str,
    threads: usize,
    settings: &str,
) -> PyResult<String> {
    let options = model_options(model, device, threads)?;
    let settings: EvalSettings = settings_from_json(settings, "eval")?;
    let report = py.detach(|| {
        guarded(|| {
            let files =
                actprm::source::remote::localise_paths(&files).map_err(|e| e.to_string())?;
            let loaded = options.open().map_err(|e| e.to_string())?;
            let rule = if settings.tau_from_first {
                actprm::eval::model::TauRule::FromFirstSubset
            } else {
                actprm::eval::model::TauRule::Fixed(settings.tau.unwrap_or(loaded.manifest.tau))
            };
            let check = settings.check.unwrap_or(loaded.manifest.check);
            let report = actprm::eval::model::evaluate_files(
                &files,
                &loaded,
                &options.runtime(),
                rule,
                check,
                settings.batching,
            )
            .map_err(|e| e.to_string())?;
            serde_json::to_string(&report).map_err(|e| e.to_string())
        })
    })?;
    report.map_err(PyRuntimeError::new_err)
}

/// `actprm eval`'s settings besides the files and the model.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct EvalSettings {
    tau: Option<f32>,
    tau_from_first: bool,
    check: Option<actprm::score::check::CheckRule>,
    #[serde(flatten)]
    batching: actprm::score::Batching,
}

/// Runs `query` (statements separated by `;`) over `tables` (name, path or Arrow stream), with
/// the PRM functions registered; returns the last statement's rows as Arrow batches.
#[pyfunction]
#[pyo3(signature = (query, tables, model=None, device="cpu", threads=0))]
fn sql<'py>(
    py: Python<'py>,
    query: String,
    tables: Vec<(String, Bound<'py, PyAny>)>,
    model: Option<PathBuf>,
    device: &str,
    threads: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let mut paths = Vec::new();
    let mut memory = Vec::new();
    for (name, value) in tables {
        if let Ok(path) = value.extract::<String>() {
            let spec = format!("{name}={path}")
                .parse::<actprm::sql::TableSpec>()
                .map_err(PyValueError::new_err)?;
            paths.push(spec);
        } else {
            let reader = import_stream(&value)?;
            let schema = reader.schema();
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PyValueError::new_err(format!("table {name}: {e}")))?;
            memory.push((name.to_ascii_lowercase(), schema, batches));
        }
    }
    let options = model_options(model.clone(), device, threads)?;
    let config = actprm::sql::SqlConfig {
        runtime: options.runtime(),
        model,
        ..actprm::sql::SqlConfig::default()
    };
    let result = py.detach(|| guarded(|| run_sql(&query, &paths, memory, &config)))?;
    let (schema, batches) = result.map_err(|e| PyValueError::new_err(e.to_string()))?;
    let table = export_table_with_schema(py, schema, batches)?;
    Ok(table)
}

type Rows = (SchemaRef, Vec<RecordBatch>);

fn run_sql(
    query: &str,
    paths: &[actprm::sql::TableSpec],
    memory: Vec<(String, SchemaRef, Vec<RecordBatch>)>,
    config: &actprm::sql::SqlConfig,
) -> Result<Rows, actprm::sql::SqlError> {
    let runtime = actprm::runtime::start("actprm-sql", None)
        .map_err(|e| actprm::sql::SqlError::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let ctx = actprm::sql::session(config);
        actprm::sql::register_tables(&ctx, paths).await?;
        for (name, schema, batches) in memory {
            let table = datafusion_table(schema, batches)?;
            ctx.register_table(name.as_str(), table)
                .map_err(actprm::sql::SqlError::from)?;
        }
        let last: Arc<Mutex<Option<Rows>>> = Arc::default();
        actprm::sql::execute(&ctx, config, query, |frame| {
            let last = last.clone();
            async move {
                let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
                let batches = frame.collect().await?;
                if !schema.fields().is_empty() {
                    *last.lock().expect("one statement at a time") = Some((schema, batches));
                }
                Ok(())
            }
        })
        .await?;
        let rows = last.lock().expect("statements done").take();
        rows.ok_or_else(|| actprm::sql::SqlError::Usage("the query returned no rows table".into()))
    })
}

fn datafusion_table(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>, actprm::sql::SqlError> {
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])
        .map_err(actprm::sql::SqlError::from)?;
    Ok(Arc::new(table))
}

/// Where actprm looks for ONNX Runtime (`ORT_DYLIB_PATH`, else `.deps/ort` of the checkout the
/// module was built in); the Python package points `ORT_DYLIB_PATH` at an installed
/// `onnxruntime` wheel when this does not exist.
#[pyfunction]
fn ort_library_path() -> String {
    actprm::model::execution::library_path()
        .display()
        .to_string()
}

#[pymodule]
fn _actprm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(eval_files, m)?)?;
    m.add_function(wrap_pyfunction!(sql, m)?)?;
    m.add_function(wrap_pyfunction!(ort_library_path, m)?)?;
    Ok(())
}

/// The batches of `data`'s Arrow C stream (`__arrow_c_stream__`: pyarrow, polars, DuckDB, ...).
fn import_stream(data: &Bound<'_, PyAny>) -> PyResult<ArrowArrayStreamReader> {
    if !data.hasattr("__arrow_c_stream__")? {
        return Err(PyTypeError::new_err(format!(
            "expected Arrow data (a pyarrow Table, RecordBatch or RecordBatchReader, or anything \
             with __arrow_c_stream__), got {}",
            data.get_type().name()?
        )));
    }
    let capsule = data.call_method0("__arrow_c_stream__")?;
    let capsule = capsule
        .cast::<PyCapsule>()
        .map_err(|_| PyTypeError::new_err("__arrow_c_stream__ did not return a PyCapsule"))?;
    let pointer = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: the capsule holds an ArrowArrayStream (its name says so); `from_raw` moves the
    // stream out and leaves a released one behind, which the capsule's destructor skips.
    unsafe { ArrowArrayStreamReader::from_raw(pointer.as_ptr().cast::<FFI_ArrowArrayStream>()) }
        .map_err(|e| PyValueError::new_err(format!("reading the Arrow stream: {e}")))
}

/// The batches (all of one schema) as a `pyarrow.Table`.
fn export_table(py: Python<'_>, batches: Vec<RecordBatch>) -> PyResult<Bound<'_, PyAny>> {
    let schema = batches[0].schema();
    export_table_with_schema(py, schema, batches)
}

fn export_table_with_schema(
    py: Python<'_>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> PyResult<Bound<'_, PyAny>> {
    let reader: Box<dyn RecordBatchReader + Send> = Box::new(RecordBatchIterator::new(
        batches.into_iter().map(Ok),
        schema,
    ));
    let mut stream = FFI_ArrowArrayStream::new(reader);
    let address = std::ptr::addr_of_mut!(stream) as usize;
    // pyarrow moves the stream out of `stream` (leaving it released, so its drop is a no-op)
    let reader = py
        .import("pyarrow")?
        .getattr("RecordBatchReader")?
        .call_method1("_import_from_c", (address,))?;
    reader.call_method0("read_all")
}

/// `--model`, `--device` and `--threads` as the Python keywords give them.
fn model_options(model: Option<PathBuf>, device: &str, threads: usize) -> PyResult<ModelOptions> {
    let device = device
        .parse()
        .map_err(|e: String| PyValueError::new_err(format!("device {device:?}: {e}")))?;
    Ok(ModelOptions {
        model,
        device,
        threads,
    })
}

/// Runs `work`, turning a panic into an error the caller raises (never a crashed interpreter).
fn guarded<T>(work: impl FnOnce() -> T) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        PyRuntimeError::new_err(format!("actprm crashed: {message}"))
    })
}

/// A configuration mistake (a column, a setting) is a `ValueError`; anything else (a model that
/// does not load, ONNX Runtime) a `RuntimeError`. Both carry actprm's message, which names the
/// column, row or file.
fn pipeline_error(e: PipelineError) -> PyErr {
    let message = e.to_string();
    match e {
        PipelineError::Source(_) | PipelineError::ColumnType { .. } | PipelineError::Setting(_) => {
            PyValueError::new_err(message)
        }
        PipelineError::Model(actprm::model::ModelError::Setting(_)) => {
            PyValueError::new_err(message)
        }
        _ => PyRuntimeError::new_err(message),
    }
}

fn runtime_error(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

fn poisoned() -> PipelineError {
    PipelineError::Crashed {
        stage: "score".into(),
        message: "an earlier call crashed while scoring with this model; open it again".into(),
    }
}

/// Settings from a JSON object, every key checked against the type's own (a misspelt key is an
/// error naming the keys there are, never silently ignored).
fn settings_from_json<T>(json: &str, what: &str) -> PyResult<T>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let given: serde_json::Value = serde_json::from_str(json).map_err(runtime_error)?;
    let known = serde_json::to_value(T::default()).map_err(runtime_error)?;
    if let (Some(given), Some(known)) = (given.as_object(), known.as_object()) {
        if let Some(unknown) = given.keys().find(|k| !known.contains_key(*k)) {
            let mut keys: Vec<&String> = known.keys().collect();
            keys.sort();
            return Err(PyValueError::new_err(format!(
                "{what}: unknown setting {unknown:?}; the settings are {}",
                keys.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    serde_json::from_value(given.clone()).map_err(|e| {
        // name the setting: the first key that fails on its own
        let key = given.as_object().and_then(|given| {
            given.iter().find_map(|(k, v)| {
                let alone = serde_json::json!({ k: v });
                serde_json::from_value::<T>(alone)
                    .is_err()
                    .then_some(k.clone())
            })
        });
        match key {
            Some(key) => PyValueError::new_err(format!("{what}: setting {key:?}: {e}")),
            None => PyValueError::new_err(format!("{what}: {e}")),
        }
    })
}
