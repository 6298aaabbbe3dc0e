//! The labelling dataflow (`actprm label`): read -> judge on the runner, then a Parquet sink that
//! writes the rows in input order with every input column plus the `judge_*` columns.
//! Rows in = rows out: a row the judge gave no label keeps its status and reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Int32Builder, ListBuilder, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use serde::Serialize;

use super::runner;
use super::stage::Inlet;
use super::stages::{JudgeRows, Judged, JudgedBatch, ReadFiles};
use super::PipelineError;
use crate::label::format::{with_columns, TrlRow};
use crate::label::judge::{Accounting, JudgeClient, JudgeConfig, JudgeOutcome};
use crate::label::LabelFormat;
use crate::report::Log;
use crate::sink::{PartWriter, RejectSink};
use crate::source::flow::Flow;
use crate::source::ColumnMapping;

/// Everything `actprm label` needs.
#[derive(Clone)]
pub struct LabelJob {
    pub inputs: Vec<String>,
    pub output: PathBuf,
    /// How the labelled rows are stored in `output`.
    pub format: crate::sink::DataFormat,
    /// More folders for the same labelled rows, each in its own format, written in the same
    /// stream (a pipeline's further data sinks).
    pub more_outputs: Vec<crate::sink::DataOutput>,
    pub columns: ColumnMapping,
    pub judge: JudgeConfig,
    pub batch_rows: usize,
    pub rows_per_part: usize,
    pub progress: bool,
    pub log: Log,
    /// Replace an earlier run's parts, rejects and summary in `output` (else they are refused).
    pub overwrite: bool,
    /// Send every row, ignoring a `selected` column (a filter's kept rows were chosen by it,
    /// whatever the threshold rule said).
    pub every_row: bool,
    /// Also write the labels in TRL's layout.
    pub label_format: LabelFormat,
    /// Score the rows first, in the same stream: the judge gets the rows the model selected,
    /// and the output holds every row with its scores (the job's inputs, columns and batch
    /// size are this job's; its output is unused).
    pub score: Option<Box<super::ScoreJob>>,
    /// A row-wise query over the labelled rows on their way to the sink (a pipeline's `sql`
    /// transform after label).
    pub query: Option<String>,
}

impl LabelJob {
    pub fn new(inputs: Vec<String>, output: PathBuf, judge: JudgeConfig, log: Log) -> Self {
        Self {
            inputs,
            output,
            format: Default::default(),
            more_outputs: Vec::new(),
            columns: ColumnMapping::default(),
            judge,
            batch_rows: crate::label::LabelRun::default().batch_rows,
            rows_per_part: 100_000,
            progress: false,
            log,
            overwrite: false,
            every_row: false,
            label_format: LabelFormat::default(),
            score: None,
            query: None,
        }
    }
}

impl LabelJob {
    /// Every folder the labelled rows go to, the run's own first.
    pub fn data_outputs(&self) -> impl Iterator<Item = crate::sink::DataOutput> + '_ {
        crate::sink::DataOutput::all(&self.output, self.format, &self.more_outputs)
    }

    pub fn validate(&self) -> Result<(), PipelineError> {
        crate::limits::at_least("batch_rows", self.batch_rows, 1)?;
        crate::limits::at_least("rows_per_part", self.rows_per_part, 1)?;
        Ok(())
    }
}

/// `DIR/summary.json`: rows by status and the judge's accounting.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabelSummary {
    pub rows_in: u64,
    pub rows_out: u64,
    /// Rows in unreadable files or row groups (listed in `rejects/unreadable.jsonl`; not in `rows_in`).
    pub rows_unreadable: u64,
    pub files: u64,
    pub files_unreadable: u64,
    pub rows_by_status: BTreeMap<String, u64>,
    pub judge_model: String,
    pub judge_format: String,
    pub cache: Option<String>,
    pub cache_entries_at_start: Option<usize>,
    pub judge: Accounting,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub parts: Vec<String>,
    /// The model that scored the rows, when a score stage ran in the same stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scored_by: Option<String>,
}

impl LabelSummary {
    /// The report as a terminal table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "rows in        {:>10}", self.rows_in);
        let _ = writeln!(out, "rows out       {:>10}", self.rows_out);
        if let Some(model) = &self.scored_by {
            let _ = writeln!(out, "scored by      {model}");
        }
        for (status, n) in &self.rows_by_status {
            let _ = writeln!(out, "  {status:<12} {n:>10}");
        }
        if self.rows_unreadable > 0 || self.files_unreadable > 0 {
            let _ = writeln!(
                out,
                "unreadable     {:>10}  rows ({} files)",
                self.rows_unreadable, self.files_unreadable
            );
        }
        out += &self.judge.table();
        let _ = writeln!(
            out,
            "seconds        {:>10.1}  ({:.1} requests/s)",
            self.seconds, self.requests_per_second
        );
        out
    }
}

/// Runs `actprm label` to completion.
pub fn run_label(job: &LabelJob) -> Result<LabelSummary, PipelineError> {
    job.validate()?;
    let started = Instant::now();
    let (_folder, planned) =
        super::score::claim_and_plan(&job.inputs, &job.columns, &job.output, job.overwrite)?;
    // the run's own folder is claimed with its inputs above; the further ones here
    let _locks = job
        .more_outputs
        .iter()
        .map(|out| super::score::claim_parts_folder(&out.folder, job.overwrite, &planned))
        .collect::<Result<Vec<_>, _>>()?;
    let (client, cache_report) = JudgeClient::new(&job.judge, job.log.clone())?;
    let client = Arc::new(client);
    let mut summary = LabelSummary {
        files: planned.len() as u64,
        judge_model: job.judge.model.clone(),
        judge_format: serde_json::to_value(job.judge.format)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        cache: job.judge.cache.as_ref().map(|p| p.display().to_string()),
        cache_entries_at_start: cache_report.map(|r| r.entries),
        ..LabelSummary::default()
    };
    let total_rows: u64 = planned.iter().map(|p| p.rows).sum();
    let bar = super::progress::rows_bar(total_rows, job.progress);
    // a score in front reads batches of its own size (the score stage's `batch_rows`)
    let batch_rows = job
        .score
        .as_ref()
        .map_or(job.batch_rows, |s| s.batch_rows)
        .max(1);
    // enough batches in flight to keep every request slot busy across batch boundaries
    // saturating: the judge's range check bounds both, but a product must not be what panics
    let depth = 2usize
        .saturating_mul(job.judge.concurrency)
        .saturating_mul(job.judge.votes as usize)
        .div_ceil(batch_rows)
        .clamp(2, 64);
    let scoring = job
        .score
        .as_ref()
        .map(|score| super::score::scoring_stages(score))
        .transpose()?;
    let result = runner::run("label", |run| {
        let read = ReadFiles {
            planned,
            batch_rows,
            skip_rows: 0,
        };
        let runtime = run.runtime()?;
        let judged = match scoring {
            // read -> tokenise -> score -> judge: scored batches wait for the judge, so the
            // scorer runs at most `depth` batches ahead
            Some((model, tokenise, score)) => {
                summary.scored_by = Some(model.version());
                let rows = run.source(read, 4);
                let tokenised = run.stage(rows, tokenise, 4);
                let scored = run.stage(tokenised, score, depth);
                let judge = JudgeRows::new(client.clone(), runtime, depth, job.every_row);
                run.stage(scored, judge, 2)
            }
            None => {
                let rows = run.source(read, depth);
                let judge = JudgeRows::new(client.clone(), runtime, depth, job.every_row);
                run.stage(rows, judge, 2)
            }
        };
        sink(job, judged, &mut summary, &bar)
    });
    bar.finish_and_clear();
    result?;
    runner::check_accounted(total_rows, summary.rows_in + summary.rows_unreadable)?;
    summary.judge = client.accounting();
    summary.seconds = started.elapsed().as_secs_f64();
    summary.requests_per_second = summary.judge.requests as f64 / summary.seconds.max(1e-9);
    super::score::write_summary_and_cards(
        job.data_outputs(),
        &summary,
        "Trajectories labelled by actprm",
        "Every judged row of the input with the judge's verdict (`judge_*` columns), from \
         `actprm label`.",
    )?;
    Ok(summary)
}

/// Writes every judged row (input columns plus `judge_*`) in input order, and the rejects.
fn sink(
    job: &LabelJob,
    judged: Inlet<Judged>,
    summary: &mut LabelSummary,
    bar: &indicatif::ProgressBar,
) -> Result<(), PipelineError> {
    let mut parts = job
        .data_outputs()
        .map(|out| PartWriter::data(&out.folder, out.format, job.rows_per_part))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rejects = RejectSink::new(&job.output);
    let query = match &job.query {
        Some(text) => {
            let config = job
                .score
                .as_ref()
                .map_or_else(Default::default, |s| s.sql_config());
            Some(crate::sql::row_query::RowQuery::new(text, &config)?)
        }
        None => None,
    };
    for item in judged {
        match item {
            Flow::GroupEnd(_) => {}
            Flow::Unreadable(unreadable) => {
                summary.rows_unreadable += unreadable.rows;
                summary.files_unreadable += u64::from(unreadable.first_row.is_none());
                job.log.line(&unreadable.notice("unreadable"));
                rejects.unreadable(unreadable.record());
                bar.inc(unreadable.rows);
            }
            Flow::Batch(JudgedBatch {
                batch,
                outcomes,
                texts,
            }) => {
                let out = labelled_batch(&batch, &outcomes)?;
                let out = match job.label_format {
                    LabelFormat::Actprm => out,
                    LabelFormat::Trl => with_trl_columns(&out, &outcomes, &texts)?,
                };
                let out = match &query {
                    Some(query) => query.apply(&out)?,
                    None => out,
                };
                for parts in &mut parts {
                    parts.write(&out)?;
                }
                summary.rows_in += batch.num_rows() as u64;
                summary.rows_out += out.num_rows() as u64;
                for o in &outcomes {
                    *summary
                        .rows_by_status
                        .entry(o.status.as_str().to_string())
                        .or_default() += 1;
                }
                bar.inc(batch.num_rows() as u64);
            }
        }
    }
    summary.parts = crate::sink::parts::finish_all(parts, &job.output)?;
    rejects.finish()?;
    Ok(())
}

/// The input batch (minus any old `judge_*` columns) plus this run's `judge_*` columns.
pub fn labelled_batch(
    batch: &RecordBatch,
    outcomes: &[JudgeOutcome],
) -> Result<RecordBatch, PipelineError> {
    let mut label = Int32Builder::with_capacity(outcomes.len());
    let mut votes = ListBuilder::new(Int32Builder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::Int32,
        true,
    )));
    for o in outcomes {
        label.append_option(o.label);
        if o.votes.is_empty() {
            votes.append_null();
        } else {
            for v in &o.votes {
                votes.values().append_option(*v);
            }
            votes.append(true);
        }
    }
    let status = StringArray::from_iter_values(outcomes.iter().map(|o| o.status.as_str()));
    let reason = StringArray::from_iter(outcomes.iter().map(|o| o.reason.as_deref()));
    let raw = StringArray::from_iter(outcomes.iter().map(|o| o.raw.as_deref()));
    let added: [(&str, ArrayRef, bool); 5] = [
        ("judge_label", Arc::new(label.finish()), true),
        ("judge_status", Arc::new(status), false),
        ("judge_reason", Arc::new(reason), true),
        ("judge_raw", Arc::new(raw), true),
        ("judge_votes", Arc::new(votes.finish()), true),
    ];
    Ok(with_columns(batch, &added)?)
}

/// `batch` with TRL's `prompt`, `completions` and `labels` (replacing any it had).
fn with_trl_columns(
    batch: &RecordBatch,
    outcomes: &[JudgeOutcome],
    texts: &[Option<(String, Vec<String>)>],
) -> Result<RecordBatch, PipelineError> {
    let rows: Vec<Option<TrlRow<'_>>> = texts
        .iter()
        .zip(outcomes)
        .map(|(t, o)| {
            t.as_ref().map(|(problem, steps)| TrlRow {
                problem,
                steps,
                label: o.label,
            })
        })
        .collect();
    Ok(crate::label::format::with_trl_columns(batch, &rows)?)
}

impl crate::report::Report for LabelSummary {
    fn table(&self) -> String {
        LabelSummary::table(self)
    }
}
