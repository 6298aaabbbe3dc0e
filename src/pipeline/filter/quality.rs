//! The quality rules of `filter` (`--reward`, `--where`, `--top-k --per`): which rows a batch
//! keeps when the good rows are wanted rather than the uncertain ones. A best-of-n group is
//! decided when it ends, so its rows are held until then (one group at a time).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float32Type, Schema};

use super::settings::Quality;
use crate::pipeline::PipelineError;
use crate::select::reward::{top_k, Reward};
use crate::sql::predicate::RowPredicate;

/// Rows and whether each is kept, ready to write.
pub(super) type Decided = Vec<(RecordBatch, Vec<bool>)>;

/// The rows of the best-of-n group still open (it may go on in the next batch).
struct OpenGroup {
    key: String,
    batches: Vec<RecordBatch>,
    rewards: Vec<Option<f32>>,
    eligible: Vec<bool>,
}

pub(super) struct Picker {
    reward: Option<Reward>,
    predicate: Option<RowPredicate>,
    /// (K, the --per column)
    best_of: Option<(usize, String)>,
    open: Option<OpenGroup>,
    /// The file and key of the last group a unit closed: the next unit of that file must not
    /// start with the same group.
    tail: Option<(PathBuf, String)>,
}

impl Picker {
    /// `None` when the settings ask for nothing (the uncertainty rule decides alone).
    pub fn new(quality: &Quality, sql: &crate::sql::SqlConfig) -> Option<Self> {
        if quality.reward().is_none() && quality.condition.is_none() {
            return None;
        }
        Some(Self {
            reward: quality.reward(),
            predicate: quality
                .condition
                .as_deref()
                .map(|c| RowPredicate::new(c, sql)),
            best_of: quality.top_k.zip(quality.per.clone()),
            open: None,
            tail: None,
        })
    }

    /// Whether the picker decides which rows are kept (else it only adds the reward).
    pub fn selects(&self) -> bool {
        self.predicate.is_some() || self.best_of.is_some()
    }

    /// `output` with its `reward` column (when a reward is asked for).
    pub fn with_reward(&self, output: &RecordBatch) -> Result<RecordBatch, PipelineError> {
        let Some(reward) = self.reward else {
            return Ok(output.clone());
        };
        let means = output
            .column_by_name("step_mean")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| internal("the scored batch has no List<Float32> step_mean"))?;
        let rewards: Float32Array = (0..means.len())
            .map(|i| {
                if means.is_null(i) {
                    return None;
                }
                let steps = means.value(i);
                reward.of(steps.as_primitive::<Float32Type>().values())
            })
            .collect();
        let mut fields: Vec<Field> = output
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns = output.columns().to_vec();
        fields.push(Field::new("reward", DataType::Float32, true));
        columns.push(Arc::new(rewards));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(PipelineError::from)
    }

    /// The rows of `batch` (from `path`) decided so far: all of them under `--where` alone;
    /// under best-of-n, the groups that ended (the last one stays open).
    pub fn decide(&mut self, path: &Path, batch: RecordBatch) -> Result<Decided, PipelineError> {
        let eligible = match &mut self.predicate {
            Some(p) => p.evaluate(&batch).map_err(|e| usage(e.to_string()))?,
            None => vec![true; batch.num_rows()],
        };
        let Some((_, per)) = &self.best_of else {
            return Ok(vec![(batch, eligible)]);
        };
        let keys = group_keys(&batch, per)?;
        let rewards: Vec<Option<f32>> = match batch.column_by_name("reward") {
            Some(c) => c.as_primitive::<Float32Type>().iter().collect(),
            None => return Err(internal("best-of-n without a reward column")),
        };
        // an empty batch leaves the check to the next one
        let tail = keys
            .first()
            .and_then(|first| Some((first, self.tail.take()?)));
        if let Some((first, (file, key))) = tail {
            if file == path && *first == key {
                return Err(usage(format!(
                    "--top-k: the group {per} = {key:?} of {} runs on from one row group into \
                     the next; best-of-n needs each group within one row group (write the file \
                     with whole groups per row group, e.g. sorted by {per})",
                    path.display()
                )));
            }
        }
        let mut decided = Vec::new();
        let mut start = 0;
        while start < keys.len() {
            let end = (start..keys.len())
                .find(|&i| keys[i] != keys[start])
                .unwrap_or(keys.len());
            if self.open.as_ref().is_some_and(|g| g.key != keys[start]) {
                decided.extend(self.close());
            }
            let group = self.open.get_or_insert_with(|| OpenGroup {
                key: keys[start].clone(),
                batches: Vec::new(),
                rewards: Vec::new(),
                eligible: Vec::new(),
            });
            group.batches.push(batch.slice(start, end - start));
            group.rewards.extend_from_slice(&rewards[start..end]);
            group.eligible.extend_from_slice(&eligible[start..end]);
            start = end;
        }
        Ok(decided)
    }

    /// At the end of a unit of `path`: its open group is complete.
    pub fn unit_end(&mut self, path: &Path) -> Decided {
        let key = self.open.as_ref().map(|g| g.key.clone());
        let decided = self.close();
        self.tail = key.map(|k| (path.to_path_buf(), k));
        decided
    }

    fn close(&mut self) -> Decided {
        let Some(group) = self.open.take() else {
            return Vec::new();
        };
        let k = self.best_of.as_ref().map_or(usize::MAX, |(k, _)| *k);
        let keep = top_k(&group.rewards, &group.eligible, k);
        let mut offset = 0;
        group
            .batches
            .into_iter()
            .map(|b| {
                let mask = keep[offset..offset + b.num_rows()].to_vec();
                offset += b.num_rows();
                (b, mask)
            })
            .collect()
    }
}

/// Each row's group key: its `per` value as text.
fn group_keys(batch: &RecordBatch, per: &str) -> Result<Vec<String>, PipelineError> {
    let column = batch.column_by_name(per).ok_or_else(|| {
        usage(format!(
            "--per {per}: no such column (columns: {})",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    as_keys(column).map_err(|e| usage(format!("--per {per}: {e}")))
}

/// A column's values as text keys (`<null>` for a null): how `--per` names groups and
/// `--group-by` names the keep rates it reports.
pub(super) fn as_keys(column: &dyn Array) -> Result<Vec<String>, arrow::error::ArrowError> {
    let text = arrow::compute::cast(column, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    Ok((0..text.len())
        .map(|i| {
            if text.is_null(i) {
                "<null>".to_string()
            } else {
                text.value(i).to_string()
            }
        })
        .collect())
}

fn usage(message: String) -> PipelineError {
    PipelineError::Quality(message)
}

fn internal(message: &str) -> PipelineError {
    PipelineError::Quality(format!("--reward: {message}"))
}
