//! The one reader of labelled files for evaluation (`actprm eval`, `actprm judge eval`):
//! ProcessBench .json arrays, labelled .jsonl, or Parquet with a label column. A row that cannot
//! be read, or has no label, is an error naming the file and row: a metric over silently fewer
//! rows would mislead.

use std::path::{Path, PathBuf};

use super::EvalError;
use crate::label::{first_error_labels, LabelColumn};
use crate::source::discover::discover_by_split;
use crate::source::flow::{Flow, SourceBatch};
use crate::source::jsonl::{read_labelled, LabelledTrajectory};
use crate::source::parquet::{plan, read_file};
use crate::source::{ColumnMapping, SourceError};

/// One subset to evaluate: its name and the files holding its records.
pub struct Subset {
    pub name: String,
    pub files: Vec<PathBuf>,
}

/// The subsets of the inputs: a file is one subset (named by its stem); a folder holding a
/// Hugging Face data set (`data/gsm8k-00000-of-00001.parquet`, ...) is one subset per split,
/// named by the split (ProcessBench's gsm8k, math, olympiadbench, omnimath), in name order; any
/// other folder is one subset of all its Parquet files.
pub fn subsets(paths: &[PathBuf]) -> Result<Vec<Subset>, EvalError> {
    let mut out: Vec<Subset> = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(Subset {
                name: crate::source::jsonl::subset_name(path),
                files: vec![path.clone()],
            });
            continue;
        }
        for (split, files) in discover_by_split(&path.display().to_string(), "parquet")? {
            out.push(Subset {
                name: split.unwrap_or_else(|| crate::source::jsonl::subset_name(path)),
                files,
            });
        }
    }
    Ok(out)
}

/// Every record of a subset's files, in order.
pub fn read_subset(subset: &Subset) -> Result<Vec<LabelledTrajectory>, EvalError> {
    let mut records = Vec::new();
    for file in &subset.files {
        records.extend(read(file)?);
    }
    Ok(records)
}

/// Every record of `path`, each with a label (or PRMBench's error steps).
pub fn read(path: &Path) -> Result<Vec<LabelledTrajectory>, EvalError> {
    let records = if path.extension().and_then(|e| e.to_str()) == Some("parquet") {
        from_parquet(path)?
    } else {
        read_labelled(path)?
    };
    if let Some(bad) = records
        .iter()
        .position(|r| r.label.is_none() && r.error_steps.is_none())
    {
        return Err(EvalError::Other(format!(
            "{}: record {bad} has no label",
            path.display()
        )));
    }
    Ok(records)
}

/// The record's first wrong step (-1: all correct); PRMBench records give their earliest error.
pub fn first_error(r: &LabelledTrajectory) -> i32 {
    r.label.unwrap_or_else(|| {
        r.error_steps
            .as_ref()
            .and_then(|e| e.iter().min())
            .map_or(-1, |m| m - 1)
    })
}

fn from_parquet(path: &Path) -> Result<Vec<LabelledTrajectory>, EvalError> {
    let planned = plan(&[path.to_path_buf()], &ColumnMapping::default())?;
    let mut out = Vec::new();
    let mut failure = None;
    for file in &planned {
        read_file(file, 1024, &mut |item| match item {
            Flow::GroupEnd(_) => true,
            Flow::Unreadable(u) => {
                failure = Some(u.reason);
                false
            }
            Flow::Batch(SourceBatch {
                batch,
                rows,
                first_row,
                ..
            }) => {
                let Some(col) = LabelColumn::detect(&batch.schema()) else {
                    failure =
                        Some("has no label column (label, ratings, hard_labels or labels)".into());
                    return false;
                };
                let steps: Vec<usize> = rows
                    .iter()
                    .map(|r| r.as_ref().map_or(0, |t| t.steps.len()))
                    .collect();
                let labels = match first_error_labels(&batch, &col, &steps) {
                    Ok(l) => l,
                    Err(e) => {
                        failure = Some(e.to_string());
                        return false;
                    }
                };
                for (i, (row, label)) in rows.into_iter().zip(labels).enumerate() {
                    match (row, label) {
                        (Ok(t), Some(label)) => out.push(LabelledTrajectory {
                            id: None,
                            problem: t.problem,
                            steps: t.steps,
                            label: Some(label),
                            error_steps: None,
                        }),
                        (Err(r), _) => {
                            failure = Some(format!(
                                "row {}: {}: {}",
                                first_row + i as u64,
                                r.column,
                                r.reason
                            ));
                            return false;
                        }
                        (Ok(_), None) => {
                            failure = Some(format!("row {}: no valid label", first_row + i as u64));
                            return false;
                        }
                    }
                }
                true
            }
        });
    }
    match failure {
        Some(message) => Err(EvalError::Source(SourceError::File {
            file: path.to_path_buf(),
            message,
        })),
        None => Ok(out),
    }
}
