//! The loop's files between commits: parts numbered by commit, what a resume removes (parts and
//! checkpoints no commit names, evaluations past the last commit).

use std::path::Path;

use arrow::array::RecordBatch;

use super::labelled;
use crate::pipeline::PipelineError;
use crate::sink::{write_atomic, PartWriter};

/// Writes `batches` as `DIR/PREFIX-K.parquet` (nothing when they hold no row).
pub(super) fn write_part(
    dir: &Path,
    prefix: &str,
    k: usize,
    batches: &[RecordBatch],
) -> Result<(), PipelineError> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(());
    }
    let mut w = PartWriter::new(dir, prefix, usize::MAX)?.with_first_index(k);
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(())
}

/// The part index in `PREFIX-K.parquet` / `unreadable-K.jsonl`.
pub(super) fn part_index(name: &str) -> Option<usize> {
    let stem = name.split('.').next()?;
    stem.rsplit_once('-')?.1.parse().ok()
}

/// Removes what no commit names: parts numbered `committed` or more, and temporary files.
pub(super) fn remove_uncommitted(out: &Path, committed: usize) {
    for sub in ["decisions", "scored", "rejects", labelled::DIR] {
        let dir = out.join(sub);
        crate::sink::atomic::remove_temps(&dir, |_| true);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if part_index(&name).is_none_or(|i| i >= committed) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    crate::sink::atomic::remove_temps(out, |_| true);
    crate::sink::atomic::remove_temps(&out.join("checkpoints"), |_| true);
}

/// Drops development evaluations made after the last commit (the resumed run makes them again).
pub(super) fn trim_eval_log(path: &Path, labels_committed: u64) -> Result<(), PipelineError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["labels"].as_u64())
                .is_some_and(|labels| labels <= labels_committed)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if kept != text {
        write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// Removes every checkpoint but `keep` (relative to `out`).
pub(super) fn remove_other_checkpoints(out: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(out.join("checkpoints")) else {
        return;
    };
    for e in entries.flatten() {
        if out.join(keep) != e.path() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
