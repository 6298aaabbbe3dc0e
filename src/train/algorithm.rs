//! ActPRM's Algorithm 1 after a batch is scored and its rows chosen: ask for the labels of the
//! chosen rows (within the label budget), and take one optimiser step on the rows that came back
//! labelled. The streaming loop (`actprm active`, pipeline files) and the pool-based experiment
//! both call this, so the experiment measures the loop users run; they differ only in where the
//! scores come from and how rows are chosen (the experiment adds baselines).

use super::{LabelledBatch, StepReport, TrainError, Trainer};
use crate::formats::features::FeatureRow;
use crate::label::{LabelOutcome, LabelRequest, Labeller};

/// What happened to each row of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchLabels {
    /// The label each row was given (`None`: not chosen, over budget, or unlabelled).
    pub labels: Vec<Option<i32>>,
    /// Why, per row: `not selected`, `over budget`, `labelled by NAME`, `unlabelled: REASON`.
    pub notes: Vec<String>,
    pub over_budget: u64,
    pub unlabelled: u64,
    /// The optimiser step, when any row was labelled.
    pub step: Option<StepReport>,
    /// The rows that came back labelled, with their labels, in row order: what the step trained
    /// on (the loops keep them for `retrain`).
    pub rows: Vec<FeatureRow>,
}

impl BatchLabels {
    pub fn labelled(&self) -> u64 {
        self.labels.iter().filter(|l| l.is_some()).count() as u64
    }
}

/// Whether the scorer takes the trainer's heads after a batch moved it from `before` to `after`
/// optimiser steps: every `every` steps (ActPRM refreshes the scoring heads periodically, not per
/// batch), and never after a batch that trained nothing.
pub fn export_due(before: u64, after: u64, every: u64) -> bool {
    after > before && after.is_multiple_of(every.max(1))
}

/// Labels the `chosen` rows of `rows` (at most `budget_left` requests, in row order) through
/// `labeller`, then trains `trainer` one step on the labelled ones. `request(i)` builds row i's
/// request (the judge needs its text; the pool labeller its stored label).
pub fn label_and_train(
    trainer: &mut Trainer,
    labeller: &mut dyn Labeller,
    rows: &[FeatureRow],
    chosen: &[bool],
    budget_left: u64,
    request: impl Fn(usize) -> LabelRequest,
) -> Result<BatchLabels, TrainError> {
    let n = rows.len();
    let mut out = BatchLabels {
        labels: vec![None; n],
        notes: vec![String::from("not selected"); n],
        ..BatchLabels::default()
    };
    let mut requests = Vec::new();
    let mut request_rows = Vec::new();
    for i in (0..n).filter(|&i| chosen[i]) {
        if (requests.len() as u64) < budget_left {
            requests.push(request(i));
            request_rows.push(i);
        } else {
            out.notes[i] = "over budget".into();
            out.over_budget += 1;
        }
    }
    let outcomes = if requests.is_empty() {
        Vec::new()
    } else {
        labeller.label(&requests)
    };
    for (&i, outcome) in request_rows.iter().zip(&outcomes) {
        match outcome {
            LabelOutcome::Labelled { first_error } => {
                out.labels[i] = Some(*first_error);
                out.notes[i] = format!("labelled by {}", labeller.name());
            }
            LabelOutcome::Unlabelled { reason, .. } => {
                out.notes[i] = format!("unlabelled: {reason}");
                out.unlabelled += 1;
            }
        }
    }
    out.rows = (0..n)
        .filter(|&i| out.labels[i].is_some())
        .map(|i| FeatureRow {
            label: out.labels[i],
            ..rows[i].clone()
        })
        .collect();
    if !out.rows.is_empty() {
        let batch = LabelledBatch::from_rows(&out.rows, trainer.heads.dim)?;
        out.step = Some(trainer.train_step(&batch)?);
    }
    Ok(out)
}

/// Fresh heads from `start` (anchored to it) trained on every row of `rows` for `steps` steps of
/// `train.batch_size`, warm-up a tenth, then linear decay: the same training for any labelled
/// set, however many steps collecting it took. The pool experiment's equal-training view and
/// `actprm active --retrain-steps` both end this way.
pub fn retrain(
    rows: &[FeatureRow],
    start: &crate::model::HeadsWeights,
    train: super::TrainConfig,
    steps: u64,
) -> Result<Trainer, TrainError> {
    let train = super::TrainConfig {
        total_steps: steps,
        warmup_steps: steps / 10,
        ..train
    };
    let mut trainer = Trainer::new(start, start, train, tch::Device::Cpu)?;
    let labelled = rows.iter().filter(|r| r.label.is_some()).count();
    let per_epoch = labelled.div_ceil(train.batch_size.max(1)).max(1) as u64;
    trainer.fit(rows, steps.div_ceil(per_epoch), Some(steps), |_| {})?;
    Ok(trainer)
}
