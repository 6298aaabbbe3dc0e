//! How labels are written out: actprm's first-error index only, or also TRL's stepwise
//! supervision layout (`prompt`, `completions`, `labels: list<bool>`), so a labelled file trains
//! with TRL's PRMTrainer unchanged.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, ListBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{Field, Schema};
use arrow::error::ArrowError;

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LabelFormat {
    /// The first wrong step's index (-1 = none), in `judge_label` / `label`.
    #[default]
    Actprm,
    /// Also `prompt`, `completions` and `labels` (one bool per step) as TRL's stepwise
    /// supervision has them; only the steps up to the first wrong one are kept, since nothing is
    /// known about the steps after it.
    Trl,
}

impl LabelFormat {
    pub fn is_actprm(&self) -> bool {
        *self == Self::Actprm
    }
}

/// `--label-format`, shared by `actprm label`, `actprm active`, `actprm filter` (whose TRL labels
/// are the model's predicted first errors) and pipeline stages.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    clap::Args,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(default)]
pub struct LabelOutput {
    /// Label layout of the output: actprm (first-error index) or trl (also prompt, completions,
    /// labels per step).
    #[arg(long, value_enum, default_value_t = LabelFormat::default())]
    pub label_format: LabelFormat,
}

/// A row for the TRL columns: its problem, steps and first-error label, if it could be read.
pub struct TrlRow<'a> {
    pub problem: &'a str,
    pub steps: &'a [String],
    pub label: Option<i32>,
}

/// `prompt`, `completions` and `labels` for `rows`: a labelled row keeps its steps up to and
/// including the first wrong one (all when -1), each labelled true before it and false at it; an
/// unlabelled row keeps every step and has null labels; an unreadable row (`None`) is null.
pub fn trl_columns(rows: &[Option<TrlRow<'_>>]) -> [(&'static str, ArrayRef); 3] {
    let mut prompt = StringBuilder::new();
    let mut completions = ListBuilder::new(StringBuilder::new());
    let mut labels = ListBuilder::new(BooleanBuilder::new());
    for row in rows {
        let Some(row) = row else {
            prompt.append_null();
            completions.append_null();
            labels.append_null();
            continue;
        };
        prompt.append_value(row.problem);
        let kept = match row.label {
            Some(k) if k >= 0 => (k as usize + 1).min(row.steps.len()),
            _ => row.steps.len(),
        };
        for step in &row.steps[..kept] {
            completions.values().append_value(step);
        }
        completions.append(true);
        match row.label {
            Some(k) => {
                for i in 0..kept {
                    labels.values().append_value(k < 0 || i < k as usize);
                }
                labels.append(true);
            }
            None => labels.append_null(),
        }
    }
    [
        ("prompt", Arc::new(prompt.finish())),
        ("completions", Arc::new(completions.finish())),
        ("labels", Arc::new(labels.finish())),
    ]
}

/// `batch` with TRL's `prompt`, `completions` and `labels` for `rows` (replacing any it had).
pub fn with_trl_columns(
    batch: &RecordBatch,
    rows: &[Option<TrlRow<'_>>],
) -> Result<RecordBatch, ArrowError> {
    let added: Vec<(&str, ArrayRef, bool)> = trl_columns(rows)
        .into_iter()
        .map(|(name, array)| (name, array, true))
        .collect();
    with_columns(batch, &added)
}

/// `batch` without any column named in `added`, then the `added` columns (name, array,
/// nullable); the input's schema metadata (e.g. a Hub data set's `huggingface` features) carries
/// over, so an earlier run's output gets its columns replaced, not repeated.
pub fn with_columns(
    batch: &RecordBatch,
    added: &[(&str, ArrayRef, bool)],
) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if !added.iter().any(|(name, _, _)| name == f.name()) {
            fields.push(f.clone());
            columns.push(c.clone());
        }
    }
    for (name, array, nullable) in added {
        fields.push(Arc::new(Field::new(
            *name,
            array.data_type().clone(),
            *nullable,
        )));
        columns.push(array.clone());
    }
    let schema = Schema::new(fields).with_metadata(schema.metadata().clone());
    RecordBatch::try_new(Arc::new(schema), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn steps_after_the_first_error_are_dropped_and_unknown_labels_are_null() {
        let steps: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let rows = [
            Some(TrlRow {
                problem: "p",
                steps: &steps,
                label: Some(1),
            }),
            Some(TrlRow {
                problem: "p",
                steps: &steps,
                label: Some(-1),
            }),
            Some(TrlRow {
                problem: "p",
                steps: &steps,
                label: None,
            }),
            None,
        ];
        let [_, (_, completions), (_, labels)] = trl_columns(&rows);
        let completions = completions.as_list::<i32>();
        let labels = labels.as_list::<i32>();
        let bools = |i: usize| -> Vec<bool> {
            labels
                .value(i)
                .as_boolean()
                .iter()
                .map(|b| b.unwrap())
                .collect()
        };
        assert_eq!(completions.value(0).len(), 2);
        assert_eq!(bools(0), vec![true, false]);
        assert_eq!(bools(1), vec![true, true, true]);
        assert!(labels.is_null(2));
        assert_eq!(completions.value(2).len(), 3);
        assert!(completions.is_null(3));
    }
}
