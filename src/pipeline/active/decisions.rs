//! The decision record: one row per pool row (chosen or not, why, the label and the step it
//! trained), written as one Parquet part per checkpoint.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Int32Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};

use crate::label::format::{trl_columns, TrlRow};
use crate::label::LabelFormat;

fn decision_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_row", DataType::UInt64, false),
        Field::new("selected", DataType::Boolean, false),
        Field::new("select_reason", DataType::Utf8, false),
        Field::new("uncertainty", DataType::Float32, false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new("label", DataType::Int32, true),
        Field::new("label_used", DataType::Boolean, false),
        Field::new("label_note", DataType::Utf8, false),
        Field::new("train_step", DataType::UInt64, false),
    ]))
}

/// Decisions of the batches since the last checkpoint, written as one part at the checkpoint.
#[derive(Default)]
pub(super) struct DecisionBuffer {
    pub(super) file: Vec<String>,
    pub(super) row: Vec<u64>,
    pub(super) selected: Vec<bool>,
    pub(super) reason: Vec<String>,
    pub(super) uncertainty: Vec<f32>,
    pub(super) version: Vec<String>,
    pub(super) label: Vec<Option<i32>>,
    pub(super) used: Vec<bool>,
    pub(super) note: Vec<String>,
    pub(super) step: Vec<u64>,
    /// Each row's problem and steps, kept only for the TRL label format.
    pub(super) texts: Vec<Option<(String, Vec<String>)>>,
}

impl DecisionBuffer {
    /// The buffered decisions, with TRL's `prompt`, `completions`, `labels` for `LabelFormat::Trl`.
    pub(super) fn batch(&mut self, format: LabelFormat) -> RecordBatch {
        let b = std::mem::take(self);
        let trl = (format == LabelFormat::Trl).then(|| {
            let rows: Vec<Option<TrlRow<'_>>> = b
                .texts
                .iter()
                .zip(&b.label)
                .map(|(t, label)| {
                    t.as_ref().map(|(problem, steps)| TrlRow {
                        problem,
                        steps,
                        label: *label,
                    })
                })
                .collect();
            trl_columns(&rows)
        });
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(b.file)),
            Arc::new(UInt64Array::from(b.row)),
            Arc::new(BooleanArray::from(b.selected)),
            Arc::new(StringArray::from(b.reason)),
            Arc::new(Float32Array::from(b.uncertainty)),
            Arc::new(StringArray::from(b.version)),
            Arc::new(Int32Array::from(b.label)),
            Arc::new(BooleanArray::from(b.used)),
            Arc::new(StringArray::from(b.note)),
            Arc::new(UInt64Array::from(b.step)),
        ];
        let mut schema = decision_schema().as_ref().clone();
        let mut columns = columns;
        if let Some(extra) = trl {
            let mut fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            for (name, array) in extra {
                fields.push(Field::new(name, array.data_type().clone(), true));
                columns.push(array);
            }
            schema = Schema::new(fields);
        }
        RecordBatch::try_new(Arc::new(schema), columns).expect("decision columns match")
    }
}
