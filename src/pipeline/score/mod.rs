//! The scoring dataflow (`score`, and under `filter` and `active` with their own sinks): read ->
//! tokenise -> score on the runner, and the sink that counts, writes and shows each batch to the
//! caller's hook. Reading, tokenisation and inference overlap while memory stays flat.

mod in_process;
mod job;
mod sink;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use super::refresh::{self, HeadsReceiver, ModelWatcher};
use super::rows::{Row, RowBatch, Usable};
use super::runner;
use super::stage::Inlet;
use super::stages::{ReadFiles, ScoreSteps, Scored, ScoredBatch, Tokenise};
use super::{PipelineError, Summary};
use crate::formats::features::{FeatureRow, FeatureWriter};
use crate::model::LoadedModel;
use crate::score::{RowScore, StepScorer};
use crate::sink::dataset_card::{write_card_or_say, CardConfig};
use crate::sink::rejects::RejectedRow;
use crate::sink::{write_atomic, PartWriter, RejectSink};
use crate::source::discover_inputs;
use crate::source::flow::{Flow, GroupEnd, Unreadable};
use crate::source::parquet::{plan, planned_rows, PlannedFile};
use crate::source::Trajectory;
use crate::tokenise::Tokeniser;
pub use in_process::{BatchScorer, ModelInfo, ScoredRecords, ROW_REJECT_COLUMNS};
pub use job::{ScoreExtras, ScoreJob, ScoreSettings, Scorer};
use sink::{short_reason, PartsSink};
pub use sink::{ScoredSink, SinkBatch};

/// What the sink shows a hook after writing each scored batch.
pub struct BatchView<'a> {
    /// Input rows this batch covered (scored + rejected).
    pub rows_in: u64,
    pub output: &'a RecordBatch,
    pub scores: &'a [RowScore],
    pub features: &'a [FeatureRow],
}

/// Called by the sink after each scored batch is written.
pub type BatchHook<'a> = Box<dyn FnMut(&BatchView<'_>) -> Result<(), PipelineError> + Send + 'a>;

/// Ways to take part in a running scoring job: deliver new heads (an in-process trainer), and
/// look at every scored batch once it is written.
#[derive(Default)]
pub struct ScoreHooks<'a> {
    pub refresh: Option<HeadsReceiver>,
    /// Score the next batch only after the hook has seen this one (and possibly published new
    /// heads): ActPRM's Algorithm 1 exactly, reproducible run to run. Reading and tokenising
    /// still run ahead.
    pub lockstep: bool,
    pub on_batch: Option<BatchHook<'a>>,
}

/// Runs a scoring job to completion. `hooks.refresh`, when given, delivers new heads from an
/// in-process trainer; `job.watch_model` does the same from a directory.
pub fn run_score(job: &ScoreJob, hooks: ScoreHooks<'_>) -> Result<Summary, PipelineError> {
    job.validate()?;
    let (_folder, planned) = claim_and_plan(&job.inputs, &job.columns, &job.output, job.overwrite)?;
    let mut parts = Vec::new();
    let mut _locks = Vec::new();
    // the run's own folder is claimed with its inputs above; the further ones here
    for (i, out) in job.data_outputs().enumerate() {
        if i > 0 {
            _locks.push(claim_parts_folder(&out.folder, job.overwrite, &planned)?);
        }
        parts.push(PartWriter::data(
            &out.folder,
            out.format,
            job.rows_per_part,
        )?);
    }
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let query = match &job.query {
        Some(text) => Some((
            crate::sql::row_query::RowQuery::new(text, &job.sql_config())?,
            written.clone(),
        )),
        None => None,
    };
    let sink = PartsSink {
        output: job.output.clone(),
        parts,
        rejects: RejectSink::new(&job.output),
        query,
    };
    let mut summary = run_scoring(job, planned, hooks, Box::new(sink))?;
    if job.query.is_some() {
        summary.rows_written = Some(written.load(std::sync::atomic::Ordering::Relaxed));
    }
    write_summary_and_cards(
        job.data_outputs(),
        &summary,
        "Trajectories scored by actprm",
        &format!(
            "Every readable row of the input with its step scores (`step_mean`, `step_std`, \
             `first_error`, uncertainty, `selected`), from `actprm score` with model `{}`.",
            summary.model_version
        ),
    )?;
    Ok(summary)
}

/// Ends a run writing parts (`score`, `label`): every data sink's folder gets the run's
/// `summary.json` and a dataset card naming its parts.
pub(crate) fn write_summary_and_cards(
    outputs: impl Iterator<Item = crate::sink::DataOutput>,
    summary: &impl serde::Serialize,
    title: &str,
    description: &str,
) -> Result<(), PipelineError> {
    let json = serde_json::to_vec_pretty(summary).expect("summary serialises");
    for out in outputs {
        write_atomic(&out.folder.join("summary.json"), &json)?;
        write_card_or_say(
            &out.folder,
            title,
            &[CardConfig {
                name: "default",
                files: out.format.parts_pattern(),
            }],
            description,
        )?;
    }
    Ok(())
}

/// Claims a further output folder of a run writing parts by the output-folder rule.
pub(crate) fn claim_parts_folder(
    folder: &Path,
    overwrite: bool,
    planned: &[PlannedFile],
) -> Result<crate::sink::output_folder::FolderLock, PipelineError> {
    let inputs: Vec<PathBuf> = planned.iter().map(|p| p.path.to_path_buf()).collect();
    Ok(crate::sink::output_folder::claim(
        folder,
        &crate::sink::PARTS_LAYOUT,
        overwrite,
        &inputs,
    )?)
}

/// The start of a run that writes parts (`score`, `label`): its inputs found, its output folder
/// claimed by the output-folder rule (held while the lock lives), its files planned, and a run
/// that could read none of them refused.
pub(crate) fn claim_and_plan(
    inputs: &[String],
    columns: &crate::source::ColumnMapping,
    output: &std::path::Path,
    overwrite: bool,
) -> Result<(crate::sink::output_folder::FolderLock, Vec<PlannedFile>), PipelineError> {
    let files = discover_inputs(inputs, "parquet", columns.split.as_deref())?;
    let lock =
        crate::sink::output_folder::claim(output, &crate::sink::PARTS_LAYOUT, overwrite, &files)?;
    let planned = plan(&files, columns)?;
    crate::source::parquet::refuse_if_none_readable(&planned)?;
    Ok((lock, planned))
}

/// The dataflow itself, over already planned files, into any sink. Returns the summary (not
/// yet written anywhere).
pub fn run_scoring(
    job: &ScoreJob,
    planned: Vec<PlannedFile>,
    hooks: ScoreHooks<'_>,
    sink: Box<dyn ScoredSink + '_>,
) -> Result<Summary, PipelineError> {
    let ScoreHooks {
        refresh,
        lockstep,
        mut on_batch,
    } = hooks;
    job.validate()?;
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    let ack_rx = lockstep.then_some(ack_rx);
    let started = Instant::now();
    let (model, tokenise, mut score) = scoring_stages(job)?;
    let scorer = &score.scorer;
    let tau = scorer.tau;
    // D comes from the backbone, not from the first batch (which may have no scored row)
    let features = match &job.features {
        Some(path) => Some(FeatureWriter::create(path, scorer.backbone.hidden_size())?),
        None => None,
    };
    let mut summary = Summary {
        files: planned.len() as u64,
        ensemble_size: scorer.heads.ensemble_size(),
        tau,
        check: job.score.check_rule(&model.manifest),
        delta_pred: job.score.rule.delta_pred,
        delta_std: job.score.rule.delta_std,
        model_version: model.version(),
        ..Summary::default()
    };
    let (watch_tx, watch_rx) = refresh::channel();
    let _watcher = job
        .watch_model
        .clone()
        .map(|dir| ModelWatcher::spawn(dir, watch_tx, model.version(), Duration::from_millis(200)));
    score.refresh = refresh.or(job.watch_model.as_ref().map(|_| watch_rx));
    score.acks = ack_rx;

    let total_rows: u64 = planned.iter().map(planned_rows).sum();
    let expected_rows = total_rows.saturating_sub(job.skip_rows);
    let bar = super::progress::rows_bar(total_rows, job.progress);
    let result = runner::run("score", |run| {
        let read = ReadFiles {
            planned,
            batch_rows: job.batch_rows,
            skip_rows: job.skip_rows,
        };
        let rows = run.source(read, 4);
        let tokenised = run.stage(rows, tokenise, 4);
        let mut scored = run.stage(tokenised, score, 2);
        // moved in, so a sink that stops also releases a score stage waiting in lockstep
        let ack_tx = ack_tx;
        let feedback = Feedback {
            bar: &bar,
            log: &job.log,
        };
        sink_stage(
            &mut scored,
            &mut summary,
            feedback,
            &mut on_batch,
            &ack_tx,
            sink,
            features,
        )
    });
    bar.finish_and_clear();
    result?;
    // the run must account for every row the file footers say exists
    runner::check_accounted(expected_rows, summary.rows_in)?;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.rows_per_second = summary.rows_scored as f64 / summary.seconds.max(1e-9);
    summary.tokens_per_second = summary.tokens as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}

/// The tokenise and score stages of `job`, its model opened: what every scoring dataflow runs
/// after its reader. Without hooks (heads refresh, lockstep): a caller that wants them sets
/// `refresh` and `acks` on the score stage.
pub fn scoring_stages(
    job: &ScoreJob,
) -> Result<(LoadedModel, Tokenise, ScoreSteps), PipelineError> {
    let model = LoadedModel::open(job.model.as_deref())?;
    let tokeniser = Tokeniser::for_model(&model)?;
    let scorer = StepScorer::open(&model, &job.runtime, job.score)?;
    let check = job.score.check_rule(&model.manifest);
    let score = ScoreSteps {
        scorer,
        refresh: None,
        features: job.features.is_some() || job.features_to_hooks,
        checked: !check.is_off(),
        head_probs: job.with_head_probs,
        log: job.log.clone(),
        acks: None,
    };
    Ok((model, Tokenise { tokeniser, check }, score))
}

/// A batch's rejected rows (batch row, reason) as the rejects output records them, numbered in
/// the file from `first_row`.
fn rejected_rows_at(
    first_row: u64,
    rejected: &[(usize, crate::source::RowReject)],
) -> Vec<RejectedRow> {
    rejected
        .iter()
        .map(|(i, r)| RejectedRow {
            batch_row: *i,
            file_row: first_row + *i as u64,
            column: r.column.clone(),
            reason: r.reason.clone(),
        })
        .collect()
}

/// The usable rows' scores, problems and steps, and step features (if any), each in row order:
/// what a sink reads of a scored batch.
fn split_usable(rows: Vec<Row>) -> (Vec<RowScore>, Vec<Trajectory>, Vec<FeatureRow>) {
    let mut scores = Vec::with_capacity(rows.len());
    let mut trajectories = Vec::with_capacity(rows.len());
    let mut features = Vec::new();
    for row in rows {
        if let Row::Usable(usable) = row {
            let Usable {
                trajectory,
                score,
                features: steps,
                ..
            } = *usable;
            scores.push(score.expect("the score stage scored every usable row"));
            trajectories.push(trajectory);
            features.extend(steps);
        }
    }
    (scores, trajectories, features)
}

/// The sink stage's progress bar and notices.
struct Feedback<'a> {
    bar: &'a indicatif::ProgressBar,
    log: &'a crate::report::Log,
}

fn sink_stage(
    rx: &mut Inlet<Scored>,
    summary: &mut Summary,
    feedback: Feedback<'_>,
    on_batch: &mut Option<BatchHook<'_>>,
    ack: &std::sync::mpsc::Sender<()>,
    mut sink: Box<dyn ScoredSink + '_>,
    mut features: Option<FeatureWriter>,
) -> Result<(), PipelineError> {
    let Feedback { bar, log } = feedback;
    while let Some(item) = rx.recv() {
        match item {
            Flow::GroupEnd(GroupEnd { path, group }) => sink.group_end(&path, group)?,
            Flow::Unreadable(unreadable) => {
                let rows = unreadable.rows;
                summary.rows_in += rows;
                summary.rows_rejected += rows;
                summary.files_unreadable += u64::from(unreadable.first_row.is_none());
                *summary
                    .reject_reasons
                    .entry(short_reason(&unreadable.reason))
                    .or_default() += rows.max(1);
                log.line(&unreadable.notice("rejected"));
                sink.unreadable(&unreadable)?;
                bar.inc(rows);
            }
            Flow::Batch(ScoredBatch {
                rows: batch,
                output,
                version,
            }) => {
                let rejected = batch.rejected();
                let reject_rows = rejected_rows_at(batch.first_row, &rejected);
                let RowBatch {
                    path, input, rows, ..
                } = batch;
                let (scores, trajectories, rows) = split_usable(rows);
                sink.scored(&SinkBatch {
                    path: &path,
                    input: &input,
                    output: &output,
                    rejected: &reject_rows,
                    scores: &scores,
                    trajectories: &trajectories,
                    features: &rows,
                })?;
                for r in &rejected {
                    *summary
                        .reject_reasons
                        .entry(short_reason(&r.1.reason))
                        .or_default() += 1;
                }
                if let (Some(writer), false) = (features.as_mut(), rows.is_empty()) {
                    writer.write(&rows)?;
                }
                let n = input.num_rows() as u64;
                summary.rows_in += n;
                summary.rows_rejected += rejected.len() as u64;
                summary.rows_scored += scores.len() as u64;
                summary.rows_selected +=
                    scores.iter().filter(|s| s.decision.selected).count() as u64;
                summary.rows_check_flagged +=
                    scores.iter().filter(|s| s.check.is_some()).count() as u64;
                summary.steps += scores.iter().map(|s| s.mean.len() as u64).sum::<u64>();
                summary.tokens += scores.iter().map(|s| s.tokens as u64).sum::<u64>();
                summary.tokens_computed +=
                    scores.iter().map(|s| s.tokens_computed as u64).sum::<u64>();
                summary.windowed_rows += scores.iter().filter(|s| s.windows > 1).count() as u64;
                summary.truncated_rows += scores.iter().filter(|s| s.truncated).count() as u64;
                *summary
                    .rows_by_model_version
                    .entry(version.clone())
                    .or_default() += scores.len() as u64;
                summary.model_version = version;
                bar.inc(n);
                bar.set_message(if summary.tokens_computed == summary.tokens {
                    format!("{} tokens", summary.tokens)
                } else {
                    format!(
                        "{} tokens, {} computed",
                        summary.tokens, summary.tokens_computed
                    )
                });
                if let Some(hook) = on_batch.as_mut() {
                    hook(&BatchView {
                        rows_in: n,
                        output: &output,
                        scores: &scores,
                        features: &rows,
                    })?;
                }
                let _ = ack.send(());
            }
        }
    }
    summary.parts = sink.finish()?;
    if let Some(w) = features {
        w.finish()?;
    }
    Ok(())
}
