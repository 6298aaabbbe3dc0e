//! Sinks: where rows end up. Every file is written under a temporary name and renamed into place,
//! so a reader (or a resumed run) never sees half a file.

pub mod atomic;
pub mod commit;
pub mod dataset_card;
pub mod format;
pub mod output_folder;
pub mod parts;
pub mod rejects;
pub mod remote;

pub use atomic::{write_atomic, write_atomic_tagged};
pub use format::{DataFile, DataFormat, DataOutput};
pub use parts::PartWriter;
pub use rejects::RejectSink;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error(transparent)]
    Remote(#[from] crate::location::LocationError),
}

impl SinkError {
    pub(crate) fn at(path: &std::path::Path) -> impl Fn(String) -> SinkError + '_ {
        move |message| SinkError::Write {
            path: path.to_path_buf(),
            message,
        }
    }
}

/// What a run writing parts (`score`, `label`) puts in its folder: its data parts in any
/// [`DataFormat`] (`part-*.parquet|jsonl|arrow`, or the Hub's `data/train-*.parquet`), `rejects/`
/// and `summary.json` (see [`output_folder`] for the rule). A rerun in another format is refused
/// as any rerun is, and `--overwrite` removes the earlier format's parts too.
pub const PARTS_LAYOUT: output_folder::Layout = output_folder::Layout {
    kind: "run writing parts",
    entries: &[
        output_folder::Entry::Files("part-", ".parquet"),
        output_folder::Entry::Files("part-", ".jsonl"),
        output_folder::Entry::Files("part-", ".arrow"),
        output_folder::Entry::Folder("data", &[("train-", ".parquet")]),
        output_folder::Entry::Folder(
            "rejects",
            &[("rejects-", ".parquet"), ("unreadable", ".jsonl")],
        ),
        output_folder::Entry::File("summary.json"),
    ],
};
