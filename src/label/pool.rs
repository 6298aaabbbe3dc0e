//! Labels already in the pool, in the forms users have: a first-error index (ProcessBench
//! `label`, -1 = all correct), per-step ratings (PRM800K: +1/0/-1; 0 is neutral), or ActPRM's
//! `hard_labels` (1 = correct, 0 = wrong), or TRL's stepwise `labels` (true = correct).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};

/// Which column carries the label, and in which form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelColumn {
    FirstError(String),
    Ratings(String),
    HardLabels(String),
}

impl LabelColumn {
    /// The first label column found: `label`, then `ratings`, `hard_labels`, `labels`.
    pub fn detect(schema: &arrow::datatypes::Schema) -> Option<Self> {
        let has = |n: &str| {
            schema
                .field_with_name(n)
                .ok()
                .map(|f| f.data_type().clone())
        };
        if let Some(dt) = has("label") {
            if dt.is_integer() {
                return Some(Self::FirstError("label".into()));
            }
        }
        // `labels` is TRL's stepwise-supervision layout (trl-lib/prm800k, math_shepherd):
        // one bool (or 0/1) per step, true = correct, read like hard labels
        for (name, make) in [
            ("ratings", Self::Ratings as fn(String) -> Self),
            ("hard_labels", Self::HardLabels),
            ("labels", Self::HardLabels),
        ] {
            if let Some(DataType::List(f) | DataType::LargeList(f)) = has(name) {
                let item = f.data_type();
                if item.is_integer() || item.is_floating() || item == &DataType::Boolean {
                    return Some(make(name.into()));
                }
            }
        }
        None
    }

    pub fn name(&self) -> &str {
        match self {
            Self::FirstError(n) | Self::Ratings(n) | Self::HardLabels(n) => n,
        }
    }
}

/// A label column that cannot be read as labels.
#[derive(Debug, thiserror::Error)]
pub enum LabelColumnError {
    #[error("no column {0:?}")]
    Missing(String),
    #[error("label column {column:?}: {source}")]
    Unreadable {
        column: String,
        source: arrow::error::ArrowError,
    },
}

/// The first-error index of every row (`None` = unlabelled or out of range for its step count).
pub fn first_error_labels(
    batch: &RecordBatch,
    column: &LabelColumn,
    steps: &[usize],
) -> Result<Vec<Option<i32>>, LabelColumnError> {
    let array = batch
        .column_by_name(column.name())
        .ok_or_else(|| LabelColumnError::Missing(column.name().to_string()))?;
    let unreadable = |source| LabelColumnError::Unreadable {
        column: column.name().to_string(),
        source,
    };
    let out: Vec<Option<i32>> = match column {
        LabelColumn::FirstError(_) => {
            let ints = arrow::compute::cast(array, &DataType::Int64).map_err(unreadable)?;
            let ints = ints.as_primitive::<Int64Type>();
            // a value past i32 is out of range for any step count (never wrapped into one)
            (0..ints.len())
                .map(|i| {
                    (!ints.is_null(i))
                        .then(|| i32::try_from(ints.value(i)).ok())
                        .flatten()
                })
                .collect()
        }
        LabelColumn::Ratings(_) | LabelColumn::HardLabels(_) => {
            let form = if matches!(column, LabelColumn::Ratings(_)) {
                StepLabelForm::Ratings
            } else {
                StepLabelForm::HardLabels
            };
            let target = DataType::List(std::sync::Arc::new(arrow::datatypes::Field::new(
                "item",
                DataType::Int64,
                true,
            )));
            let lists = arrow::compute::cast(array, &target).map_err(unreadable)?;
            let lists = lists.as_list::<i32>();
            (0..lists.len())
                .map(|i| {
                    if lists.is_null(i) {
                        return None;
                    }
                    let v = lists.value(i);
                    let values: Vec<Option<i64>> = v.as_primitive::<Int64Type>().iter().collect();
                    first_error_from_steps(form, &values)
                })
                .collect()
        }
    };
    Ok(out
        .into_iter()
        .zip(steps)
        .map(|(label, &n)| label.filter(|&l| l >= -1 && l < n as i32))
        .collect())
}

/// The per-step label forms, and what counts as the first wrong step in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepLabelForm {
    /// PRM800K ratings: +1 good, 0 neutral (not an error), -1 bad.
    Ratings,
    /// ActPRM's hard labels: 1 correct, 0 wrong.
    HardLabels,
}

/// The first-error index (-1 = no wrong step) from per-step labels: the one derivation every
/// reader uses (Parquet pools, JSON Lines, features). A missing (null) step label before the first
/// wrong step leaves the row unlabelled (`None`): that step might have been the error.
pub fn first_error_from_steps(form: StepLabelForm, values: &[Option<i64>]) -> Option<i32> {
    let wrong = match form {
        StepLabelForm::Ratings => -1,
        StepLabelForm::HardLabels => 0,
    };
    for (i, v) in values.iter().enumerate() {
        match v {
            None => return None,
            Some(x) if *x == wrong => return i32::try_from(i).ok(),
            Some(_) => {}
        }
    }
    Some(-1)
}

/// Per-step targets and mask from a first-error index: `-1` -> all 1; `k` -> `[1]*k + [0]`, and
/// steps after `k` are masked out of the loss.
pub fn step_targets(label: i32, steps: usize) -> (Vec<f32>, Vec<f32>) {
    (0..steps)
        .map(|i| {
            if label < 0 || (i as i32) < label {
                (1.0, 1.0)
            } else if i as i32 == label {
                (0.0, 1.0)
            } else {
                (0.0, 0.0)
            }
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_zero_is_neutral_and_nulls_leave_the_row_unlabelled() {
        use StepLabelForm::*;
        let r = |v: &[i64]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        // issue 12, item 5: PRM800K [1, 0, 1] was turned into first error 1
        assert_eq!(first_error_from_steps(Ratings, &r(&[1, 0, 1])), Some(-1));
        assert_eq!(first_error_from_steps(Ratings, &r(&[1, 0, -1])), Some(2));
        assert_eq!(first_error_from_steps(Ratings, &r(&[1, 1])), Some(-1));
        assert_eq!(first_error_from_steps(HardLabels, &r(&[1, 0, 1])), Some(1));
        assert_eq!(
            first_error_from_steps(Ratings, &[Some(1), None, Some(-1)]),
            None
        );
        assert_eq!(first_error_from_steps(Ratings, &[Some(-1), None]), Some(0));
    }

    #[test]
    fn targets_mask_everything_after_the_first_error() {
        assert_eq!(
            step_targets(-1, 3),
            (vec![1.0, 1.0, 1.0], vec![1.0, 1.0, 1.0])
        );
        assert_eq!(
            step_targets(1, 4),
            (vec![1.0, 0.0, 0.0, 0.0], vec![1.0, 1.0, 0.0, 0.0])
        );
        assert_eq!(step_targets(0, 2), (vec![0.0, 0.0], vec![1.0, 0.0]));
    }
}
