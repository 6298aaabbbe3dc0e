//! The loop's files between commits: parts numbered by commit, what a resume removes (parts and
//! checkpoints no commit names, evaluations past the last commit).

use std::path::Path;

use arrow::array::RecordBatch;

use super::run::labelled;
use crate::pipeline::PipelineError;
use crate::sink::commit::Promised;
use crate::sink::output_folder::{Entry, Layout};
use crate::sink::parts::relative_name;
use crate::sink::{write_atomic, DataFormat, PartWriter};

/// What the loop writes in its folder (the output-folder rule of `sink::output_folder`): a
/// fresh run refuses a folder holding any of it, `--overwrite` removes exactly this. `model/`
/// is not listed: it is a model directory, replaced by the export keeping what others wrote.
pub(super) const LAYOUT: Layout = Layout {
    kind: "active run",
    entries: &[
        Entry::File(crate::sink::commit::FINGERPRINT_FILE),
        Entry::File(super::run::STATE_FILE),
        Entry::File(super::run::LEGACY_STATE_FILE),
        Entry::File("summary.json"),
        Entry::File("eval.jsonl"),
        Entry::Folder("decisions", &[("decisions-", ".parquet")]),
        Entry::Folder(
            "scored",
            &[
                ("part-", ".parquet"),
                ("part-", ".jsonl"),
                ("part-", ".arrow"),
            ],
        ),
        Entry::Folder(
            "rejects",
            &[("rejects-", ".parquet"), ("unreadable-", ".jsonl")],
        ),
        Entry::Folder(labelled::DIR, &[("labelled-", ".arrow")]),
        Entry::Folder("checkpoints", &[("ckpt-", "")]),
    ],
};

/// Writes `batches` as `OUT/SUB/PREFIX-K.EXT` in `format` (nothing when they hold no row);
/// returns what the commit record promises of it.
pub(super) fn write_part(
    out: &Path,
    (sub, prefix, format): (&str, &str, DataFormat),
    k: usize,
    batches: &[RecordBatch],
) -> Result<Promised, PipelineError> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Promised::default());
    }
    let mut w = PartWriter::new(&out.join(sub), prefix, usize::MAX)?
        .with_format(format)
        .with_first_index(k);
    for b in batches {
        w.write(b)?;
    }
    Ok(w.finish_counted()?
        .into_iter()
        .map(|(path, rows)| (relative_name(&path, out), rows))
        .collect())
}

/// The part index in `PREFIX-K.parquet` / `unreadable-K.jsonl`.
pub(super) fn part_index(name: &str) -> Option<usize> {
    let stem = name.split('.').next()?;
    stem.rsplit_once('-')?.1.parse().ok()
}

/// Removes what no commit names: the loop's parts numbered `committed` or more, and temporary
/// files. Files of other names in those folders are not the loop's and stay.
pub(super) fn remove_uncommitted(out: &Path, committed: usize) {
    for entry in LAYOUT.entries {
        let Entry::Folder(sub, patterns) = entry else {
            continue;
        };
        let dir = out.join(sub);
        crate::sink::atomic::remove_temps(&dir, |_| true);
        if *sub == "checkpoints" {
            continue; // remove_other_checkpoints keeps the committed one
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let ours = patterns
                .iter()
                .any(|(prefix, suffix)| name.starts_with(prefix) && name.ends_with(suffix));
            if ours && part_index(&name).is_none_or(|i| i >= committed) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    crate::sink::atomic::remove_temps(out, |_| true);
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

/// Removes every checkpoint (`ckpt-*`) but `keep` (relative to `out`).
pub(super) fn remove_other_checkpoints(out: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(out.join("checkpoints")) else {
        return;
    };
    for e in entries.flatten() {
        let ours = e.file_name().to_string_lossy().starts_with("ckpt-");
        if ours && out.join(keep) != e.path() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
