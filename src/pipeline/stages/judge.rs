//! The judge stage (`actprm label`, and pipeline files with a `label` transform in judge mode):
//! the usable, selected rows of each batch go to the judge, several batches at a time so every
//! request slot stays busy across batch boundaries, and come out in input order with one
//! outcome per row.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use futures::StreamExt;
use tokio::runtime::Handle;

use crate::label::judge::{JudgeClient, JudgeOutcome, JudgeStatus};
use crate::label::LabelRequest;
use crate::pipeline::stage::{Inlet, Outlet, Stage};
use crate::pipeline::PipelineError;
use crate::source::flow::{Flow, SourceBatch, SourceItem};

/// A judged batch: its rows, one outcome per row, and each usable row's problem and steps.
pub struct JudgedBatch {
    pub batch: RecordBatch,
    pub outcomes: Vec<JudgeOutcome>,
    pub texts: Vec<Option<(String, Vec<String>)>>,
}

pub type Judged = Flow<JudgedBatch>;

pub struct JudgeRows {
    pub client: Arc<JudgeClient>,
    /// The run's runtime, which drives the requests.
    pub runtime: Handle,
    /// Batches judged at once.
    pub depth: usize,
    /// Send every row, ignoring a `selected` column.
    pub every_row: bool,
}

impl Stage for JudgeRows {
    type In = SourceItem;
    type Out = Judged;

    fn name(&self) -> &'static str {
        "judge"
    }

    fn run(self, input: Inlet<SourceItem>, output: Outlet<Judged>) -> Result<(), PipelineError> {
        let JudgeRows {
            client,
            runtime,
            depth,
            every_row,
        } = self;
        runtime.block_on(async {
            let mut judged = std::pin::pin!(input
                .into_stream()
                .map(|item| judge_item(client.clone(), item, every_row))
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
        let chosen = selected
            .as_ref()
            .is_none_or(|s| s.is_valid(i) && s.value(i));
        // a placeholder, replaced by the judge's outcome below
        outcomes.push(JudgeOutcome {
            status: JudgeStatus::NotSelected,
            label: None,
            reason: None,
            raw: None,
            votes: Vec::new(),
        });
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
