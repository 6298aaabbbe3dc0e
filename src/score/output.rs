//! The scored output: every input column unchanged, then the score columns (documented in
//! `schemas/scored-output.schema.json`). Score columns replace input columns of the same name, so
//! a scored file can be scored again by a newer model.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Builder, Int32Array, ListBuilder, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};

use super::RowScore;

pub const SCORE_COLUMNS: &[&str] = &[
    "step_mean",
    "step_std",
    "step_head_probs",
    "first_error",
    "check_first_false",
    "selected",
    "uncertain_aleatoric",
    "uncertain_epistemic",
    "select_reason",
    "uncertainty",
    "windowed",
    "n_windows",
    "truncated",
    "n_tokens",
    "model_version",
];

fn float_list(rows: impl Iterator<Item = Vec<f32>>) -> ArrayRef {
    let mut b = ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::Float32,
        false,
    )));
    for r in rows {
        b.values().append_slice(&r);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn head_matrix(scores: &[RowScore], heads: usize) -> ArrayRef {
    let inner = Field::new("item", DataType::Float32, false);
    let mut b = ListBuilder::new(
        ListBuilder::new(Float32Builder::new()).with_field(Arc::new(inner.clone())),
    )
    .with_field(Arc::new(Field::new(
        "item",
        DataType::List(Arc::new(inner)),
        false,
    )));
    for s in scores {
        for step in s.head_probs.chunks_exact(heads) {
            b.values().values().append_slice(step);
            b.values().append(true);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

/// The input's columns, less any score column of an earlier scoring (replaced, not repeated).
fn input_columns(input: &RecordBatch) -> (Vec<Arc<Field>>, Vec<ArrayRef>) {
    input
        .schema()
        .fields()
        .iter()
        .zip(input.columns())
        .filter(|(f, _)| !SCORE_COLUMNS.contains(&f.name().as_str()))
        .map(|(f, c)| (f.clone(), c.clone()))
        .unzip()
}

/// The scored rows of a batch spread back over every row as read: the input's columns for every
/// row, the score columns null on the rows the scorer rejected (`valid`: the scored rows'
/// positions in `input`, ascending), so a stage after the scorer sees each row once, in order.
pub fn over_every_row(
    input: &RecordBatch,
    scored: &RecordBatch,
    valid: &[usize],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut at = vec![None; input.num_rows()];
    for (k, &row) in valid.iter().enumerate() {
        at[row] = Some(k as u32);
    }
    let take = arrow::array::UInt32Array::from(at);
    let (mut fields, mut columns) = input_columns(input);
    for (f, c) in scored.schema().fields().iter().zip(scored.columns()) {
        if SCORE_COLUMNS.contains(&f.name().as_str()) {
            fields.push(Arc::new(f.as_ref().clone().with_nullable(true)));
            columns.push(arrow::compute::take(c, &take, None)?);
        }
    }
    let schema = Schema::new_with_metadata(fields, scored.schema().metadata().clone());
    RecordBatch::try_new(Arc::new(schema), columns)
}

/// Appends the score columns to `input` (whose rows are exactly the scored ones, in order).
/// `versions[i]` is the model version that scored row i.
pub fn scored_batch(
    input: &RecordBatch,
    scores: &[RowScore],
    versions: &[String],
    heads: usize,
    with_head_probs: bool,
) -> RecordBatch {
    let (mut fields, mut columns) = input_columns(input);
    let mut push = |name: &str, array: ArrayRef| {
        fields.push(Arc::new(Field::new(name, array.data_type().clone(), false)));
        columns.push(array);
    };
    push(
        "step_mean",
        float_list(scores.iter().map(|s| s.mean.clone())),
    );
    push("step_std", float_list(scores.iter().map(|s| s.std.clone())));
    if with_head_probs {
        push("step_head_probs", head_matrix(scores, heads));
    }
    push(
        "first_error",
        Arc::new(Int32Array::from_iter_values(
            scores.iter().map(|s| s.first_error),
        )),
    );
    // -1: no false equality found, or the check is off
    push(
        "check_first_false",
        Arc::new(Int32Array::from_iter_values(scores.iter().map(|s| {
            s.check.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1)
        }))),
    );
    let bools = |f: &dyn Fn(&RowScore) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from(scores.iter().map(f).collect::<Vec<_>>()))
    };
    push("selected", bools(&|s| s.decision.selected));
    push("uncertain_aleatoric", bools(&|s| s.decision.aleatoric));
    push("uncertain_epistemic", bools(&|s| s.decision.epistemic));
    push(
        "select_reason",
        Arc::new(StringArray::from_iter_values(
            scores.iter().map(|s| s.decision.reason()),
        )),
    );
    push(
        "uncertainty",
        Arc::new(arrow::array::Float32Array::from_iter_values(
            scores.iter().map(|s| s.decision.uncertainty),
        )),
    );
    push("windowed", bools(&|s| s.windows > 1));
    push(
        "n_windows",
        Arc::new(Int32Array::from_iter_values(
            scores.iter().map(|s| s.windows as i32),
        )),
    );
    push("truncated", bools(&|s| s.truncated));
    push(
        "n_tokens",
        Arc::new(Int32Array::from_iter_values(
            scores.iter().map(|s| s.tokens as i32),
        )),
    );
    push(
        "model_version",
        Arc::new(StringArray::from_iter_values(versions.iter())),
    );
    // the input's schema metadata (e.g. the `huggingface` features of a Hub data set) carries over
    let schema = Schema::new(fields).with_metadata(input.schema().metadata().clone());
    RecordBatch::try_new(Arc::new(schema), columns).expect("score columns have one value per row")
}

/// A short, stable spelling of an Arrow type for the machine-readable schema files in `schemas/`.
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::List(f) | DataType::LargeList(f) => format!("list<{}>", type_name(f.data_type())),
        DataType::FixedSizeList(f, n) => {
            format!("fixed_size_list<{}, {n}>", type_name(f.data_type()))
        }
        other => other.to_string().to_lowercase(),
    }
}

/// The columns of an Arrow schema as `[{name, type, nullable}]`, the format of `schemas/*.schema.json`.
pub fn describe(schema: &Schema) -> serde_json::Value {
    serde_json::Value::Array(
        schema
            .fields()
            .iter()
            .map(|f| serde_json::json!({"name": f.name(), "type": type_name(f.data_type()), "nullable": f.is_nullable()}))
            .collect(),
    )
}
