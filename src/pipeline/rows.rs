//! One row batch that carries itself (issue 30 item 3): the Arrow batch as read plus, for each of
//! its rows, what became of it: rejected with its reason, or usable with its problem and steps,
//! then its tokens and its scores as the stages fill them in. Nothing is kept in parallel vectors
//! that must line up by position; a stage finds a row's state on the row.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};

use crate::formats::features::FeatureRow;
use crate::score::RowScore;
use crate::source::flow::{Flow, SourceBatch};
use crate::source::{RowReject, Trajectory};
use crate::tokenise::TokenisedTrajectory;

/// What the read stage sends on: a batch of rows, or a marker.
pub type RowItem = Flow<RowBatch>;

pub struct RowBatch {
    pub path: Arc<PathBuf>,
    /// Row number (0-based, within the file) of the batch's first row.
    pub first_row: u64,
    /// The batch as read.
    pub input: RecordBatch,
    /// One per row of `input`, in order.
    pub rows: Vec<Row>,
}

/// What became of one row.
pub enum Row {
    /// Not usable: a reader's reason (a missing problem, an empty step, ...).
    Rejected(RowReject),
    Usable(Box<Usable>),
}

/// A usable row and what the stages made of it so far.
pub struct Usable {
    pub trajectory: Trajectory,
    /// Its model input (the tokenise stage's; the score stage takes it).
    pub tokens: Option<TokenisedTrajectory>,
    /// Its scores (the score stage's).
    pub score: Option<RowScore>,
    /// Its step features, when the run asks for them (the score stage's).
    pub features: Option<FeatureRow>,
}

impl From<SourceBatch> for RowBatch {
    fn from(b: SourceBatch) -> Self {
        let rows = b
            .rows
            .into_iter()
            .map(|row| match row {
                Ok(trajectory) => Row::Usable(Box::new(Usable {
                    trajectory,
                    tokens: None,
                    score: None,
                    features: None,
                })),
                Err(reject) => Row::Rejected(reject),
            })
            .collect();
        Self {
            path: b.path,
            first_row: b.first_row,
            input: b.batch,
            rows,
        }
    }
}

impl RowBatch {
    /// The usable rows, in order.
    pub fn usable(&self) -> impl Iterator<Item = &Usable> {
        self.rows.iter().filter_map(|row| match row {
            Row::Usable(u) => Some(u.as_ref()),
            Row::Rejected(_) => None,
        })
    }

    pub fn usable_mut(&mut self) -> impl Iterator<Item = &mut Usable> {
        self.rows.iter_mut().filter_map(|row| match row {
            Row::Usable(u) => Some(u.as_mut()),
            Row::Rejected(_) => None,
        })
    }

    /// Positions of the usable rows in `input`, ascending.
    pub fn usable_positions(&self) -> Vec<usize> {
        self.rows
            .iter()
            .enumerate()
            .filter(|(_, row)| matches!(row, Row::Usable(_)))
            .map(|(i, _)| i)
            .collect()
    }

    /// The rejected rows: position in `input` and reason.
    pub fn rejected(&self) -> Vec<(usize, RowReject)> {
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| match row {
                Row::Rejected(r) => Some((i, r.clone())),
                Row::Usable(_) => None,
            })
            .collect()
    }

    /// `input`'s usable rows, in order.
    pub fn usable_input(&self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mask = BooleanArray::from(
            self.rows
                .iter()
                .map(|row| matches!(row, Row::Usable(_)))
                .collect::<Vec<_>>(),
        );
        arrow::compute::filter_record_batch(&self.input, &mask)
    }
}
