//! The scoring dataflow: source -> tokenise -> score -> sink, each stage on its own blocking
//! task, joined by bounded channels so reading, tokenisation and inference overlap while memory
//! stays flat (backpressure, not buffering).

mod job;
mod sink;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{BooleanArray, RecordBatch};
use tokio::sync::mpsc;

use super::refresh::{self, HeadsReceiver, ModelWatcher};
use super::{PipelineError, Summary};
use crate::formats::features::{FeatureRow, FeatureWriter};
use crate::label::LabelColumn;
use crate::model::LoadedModel;
use crate::score::output::scored_batch;
use crate::score::{RowScore, StepScorer};
use crate::sink::rejects::RejectedRow;
use crate::sink::{write_atomic, PartWriter, RejectSink};
use crate::source::flow::{Flow, GroupEnd, SourceBatch, SourceItem, Unreadable};
use crate::source::parquet::{plan, planned_rows, read_file, PlannedFile};
use crate::source::{discover_inputs, RowReject, Trajectory};
use crate::tokenise::{TokenisedTrajectory, Tokeniser};
pub use job::{ScoreExtras, ScoreJob, ScoreSettings, Scorer};
pub use sink::ScoredSink;
use sink::{short_reason, PartsSink};

struct TokenisedBatch {
    path: Arc<PathBuf>,
    first_row: u64,
    batch: RecordBatch,
    valid: Vec<usize>,
    rejected: Vec<(usize, RowReject)>,
    tokenised: Vec<TokenisedTrajectory>,
}

struct ScoredBatch {
    path: Arc<PathBuf>,
    first_row: u64,
    input: RecordBatch,
    output: RecordBatch,
    rejected: Vec<(usize, RowReject)>,
    scores: Vec<RowScore>,
    version: String,
    features: Vec<FeatureRow>,
}

type Scored = Flow<ScoredBatch>;
type Tokenised = Flow<TokenisedBatch>;

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
    crate::sink::prepare_output(&job.output, job.overwrite)?;
    let files = discover_inputs(&job.inputs, "parquet")?;
    let planned = plan(&files, &job.columns)?;
    let sink = PartsSink {
        output: job.output.clone(),
        parts: PartWriter::new(&job.output, "part", job.rows_per_part)?,
        rejects: RejectSink::new(&job.output),
    };
    let summary = run_scoring(job, planned, hooks, Box::new(sink))?;
    let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    write_atomic(&job.output.join("summary.json"), &json)?;
    Ok(summary)
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
    let model = LoadedModel::open(job.model.as_deref())?;
    let tokeniser = Tokeniser::for_model(&model)?;
    let scorer = StepScorer::open(&model, &job.runtime, job.score)?;
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
    let refresh = refresh.or(job.watch_model.as_ref().map(|_| watch_rx));

    let total_rows: u64 = planned.iter().map(planned_rows).sum();
    let expected_rows = total_rows.saturating_sub(job.skip_rows);
    let bar = super::progress::rows_bar(total_rows, job.progress);
    let runtime = crate::runtime::start("actprm-score", Some(2))
        .map_err(|e| PipelineError::Stage(format!("starting the runtime: {e}")))?;
    let result = runtime.block_on(async {
        let (src_tx, src_rx) = mpsc::channel::<SourceItem>(4);
        let (tok_tx, tok_rx) = mpsc::channel::<Tokenised>(4);
        let (scored_tx, mut scored_rx) = mpsc::channel::<Scored>(2);
        let batch_rows = job.batch_rows;
        let skip_rows = job.skip_rows;
        let source =
            tokio::task::spawn_blocking(move || read_stage(planned, batch_rows, skip_rows, src_tx));
        let tokenise =
            tokio::task::spawn_blocking(move || tokenise_stage(tokeniser, src_rx, tok_tx));
        let wants = Wants {
            features: job.features.is_some() || job.features_to_hooks,
            head_probs: job.with_head_probs,
            log: job.log.clone(),
        };
        let score = tokio::task::spawn_blocking(move || {
            score_stage(scorer, tok_rx, scored_tx, refresh, wants, ack_rx)
        });
        let sink_result = sink_stage(
            &mut scored_rx,
            &mut summary,
            Feedback {
                bar: &bar,
                log: &job.log,
            },
            &mut on_batch,
            &ack_tx,
            sink,
            features,
        )
        .await;
        drop(ack_tx);
        drop(scored_rx);
        // every stage's failure fails the run, with its own message: a reader or tokeniser that
        // died early looks like a short input to the stages after it
        let score_result = joined("score", score.await);
        let tokenise_result = joined("tokenise", tokenise.await);
        let source_result = joined("read", source.await);
        source_result?;
        tokenise_result?;
        score_result??;
        sink_result
    });
    bar.finish_and_clear();
    result?;
    // the run must account for every row the file footers say exists
    if summary.rows_in != expected_rows {
        return Err(PipelineError::Stage(format!(
            "the inputs hold {expected_rows} rows (file footers) but the run accounted for {}: \
             a stage stopped early",
            summary.rows_in
        )));
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.rows_per_second = summary.rows_scored as f64 / summary.seconds.max(1e-9);
    summary.tokens_per_second = summary.tokens as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}

fn read_stage(
    planned: Vec<PlannedFile>,
    batch_rows: usize,
    mut skip: u64,
    tx: mpsc::Sender<SourceItem>,
) {
    for file in &planned {
        let mut open = true;
        read_file(file, batch_rows, &mut |item| {
            let item = match item {
                Flow::Batch(SourceBatch {
                    path,
                    first_row,
                    batch,
                    mut rows,
                }) if skip > 0 => {
                    let n = batch.num_rows() as u64;
                    if n <= skip {
                        skip -= n;
                        return true;
                    }
                    let cut = skip as usize;
                    skip = 0;
                    let rest = rows.split_off(cut);
                    Flow::Batch(SourceBatch {
                        path,
                        first_row: first_row + cut as u64,
                        batch: batch.slice(cut, batch.num_rows() - cut),
                        rows: rest,
                    })
                }
                // an unreadable group is skipped whole, as it was counted whole; a resume point
                // inside one cannot come from a commit and surfaces as a row-count mismatch
                Flow::Unreadable(u) if skip > 0 && u.rows <= skip => {
                    skip -= u.rows;
                    return true;
                }
                item @ Flow::Unreadable(_) => {
                    skip = 0;
                    item
                }
                other => other,
            };
            crate::failpoint::hit("read");
            open = tx.blocking_send(item).is_ok();
            open
        });
        if !open {
            return;
        }
    }
}

/// A stage task's result: its own error, or its panic as an error naming the stage.
pub(crate) fn joined<T>(
    stage: &str,
    result: Result<T, tokio::task::JoinError>,
) -> Result<T, PipelineError> {
    result.map_err(|e| {
        let message = if e.is_panic() {
            let payload = e.into_panic();
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into())
        } else {
            e.to_string()
        };
        PipelineError::Crashed {
            stage: stage.to_string(),
            message,
        }
    })
}

fn tokenise_stage(
    tokeniser: Tokeniser,
    mut rx: mpsc::Receiver<SourceItem>,
    tx: mpsc::Sender<Tokenised>,
) {
    while let Some(item) = rx.blocking_recv() {
        let out = match item {
            Flow::Unreadable(u) => Flow::Unreadable(u),
            Flow::GroupEnd(g) => Flow::GroupEnd(g),
            Flow::Batch(SourceBatch {
                path,
                first_row,
                batch,
                rows,
            }) => {
                let mut valid = Vec::new();
                let mut rejected = Vec::new();
                let mut trajectories: Vec<Trajectory> = Vec::new();
                for (i, row) in rows.into_iter().enumerate() {
                    match row {
                        Ok(t) => {
                            valid.push(i);
                            trajectories.push(t);
                        }
                        Err(r) => rejected.push((i, r)),
                    }
                }
                crate::failpoint::hit("tokenise");
                let refs: Vec<(&str, &[String])> = trajectories
                    .iter()
                    .map(|t| (t.problem.as_str(), t.steps.as_slice()))
                    .collect();
                match tokeniser.encode(&refs) {
                    Ok(tokenised) => Flow::Batch(TokenisedBatch {
                        path,
                        first_row,
                        batch,
                        valid,
                        rejected,
                        tokenised,
                    }),
                    Err(reason) => Flow::Unreadable(Unreadable {
                        path,
                        first_row: Some(first_row),
                        rows: batch.num_rows() as u64,
                        reason: format!("tokenizer failed: {reason}"),
                    }),
                }
            }
        };
        if tx.blocking_send(out).is_err() {
            return;
        }
    }
}

/// What the score stage computes beyond the scores, and where its notices go.
struct Wants {
    features: bool,
    head_probs: bool,
    log: crate::report::Log,
}

/// The sink stage's progress bar and notices.
struct Feedback<'a> {
    bar: &'a indicatif::ProgressBar,
    log: &'a crate::report::Log,
}

fn score_stage(
    mut scorer: StepScorer,
    mut rx: mpsc::Receiver<Tokenised>,
    tx: mpsc::Sender<Scored>,
    mut refresh: Option<HeadsReceiver>,
    wants: Wants,
    ack: Option<std::sync::mpsc::Receiver<()>>,
) -> Result<(), PipelineError> {
    let Wants {
        features: want_features,
        head_probs: with_probs,
        log,
    } = wants;
    while let Some(item) = rx.blocking_recv() {
        let out = match item {
            Flow::Unreadable(u) => Flow::Unreadable(u),
            Flow::GroupEnd(g) => Flow::GroupEnd(g),
            Flow::Batch(b) => {
                // Between batches only: one batch is always scored by one version.
                if let Some(rx) = refresh.as_mut() {
                    if rx.has_changed().unwrap_or(false) {
                        if let Some(update) = rx.borrow_and_update().clone() {
                            if let Err(e) =
                                scorer.heads.replace(&update.bytes, update.version.clone())
                            {
                                log.line(&format!(
                                    "keeping model {}: refreshed heads {} were refused: {e}",
                                    scorer.heads.version(),
                                    update.version
                                ));
                            }
                        }
                    }
                }
                let (scores, features) = scorer.score(&b.tokenised)?;
                let mask = BooleanArray::from(
                    (0..b.batch.num_rows())
                        .map(|i| b.valid.binary_search(&i).is_ok())
                        .collect::<Vec<_>>(),
                );
                let input = arrow::compute::filter_record_batch(&b.batch, &mask)
                    .map_err(PipelineError::from)?;
                let version = scorer.heads.version().to_string();
                let versions = vec![version.clone(); scores.len()];
                let output = scored_batch(
                    &input,
                    &scores,
                    &versions,
                    scorer.heads.ensemble_size(),
                    with_probs,
                );
                let features = if want_features {
                    feature_rows(
                        &b,
                        &input,
                        &scores,
                        &features,
                        scorer.backbone.hidden_size(),
                    )?
                } else {
                    Vec::new()
                };
                Flow::Batch(ScoredBatch {
                    path: b.path,
                    first_row: b.first_row,
                    input: b.batch,
                    output,
                    rejected: b.rejected,
                    scores,
                    version,
                    features,
                })
            }
        };
        let is_batch = matches!(out, Flow::Batch(_));
        if tx.blocking_send(out).is_err() {
            break;
        }
        if let (Some(ack), true) = (&ack, is_batch) {
            if ack.recv().is_err() {
                break;
            }
        }
    }
    Ok(())
}

fn feature_rows(
    b: &TokenisedBatch,
    input: &RecordBatch,
    scores: &[RowScore],
    features: &[f32],
    dim: usize,
) -> Result<Vec<FeatureRow>, PipelineError> {
    let steps: Vec<usize> = b.tokenised.iter().map(|t| t.steps).collect();
    let labels = match LabelColumn::detect(&input.schema()) {
        Some(col) => {
            crate::label::first_error_labels(input, &col, &steps).map_err(PipelineError::Stage)?
        }
        None => vec![None; steps.len()],
    };
    let mut cursor = 0;
    Ok(scores
        .iter()
        .zip(&b.valid)
        .zip(labels)
        .map(|((s, &row), label)| {
            let n = s.mean.len();
            let f = features[cursor * dim..(cursor + n) * dim].to_vec();
            cursor += n;
            FeatureRow {
                source_file: b.path.display().to_string(),
                source_row: b.first_row + row as u64,
                label,
                features: f,
                steps: n,
            }
        })
        .collect())
}

async fn sink_stage(
    rx: &mut mpsc::Receiver<Scored>,
    summary: &mut Summary,
    feedback: Feedback<'_>,
    on_batch: &mut Option<BatchHook<'_>>,
    ack: &std::sync::mpsc::Sender<()>,
    mut sink: Box<dyn ScoredSink + '_>,
    mut features: Option<FeatureWriter>,
) -> Result<(), PipelineError> {
    let Feedback { bar, log } = feedback;
    while let Some(item) = rx.recv().await {
        match item {
            Flow::GroupEnd(GroupEnd { path, group }) => sink.group_end(&path, group)?,
            Flow::Unreadable(Unreadable {
                path,
                first_row,
                rows,
                reason,
            }) => {
                summary.rows_in += rows;
                summary.rows_rejected += rows;
                if first_row.is_none() {
                    summary.files_unreadable += 1;
                }
                *summary
                    .reject_reasons
                    .entry(short_reason(&reason))
                    .or_default() += rows.max(1);
                log.line(&format!(
                    "{}: {reason} ({rows} rows rejected)",
                    path.display()
                ));
                sink.unreadable(&path, first_row, rows, &reason)?;
                bar.inc(rows);
            }
            Flow::Batch(ScoredBatch {
                path,
                first_row,
                input,
                output,
                rejected,
                scores,
                version,
                features: rows,
            }) => {
                let reject_rows: Vec<RejectedRow> = rejected
                    .iter()
                    .map(|(i, r)| RejectedRow {
                        batch_row: *i,
                        file_row: first_row + *i as u64,
                        column: r.column.clone(),
                        reason: r.reason.clone(),
                    })
                    .collect();
                sink.scored(&path, first_row, &input, &output, &reject_rows, &scores)?;
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
                summary.steps += scores.iter().map(|s| s.mean.len() as u64).sum::<u64>();
                summary.tokens += scores.iter().map(|s| s.tokens as u64).sum::<u64>();
                summary.windowed_rows += scores.iter().filter(|s| s.windows > 1).count() as u64;
                summary.truncated_rows += scores.iter().filter(|s| s.truncated).count() as u64;
                *summary
                    .rows_by_model_version
                    .entry(version.clone())
                    .or_default() += scores.len() as u64;
                summary.model_version = version;
                bar.inc(n);
                bar.set_message(format!("{} tokens", summary.tokens));
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
