//! Environment checks, before any work: input files exist and have the needed columns, models
//! open and their ONNX graphs match the manifest, output folders are writable, and judge
//! endpoints accept connections. Skipped by `actprm validate --skip-env`.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use super::parse::Spans;
use super::problem::Problem;
use super::*;
use crate::label::LabelColumn;
use crate::model::RuntimeOptions;
use crate::source::discover_inputs;
use crate::source::parquet::plan as plan_files;

pub fn check(
    file: &PipelineFile,
    spans: &Spans,
    _env: &dyn Fn(&str) -> Option<String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let label_pool: Vec<&String> = file
        .transforms
        .iter()
        .filter(|(_, t)| matches!(t, TransformStage::Label(l) if l.mode == LabelMode::Pool))
        .map(|(n, _)| n)
        .collect();
    let group_by: Vec<(&String, &String)> = file
        .transforms
        .iter()
        .filter_map(|(n, t)| match t {
            TransformStage::Filter(s) => s.settings.group_by.as_ref().map(|g| (n, g)),
            _ => None,
        })
        .collect();
    for (name, source) in &file.sources {
        match source {
            SourceStage::Parquet(p) => {
                // a remote source is checked on its first file: the run fetches the rest
                let sampled = crate::source::remote::localise_first(&p.paths);
                let files = match sampled.and_then(|paths| {
                    discover_inputs(&paths, "parquet", p.columns.split.as_deref())
                }) {
                    Ok(f) => f,
                    Err(e) => {
                        problems.push(Problem::at(
                            &spans.field(name, "paths"),
                            format!("source `{name}`: {e}"),
                        ));
                        continue;
                    }
                };
                let mapping = p.columns.clone();
                if let Err(e) = plan_files(&files, &mapping) {
                    let field = match &e {
                        crate::source::SourceError::Column { column, .. }
                            if Some(column) == p.columns.steps.as_ref() =>
                        {
                            "steps_column"
                        }
                        crate::source::SourceError::Column { column, .. }
                            if Some(column) == p.columns.problem.as_ref() =>
                        {
                            "problem_column"
                        }
                        _ => "paths",
                    };
                    // the source error names the CLI flag; a file names the option
                    let message = e
                        .to_string()
                        .replace("--problem-column", "`problem_column`")
                        .replace("--steps-column", "`steps_column`");
                    problems.push(Problem::at(
                        &spans.field(name, field),
                        format!("source `{name}`: {message}"),
                    ));
                    continue;
                }
                for (i, path) in files.iter().enumerate() {
                    let Ok(schema) =
                        crate::source::parquet::open_reader(path).map(|b| b.schema().clone())
                    else {
                        continue; // unreadable files are reported by the run, row group by row group
                    };
                    if i == 0 {
                        problems.extend(queries_after_score(file, spans, name, &schema));
                    }
                    for label in &label_pool {
                        if LabelColumn::detect(&schema).is_none() {
                            problems.push(Problem::at(
                                &spans.field(name, "paths"),
                                format!("source `{name}`: {} has no label column (label, ratings, hard_labels or labels), which transform `{label}` (label, mode: pool) needs", path.display()),
                            ));
                        }
                    }
                    for (select, column) in &group_by {
                        if schema.field_with_name(column).is_err() {
                            problems.push(Problem::at(&spans.field(select, "group_by"), format!("transform `{select}`: column `{column}` (group_by) is not in {}", path.display())));
                        }
                    }
                }
            }
            SourceStage::Features(l) => {
                for path in &l.paths {
                    if let Err(e) = crate::formats::features::read_header(path) {
                        problems.push(Problem::at(
                            &spans.field(name, "paths"),
                            format!("source `{name}`: {e}"),
                        ));
                    }
                }
            }
            SourceStage::Jsonl(l) | SourceStage::Processbench(l) => {
                for path in &l.paths {
                    if let Err(e) = crate::source::jsonl::read_labelled(path) {
                        problems.push(Problem::at(
                            &spans.field(name, "paths"),
                            format!("source `{name}`: {e}"),
                        ));
                    }
                }
            }
        }
    }
    // models: every declared one, plus the embedded default where a score stage names none
    let mut models: Vec<(String, ModelDecl)> = file
        .models
        .iter()
        .map(|(n, m)| (format!("model:{n}"), m.clone()))
        .collect();
    let default_user = spans.order.iter().find(
        |n| matches!(file.transforms.get(*n), Some(TransformStage::Score(s)) if s.model.is_none()),
    );
    if let Some(user) = default_user {
        models.push((user.clone(), ModelDecl::default()));
    }
    for (id, decl) in &models {
        let span = if decl.model.is_some() {
            spans.field(id, "path")
        } else {
            spans.stage(id)
        };
        let what = id.strip_prefix("model:").map_or_else(
            || format!("the default model (used by transform `{id}`)"),
            |n| format!("model `{n}`"),
        );
        if let Err(message) = check_model(decl) {
            problems.push(Problem::at(&span, format!("{what}: {message}")));
        }
    }
    // output folders
    for (name, sink) in &file.sinks {
        if let Some(data) = sink.data() {
            writable(&data.folder, name, "path", spans, &mut problems);
        }
    }
    for (name, t) in &file.transforms {
        match t {
            TransformStage::Train(train) => {
                writable(&train.output, name, "output", spans, &mut problems);
                exist(train.settings.dev.iter(), name, "dev", spans, &mut problems);
            }
            TransformStage::Fit(fit) => {
                writable(&fit.output, name, "output", spans, &mut problems);
                let given = fit.settings.tau_from.iter();
                exist(given, name, "tau_from", spans, &mut problems);
            }
            TransformStage::Finetune(tune) => {
                writable(&tune.output, name, "output", spans, &mut problems);
            }
            TransformStage::Experiment(experiment) => {
                writable(&experiment.output, name, "output", spans, &mut problems);
                exist(experiment.dev.iter(), name, "dev", spans, &mut problems);
            }
            TransformStage::Score(s) => {
                if let Some(features) = &s.extras.features {
                    let parent = features
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or(Path::new("."));
                    writable(parent, name, "features", spans, &mut problems);
                }
            }
            _ => {}
        }
    }
    for (name, judge) in &file.judges {
        if let Err(message) = reachable(&judge.url) {
            problems.push(Problem::at(
                &spans.field(&format!("judge:{name}"), "url"),
                format!(
                    "judge `{name}`: {} does not answer: {message}",
                    without_credentials(&judge.url)
                ),
            ));
        }
    }
    problems
}

/// A problem at `key` of transform `name` for each of `files` that does not exist.
fn exist<'a>(
    files: impl Iterator<Item = &'a std::path::PathBuf>,
    name: &str,
    key: &str,
    spans: &Spans,
    problems: &mut Vec<Problem>,
) {
    for file in files.filter(|f| !f.is_file()) {
        problems.push(Problem::at(
            &spans.field(name, key),
            format!("transform `{name}`: {} does not exist", file.display()),
        ));
    }
}

/// Runs each `sql` transform after a score stage that reads `source` (directly, or through a
/// filter that keeps actprm's columns) on no rows of the scored schema (the source's columns,
/// `schema`, and the score columns), so a query that cannot run batch by batch, or names a
/// column the rows lack, is reported at its `query` before any work.
fn queries_after_score(
    file: &PipelineFile,
    spans: &Spans,
    source: &str,
    schema: &arrow::datatypes::SchemaRef,
) -> Vec<Problem> {
    // the score stage reading `source` whose rows reach `stage` unchanged in their columns
    let scorer_of = |stage: &str| match file.transforms.get(stage) {
        Some(TransformStage::Score(s)) => Some(s),
        Some(TransformStage::Filter(f)) if f.settings.label_output.label_format.is_actprm() => {
            match f.inputs.first().and_then(|i| file.transforms.get(i)) {
                Some(TransformStage::Score(s)) => Some(s),
                _ => None,
            }
        }
        _ => None,
    };
    let mut problems = Vec::new();
    for (name, t) in &file.transforms {
        let TransformStage::Sql(sql) = t else {
            continue;
        };
        let Some(score) = sql.inputs.first().and_then(|i| scorer_of(i)) else {
            continue;
        };
        if score.inputs.first().map(String::as_str) != Some(source) {
            continue;
        }
        let empty = arrow::array::RecordBatch::new_empty(schema.clone());
        let scored =
            crate::score::output::scored_batch(&empty, &[], &[], 1, score.settings.head_probs);
        let config = crate::sql::SqlConfig::default();
        let checked = crate::sql::row_query::RowQuery::new(&sql.query, &config)
            .and_then(|query| query.apply(&scored));
        if let Err(e) = checked {
            problems.push(Problem::at(
                &spans.field(name, "query"),
                format!("transform `{name}`: {e}"),
            ));
        }
    }
    problems
}

/// Opens the model as a run would: manifest, files, backbone contract, heads, dimensions.
fn check_model(decl: &ModelDecl) -> Result<(), String> {
    if let Some(dir) = &decl.model {
        if !dir.join("manifest.json").is_file() {
            return Err(format!(
                "{} is not a model directory (no manifest.json)",
                dir.display()
            ));
        }
    }
    let model = decl.open().map_err(|e| e.to_string())?;
    model.check_files(decl.device).map_err(|e| e.to_string())?;
    let runtime = RuntimeOptions {
        device: decl.device,
        intra_threads: 1,
    };
    crate::score::StepScorer::open(&model, &runtime, Default::default())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The folder (or its nearest existing ancestor) accepts a new file. Creates nothing that stays.
fn writable(path: &Path, stage: &str, field: &str, spans: &Spans, problems: &mut Vec<Problem>) {
    let mut dir = path;
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => {
                dir = Path::new(".");
                break;
            }
        }
    }
    let result = if dir.is_dir() {
        let probe = dir.join(format!(".actprm-write-test-{}", std::process::id()));
        File::create(&probe).map(|_| {
            let _ = std::fs::remove_file(&probe);
        })
    } else {
        Err(std::io::Error::other("exists and is not a folder"))
    };
    if let Err(e) = result {
        problems.push(Problem::at(
            &spans.field(stage, field),
            format!(
                "`{field}` of `{stage}`: {} is not writable: {e}",
                dir.display()
            ),
        ));
    }
}

/// The endpoint accepts a TCP connection within two seconds.
fn reachable(url: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed.host_str().ok_or("no host")?;
    let port = parsed.port_or_known_default().ok_or("no port")?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A URL safe to print: `user:token@` replaced by `***@`.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => match url.split_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_string(),
        },
    }
}
