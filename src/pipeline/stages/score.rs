//! The score stage: every step of every tokenised row through the backbone and the heads. New
//! heads (from an in-process trainer or a watched model folder) are taken between batches only,
//! so one batch is always scored by one version; in lockstep it waits for the sink to have seen
//! each batch before scoring the next (ActPRM's Algorithm 1 exactly, reproducible run to run).

use arrow::array::RecordBatch;

use super::tokenise::Tokenised;
use crate::formats::features::FeatureRow;
use crate::label::LabelColumn;
use crate::pipeline::refresh::HeadsReceiver;
use crate::pipeline::rows::RowBatch;
use crate::pipeline::stage::{Inlet, Outlet, Stage};
use crate::pipeline::PipelineError;
use crate::score::output::scored_batch;
use crate::score::{RowScore, StepScorer};
use crate::source::flow::Flow;

pub struct ScoredBatch {
    /// The rows: each usable one with its score (and its step features, when asked for).
    pub rows: RowBatch,
    /// The usable input rows plus the score columns, in row order.
    pub output: RecordBatch,
    /// The heads version that scored this batch.
    pub version: String,
}

pub type Scored = Flow<ScoredBatch>;

pub struct ScoreSteps {
    pub scorer: StepScorer,
    pub refresh: Option<HeadsReceiver>,
    /// Per-step features in each batch (a feature file, or a trainer's hook).
    pub features: bool,
    /// Whether the tokenise stage ran the arithmetic check, so the features carry its verdicts.
    pub checked: bool,
    /// Each head's probability as an output column.
    pub head_probs: bool,
    pub log: crate::report::Log,
    /// In lockstep: one message from the sink per batch it has seen.
    pub acks: Option<std::sync::mpsc::Receiver<()>>,
}

impl Stage for ScoreSteps {
    type In = Tokenised;
    type Out = Scored;

    fn name(&self) -> &'static str {
        "score"
    }

    fn run(mut self, input: Inlet<Tokenised>, output: Outlet<Scored>) -> Result<(), PipelineError> {
        let window = self.share_window();
        // read batches scored together (`--share-window`; 0: each on its own), sent on in order
        let mut pending: Vec<RowBatch> = Vec::new();
        for item in input {
            let marker = match item {
                Flow::Batch(b) => {
                    pending.push(b);
                    let rows: usize = pending.iter().map(|b| b.usable().count()).sum();
                    if (window == 0 || rows >= window)
                        && !self.send_window(&mut pending, &output)?
                    {
                        return Ok(());
                    }
                    continue;
                }
                Flow::Unreadable(u) => Flow::Unreadable(u),
                Flow::GroupEnd(g) => Flow::GroupEnd(g),
            };
            // a marker ends the window: its rows come before it
            if !self.send_window(&mut pending, &output)? || !self.send(marker, &output) {
                return Ok(());
            }
        }
        self.send_window(&mut pending, &output)?;
        Ok(())
    }
}

impl ScoreSteps {
    /// Between batches only: one batch is always scored by one version.
    fn take_new_heads(&mut self) {
        let Some(rx) = self.refresh.as_mut() else {
            return;
        };
        if !rx.has_changed().unwrap_or(false) {
            return;
        }
        if let Some(update) = rx.borrow_and_update().clone() {
            let heads = &mut self.scorer.heads;
            if let Err(e) = heads.replace(&update.bytes, update.version.clone()) {
                self.log.line(&format!(
                    "keeping model {}: refreshed heads {} were refused: {e}",
                    heads.version(),
                    update.version
                ));
            }
        }
    }

    /// Rows scored together (0: each read batch on its own): their shared prefixes are computed
    /// once, or, on the plain path, their windows are sorted by length across the read batches
    /// (less padding). Never while heads may change between batches (the active loop).
    fn share_window(&self) -> usize {
        if self.refresh.is_none() && self.acks.is_none() {
            self.scorer.options.batching.share_window
        } else {
            0
        }
    }

    /// Passes `item` on; `false` once the consumer has gone (or a lockstep sink stopped).
    fn send(&self, item: Scored, output: &Outlet<Scored>) -> bool {
        let is_batch = matches!(item, Flow::Batch(_));
        if !output.send(item) {
            return false;
        }
        match (&self.acks, is_batch) {
            (Some(acks), true) => acks.recv().is_ok(),
            _ => true,
        }
    }

    /// Scores the `pending` batches as one set of rows and sends each on, in order. One version
    /// of the heads scores them all: new heads are taken before, never between.
    fn send_window(
        &mut self,
        pending: &mut Vec<RowBatch>,
        output: &Outlet<Scored>,
    ) -> Result<bool, PipelineError> {
        if pending.is_empty() {
            return Ok(true);
        }
        self.take_new_heads();
        let mut batches = std::mem::take(pending);
        let counts: Vec<usize> = batches.iter().map(|b| b.usable().count()).collect();
        let rows = take_tokens(&mut batches);
        let (mut scores, mut features) = self.scorer.score(&rows)?;
        // each batch's scores and step features, split off from the end (a window of one batch
        // keeps its vectors whole)
        let dim = self.scorer.backbone.hidden_size();
        let mut own = Vec::with_capacity(batches.len());
        for &n in counts.iter().rev() {
            let own_scores = scores.split_off(scores.len() - n);
            let steps: usize = own_scores.iter().map(|s| s.mean.len()).sum();
            let own_features = features.split_off(features.len() - steps * dim);
            own.push((own_scores, own_features));
        }
        for (b, (scores, features)) in batches.into_iter().zip(own.into_iter().rev()) {
            let scored = self.scored(b, scores, features)?;
            if !self.send(Flow::Batch(scored), output) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One tokenised batch scored (the in-process scorer calls this too).
    pub(crate) fn score(&mut self, b: RowBatch) -> Result<ScoredBatch, PipelineError> {
        let mut batches = vec![b];
        let (scores, features) = self.scorer.score(&take_tokens(&mut batches))?;
        let b = batches.pop().expect("one batch");
        self.scored(b, scores, features)
    }

    /// A batch with its usable rows' scores and step features set.
    fn scored(
        &self,
        mut b: RowBatch,
        scores: Vec<RowScore>,
        features: Vec<f32>,
    ) -> Result<ScoredBatch, PipelineError> {
        let input = b.usable_input()?;
        let heads = &self.scorer.heads;
        let version = heads.version().to_string();
        let versions = vec![version.clone(); scores.len()];
        let output = scored_batch(
            &input,
            &scores,
            &versions,
            heads.ensemble_size(),
            self.head_probs,
        );
        let mut features = if self.features {
            feature_rows(
                &b,
                &input,
                &scores,
                &features,
                self.scorer.backbone.hidden_size(),
                self.checked,
            )?
        } else {
            Vec::new()
        }
        .into_iter();
        for (row, score) in b.usable_mut().zip(scores) {
            row.score = Some(score);
            row.features = features.next();
        }
        Ok(ScoredBatch {
            rows: b,
            output,
            version,
        })
    }
}

/// The usable rows' tokens of `batches`, in order, taken off the rows (the scorer is their last
/// reader).
fn take_tokens(batches: &mut [RowBatch]) -> Vec<crate::tokenise::TokenisedTrajectory> {
    batches
        .iter_mut()
        .flat_map(|b| b.usable_mut())
        .map(|row| {
            row.tokens
                .take()
                .expect("the tokenise stage tokenised every usable row")
        })
        .collect()
}

fn feature_rows(
    b: &RowBatch,
    input: &RecordBatch,
    scores: &[RowScore],
    features: &[f32],
    dim: usize,
    checked: bool,
) -> Result<Vec<FeatureRow>, PipelineError> {
    let steps: Vec<usize> = scores.iter().map(|s| s.mean.len()).collect();
    let labels = match LabelColumn::detect(&input.schema()) {
        Some(col) => crate::label::first_error_labels(input, &col, &steps)?,
        None => vec![None; steps.len()],
    };
    let mut cursor = 0;
    Ok(scores
        .iter()
        .zip(b.usable_positions())
        .zip(labels)
        .map(|((s, row), label)| {
            let n = s.mean.len();
            let f = features[cursor * dim..(cursor + n) * dim].to_vec();
            cursor += n;
            FeatureRow {
                source_file: b.path.display().to_string(),
                source_row: b.first_row + row as u64,
                label,
                features: f,
                steps: n,
                check: checked.then(|| s.check.map_or(-1, |c| c as i32)),
            }
        })
        .collect())
}
