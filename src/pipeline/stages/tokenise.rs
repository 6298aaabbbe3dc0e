//! The tokenise stage: each batch's usable rows into model input; a batch the tokenizer refuses
//! becomes unreadable rows with the tokenizer's reason.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::pipeline::stage::{Inlet, Outlet, Stage};
use crate::pipeline::PipelineError;
use crate::source::flow::{Flow, SourceBatch, SourceItem, Unreadable};
use crate::source::{RowReject, Trajectory};
use crate::tokenise::{TokenisedTrajectory, Tokeniser};

pub struct TokenisedBatch {
    pub path: Arc<PathBuf>,
    pub first_row: u64,
    pub batch: RecordBatch,
    /// Batch rows that were usable, ascending; `tokenised[i]` is row `valid[i]`.
    pub valid: Vec<usize>,
    pub rejected: Vec<(usize, RowReject)>,
    pub tokenised: Vec<TokenisedTrajectory>,
    /// The usable rows' problem and steps, as `tokenised` (a judge after the scorer reads them).
    pub trajectories: Vec<Trajectory>,
}

pub type Tokenised = Flow<TokenisedBatch>;

pub struct Tokenise {
    pub tokeniser: Tokeniser,
    /// Whether each row's steps go through the exact arithmetic check.
    pub check: crate::score::check::CheckRule,
}

impl Stage for Tokenise {
    type In = SourceItem;
    type Out = Tokenised;

    fn name(&self) -> &'static str {
        "tokenise"
    }

    fn run(self, input: Inlet<SourceItem>, output: Outlet<Tokenised>) -> Result<(), PipelineError> {
        for item in input {
            let out = match item {
                Flow::Unreadable(u) => Flow::Unreadable(u),
                Flow::GroupEnd(g) => Flow::GroupEnd(g),
                Flow::Batch(b) => self.tokenise(b),
            };
            if !output.send(out) {
                break;
            }
        }
        Ok(())
    }
}

impl Tokenise {
    /// One batch's usable rows tokenised (the in-process scorer calls this too).
    pub(crate) fn tokenise(&self, b: SourceBatch) -> Tokenised {
        let SourceBatch {
            path,
            first_row,
            batch,
            rows,
        } = b;
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
        match crate::score::tokenise_checked(&self.tokeniser, self.check, &refs) {
            Ok(tokenised) => Flow::Batch(TokenisedBatch {
                path,
                first_row,
                batch,
                valid,
                rejected,
                tokenised,
                trajectories,
            }),
            Err(reason) => Flow::Unreadable(Unreadable {
                path,
                first_row: Some(first_row),
                rows: batch.num_rows() as u64,
                reason: format!("tokenizer failed: {reason}"),
            }),
        }
    }
}
