//! Column mapping (which column is the problem, which the steps) and per-row extraction with a
//! reason for every row that cannot be scored.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, LargeBinaryArray, OffsetSizeTrait};
use arrow::datatypes::{DataType, Schema};
use serde::{Deserialize, Serialize};

use super::SourceError;

/// Column names tried in order when the user names none (Hugging Face datasets' usual names).
pub const PROBLEM_CANDIDATES: &[&str] = &["problem", "question", "prompt", "input", "instruction"];
pub const STEPS_CANDIDATES: &[&str] = &["steps", "completions", "model_output_steps"];

/// `--problem-column` / `--steps-column`, and the same keys of a pipeline file's source.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(default)]
pub struct ColumnMapping {
    /// Problem column (default: problem, question, prompt, input or instruction).
    #[arg(id = "problem_column", long = "problem-column", value_name = "COLUMN")]
    #[serde(rename = "problem_column")]
    pub problem: Option<String>,
    /// Steps column, a list of strings (default: steps, completions or model_output_steps); with
    /// --step-separator, a string column (one response per row, e.g. `response`).
    #[arg(id = "steps_column", long = "steps-column", value_name = "COLUMN")]
    #[serde(rename = "steps_column")]
    pub steps: Option<String>,
    /// Split a string steps column into steps at this separator (PRM evaluation code splits
    /// responses at "\n\n"); pieces that are only whitespace are dropped, so a trailing separator
    /// makes no empty step; `\n`, `\t` and `\\` in SEP are a newline, a tab and a backslash. A
    /// list-of-strings column is read as it is.
    #[arg(long, value_name = "SEP")]
    pub step_separator: Option<String>,
    /// In a Hugging Face data set folder (`data/train-00000-of-00003.parquet`,
    /// `default/test/0000.parquet`), read only this split.
    #[arg(long, value_name = "NAME")]
    pub split: Option<String>,
}

/// The resolved column indices of one file's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedColumns {
    pub problem: (usize, String),
    pub steps: (usize, String),
    /// Set when the steps column is one string per row, split at this separator.
    pub separator: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub problem: String,
    pub steps: Vec<String>,
}

/// Why a row was not scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReject {
    pub column: String,
    pub reason: String,
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

impl ColumnMapping {
    /// Finds and type-checks the problem and steps columns, before any work starts.
    pub fn resolve(&self, schema: &Schema, file: &Path) -> Result<ResolvedColumns, SourceError> {
        let find = |explicit: &Option<String>,
                    candidates: &[&str],
                    what: &str|
         -> Result<(usize, String), SourceError> {
            let names: Vec<String> = match explicit {
                Some(name) => vec![name.clone()],
                None => candidates.iter().map(|s| s.to_string()).collect(),
            };
            names
                .iter()
                .find_map(|n| schema.index_of(n).ok().map(|i| (i, n.clone())))
                .ok_or_else(|| SourceError::Column {
                    file: file.to_path_buf(),
                    column: names.join("|"),
                    message: format!(
                        "not found: the {what} column is missing (columns: {}); name it with --{what}-column",
                        schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                    ),
                })
        };
        let problem = find(&self.problem, PROBLEM_CANDIDATES, "problem")?;
        let steps = find(&self.steps, STEPS_CANDIDATES, "steps")?;
        let type_error =
            |(_, name): &(usize, String), dt: &DataType, expected: &str| SourceError::Column {
                file: file.to_path_buf(),
                column: name.clone(),
                message: format!("has type {dt}, expected {expected}"),
            };
        let problem_type = schema.field(problem.0).data_type();
        if !is_text(problem_type) {
            return Err(type_error(&problem, problem_type, "a string (Utf8)"));
        }
        let steps_type = schema.field(steps.0).data_type();
        let separator = match (&self.step_separator, steps_type) {
            (Some(sep), _) if sep.is_empty() => {
                return Err(SourceError::Column {
                    file: file.to_path_buf(),
                    column: steps.1.clone(),
                    message: "--step-separator is empty; give the text between steps, e.g. \
                              \"\\n\\n\""
                        .into(),
                })
            }
            (Some(sep), dt) if is_text(dt) => Some(unescape(sep)),
            (_, DataType::List(f) | DataType::LargeList(f)) if is_text(f.data_type()) => None,
            (None, dt) if is_text(dt) => {
                return Err(type_error(
                    &steps,
                    dt,
                    "a list of strings (List<Utf8>); for one response string per row, give \
                     --step-separator (e.g. \"\\n\\n\")",
                ))
            }
            (_, dt) => {
                return Err(type_error(
                    &steps,
                    dt,
                    "a list of strings (List<Utf8>), or a string with --step-separator",
                ))
            }
        };
        Ok(ResolvedColumns {
            problem,
            steps,
            separator,
        })
    }
}

fn as_large_binary(array: &ArrayRef) -> Result<LargeBinaryArray, String> {
    let cast = arrow::compute::cast(array, &DataType::LargeBinary).map_err(|e| e.to_string())?;
    Ok(cast.as_binary::<i64>().clone())
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|e| format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()))
}

/// One entry per row: the trajectory, or why it cannot be scored.
pub fn extract(
    batch_columns: &[ArrayRef],
    cols: &ResolvedColumns,
) -> Result<Vec<Result<Trajectory, RowReject>>, String> {
    let problems = as_large_binary(&batch_columns[cols.problem.0])?;
    let steps_col = &batch_columns[cols.steps.0];
    let steps: Vec<Result<Vec<String>, String>> = match (steps_col.data_type(), &cols.separator) {
        (DataType::List(_), _) => list_rows(steps_col.as_list::<i32>())?,
        (DataType::LargeList(_), _) => list_rows(steps_col.as_list::<i64>())?,
        (dt, Some(separator)) if is_text(dt) => split_rows(steps_col, separator)?,
        (other, _) => return Err(format!("steps column has type {other}")),
    };
    let reject = |column: &str, reason: String| RowReject {
        column: column.to_string(),
        reason,
    };
    Ok((0..problems.len())
        .zip(steps)
        .map(|(row, steps)| {
            if problems.is_null(row) {
                return Err(reject(&cols.problem.1, "problem is null".into()));
            }
            let problem = utf8(problems.value(row)).map_err(|e| reject(&cols.problem.1, e))?;
            if problem.trim().is_empty() {
                return Err(reject(&cols.problem.1, "problem is empty".into()));
            }
            let steps = steps.map_err(|e| reject(&cols.steps.1, e))?;
            Ok(Trajectory { problem, steps })
        })
        .collect())
}

/// `\n`, `\t`, `\r` and `\\` as the characters they name (a shell passes `"\n\n"` as typed).
fn unescape(separator: &str) -> String {
    let mut out = String::new();
    let mut chars = separator.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Each row's response split at `separator` into its steps (whitespace-only pieces dropped).
fn split_rows(
    column: &ArrayRef,
    separator: &str,
) -> Result<Vec<Result<Vec<String>, String>>, String> {
    let texts = as_large_binary(column)?;
    Ok((0..texts.len())
        .map(|row| {
            if texts.is_null(row) {
                return Err("steps is null".to_string());
            }
            let text = utf8(texts.value(row))?;
            let steps: Vec<String> = text
                .split(separator)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
                .collect();
            if steps.is_empty() {
                return Err("the response has no step (empty or only separators)".to_string());
            }
            Ok(steps)
        })
        .collect())
}

fn list_rows<O: OffsetSizeTrait>(
    list: &arrow::array::GenericListArray<O>,
) -> Result<Vec<Result<Vec<String>, String>>, String> {
    let values = as_large_binary(&Arc::clone(list.values()))?;
    let offsets = list.value_offsets();
    Ok((0..list.len())
        .map(|row| {
            if list.is_null(row) {
                return Err("steps is null".to_string());
            }
            let (start, end) = (offsets[row].as_usize(), offsets[row + 1].as_usize());
            if start == end {
                return Err("steps is an empty list".to_string());
            }
            (start..end)
                .enumerate()
                .map(|(i, v)| {
                    if values.is_null(v) {
                        return Err(format!("step {i} is null"));
                    }
                    let s = utf8(values.value(v)).map_err(|e| format!("step {i}: {e}"))?;
                    if s.trim().is_empty() {
                        return Err(format!("step {i} is an empty string"));
                    }
                    Ok(s)
                })
                .collect()
        })
        .collect())
}
