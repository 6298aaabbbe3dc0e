//! `actprm convert` (and a pipeline file's jsonl / processbench source): labelled data as released
//! -> one Parquet file (id, problem, steps, label). A record that cannot be converted is kept with
//! its file, line and reason in `OUTPUT.rejects.jsonl`, never dropped.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::PipelineError;
use crate::source::raw::{convert_file, RawReject};

/// What a conversion wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    pub output: PathBuf,
    pub records: usize,
    pub rejected: Vec<Rejected>,
    /// Where the rejects are listed (absent when there are none).
    pub rejects_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl From<RawReject> for Rejected {
    fn from(r: RawReject) -> Self {
        Self {
            file: r.file,
            line: r.line,
            reason: r.reason,
        }
    }
}

/// Records per Arrow batch written (a few MB of text each).
const CONVERT_BATCH_ROWS: usize = 4096;

/// The rejects list beside `output`.
pub fn rejects_path(output: &Path) -> PathBuf {
    PathBuf::from(format!("{}.rejects.jsonl", output.display()))
}

/// Converts `inputs` into the Parquet file `output` (written under a temporary name and renamed:
/// no other file in its folder is touched).
pub fn convert(inputs: &[PathBuf], output: &Path) -> Result<ConvertReport, PipelineError> {
    let mut records = Vec::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    for path in inputs {
        let (r, bad) = convert_file(path)?;
        records.extend(r);
        rejected.extend(bad.into_iter().map(Rejected::from));
    }
    if records.is_empty() {
        return Err(PipelineError::NothingConverted {
            rejected: rejected.len(),
        });
    }
    // batches of bounded size: one batch of a whole file would overflow Arrow's 32-bit string
    // offsets past 2 GiB of text
    let batches: Vec<_> = records
        .chunks(CONVERT_BATCH_ROWS)
        .map(crate::source::jsonl::to_record_batch)
        .collect();
    crate::sink::parquet::write_file(output, &batches)?;
    let list = rejects_path(output);
    let rejects_file = if rejected.is_empty() {
        let _ = std::fs::remove_file(&list);
        None
    } else {
        let mut text = String::new();
        for r in &rejected {
            text += &serde_json::to_string(r).unwrap_or_default();
            text.push('\n');
        }
        crate::sink::write_atomic(&list, text.as_bytes())?;
        Some(list)
    };
    Ok(ConvertReport {
        output: output.to_path_buf(),
        records: records.len(),
        rejected,
        rejects_file,
    })
}

impl crate::report::Report for ConvertReport {
    fn table(&self) -> String {
        let rejected = match &self.rejects_file {
            Some(list) => format!(
                "; {} records rejected (listed in {})",
                self.rejected.len(),
                list.display()
            ),
            None => String::new(),
        };
        format!(
            "wrote {} trajectories to {}{rejected}\n",
            self.records,
            self.output.display()
        )
    }
}
