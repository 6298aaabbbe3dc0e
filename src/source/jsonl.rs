//! JSON sources: JSON Lines and ProcessBench's JSON arrays, in the layouts real step-labelled data
//! sets use (ProcessBench / PRM800K, BIG-Bench-Mistake, MR-GSM8K). Each record becomes a labelled
//! trajectory; a malformed line is an error naming the file and line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, ListBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;

use super::SourceError;
use crate::label::{first_error_from_steps, StepLabelForm};

/// An integer field that must fit a step index (never wrapped: 3000000000 is an error, not a step).
fn json_index(v: &Value, name: &str) -> Result<i32, String> {
    let n = v
        .as_i64()
        .ok_or(format!("field {name:?} is not an integer"))?;
    i32::try_from(n).map_err(|_| format!("field {name:?} = {n} is out of range"))
}

/// A trajectory with its human label: `label` is the 0-based first wrong step, -1 = all correct.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledTrajectory {
    pub id: Option<String>,
    pub problem: String,
    pub steps: Vec<String>,
    pub label: Option<i32>,
    /// 1-based indices of every erroneous step (PRMBench), when the record has them.
    pub error_steps: Option<Vec<i32>>,
}

fn field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    names: &[&str],
) -> Option<(&'a str, &'a Value)> {
    names
        .iter()
        .find_map(|n| obj.get_key_value(*n).map(|(k, v)| (k.as_str(), v)))
}

/// Parses one record in any supported layout.
pub fn parse_record(value: &Value) -> Result<LabelledTrajectory, String> {
    let obj = value.as_object().ok_or("record is not a JSON object")?;
    let (pname, problem) = field(obj, &["problem", "question", "input", "prompt"])
        .ok_or("no problem field (problem|question|input|prompt)")?;
    let problem = problem
        .as_str()
        .ok_or(format!("field {pname:?} is not a string"))?
        .to_string();
    let (sname, steps) = field(obj, &["steps", "model_output_steps", "completions"])
        .ok_or("no steps field (steps|model_output_steps|completions)")?;
    let steps = steps
        .as_array()
        .ok_or(format!("field {sname:?} is not a list"))?
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.as_str()
                .map(str::to_string)
                .ok_or(format!("{sname}[{i}] is not a string"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let label = if let Some(v) = obj.get("label") {
        Some(json_index(v, "label")?)
    } else if let Some(v) = obj.get("mistake_index") {
        Some(if v.is_null() {
            -1
        } else {
            json_index(v, "mistake_index")?
        })
    } else {
        let form = if obj.contains_key("ratings") {
            Some(("ratings", StepLabelForm::Ratings))
        } else if obj.contains_key("hard_labels") {
            Some(("hard_labels", StepLabelForm::HardLabels))
        } else if obj.contains_key("labels") {
            // TRL stepwise supervision: true = correct step
            Some(("labels", StepLabelForm::HardLabels))
        } else {
            None
        };
        match form {
            None => None,
            Some((name, form)) => {
                let values = obj[name]
                    .as_array()
                    .ok_or(format!("field {name:?} is not a list"))?
                    .iter()
                    .enumerate()
                    .map(|(i, x)| match x {
                        Value::Null => Ok(None),
                        Value::Bool(b) => Ok(Some(i64::from(*b))),
                        x => x
                            .as_i64()
                            .map(Some)
                            .ok_or(format!("{name}[{i}] is not an integer or a boolean")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                first_error_from_steps(form, &values)
            }
        }
    };
    if let Some(l) = label {
        if l < -1 || l >= steps.len() as i32 {
            return Err(format!(
                "label {l} is out of range for {} steps",
                steps.len()
            ));
        }
    }
    let error_steps = match obj.get("error_steps").and_then(Value::as_array) {
        None => None,
        Some(a) => Some(
            a.iter()
                .map(|v| json_index(v, "error_steps"))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let id = obj.get("id").or(obj.get("uuid")).map(|v| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    });
    Ok(LabelledTrajectory {
        id,
        problem,
        steps,
        label,
        error_steps,
    })
}

/// Reads a JSON Lines file, or a file holding one JSON array (ProcessBench's layout).
pub fn read_labelled(path: &Path) -> Result<Vec<LabelledTrajectory>, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|e| SourceError::File {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let line_err = |line: usize, message: String| SourceError::Line {
        file: path.to_path_buf(),
        line,
        message,
    };
    if text.trim_start().starts_with('[') {
        let values: Vec<Value> =
            serde_json::from_str(&text).map_err(|e| line_err(e.line(), e.to_string()))?;
        return values
            .iter()
            .enumerate()
            .map(|(i, v)| parse_record(v).map_err(|m| line_err(0, format!("record {i}: {m}"))))
            .collect();
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| line_err(i + 1, format!("column {}: {e}", e.column())))?;
            parse_record(&v).map_err(|m| line_err(i + 1, m))
        })
        .collect()
}

/// The Parquet layout actprm writes for labelled data (`actprm convert`): `id, problem, steps, label`.
pub fn to_record_batch<'a>(
    records: impl IntoIterator<Item = &'a LabelledTrajectory>,
) -> RecordBatch {
    let mut id = StringBuilder::new();
    let mut problem = StringBuilder::new();
    let mut steps = ListBuilder::new(StringBuilder::new()).with_field(super::step_item());
    let mut label = Int32Builder::new();
    for r in records {
        id.append_option(r.id.as_deref());
        problem.append_value(&r.problem);
        for s in &r.steps {
            steps.values().append_value(s);
        }
        steps.append(true);
        label.append_option(r.label);
    }
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("problem", DataType::Utf8, false),
        super::steps_field(),
        Field::new("label", DataType::Int32, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(problem.finish()),
        Arc::new(steps.finish()),
        Arc::new(label.finish()),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("columns match the schema")
}

/// Subset name of an evaluation file: its stem (`gsm8k.json` -> `gsm8k`).
pub fn subset_name(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("input");
    name.split('.').next().unwrap_or(name).to_string()
}

pub fn labelled_paths(paths: &[PathBuf]) -> Vec<(String, PathBuf)> {
    paths.iter().map(|p| (subset_name(p), p.clone())).collect()
}
