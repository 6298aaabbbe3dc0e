//! The labelling dataflow (`actprm label`): Parquet source -> judge -> Parquet sink. The source
//! runs on a blocking task; batches are judged several at a time (the client bounds requests in
//! flight), and written in input order with every input column plus the `judge_*` columns.
//! Rows in = rows out: a row the judge gave no label keeps its status and reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, Int32Builder, ListBuilder, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use super::PipelineError;
use crate::label::judge::{
    Accounting, JudgeClient, JudgeConfig, JudgeOutcome, JudgeStatus, Logger,
};
use crate::label::LabelRequest;
use crate::sink::{write_atomic, PartWriter, RejectSink};
use crate::source::flow::{Flow, SourceBatch, SourceItem, Unreadable};
use crate::source::parquet::{plan, read_file};
use crate::source::{discover_inputs, ColumnMapping};

/// Columns this stage adds (an input that already has them, e.g. an earlier label run's output,
/// gets them replaced).
pub const JUDGE_COLUMNS: [&str; 5] = [
    "judge_label",
    "judge_status",
    "judge_reason",
    "judge_raw",
    "judge_votes",
];

/// Everything `actprm label` needs.
#[derive(Clone)]
pub struct LabelJob {
    pub inputs: Vec<String>,
    pub output: PathBuf,
    pub columns: ColumnMapping,
    pub judge: JudgeConfig,
    pub batch_rows: usize,
    pub rows_per_part: usize,
    pub progress: bool,
    pub log: Logger,
    /// Replace an earlier run's parts, rejects and summary in `output` (else they are refused).
    pub overwrite: bool,
    /// Send every row, ignoring a `selected` column (a filter's kept rows were chosen by it,
    /// whatever the threshold rule said).
    pub every_row: bool,
}

impl LabelJob {
    pub const DEFAULT_BATCH_ROWS: usize = 64;

    pub fn new(inputs: Vec<String>, output: PathBuf, judge: JudgeConfig, log: Logger) -> Self {
        Self {
            inputs,
            output,
            columns: ColumnMapping::default(),
            judge,
            batch_rows: Self::DEFAULT_BATCH_ROWS,
            rows_per_part: 100_000,
            progress: false,
            log,
            overwrite: false,
            every_row: false,
        }
    }
}

impl LabelJob {
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
}

impl LabelSummary {
    /// The report as a terminal table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "rows in        {:>10}", self.rows_in);
        let _ = writeln!(out, "rows out       {:>10}", self.rows_out);
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

/// A judged batch: its rows and one outcome per row. (Row-group ends matter to resumable sinks
/// only; this one rewrites its parts.)
struct JudgedBatch {
    batch: RecordBatch,
    outcomes: Vec<JudgeOutcome>,
}

type Judged = Flow<JudgedBatch>;

/// Runs `actprm label` to completion.
pub fn run_label(job: &LabelJob) -> Result<LabelSummary, PipelineError> {
    job.validate()?;
    crate::sink::prepare_output(&job.output, job.overwrite)?;
    let started = Instant::now();
    let files = discover_inputs(&job.inputs, "parquet")?;
    let planned = plan(&files, &job.columns)?;
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
    let runtime = crate::runtime::start("actprm-label", Some(2))
        .map_err(|e| PipelineError::Stage(format!("starting the runtime: {e}")))?;
    let batch_rows = job.batch_rows.max(1);
    // enough batches in flight to keep every request slot busy across batch boundaries
    let depth = (2 * job.judge.concurrency * job.judge.votes as usize)
        .div_ceil(batch_rows)
        .clamp(2, 64);
    let result = runtime.block_on(async {
        let (src_tx, src_rx) = mpsc::channel::<SourceItem>(depth);
        let source = tokio::task::spawn_blocking(move || {
            for file in &planned {
                let mut open = true;
                read_file(file, batch_rows, &mut |item| {
                    crate::failpoint::hit("read");
                    open = src_tx.blocking_send(item).is_ok();
                    open
                });
                if !open {
                    return;
                }
            }
        });
        let items = futures::stream::unfold(src_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut judged = Box::pin(
            items
                .map(|item| judge_item(client.clone(), item, job.every_row))
                .buffered(depth),
        );
        let sink_result = sink(job, &mut judged, &mut summary, &bar).await;
        drop(judged);
        super::score::joined("read", source.await)?;
        sink_result
    });
    bar.finish_and_clear();
    result?;
    let accounted = summary.rows_in + summary.rows_unreadable;
    if accounted != total_rows {
        return Err(PipelineError::Stage(format!(
            "the inputs hold {total_rows} rows (file footers) but the run accounted for \
             {accounted}: a stage stopped early"
        )));
    }
    summary.judge = client.accounting();
    summary.seconds = started.elapsed().as_secs_f64();
    summary.requests_per_second = summary.judge.requests as f64 / summary.seconds.max(1e-9);
    let path = job.output.join("summary.json");
    let json = serde_json::to_vec_pretty(&summary).map_err(PipelineError::json(&path))?;
    write_atomic(&path, &json)?;
    Ok(summary)
}

/// The rows of one batch that go to the judge: usable and selected (when a `selected` column exists).
async fn judge_item(
    client: Arc<JudgeClient>,
    item: SourceItem,
    every_row: bool,
) -> Result<Judged, PipelineError> {
    let SourceBatch {
        path,
        first_row,
        batch,
        rows,
    } = match item {
        Flow::Batch(b) => b,
        Flow::Unreadable(u) => return Ok(Flow::Unreadable(u)),
        Flow::GroupEnd(g) => return Ok(Flow::GroupEnd(g)),
    };
    let selected = match batch.column_by_name("selected") {
        _ if every_row => None,
        None => None,
        Some(c) => match c.as_boolean_opt() {
            Some(b) => Some(b.clone()),
            None => {
                return Err(PipelineError::Stage(format!(
                    "{}: column \"selected\" has type {}, expected Boolean",
                    path.display(),
                    c.data_type()
                )))
            }
        },
    };
    let mut outcomes: Vec<Option<JudgeOutcome>> = vec![None; rows.len()];
    let mut requests = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        let chosen = selected
            .as_ref()
            .is_none_or(|s| s.is_valid(i) && s.value(i));
        match row {
            _ if !chosen => {
                outcomes[i] = Some(JudgeOutcome {
                    status: JudgeStatus::NotSelected,
                    label: None,
                    reason: None,
                    raw: None,
                    votes: Vec::new(),
                })
            }
            Err(reject) => {
                let reason = format!("row not usable: {}: {}", reject.column, reject.reason);
                outcomes[i] = Some(JudgeOutcome::unlabelled(
                    JudgeStatus::Failed,
                    reason,
                    None,
                    Vec::new(),
                ));
            }
            Ok(t) => requests.push((
                i,
                LabelRequest {
                    key: format!("{}:{}", path.display(), first_row + i as u64),
                    problem: t.problem,
                    steps: t.steps,
                    pool_label: None,
                },
            )),
        }
    }
    let judged = futures::future::join_all(requests.iter().map(|(_, r)| client.judge(r))).await;
    for ((i, _), outcome) in requests.iter().zip(judged) {
        outcomes[*i] = Some(outcome);
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| PipelineError::Stage("a row lost its outcome".into())))
        .collect::<Result<_, _>>()?;
    Ok(Flow::Batch(JudgedBatch { batch, outcomes }))
}

async fn sink<S>(
    job: &LabelJob,
    judged: &mut S,
    summary: &mut LabelSummary,
    bar: &indicatif::ProgressBar,
) -> Result<(), PipelineError>
where
    S: futures::Stream<Item = Result<Judged, PipelineError>> + Unpin,
{
    let mut parts = PartWriter::new(&job.output, "part", job.rows_per_part)?;
    let mut rejects = RejectSink::new(&job.output);
    while let Some(item) = judged.next().await {
        match item? {
            Flow::GroupEnd(_) => {}
            Flow::Unreadable(Unreadable {
                path,
                first_row,
                rows,
                reason,
            }) => {
                summary.rows_unreadable += rows;
                summary.files_unreadable += u64::from(first_row.is_none());
                (job.log)(&format!(
                    "{}: {reason} ({rows} rows unreadable)",
                    path.display()
                ));
                rejects.unreadable(&path, first_row, rows, &reason);
                bar.inc(rows);
            }
            Flow::Batch(JudgedBatch { batch, outcomes }) => {
                let out = labelled_batch(&batch, &outcomes)?;
                parts.write(&out)?;
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
    summary.parts = parts
        .finish()?
        .iter()
        .map(|p| {
            p.strip_prefix(&job.output)
                .unwrap_or(p)
                .display()
                .to_string()
        })
        .collect();
    rejects.finish()?;
    Ok(())
}

/// The input batch (minus any old `judge_*` columns) plus this run's `judge_*` columns.
pub fn labelled_batch(
    batch: &RecordBatch,
    outcomes: &[JudgeOutcome],
) -> Result<RecordBatch, PipelineError> {
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if !JUDGE_COLUMNS.contains(&f.name().as_str()) {
            fields.push(f.clone());
            columns.push(c.clone());
        }
    }
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
    for (name, array, nullable) in added {
        fields.push(Arc::new(Field::new(
            name,
            array.data_type().clone(),
            nullable,
        )));
        columns.push(array);
    }
    // the input's schema metadata (e.g. the `huggingface` features of a Hub data set) carries over
    let schema = Schema::new(fields).with_metadata(batch.schema().metadata().clone());
    RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|e| PipelineError::Stage(format!("building the labelled batch: {e}")))
}

impl crate::report::Report for LabelSummary {
    fn table(&self) -> String {
        LabelSummary::table(self)
    }
}
