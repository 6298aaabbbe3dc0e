//! Every dataflow as one list of stages in dataflow order, source -> steps -> sinks. The commands
//! are presets of this list (`StageList::score`, `filter`, `label`, `active`), a pipeline file
//! compiles to it (`config::compile`), and [`StageList::job`] is the one place that checks the
//! order of the steps (each kind may follow only the kinds whose rows it reads) and turns them into
//! the job that runs them, so a command and the pipeline file that spells it out run the same
//! code.

use std::path::PathBuf;

use serde::Serialize;

use super::active::{run_active, ActiveJob, ActiveSettings, ActiveSummary};
use super::filter::ray::{run_on_ray, run_task, RaySettings};
use super::filter::{run_filter, FilterJob, FilterSettings, FilterSummary};
use super::score::{ScoreExtras, ScoreSettings, Scorer};
use super::{run_label, run_score, LabelJob, LabelSummary, PipelineError, ScoreJob, Summary};
use crate::label::judge::JudgeConfig;
use crate::label::{LabelBudget, LabelFormat};
use crate::model::ModelOptions;
use crate::report::{Log, Report};
use crate::select::KeepRate;
use crate::sink::remote::RemoteOutput;
use crate::sink::{DataFormat, DataOutput};
use crate::source::ColumnMapping;

/// One stage of a run.
#[derive(Debug, Clone)]
pub enum Step {
    Score(ScoreStep),
    Filter(FilterSettings),
    /// A row-wise query over the rows that reach it (a pipeline's `sql` transform after score,
    /// filter or a judge label, or between filter and a judge label).
    Sql(String),
    Label(LabelStep),
    /// The active loop (`type: train` in a file), after score, filter and label.
    Train(ActiveSettings),
}

impl Step {
    fn kind(&self) -> &'static str {
        match self {
            Step::Score(_) => "score",
            Step::Filter(_) => "filter",
            Step::Sql(_) => "sql",
            Step::Label(_) => "label",
            Step::Train(_) => "train",
        }
    }
}

/// The stages of one run, in dataflow order.
#[derive(Debug, Clone)]
pub struct StageList {
    /// The source: Parquet files, globs or folders.
    pub inputs: Vec<String>,
    pub columns: ColumnMapping,
    /// The stages after the source, in dataflow order (without score: a judge labels the
    /// source's rows as they are).
    pub steps: Vec<Step>,
    /// Where the last stage writes: scored parts, kept rows, labelled rows, or the loop's folder.
    pub output: PathBuf,
    /// How the rows in `output` are stored (`--format`, a pipeline sink's type).
    pub format: DataFormat,
    /// More folders for the same rows, written in the same stream (after score or filter).
    pub more_outputs: Vec<DataOutput>,
    /// Replace an earlier run's outputs in `output` (else they are refused).
    pub overwrite: bool,
    /// Progress bars on the terminal.
    pub progress: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ScoreStep {
    pub model: ModelOptions,
    pub settings: ScoreSettings,
    pub extras: ScoreExtras,
}

#[derive(Debug, Clone)]
pub struct LabelStep {
    /// `None`: the pool's own label column (only for the active loop).
    pub judge: Option<JudgeConfig>,
    /// Where the judge's answers are cached, so a rerun pays only for new ones (`None`: not cached).
    pub cache: Option<PathBuf>,
    /// Rows per batch sent to the judge (a label run without a score stage).
    pub batch_rows: usize,
    pub budget: LabelBudget,
    pub format: LabelFormat,
}

impl LabelStep {
    /// A judge, cached in `cache`, with the defaults of `actprm label`.
    pub fn judge(judge: JudgeConfig, cache: Option<PathBuf>) -> Self {
        Self {
            judge: Some(judge),
            cache,
            batch_rows: crate::label::LabelRun::default().batch_rows,
            budget: LabelBudget::default(),
            format: LabelFormat::default(),
        }
    }
}

/// The job a stage list runs as.
pub enum Job {
    Score(ScoreJob),
    Filter(FilterJob),
    /// Labelling, after the score or filter job (if any) that writes the rows it labels.
    Label {
        first: Option<Box<Job>>,
        label: LabelJob,
    },
    Active(Box<ActiveJob>),
    /// A job that writes a local staging folder, uploaded to its remote output when it ends.
    Remote {
        job: Box<Job>,
        output: RemoteOutput,
    },
}

/// What a run did: the report of the job it ran.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Score(Summary),
    Filter(FilterSummary),
    Label(LabelSummary),
    Active(ActiveSummary),
}

impl StageList {
    /// A source with no stages yet.
    pub fn source(inputs: Vec<String>, columns: ColumnMapping, output: PathBuf) -> Self {
        Self {
            inputs,
            columns,
            steps: Vec::new(),
            output,
            format: DataFormat::default(),
            more_outputs: Vec::new(),
            overwrite: false,
            progress: false,
        }
    }

    /// `actprm score`: source -> score -> Parquet parts.
    pub fn score(
        inputs: Vec<String>,
        output: PathBuf,
        scorer: Scorer,
        extras: ScoreExtras,
    ) -> Self {
        let (columns, step) = split(scorer, extras);
        Self::source(inputs, columns, output).then(Step::Score(step))
    }

    /// `actprm filter`: source -> score -> filter -> the kept rows.
    pub fn filter(
        inputs: Vec<String>,
        output: PathBuf,
        scorer: Scorer,
        settings: FilterSettings,
    ) -> Self {
        Self::score(inputs, output, scorer, ScoreExtras::default()).then(Step::Filter(settings))
    }

    /// `actprm label`: source -> judge label -> the labelled rows.
    pub fn label(
        inputs: Vec<String>,
        output: PathBuf,
        columns: ColumnMapping,
        label: LabelStep,
    ) -> Self {
        Self::source(inputs, columns, output).then(Step::Label(label))
    }

    /// `actprm active`: source -> score -> keep rate or rule -> label (pool column, or the
    /// judge in `label`) -> train, into the loop's folder.
    pub fn active(
        inputs: Vec<String>,
        output: PathBuf,
        scorer: Scorer,
        keep: KeepRate,
        label: LabelStep,
        settings: ActiveSettings,
    ) -> Self {
        Self::score(inputs, output, scorer, ScoreExtras::default())
            .then(Step::Filter(FilterSettings {
                keep,
                ..FilterSettings::default()
            }))
            .then(Step::Label(label))
            .then(Step::Train(settings))
    }

    /// Adds `step` after the others.
    pub fn then(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// The score stage, if there is one.
    pub fn score_step(&self) -> Option<&ScoreStep> {
        self.steps.iter().find_map(|s| match s {
            Step::Score(score) => Some(score),
            _ => None,
        })
    }

    /// Stores the rows in `format` (`--format`).
    pub fn with_format(mut self, format: DataFormat) -> Self {
        self.format = format;
        self
    }

    pub fn with_run(mut self, overwrite: bool, progress: bool) -> Self {
        self.overwrite = overwrite;
        self.progress = progress;
        self
    }

    /// The job that runs these stages. A list no job runs (a filter with no score, a pool
    /// label without train, train without filter and label) is refused; pipeline files report
    /// those shapes at their lines before they get here.
    pub fn job(mut self) -> Result<Job, PipelineError> {
        if self
            .more_outputs
            .iter()
            .any(|o| crate::location::is_remote(&o.folder.to_string_lossy()))
        {
            return Err(PipelineError::Unrunnable(
                "the data sinks after the first are written locally in this version: give them \
                 local paths (the first may be remote)",
            ));
        }
        let Some(remote) = RemoteOutput::stage(&self.output, self.overwrite)? else {
            return self.local_job();
        };
        // what lives inside the output (the judge's cache) is staged with it
        for step in &mut self.steps {
            if let Step::Label(LabelStep {
                cache: Some(cache), ..
            }) = step
            {
                if let Ok(inside) = cache.strip_prefix(&self.output) {
                    *cache = remote.staging().join(inside);
                }
            }
        }
        self.output = remote.staging().to_path_buf();
        Ok(Job::Remote {
            job: Box::new(self.local_job()?),
            output: remote,
        })
    }

    fn local_job(self) -> Result<Job, PipelineError> {
        let StageList {
            inputs,
            columns,
            steps,
            output,
            format,
            more_outputs,
            overwrite,
            progress,
        } = self;
        let Roles {
            score,
            filter,
            judge_query,
            label,
            train,
            query,
        } = Roles::of(steps)?;
        let scoring = |step: ScoreStep, output: PathBuf| {
            let scorer = Scorer {
                model: step.model,
                columns: columns.clone(),
                settings: step.settings,
            };
            let mut job = ScoreJob::configured(inputs.clone(), output, &scorer);
            job.features = step.extras.features;
            job.watch_model = step.extras.watch_model;
            job.overwrite = overwrite;
            job.progress = progress;
            job
        };
        let shape = PipelineError::Unrunnable;
        if !more_outputs.is_empty() && train.is_some() {
            return Err(shape(
                "score, filter and label write their rows to several data sinks; the active \
                 loop writes its own folder",
            ));
        }
        if train.is_some() && format != DataFormat::Parquet {
            return Err(shape(
                "the active loop writes its own folder (scored parts and a model) in the format \
                 of its own `format` setting; it takes no sink format",
            ));
        }
        let feeds_sinks = train.is_none() && (score.is_some() || label.is_some());
        if query.is_some() && !feeds_sinks {
            return Err(shape(
                "an sql transform after score, filter or a judge label feeds the sinks only: \
                 nothing follows it",
            ));
        }
        let before_judge = filter.is_some() && label.as_ref().is_some_and(|l| l.judge.is_some());
        if judge_query.is_some() && (!before_judge || train.is_some()) {
            return Err(shape(
                "an sql transform before label maps a filter's kept rows for a judge label",
            ));
        }
        match (score, filter, label, train) {
            (Some(score), None, None, None) => {
                let mut job = scoring(score, output);
                job.format = format;
                job.more_outputs = more_outputs;
                job.query = query;
                Ok(Job::Score(job))
            }
            (Some(score), Some(filter), None, None) => {
                let mut job = scoring(score, output);
                job.format = format;
                job.query = query;
                // unit records name further sinks' files by absolute path
                job.more_outputs = more_outputs
                    .into_iter()
                    .map(|o| {
                        let folder = std::path::absolute(&o.folder).unwrap_or(o.folder);
                        DataOutput { folder, ..o }
                    })
                    .collect();
                Ok(Job::Filter(FilterJob::new(job, &filter)))
            }
            (Some(score), Some(filter), Some(label), Some(train)) => {
                if filter.quality != Default::default() {
                    return Err(shape(
                        "the active loop labels the uncertain rows: a filter stage that feeds it \
                         takes no reward, where, top_k or per",
                    ));
                }
                if filter.picks != FilterSettings::default().picks {
                    return Err(shape(
                        "the active loop picks its rows as its own `picks` says (the train \
                         stage's key, `active --picks`), not the filter's",
                    ));
                }
                let judge = label.judge.map(|j| j.with_cache(label.cache));
                let mut job = ActiveJob::configured(
                    scoring(score, output.clone()),
                    output,
                    filter.keep.keep(),
                    label.budget,
                    &train,
                    judge,
                );
                job.overwrite = overwrite;
                Ok(Job::Active(Box::new(job.with_label_format(label.format))))
            }
            (score, filter, Some(label), None) => {
                let Some(judge) = label.judge else {
                    return Err(shape(
                        "a pool label (the pool's own label column) only feeds the active loop",
                    ));
                };
                // what the judge reads: the kept rows of a filter (every one, whatever the
                // rule said: a keep rate chose them; the filter commits them first, so it
                // resumes by its units), the source scored in the same stream (the rows the
                // rule selected go to the judge), or the source as it is
                let (first, rows, every_row, front) = match (score, filter) {
                    (Some(score), Some(filter)) => {
                        let dir = output.join("filter");
                        let mut scored = scoring(score, dir.clone());
                        // the judge reads the kept rows the query maps
                        scored.query = judge_query;
                        let job = FilterJob::new(scored, &filter);
                        (Some(Job::Filter(job)), vec![dir.join("kept")], true, None)
                    }
                    (Some(score), None) => {
                        let extras = &score.extras;
                        if extras.features.is_some() || extras.watch_model.is_some() {
                            return Err(shape(
                                "a score stage that feeds a judge in the same stream writes no \
                                 features and watches no model",
                            ));
                        }
                        let job = scoring(score, output.clone());
                        (None, Vec::new(), false, Some(job))
                    }
                    (None, None) => (None, Vec::new(), false, None),
                    (None, Some(_)) => return Err(shape("a filter needs a score stage before it")),
                };
                let rows = if rows.is_empty() {
                    inputs
                } else {
                    rows.iter().map(|p| p.display().to_string()).collect()
                };
                let mut job =
                    LabelJob::new(rows, output, judge.with_cache(label.cache), Log::default());
                job.columns = columns;
                job.batch_rows = label.batch_rows;
                job.overwrite = overwrite;
                job.every_row = every_row;
                job.label_format = label.format;
                job.format = format;
                job.progress = progress;
                job.query = query;
                job.more_outputs = more_outputs;
                job.score = front.map(Box::new);
                Ok(Job::Label {
                    first: first.map(Box::new),
                    label: job,
                })
            }
            _ => Err(shape(
                "runnable stage lists: score; score -> filter; [score [-> filter]] -> judge \
                 label; score -> filter -> label -> train",
            )),
        }
    }
}

/// The steps of a list by the role each plays, once their order is checked.
#[derive(Default)]
struct Roles {
    score: Option<ScoreStep>,
    filter: Option<FilterSettings>,
    /// A query between filter and a judge label: the filter's, so the judge reads its rows.
    judge_query: Option<String>,
    label: Option<LabelStep>,
    train: Option<ActiveSettings>,
    /// A query over the rows on their way to the sinks.
    query: Option<String>,
}

impl Roles {
    /// Each step may follow only the kinds whose rows it reads: score first (or a judge label
    /// on the source's rows), filter after score, sql after score, filter or label, label after
    /// score, filter or an sql after filter, train after label.
    fn of(steps: Vec<Step>) -> Result<Self, PipelineError> {
        let mut roles = Roles::default();
        let mut previous: Option<&'static str> = None;
        for step in steps {
            let follows = match (previous, step.kind()) {
                (None, "score" | "label") => true,
                (Some("score"), "filter" | "sql" | "label") => true,
                (Some("filter"), "sql" | "label") => true,
                (Some("sql"), "label") => roles.filter.is_some() && roles.label.is_none(),
                (Some("label"), "sql" | "train") => true,
                _ => false,
            };
            if !follows {
                return Err(PipelineError::Unrunnable(
                    "runnable stage lists: score [-> sql]; score -> filter [-> sql]; [score [-> \
                     filter [-> sql]]] -> judge label [-> sql]; score -> filter -> label -> train",
                ));
            }
            previous = Some(step.kind());
            match step {
                Step::Score(s) => roles.score = Some(s),
                Step::Filter(f) => roles.filter = Some(f),
                Step::Sql(q) => roles.query = Some(q),
                Step::Label(l) => {
                    // an sql between filter and label maps the rows the judge reads
                    roles.judge_query = roles.query.take();
                    roles.label = Some(l);
                }
                Step::Train(t) => roles.train = Some(t),
            }
        }
        Ok(roles)
    }
}

/// Uploads a staged remote output, and says so.
fn upload(output: &RemoteOutput) -> Result<(), PipelineError> {
    let (files, bytes) = output.upload()?;
    eprintln!(
        "actprm: uploaded {files} files ({:.1} MB) to {}",
        bytes as f64 / 1e6,
        output.url()
    );
    Ok(())
}

/// A scorer's columns belong to the source; its model and settings to the score stage.
fn split(scorer: Scorer, extras: ScoreExtras) -> (ColumnMapping, ScoreStep) {
    let Scorer {
        model,
        columns,
        settings,
    } = scorer;
    (
        columns,
        ScoreStep {
            model,
            settings,
            extras,
        },
    )
}

impl Job {
    /// Runs the job to completion.
    pub fn run(&self) -> Result<Outcome, PipelineError> {
        Ok(match self {
            Job::Score(job) => Outcome::Score(run_score(job, Default::default())?),
            Job::Filter(job) => Outcome::Filter(run_filter(job)?),
            Job::Label { first, label } => {
                if let Some(first) = first {
                    first.run()?;
                }
                Outcome::Label(run_label(label)?)
            }
            Job::Active(job) => Outcome::Active(run_active(job)?),
            Job::Remote { job, output } => {
                if let Job::Filter(filter) = job.as_ref() {
                    if !filter.units.is_empty() {
                        // a Ray task uploads its own units; the driver uploads the rest
                        return Ok(Outcome::Filter(run_task(filter, output)?));
                    }
                }
                let outcome = job.run()?;
                upload(output)?;
                outcome
            }
        })
    }

    /// The filter job this runs, if it is one (a Ray task is given its units through it).
    pub fn filter_mut(&mut self) -> Option<&mut FilterJob> {
        match self {
            Job::Filter(filter) => Some(filter),
            Job::Remote { job, .. } => job.filter_mut(),
            _ => None,
        }
    }

    /// `filter --ray`: the filter's units run as tasks on a Ray cluster; a remote output's
    /// records are uploaded after them.
    pub fn run_on_ray(
        &self,
        address: &str,
        settings: &RaySettings,
        args: Vec<String>,
    ) -> Result<Outcome, PipelineError> {
        let (filter, remote) = match self {
            Job::Filter(filter) => (filter, None),
            Job::Remote { job, output } => match job.as_ref() {
                Job::Filter(filter) => (filter, Some(output)),
                _ => return Err(PipelineError::Unrunnable("--ray runs a filter only")),
            },
            _ => return Err(PipelineError::Unrunnable("--ray runs a filter only")),
        };
        let summary = run_on_ray(filter, address, settings, args, remote)?;
        if let Some(output) = remote {
            upload(output)?;
        }
        Ok(Outcome::Filter(summary))
    }

    /// The command this job is (`score`, `filter`, `label`, `active`).
    pub fn name(&self) -> &'static str {
        match self {
            Job::Score(_) => "score",
            Job::Filter(_) => "filter",
            Job::Label { .. } => "label",
            Job::Active(_) => "active",
            Job::Remote { job, .. } => job.name(),
        }
    }

    /// Where the job writes (a remote job: its URL, not the staging folder).
    pub fn output(&self) -> &std::path::Path {
        match self {
            Job::Score(job) => &job.output,
            Job::Filter(job) => &job.score.output,
            Job::Label { label, .. } => &label.output,
            Job::Active(job) => &job.output,
            Job::Remote { output, .. } => std::path::Path::new(output.url()),
        }
    }
}

impl Report for Outcome {
    fn table(&self) -> String {
        match self {
            Outcome::Score(s) => s.table(),
            Outcome::Filter(s) => s.table(),
            Outcome::Label(s) => s.table(),
            Outcome::Active(s) => s.table(),
        }
    }
}
