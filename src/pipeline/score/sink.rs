//! Where scored batches go: the `ScoredSink` trait (filter and the active loop bring their own)
//! and `actprm score`'s sink, Parquet parts plus rejects plus the summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;

/// One scored batch as a sink sees it.
#[derive(Clone, Copy)]
pub struct SinkBatch<'a> {
    pub path: &'a Path,
    /// The batch as read (rejects are written from it).
    pub input: &'a RecordBatch,
    /// The usable rows plus the score columns, in `scores`' order.
    pub output: &'a RecordBatch,
    pub rejected: &'a [RejectedRow],
    pub scores: &'a [RowScore],
    /// The scored rows' problem and steps, in `scores`' order.
    pub trajectories: &'a [crate::source::columns::Trajectory],
    /// The scored rows' step features, in `scores`' order (empty unless the job asks for them:
    /// a feature file, or a sink that chooses rows by them).
    pub features: &'a [crate::formats::features::FeatureRow],
}

/// Where scored rows go. `actprm score` writes part files; `actprm filter` writes one committed
/// file per (input file, row group) so an interrupted run resumes exactly.
pub trait ScoredSink: Send {
    fn scored(&mut self, batch: &SinkBatch<'_>) -> Result<(), PipelineError>;
    fn unreadable(&mut self, unreadable: &Unreadable) -> Result<(), PipelineError>;
    /// Every row of this row group has been passed to `scored` or `unreadable`.
    fn group_end(&mut self, _path: &Path, _group: usize) -> Result<(), PipelineError> {
        Ok(())
    }
    /// Closes everything; returns the files written, relative to the output folder.
    fn finish(self: Box<Self>) -> Result<Vec<String>, PipelineError>;
}

/// `actprm score`'s sink: rolling part files in every data sink's folder (the run's own first)
/// plus the rejects folder (the run's own only).
pub(super) struct PartsSink {
    pub(super) output: PathBuf,
    pub(super) parts: Vec<PartWriter>,
    pub(super) rejects: RejectSink,
    /// A pipeline's `sql` transform after score, and the rows it passed on.
    pub(super) query: Option<(crate::sql::row_query::RowQuery, Arc<AtomicU64>)>,
}

impl ScoredSink for PartsSink {
    fn scored(&mut self, batch: &SinkBatch<'_>) -> Result<(), PipelineError> {
        let transformed = match &self.query {
            Some((query, written)) => {
                let rows = query.apply(batch.output)?;
                written.fetch_add(rows.num_rows() as u64, Ordering::Relaxed);
                Some(rows)
            }
            None => None,
        };
        for parts in &mut self.parts {
            parts.write(transformed.as_ref().unwrap_or(batch.output))?;
        }
        self.rejects.rows(batch.path, batch.input, batch.rejected)?;
        Ok(())
    }

    fn unreadable(&mut self, unreadable: &Unreadable) -> Result<(), PipelineError> {
        self.rejects.unreadable(unreadable.record());
        Ok(())
    }

    /// Returns the run's own parts, relative to its folder.
    fn finish(self: Box<Self>) -> Result<Vec<String>, PipelineError> {
        let own = crate::sink::parts::finish_all(self.parts, &self.output)?;
        self.rejects.finish()?;
        Ok(own)
    }
}

/// The reason without row-specific detail (for the per-reason counts).
pub(super) fn short_reason(reason: &str) -> String {
    let r = reason.split(':').next().unwrap_or(reason);
    r.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
        .replace(|c: char| c.is_ascii_digit(), "N")
}
