//! Turns a checked graph into the [`StageList`] every command runs: source [-> sql] -> score
//! [-> filter] [-> label [-> train]], or source -> judge label, with row-wise sql transforms
//! before the sinks and between filter and a judge label. Any other shape is a located problem
//! naming these.

use std::path::{Path, PathBuf};

use super::parse::Spans;
use super::problem::Problem;
use super::*;
use crate::model::ModelOptions;
use crate::pipeline::stage_list::{Job, LabelStep, ScoreStep, StageList, Step};
use crate::report::Report;
use crate::source::ColumnMapping;

const SHAPES: &str = "supported shapes: source -> score; source -> score -> filter; \
                      source -> score -> filter -> label -> train (an sql transform may follow the \
                      source; a row-wise one may follow score, filter or a judge label before its \
                      sinks, and filter before a judge label)";

/// The stages of a runnable pipeline, by name, in data-flow order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub source: String,
    pub sql: Option<String>,
    /// An `sql` transform after score, filter or a judge label: its query maps each batch of
    /// rows on its way to the sinks.
    pub sql_after: Option<String>,
    /// An `sql` transform between filter and a judge label: its query maps the kept rows the
    /// judge reads.
    pub sql_before_label: Option<String>,
    pub score: String,
    pub filter: Option<String>,
    pub label: Option<String>,
    pub train: Option<String>,
    /// A stage that runs on its whole source at once (fit, finetune, experiment) and the
    /// command it is: then the only transform.
    pub offline: Option<(String, &'static str)>,
    pub sinks: Vec<String>,
}

impl Plan {
    /// `score`, `filter` or `active`: which existing job this pipeline runs as.
    pub fn job(&self) -> &'static str {
        if let Some((_, command)) = &self.offline {
            return command;
        }
        match (&self.filter, &self.label, &self.train) {
            (_, _, Some(_)) => "active",
            (_, Some(_), None) => "label",
            (Some(_), None, None) => "filter",
            _ => "score",
        }
    }

    /// Its table sinks, in order: `true` = print JSON.
    pub fn table_sinks(&self, file: &PipelineFile) -> Vec<bool> {
        self.sinks
            .iter()
            .filter_map(|s| match &file.sinks[s] {
                SinkStage::Table(t) => Some(t.json),
                _ => None,
            })
            .collect()
    }

    /// The stage sinks read from.
    fn last(&self) -> &str {
        self.sql_after
            .as_deref()
            .or(self.train.as_deref())
            .or(self.label.as_deref())
            .or(self.filter.as_deref())
            .unwrap_or(&self.score)
    }
}

/// Checks that the graph is one of the supported shapes.
pub fn plan(file: &PipelineFile, spans: &Spans) -> Result<Plan, Vec<Problem>> {
    let order = |names: Vec<&String>| {
        let mut v: Vec<String> = names.into_iter().cloned().collect();
        v.sort_by_key(|n| spans.order.iter().position(|o| o == n));
        v
    };
    let mut problems = Vec::new();
    let sources = order(file.sources.keys().collect());
    for extra in sources.iter().skip(1) {
        problems.push(Problem::at(
            &spans.stage(extra),
            format!("source `{extra}`: this version runs pipelines with one source; list several paths in one source instead"),
        ));
    }
    for (name, t) in &file.transforms {
        if t.inputs().len() > 1 {
            problems.push(Problem::at(&spans.input(name, 1), format!("transform `{name}` has {} inputs; this version runs linear pipelines ({SHAPES})", t.inputs().len())));
        }
    }
    let Some(source) = sources.first().cloned() else {
        return Err(problems);
    };
    // follow the single chain of transforms from the source
    let mut chain: Vec<(String, &TransformStage)> = Vec::new();
    let mut current = source.clone();
    loop {
        let readers = order(
            file.transforms
                .iter()
                .filter(|(_, t)| t.inputs().first() == Some(&current))
                .map(|(n, _)| n)
                .collect(),
        );
        if let Some(second) = readers.get(1) {
            problems.push(Problem::at(&spans.stage(second), format!("transforms `{}` and `{second}` both read `{current}`; this version runs linear pipelines ({SHAPES})", readers[0])));
        }
        let Some(next) = readers.first() else { break };
        if chain.iter().any(|(n, _)| n == next) {
            break;
        }
        chain.push((next.clone(), &file.transforms[next]));
        current = next.clone();
    }
    for name in order(file.transforms.keys().collect()) {
        if !chain.iter().any(|(n, _)| *n == name)
            && !problems
                .iter()
                .any(|p| p.message.contains(&format!("`{name}`")))
        {
            problems.push(Problem::at(
                &spans.stage(&name),
                format!("transform `{name}` is not on the path from source `{source}`; {SHAPES}"),
            ));
        }
    }
    if file.sources[&source].kind() == "features" || chain.iter().any(|(_, t)| t.offline()) {
        problems.extend(offline_problems(file, spans, &source, &chain));
        if !problems.is_empty() {
            return Err(problems);
        }
        let (name, stage) = &chain[0];
        let command = if stage.kind() == "fit" {
            "train"
        } else {
            stage.kind()
        };
        return Ok(Plan {
            source,
            offline: Some((name.clone(), command)),
            sinks: order(file.sinks.keys().collect()),
            ..Plan::default()
        });
    }
    const ALLOWED: [&[&str]; 4] = [
        &["score", "filter", "label", "sql"],
        &["filter", "label", "sql"],
        &["label", "train", "sql"],
        &["train"],
    ];
    let mut expected: &[&str] = &["sql", "score", "label"];
    let mut plan = Plan {
        source: source.clone(),
        ..Plan::default()
    };
    let mut previous = (source.clone(), file.sources[&source].kind());
    for (name, t) in &chain {
        let kind = t.kind();
        if !expected.contains(&kind) {
            problems.push(Problem::at(
                &spans.stage(name),
                format!(
                    "transform `{name}` ({kind}) cannot follow `{}` ({}) in this version; {SHAPES}",
                    previous.0, previous.1
                ),
            ));
            break;
        }
        match kind {
            "sql" if !plan.score.is_empty() || plan.label.is_some() => {
                // after score, filter or label: it maps the rows on their way to the sinks; after
                // filter a judge label may read its rows
                plan.sql_after = Some(name.clone());
                expected = if plan.filter.is_some() && plan.label.is_none() {
                    &["label"]
                } else {
                    &[]
                };
            }
            "sql" => {
                plan.sql = Some(name.clone());
                expected = &["score", "label"];
            }
            "score" => plan.score = name.clone(),
            "filter" => plan.filter = Some(name.clone()),
            "label" => {
                plan.label = Some(name.clone());
                plan.sql_before_label = plan.sql_after.take();
            }
            _ => plan.train = Some(name.clone()),
        }
        if kind != "sql" {
            expected = ALLOWED
                .iter()
                .find(|a| a[0] == kind)
                .map_or(&[] as &[&str], |a| &a[1..]);
        }
        previous = (name.clone(), kind);
    }
    if plan.score.is_empty() && plan.label.is_none() && problems.is_empty() {
        problems.push(Problem::at(
            &spans.stage(&source),
            format!("nothing scores source `{source}`: add a score transform; {SHAPES}"),
        ));
    }
    if let (Some(label), None) = (&plan.label, &plan.train) {
        if let Some(TransformStage::Label(l)) = file.transforms.get(label) {
            if l.mode == LabelMode::Pool && problems.is_empty() {
                problems.push(Problem::at(
                    &spans.field(label, "mode"),
                    format!("transform `{label}` (label, mode: pool) must feed a train transform: the labels are already in the data; to label with a judge, use mode: judge"),
                ));
            }
        }
    }
    if let (Some(train), Some(sql)) = (&plan.train, &plan.sql_before_label) {
        if problems.is_empty() {
            problems.push(Problem::at(
                &spans.stage(sql),
                format!("transform `{sql}` (sql) cannot come between filter and a label that feeds `{train}` (train): the loop labels the rows the filter picks, as scored; an sql transform before a label feeds a judge label only"),
            ));
        }
    }
    if let (Some(train), None) = (&plan.train, &plan.filter) {
        if problems.is_empty() {
            problems.push(Problem::at(
                &spans.stage(train),
                format!("transform `{train}` (train) needs a filter transform before its label transform: the loop trains on the rows the filter picks; {SHAPES}"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // sinks read the last stage
    let last = plan.last().to_string();
    let last_kind = file.transforms[&last].kind();
    // whose rows an sql transform before the sinks maps: the label's, else the filter's
    let (rows_of, rows_kind) = match (last_kind, &plan.label, &plan.filter) {
        ("sql", Some(label), _) => (label.clone(), "label"),
        ("sql", None, Some(filter)) => (filter.clone(), "filter"),
        (kind, ..) => (last.clone(), kind),
    };
    let mut data_sinks: Vec<(String, PathBuf)> = Vec::new();
    for name in order(file.sinks.keys().collect()) {
        let sink = &file.sinks[&name];
        let kind = sink.kind();
        if sink.inputs().len() > 1 {
            problems.push(Problem::at(
                &spans.input(&name, 1),
                format!(
                    "sink `{name}` has {} inputs; a sink reads one stage",
                    sink.inputs().len()
                ),
            ));
            continue;
        }
        if sink.inputs().first().is_some_and(|i| *i != last) {
            problems.push(Problem::at(&spans.input(&name, 0), format!("sink `{name}` reads `{}`; in this pipeline sinks read the last stage, `{last}`", sink.inputs()[0])));
            continue;
        }
        if let Some(data) = sink.data() {
            if !matches!(last_kind, "score" | "filter" | "label" | "sql") {
                let why = if last_kind == "train" {
                    " (the train stage writes its model and decisions to its `output`)"
                } else {
                    ""
                };
                problems.push(Problem::at(
                    &spans.stage(&name),
                    format!(
                        "sink `{name}` ({kind}) cannot read `{last}` ({last_kind}); sinks after \
                         {last_kind}: table{why}"
                    ),
                ));
                continue;
            }
            if let Some((other, _)) = data_sinks.iter().find(|(_, p)| *p == data.folder) {
                problems.push(Problem::at(
                    &spans.field(&name, "path"),
                    format!("sink `{name}` writes into the folder of sink `{other}`; give each its own path"),
                ));
                continue;
            }
            data_sinks.push((name.clone(), data.folder));
        }
        plan.sinks.push(name);
    }
    let (last, last_kind) = (rows_of, rows_kind);
    if matches!(last_kind, "filter" | "label") && data_sinks.is_empty() {
        let rows = if last_kind == "filter" {
            "kept"
        } else {
            "labelled"
        };
        problems.push(Problem::at(
            &spans.stage(&last),
            format!(
                "transform `{last}` ({last_kind}) needs a data sink for the {rows} rows \
                 (parquet, jsonl, arrow_ipc or hf_dataset)"
            ),
        ));
    }
    if let Some(TransformStage::Score(s)) = file.transforms.get(&plan.score) {
        // the loop, and a judge reading the scores in the same stream, take the scorer's
        // batches themselves: no feature file, no watched heads
        let unused = if plan.train.is_some() {
            Some("when training")
        } else if plan.label.is_some() && plan.filter.is_none() {
            Some("when a label stage reads the scores")
        } else {
            None
        };
        if let Some(when) = unused {
            for (set, field) in [
                (s.extras.features.is_some(), "features"),
                (s.extras.watch_model.is_some(), "watch_model"),
            ] {
                if set {
                    problems.push(Problem::at(
                        &spans.field(&plan.score, field),
                        format!(
                            "`{field}` of transform `{}` is not used {when}; remove it",
                            plan.score
                        ),
                    ));
                }
            }
        }
    }
    if let (Some(_), Some(TransformStage::Filter(f))) = (
        &plan.train,
        plan.filter.as_ref().and_then(|n| file.transforms.get(n)),
    ) {
        // the loop takes the filter's choice of rows (its rule or keep rate) and nothing else:
        // it writes no kept rows, runs as one process and resumes by its own state
        let name = plan.filter.as_deref().unwrap_or_default();
        let settings = &f.settings;
        let quality = &settings.quality;
        for (set, field) in [
            (settings.shard != Default::default(), "shard"),
            (settings.write_skipped, "write_skipped"),
            (settings.group_by.is_some(), "group_by"),
            (settings.picks != FilterSettings::default().picks, "picks"),
            (settings.restart, "restart"),
            (
                !settings.label_output.label_format.is_actprm(),
                "label_format",
            ),
            (quality.reward.is_some(), "reward"),
            (quality.condition.is_some(), "where"),
            (quality.top_k.is_some(), "top_k"),
            (quality.per.is_some(), "per"),
        ] {
            if set {
                problems.push(Problem::at(
                    &spans.field(name, field),
                    format!(
                        "`{field}` of transform `{name}` is not used when a train stage follows \
                         (the active loop takes the filter's rule or keep_rate only); remove it"
                    ),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// The shape a stage that runs on its whole source needs: its source alone feeds it (step
/// features for fit and experiment, labelled trajectories for finetune), nothing follows it, and
/// only table sinks read it (it writes its own `output`).
fn offline_problems(
    file: &PipelineFile,
    spans: &Spans,
    source: &str,
    chain: &[(String, &TransformStage)],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let source_kind = file.sources[source].kind();
    let Some((first, stage)) = chain.first() else {
        return vec![Problem::at(
            &spans.stage(source),
            format!("nothing reads source `{source}` ({source_kind}): add a fit or experiment transform"),
        )];
    };
    let kind = stage.kind();
    let needs_features = matches!(kind, "fit" | "experiment");
    if !stage.offline() {
        problems.push(Problem::at(
            &spans.stage(first),
            format!(
                "transform `{first}` ({kind}) cannot read `{source}` (features): step features \
                 feed fit and experiment transforms; score reads parquet, jsonl or processbench"
            ),
        ));
    } else if needs_features && source_kind != "features" {
        problems.push(Problem::at(
            &spans.stage(first),
            format!(
                "transform `{first}` ({kind}) reads step features, but source `{source}` is \
                 {source_kind}: use a source of type features (`actprm score --features` writes them)"
            ),
        ));
    } else if kind == "finetune" && source_kind == "features" {
        problems.push(Problem::at(
            &spans.stage(first),
            format!(
                "transform `{first}` (finetune) reads labelled trajectories (jsonl, processbench, \
                 or parquet with a label column), not step features"
            ),
        ));
    }
    if let SourceStage::Parquet(p) = &file.sources[source] {
        if kind == "finetune" && p.columns != ColumnMapping::default() {
            problems.push(Problem::at(
                &spans.stage(source),
                format!(
                    "source `{source}`: finetune reads the problem, steps and label columns by \
                     their names; its column keys are not used, so remove them"
                ),
            ));
        }
    }
    if let Some((later, _)) = chain.iter().skip(1).find(|(_, t)| t.offline()) {
        problems.push(Problem::at(
            &spans.stage(later),
            format!(
                "transform `{later}` ({}) reads its source directly in this version; \
                 it cannot follow `{first}` ({kind})",
                file.transforms[later].kind()
            ),
        ));
    } else if let Some((next, t)) = chain.get(1) {
        problems.push(Problem::at(
            &spans.stage(next),
            format!(
                "transform `{next}` ({}) cannot follow `{first}` ({kind}): it writes its result \
                 to its `output`; read that in another pipeline",
                t.kind()
            ),
        ));
    }
    for (name, sink) in file.sinks.iter().filter(|_| stage.offline()) {
        if sink.data().is_some() {
            problems.push(Problem::at(
                &spans.stage(name),
                format!(
                    "sink `{name}` ({}) cannot read `{first}` ({kind}); sinks after {kind}: table \
                     ({kind} writes its result to its `output`)",
                    sink.kind()
                ),
            ));
        } else if sink.inputs().iter().any(|i| i != first) {
            problems.push(Problem::at(
                &spans.input(name, 0),
                format!(
                    "sink `{name}` reads `{}`; in this pipeline sinks read `{first}`",
                    sink.inputs()[0]
                ),
            ));
        }
    }
    problems
}

/// What a run did, for the caller to render: once per table sink, as JSON or as a table.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub job: &'static str,
    /// JSON summary of the job (the same as its summary.json).
    pub summary: serde_json::Value,
    /// The summary as a table.
    pub table: String,
    /// Where the job wrote its outputs.
    pub output: Option<PathBuf>,
    /// One entry per table sink: `true` = print JSON.
    pub table_sinks: Vec<bool>,
}

/// Checks a pipeline file (environment included) and runs it.
/// Checks and runs a pipeline file; `progress`: report progress on stderr (a bar on a
/// terminal, a line every 10 s elsewhere).
pub fn run_file(path: &Path, progress: bool) -> Result<RunOutcome, ConfigError> {
    execute(&check_file(path, CheckOptions::default())?, progress)
}

pub(super) fn stage_error(context: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Stage {
        context: context.to_string(),
        message: e.to_string(),
    }
}

/// Runs a checked pipeline: its file-only parts (a JSON Lines source converted, an `sql`
/// transform, an Arrow IPC sink, table sinks) here, its stages as the [`StageList`] every
/// command runs.
pub fn execute(checked: &Checked, progress: bool) -> Result<RunOutcome, ConfigError> {
    let (file, plan) = (&checked.file, &checked.plan);
    if let Some((name, _)) = &plan.offline {
        return super::offline::run(file, plan, name, progress);
    }
    let scratch = Scratch::new()?;
    let inputs = source_inputs(&file.sources[&plan.source], &scratch)?;
    let mut stages = compile(file, plan, inputs, &scratch)?;
    stages.progress = progress;
    if let Some(name) = &plan.sql {
        let score = stages.score_step().cloned().unwrap_or_default();
        stages.inputs = vec![sql_stage(
            name,
            file,
            &score,
            &stages.inputs,
            &stages.output,
        )?];
    }
    let job = stages.job()?;
    let outcome = job.run()?;
    let output = match &job {
        Job::Score(_) => data_sinks(file, plan).next().map(|d| d.folder),
        other => Some(other.output().to_path_buf()),
    };
    Ok(RunOutcome {
        job: job.name(),
        summary: serde_json::to_value(&outcome).unwrap_or_default(),
        table: outcome.table(),
        output,
        table_sinks: plan.table_sinks(file),
    })
}

/// The plan's data sinks (not its tables), in the plan's order.
fn data_sinks<'a>(
    file: &'a PipelineFile,
    plan: &'a Plan,
) -> impl Iterator<Item = crate::sink::DataOutput> + 'a {
    plan.sinks.iter().filter_map(|s| file.sinks[s].data())
}

/// The stage list a checked plan runs as: each stage's settings as the file gives them, the
/// models and judges it names resolved, outputs where its sinks and train stage say.
fn compile(
    file: &PipelineFile,
    plan: &Plan,
    inputs: Vec<String>,
    scratch: &Scratch,
) -> Result<StageList, ConfigError> {
    let columns = match &file.sources[&plan.source] {
        SourceStage::Parquet(p) => p.columns.clone(),
        _ => ColumnMapping::default(),
    };
    let transform = |name: &Option<String>| name.as_ref().and_then(|n| file.transforms.get(n));
    let mut data = data_sinks(file, plan);
    let first_sink = data.next();
    let train = match transform(&plan.train) {
        Some(TransformStage::Train(train)) => Some(train),
        _ => None,
    };
    // the loop writes into its train stage's folder; a score with only table sinks, into the
    // run's scratch folder
    let output = match (train, &first_sink) {
        (Some(train), _) => train.output.clone(),
        (None, Some(sink)) => sink.folder.clone(),
        (None, None) => scratch.dir.join("scored"),
    };
    let mut stages = StageList::source(inputs, columns, output.clone());
    if let Some(sink) = &first_sink {
        stages.format = sink.format;
    }
    stages.more_outputs = data.collect();
    // a pipeline file's rerun replaces its earlier outputs (declared, reproducible)
    stages.overwrite = true;
    // the steps in dataflow order: score, filter, an sql before label, label, train, an sql
    // before the sinks
    if let Some(TransformStage::Score(score)) = file.transforms.get(&plan.score) {
        stages.steps.push(Step::Score(ScoreStep {
            model: model_of(file, score),
            settings: score.settings.clone(),
            extras: score.extras.clone(),
        }));
    }
    if let Some(TransformStage::Filter(filter)) = transform(&plan.filter) {
        stages.steps.push(Step::Filter(filter.settings.clone()));
    }
    if let Some(TransformStage::Sql(sql)) = transform(&plan.sql_before_label) {
        stages.steps.push(Step::Sql(sql.query.clone()));
    }
    if let Some(TransformStage::Label(label)) = transform(&plan.label) {
        let judge = match label.mode {
            LabelMode::Pool => None,
            LabelMode::Judge => Some(
                label
                    .judge
                    .as_ref()
                    .and_then(|j| file.judges.get(j))
                    .cloned()
                    .ok_or_else(|| {
                        stage_error(
                            plan.label.as_deref().unwrap_or_default(),
                            "names no declared judge",
                        )
                    })?,
            ),
        };
        stages.steps.push(Step::Label(LabelStep {
            judge,
            // answers cached beside the output unless the stage says otherwise (as `actprm
            // label` does), so a rerun pays only for new ones
            cache: label.run.cache_for(&output),
            batch_rows: label.run.batch_rows,
            budget: label.budget,
            format: label.output.label_format,
        }));
    }
    if let Some(train) = train {
        stages.steps.push(Step::Train(train.settings.clone()));
    }
    if let Some(TransformStage::Sql(sql)) = transform(&plan.sql_after) {
        stages.steps.push(Step::Sql(sql.query.clone()));
    }
    Ok(stages)
}

/// The model a score stage names under `models` (absent: the embedded model on the CPU).
fn model_of(file: &PipelineFile, score: &ScoreStage) -> ModelOptions {
    score
        .model
        .as_ref()
        .and_then(|m| file.models.get(m))
        .cloned()
        .unwrap_or_default()
}

/// Runs the `sql` transform over the source inputs into `OUTPUT/sql/NAME.parquet`, which the
/// scorer then reads. A finished result whose record (`NAME.json`: query and inputs) matches is
/// reused, so a resumed filter sees the same file, row groups and units as the interrupted run.
fn sql_stage(
    name: &str,
    file: &PipelineFile,
    score: &ScoreStep,
    inputs: &[String],
    output: &Path,
) -> Result<String, ConfigError> {
    let Some(TransformStage::Sql(stage)) = file.transforms.get(name) else {
        return Err(stage_error(name, "not an sql stage"));
    };
    let target = output.join("sql").join(format!("{name}.parquet"));
    let record_path = output.join("sql").join(format!("{name}.json"));
    // keyed on what the result depends on: each input file as filter names its units (name,
    // size, footer hash), so an added or changed file is seen, and the model `prm_score` runs
    let files = crate::source::discover::discover_named(inputs, "parquet", None)
        .map_err(|e| stage_error(name, e))?;
    let units: Vec<String> = files
        .iter()
        .map(|f| crate::pipeline::filter::unit::UnitSource::new(f).key)
        .collect();
    let model = crate::model::LoadedModel::open(score.model.model.as_deref())
        .map_err(|e| stage_error(name, e))?
        .version();
    let record = serde_json::json!({ "query": stage.query, "inputs": inputs, "units": units, "model": model });
    let done = std::fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|r| r == record)
        && target.is_file();
    if !done {
        // prm_score in the query scores as the score stage does
        let model = &score.model;
        let config = crate::sql::SqlConfig {
            runtime: model.runtime(),
            model: model.model.clone(),
            score: score.settings.options,
            ..crate::sql::SqlConfig::default()
        };
        crate::sql::transform::query_to_parquet(&config, inputs, &stage.query, &target)
            .map_err(|e| stage_error(name, e))?;
        crate::sink::atomic::write_atomic(&record_path, record.to_string().as_bytes())
            .map_err(|e| stage_error(name, e))?;
    }
    Ok(target.display().to_string())
}

/// Input patterns for the scorer: Parquet as given; JSON Lines / ProcessBench converted to one
/// Parquet file in the scratch folder (as `actprm convert` does).
fn source_inputs(source: &SourceStage, scratch: &Scratch) -> Result<Vec<String>, ConfigError> {
    match source {
        SourceStage::Parquet(p) => Ok(p.paths.clone()),
        SourceStage::Features(_) => Err(stage_error(
            "source",
            "step features feed fit and experiment transforms only",
        )),
        SourceStage::Jsonl(l) | SourceStage::Processbench(l) => {
            let dir = scratch.dir.join("converted");
            crate::pipeline::convert::convert(&l.paths, &dir.join("source.parquet"))?;
            Ok(vec![dir.join("source.parquet").display().to_string()])
        }
    }
}

/// A private temporary folder, removed when the run ends.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Result<Self, ConfigError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("actprm-pipeline-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| stage_error(&dir.display().to_string(), e))?;
        Ok(Self { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
