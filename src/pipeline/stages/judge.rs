//! The judge stage (`actprm label`, and pipeline files with a `label` transform in judge mode):
//! the usable, selected rows of each batch go to the judge, several batches at a time so every
//! request slot stays busy across batch boundaries, and come out in input order with one
//! outcome per row. It reads rows as read (`RowItem`), or straight from a score stage
//! (`Scored`: every row with its scores, the scorer's rejects failed with their reason), so
//! source -> score -> judge is one stream.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use futures::StreamExt;
use tokio::runtime::Handle;

use super::score::{Scored, ScoredBatch};
use crate::label::judge::{JudgeClient, JudgeOutcome, JudgeStatus};
use crate::label::LabelRequest;
use crate::pipeline::rows::{Row, RowBatch, RowItem};
use crate::pipeline::stage::{Inlet, Outlet, Stage};
use crate::pipeline::PipelineError;
use crate::score::output::over_every_row;
use crate::source::flow::Flow;

/// A judged batch: its rows, one outcome per row, and each usable row's problem and steps.
pub struct JudgedBatch {
    pub batch: RecordBatch,
    pub outcomes: Vec<JudgeOutcome>,
    pub texts: Vec<Option<(String, Vec<String>)>>,
}

pub type Judged = Flow<JudgedBatch>;

pub struct JudgeRows<T> {
    pub client: Arc<JudgeClient>,
    /// The run's runtime, which drives the requests.
    pub runtime: Handle,
    /// Batches judged at once.
    pub depth: usize,
    /// Send every row, ignoring a `selected` column.
    pub every_row: bool,
    input: std::marker::PhantomData<fn(T)>,
}

impl<T> JudgeRows<T> {
    pub fn new(client: Arc<JudgeClient>, runtime: Handle, depth: usize, every_row: bool) -> Self {
        Self {
            client,
            runtime,
            depth,
            every_row,
            input: std::marker::PhantomData,
        }
    }
}

/// What the judge stage reads: rows (`input` is what the output writes of each), and which of
/// them may go to the judge (`None`: as the `selected` column says).
pub struct ToJudge {
    pub rows: RowBatch,
    pub chosen: Option<Vec<bool>>,
}

/// An item the judge stage can read.
pub trait JudgeInput: Send + Sized + 'static {
    fn to_judge(self) -> Result<Flow<ToJudge>, PipelineError>;
}

impl JudgeInput for RowItem {
    fn to_judge(self) -> Result<Flow<ToJudge>, PipelineError> {
        Ok(match self {
            Flow::Batch(rows) => Flow::Batch(ToJudge { rows, chosen: None }),
            Flow::Unreadable(u) => Flow::Unreadable(u),
            Flow::GroupEnd(g) => Flow::GroupEnd(g),
        })
    }
}

impl JudgeInput for Scored {
    /// Every row as read with its scores; the selected ones go to the judge, and the rows the
    /// scorer rejected fail with its reason.
    fn to_judge(self) -> Result<Flow<ToJudge>, PipelineError> {
        let ScoredBatch {
            rows: b, output, ..
        } = match self {
            Flow::Batch(b) => b,
            Flow::Unreadable(u) => return Ok(Flow::Unreadable(u)),
            Flow::GroupEnd(g) => return Ok(Flow::GroupEnd(g)),
        };
        // every row with its scores (null on the rejected ones) is what the output writes
        let input = over_every_row(&b.input, &output, &b.usable_positions())?;
        // a scored row is chosen if the rule selected it; a rejected one, so the judge stage
        // fails it with the reader's reason
        let chosen = b
            .rows
            .iter()
            .map(|row| match row {
                Row::Rejected(_) => true,
                Row::Usable(usable) => usable.score.as_ref().is_some_and(|s| s.decision.selected),
            })
            .collect();
        Ok(Flow::Batch(ToJudge {
            rows: RowBatch { input, ..b },
            chosen: Some(chosen),
        }))
    }
}

impl<T: JudgeInput> Stage for JudgeRows<T> {
    type In = T;
    type Out = Judged;

    fn name(&self) -> &'static str {
        "judge"
    }

    fn run(self, input: Inlet<T>, output: Outlet<Judged>) -> Result<(), PipelineError> {
        let JudgeRows {
            client,
            runtime,
            depth,
            every_row,
            ..
        } = self;
        runtime.block_on(async {
            let mut judged = std::pin::pin!(input
                .into_stream()
                .map(|item| {
                    let (client, item) = (client.clone(), item.to_judge());
                    async move { judge_item(client, item?, every_row).await }
                })
                .buffered(depth.max(1)));
            while let Some(item) = judged.next().await {
                if !output.send_async(item?).await {
                    break;
                }
            }
            Ok(())
        })
    }
}

/// The rows of one batch that go to the judge: usable and selected (when a `selected` column
/// exists); the others get their outcome here.
async fn judge_item(
    client: Arc<JudgeClient>,
    item: Flow<ToJudge>,
    every_row: bool,
) -> Result<Judged, PipelineError> {
    let ToJudge {
        rows:
            RowBatch {
                path,
                first_row,
                input: batch,
                rows,
            },
        chosen,
    } = match item {
        Flow::Batch(b) => b,
        Flow::Unreadable(u) => return Ok(Flow::Unreadable(u)),
        Flow::GroupEnd(g) => return Ok(Flow::GroupEnd(g)),
    };
    let selected = match batch.column_by_name("selected") {
        _ if every_row || chosen.is_some() => None,
        None => None,
        Some(c) => match c.as_boolean_opt() {
            Some(b) => Some(b.clone()),
            None => {
                return Err(PipelineError::ColumnType {
                    path: path.to_path_buf(),
                    column: "selected".into(),
                    found: c.data_type().to_string(),
                    expected: "Boolean",
                })
            }
        },
    };
    let mut outcomes: Vec<JudgeOutcome> = Vec::with_capacity(rows.len());
    let mut texts = Vec::with_capacity(rows.len());
    let mut requests = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        let chosen = match &chosen {
            Some(chosen) => chosen[i],
            None => selected
                .as_ref()
                .is_none_or(|s| s.is_valid(i) && s.value(i)),
        };
        // a placeholder, replaced by the judge's outcome below
        outcomes.push(JudgeOutcome {
            status: JudgeStatus::NotSelected,
            label: None,
            reason: None,
            raw: None,
            votes: Vec::new(),
        });
        let row = match row {
            Row::Usable(usable) => Ok(usable.trajectory),
            Row::Rejected(reject) => Err(reject),
        };
        texts.push(
            row.as_ref()
                .ok()
                .map(|t| (t.problem.clone(), t.steps.clone())),
        );
        match row {
            _ if !chosen => {}
            Err(reject) => {
                let reason = format!("row not usable: {}: {}", reject.column, reject.reason);
                outcomes[i] =
                    JudgeOutcome::unlabelled(JudgeStatus::Failed, reason, None, Vec::new());
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
        outcomes[*i] = outcome;
    }
    Ok(Flow::Batch(JudgedBatch {
        batch,
        outcomes,
        texts,
    }))
}
