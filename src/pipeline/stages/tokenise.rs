//! The tokenise stage: each batch's usable rows into model input; a batch the tokenizer refuses
//! becomes unreadable rows with the tokenizer's reason.

use crate::pipeline::rows::{RowBatch, RowItem};
use crate::pipeline::stage::{Inlet, Outlet, Stage};
use crate::pipeline::PipelineError;
use crate::source::flow::{Flow, Unreadable};
use crate::tokenise::Tokeniser;

/// Rows with their tokens: each usable row's `tokens` is set.
pub type Tokenised = Flow<RowBatch>;

pub struct Tokenise {
    pub tokeniser: Tokeniser,
    /// Whether each row's steps go through the exact arithmetic check.
    pub check: crate::score::check::CheckRule,
}

impl Stage for Tokenise {
    type In = RowItem;
    type Out = Tokenised;

    fn name(&self) -> &'static str {
        "tokenise"
    }

    fn run(self, input: Inlet<RowItem>, output: Outlet<Tokenised>) -> Result<(), PipelineError> {
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
    pub(crate) fn tokenise(&self, mut b: RowBatch) -> Tokenised {
        crate::failpoint::hit("tokenise");
        let refs: Vec<(&str, &[String])> = b
            .usable()
            .map(|u| (u.trajectory.problem.as_str(), u.trajectory.steps.as_slice()))
            .collect();
        match crate::score::tokenise_checked(&self.tokeniser, self.check, &refs) {
            Ok(tokenised) => {
                for (row, tokens) in b.usable_mut().zip(tokenised) {
                    row.tokens = Some(tokens);
                }
                Flow::Batch(b)
            }
            Err(reason) => Flow::Unreadable(Unreadable {
                path: b.path,
                first_row: Some(b.first_row),
                rows: b.input.num_rows() as u64,
                reason: format!("tokenizer failed: {reason}"),
            }),
        }
    }
}
