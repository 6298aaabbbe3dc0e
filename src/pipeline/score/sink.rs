//! Where scored batches go: the `ScoredSink` trait (filter and the active loop bring their own)
//! and `actprm score`'s sink, Parquet parts plus rejects plus the summary.

use super::*;

/// Where scored rows go. `actprm score` writes part files; `actprm filter` writes one committed
/// file per (input file, row group) so an interrupted run resumes exactly.
pub trait ScoredSink: Send {
    fn scored(
        &mut self,
        path: &Path,
        first_row: u64,
        input: &RecordBatch,
        output: &RecordBatch,
        rejected: &[RejectedRow],
        scores: &[RowScore],
    ) -> Result<(), PipelineError>;
    fn unreadable(
        &mut self,
        path: &Path,
        first_row: Option<u64>,
        rows: u64,
        reason: &str,
    ) -> Result<(), PipelineError>;
    /// Every row of this row group has been passed to `scored` or `unreadable`.
    fn group_end(&mut self, _path: &Path, _group: usize) -> Result<(), PipelineError> {
        Ok(())
    }
    /// Closes everything; returns the files written, relative to the output folder.
    fn finish(self: Box<Self>) -> Result<Vec<String>, PipelineError>;
}

/// `actprm score`'s sink: rolling part files plus the rejects folder.
pub(super) struct PartsSink {
    pub(super) output: PathBuf,
    pub(super) parts: PartWriter,
    pub(super) rejects: RejectSink,
}

impl ScoredSink for PartsSink {
    fn scored(
        &mut self,
        path: &Path,
        _first_row: u64,
        input: &RecordBatch,
        output: &RecordBatch,
        rejected: &[RejectedRow],
        _scores: &[RowScore],
    ) -> Result<(), PipelineError> {
        self.parts.write(output)?;
        self.rejects.rows(path, input, rejected)?;
        Ok(())
    }

    fn unreadable(
        &mut self,
        path: &Path,
        first_row: Option<u64>,
        rows: u64,
        reason: &str,
    ) -> Result<(), PipelineError> {
        self.rejects.unreadable(path, first_row, rows, reason);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<String>, PipelineError> {
        let parts = self
            .parts
            .finish()?
            .iter()
            .map(|p| relative(p, &self.output))
            .collect();
        self.rejects.finish()?;
        Ok(parts)
    }
}

/// The reason without row-specific detail (for the per-reason counts).
pub(super) fn short_reason(reason: &str) -> String {
    let r = reason.split(':').next().unwrap_or(reason);
    r.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
        .replace(|c: char| c.is_ascii_digit(), "N")
}

fn relative(p: &Path, base: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}
