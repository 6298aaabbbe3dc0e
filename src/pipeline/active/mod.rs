//! The active loop (ActPRM's Algorithm 1), streaming: the pool flows through the scorer; after
//! each scored batch the uncertain trajectories are labelled (pool column or judge, through the
//! `Labeller` interface), the trainer takes a step on them alone, and every few steps the new
//! heads are exported and swapped into the running scorer. Every decision is recorded; the loop
//! checkpoints so a stopped run resumes where it stopped.
//!
//! Output folder: `model/` (the final heads, anchors, checkpoint), `decisions/decisions-K.parquet`
//! (one row per scored trajectory: selected, why, model version, label, whether the label was
//! used), `scored/part-K.parquet` (the scored rows), `rejects/` (rows that could not be scored),
//! `eval.jsonl` (development F1 every N labels), `checkpoints/ckpt-K/` (the trainer and the heads
//! the scorer runs), `loop-state.json`, `summary.json`.
//!
//! Crash safety: everything a checkpoint writes (trainer, parts K, the scorer's heads) is complete
//! and fsynced before `loop-state.json` names it; `loop-state.json` is the one commit point. A resume loads
//! exactly what it names, checks the trainer's step against it, removes anything newer, and skips
//! the rows it counts (scored, rejected and unreadable alike): the resumed run makes the same
//! decisions as an uninterrupted one.

// The loop itself trains (libtorch); its settings, state and summary are plain data, so a build
// without the trainer still parses and validates them and refuses only to run.
#[cfg(feature = "train")]
mod decisions;
#[cfg(feature = "train")]
mod fingerprint;
mod job;
#[cfg(feature = "train")]
mod parts;
#[cfg(feature = "train")]
mod run;

use serde::{Deserialize, Serialize};

use crate::select::RateQuota;
pub use job::{ActiveJob, ActiveSettings, ActiveSummary};
#[cfg(feature = "train")]
pub use run::run_active;

/// `loop-state.json`: the loop's one commit point.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoopState {
    /// Pool rows done: scored, rejected and unreadable, in input order.
    pub rows_done: u64,
    pub labels_used: u64,
    /// `--keep-rate`, spent over the run so far.
    #[serde(default)]
    pub keep_quota: RateQuota,
    /// The trainer's optimiser step in `checkpoint` (checked on resume).
    pub steps: u64,
    /// Parts 0..decision_parts of decisions/, scored/ and rejects/ are committed.
    pub decision_parts: usize,
    /// The checkpoint folder (relative): trainer, heads, and `scorer-heads.onnx`.
    pub checkpoint: String,
    /// Version of the trainer's heads at the checkpoint.
    pub model_version: String,
    /// Version of the heads the scorer runs (the last published; may lag the trainer's).
    pub scorer_version: String,
    /// Every data file the commits wrote, with its rows, checked on resume (absent in the
    /// states of runs started before it: nothing to check; and in the run's summary).
    #[serde(
        default,
        skip_serializing_if = "crate::sink::commit::Promised::is_empty"
    )]
    pub committed: crate::sink::commit::Promised,
}

/// Without the trainer the loop cannot run: says so, before anything is read or written.
#[cfg(not(feature = "train"))]
pub fn run_active(_job: &ActiveJob) -> Result<ActiveSummary, super::PipelineError> {
    Err(crate::train::TrainError::NotBuilt("active").into())
}
