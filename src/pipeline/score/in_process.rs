//! Scoring in process: Arrow record batches in, scored record batches out, through the tokenise
//! and score stages every run uses (no second implementation). The Python module calls this;
//! so can any Rust caller that holds its rows in memory.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::{rejected_rows_at, scoring_stages, ScoreJob, Scorer};
use crate::pipeline::rows::RowBatch;
use crate::pipeline::stages::{ScoreSteps, ScoredBatch, Tokenise};
use crate::pipeline::PipelineError;
use crate::score::output::{over_every_row, scored_batch};
use crate::sink::rejects::{rejected_rows, RejectedRow};
use crate::source::columns::extract;
use crate::source::flow::{Flow, SourceBatch};
use crate::source::ColumnMapping;
use crate::source::RowReject;

/// An opened model that scores record batches, one after another, on the caller's thread.
pub struct BatchScorer {
    tokenise: Tokenise,
    score: ScoreSteps,
    batch_rows: usize,
    info: ModelInfo,
}

/// What scored the rows: the fields of `summary.json` that describe the model, not the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub version: String,
    pub ensemble_size: usize,
    pub tau: f32,
    pub check: crate::score::check::CheckRule,
    pub delta_pred: f32,
    pub delta_std: f32,
    pub hidden_size: usize,
    pub device: String,
}

/// The rows of one call, split as `actprm score` splits them.
pub struct ScoredRecords {
    /// Scored rows: the input's columns, then the score columns (the columns and values of
    /// `actprm score`'s parts), in input order.
    pub scored: RecordBatch,
    /// Rows that could not be scored: their columns plus `reject_file` (the caller's name for
    /// the data), `reject_row` (0-based, counted from `first_row`), `reject_column` and
    /// `reject_reason` (the columns of `rejects/`).
    pub rejects: RecordBatch,
    /// Every input row in input order: the score columns null and the reject columns set on the
    /// rows that could not be scored (one table for callers that must return one, e.g. Ray).
    pub every_row: RecordBatch,
}

/// The reject columns `ScoredRecords::every_row` adds, null on scored rows.
pub const ROW_REJECT_COLUMNS: [&str; 2] = ["reject_column", "reject_reason"];

impl BatchScorer {
    /// Opens the model once; `scorer` is what `score`'s flags and a pipeline file's keys give.
    pub fn open(scorer: &Scorer) -> Result<Self, PipelineError> {
        let job = ScoreJob::configured(Vec::new(), PathBuf::new(), scorer);
        job.validate()?;
        let (model, tokenise, score) = scoring_stages(&job)?;
        let info = ModelInfo {
            version: score.scorer.heads.version().to_string(),
            ensemble_size: score.scorer.heads.ensemble_size(),
            tau: score.scorer.tau,
            check: job.score.check_rule(&model.manifest),
            delta_pred: job.score.rule.delta_pred,
            delta_std: job.score.rule.delta_std,
            hidden_size: score.scorer.backbone.hidden_size(),
            device: job.runtime.device.to_string(),
        };
        Ok(Self {
            tokenise,
            score,
            batch_rows: job.batch_rows,
            info,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Scores `batch` in slices of `batch_rows` (as a run reads them). `origin` names the data
    /// in errors and in `reject_file`; `first_row` is the row number of `batch`'s first row.
    /// A missing or mistyped column is an error naming it; a row that cannot be scored is a
    /// reject with its reason.
    pub fn score(
        &mut self,
        batch: &RecordBatch,
        columns: &ColumnMapping,
        origin: &str,
        first_row: u64,
    ) -> Result<ScoredRecords, PipelineError> {
        let path = Arc::new(PathBuf::from(origin));
        let resolved = columns.resolve(&batch.schema(), &path)?;
        let mut scored = Vec::new();
        let mut rejects = Vec::new();
        let mut every_row = Vec::new();
        let n = batch.num_rows();
        // an empty batch still gives its (empty) tables their columns
        let starts: Vec<usize> = if n == 0 {
            vec![0]
        } else {
            (0..n).step_by(self.batch_rows).collect()
        };
        for start in starts {
            let len = self.batch_rows.min(n - start);
            let slice = batch.slice(start, len);
            let rows = extract(slice.columns(), &resolved).map_err(|message| {
                crate::source::SourceError::File {
                    file: path.as_ref().clone(),
                    message,
                }
            })?;
            let part = self.score_slice(RowBatch::from(SourceBatch {
                path: path.clone(),
                first_row: first_row + start as u64,
                batch: slice,
                rows,
            }))?;
            scored.push(part.scored);
            rejects.push(part.rejects);
            every_row.push(part.every_row);
        }
        Ok(ScoredRecords {
            scored: concat(&scored)?,
            rejects: concat(&rejects)?,
            every_row: concat(&every_row)?,
        })
    }

    fn score_slice(&mut self, batch: RowBatch) -> Result<ScoredRecords, PipelineError> {
        let (path, first_row, input) = (batch.path.clone(), batch.first_row, batch.input.clone());
        let (scored, valid, rejected) = match self.tokenise.tokenise(batch) {
            Flow::Batch(tokenised) => {
                let ScoredBatch { rows, output, .. } = self.score.score(tokenised)?;
                (output, rows.usable_positions(), rows.rejected())
            }
            // the tokenizer refused the slice: every row is a reject with its reason, and no
            // row is scored (an empty scored batch gives the columns)
            Flow::Unreadable(u) => {
                let reject = RowReject {
                    column: String::new(),
                    reason: u.reason,
                };
                let heads = &self.score.scorer.heads;
                let none = scored_batch(
                    &input.slice(0, 0),
                    &[],
                    &[],
                    heads.ensemble_size(),
                    self.score.head_probs,
                );
                let all = (0..input.num_rows()).map(|i| (i, reject.clone())).collect();
                (none, Vec::new(), all)
            }
            Flow::GroupEnd(_) => unreachable!("tokenise passes a batch on as a batch"),
        };
        let rejected = rejected_rows_at(first_row, &rejected);
        let every_row = with_reject_columns(over_every_row(&input, &scored, &valid)?, &rejected)?;
        Ok(ScoredRecords {
            rejects: rejected_rows(&path, &input, &rejected)?,
            scored,
            every_row,
        })
    }
}

/// `batch` plus the reject columns, set on the `rejected` rows and null elsewhere.
fn with_reject_columns(
    batch: RecordBatch,
    rejected: &[RejectedRow],
) -> Result<RecordBatch, PipelineError> {
    let mut column = vec![None; batch.num_rows()];
    let mut reason = vec![None; batch.num_rows()];
    for r in rejected {
        column[r.batch_row] = Some(r.column.as_str());
        reason[r.batch_row] = Some(r.reason.as_str());
    }
    let schema = batch.schema();
    let (mut fields, mut columns): (Vec<_>, Vec<_>) = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !ROW_REJECT_COLUMNS.contains(&f.name().as_str()))
        .map(|(f, c)| (f.clone(), c.clone()))
        .unzip();
    for (name, values) in ROW_REJECT_COLUMNS.iter().zip([column, reason]) {
        fields.push(Arc::new(arrow::datatypes::Field::new(
            *name,
            arrow::datatypes::DataType::Utf8,
            true,
        )));
        columns.push(Arc::new(arrow::array::StringArray::from(values)));
    }
    let schema = arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone());
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// The batches as one (all share the first one's schema).
fn concat(batches: &[RecordBatch]) -> Result<RecordBatch, PipelineError> {
    let schema: SchemaRef = batches[0].schema();
    Ok(arrow::compute::concat_batches(&schema, batches)?)
}
