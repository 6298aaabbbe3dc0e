//! The source stage: planned Parquet files, read in order, as batches of extracted rows (with
//! each unusable row's reason), unreadable groups and row-group ends.

use crate::pipeline::rows::{RowBatch, RowItem};
use crate::pipeline::stage::{Outlet, Source};
use crate::pipeline::PipelineError;
use crate::source::flow::{Flow, SourceBatch, SourceItem};
use crate::source::parquet::{read_file, PlannedFile};

pub struct ReadFiles {
    pub planned: Vec<PlannedFile>,
    pub batch_rows: usize,
    /// Rows already done by an earlier run (the active loop's resume point), not emitted again.
    pub skip_rows: u64,
}

impl Source for ReadFiles {
    type Out = RowItem;

    fn name(&self) -> &'static str {
        "read"
    }

    fn run(self, output: Outlet<RowItem>) -> Result<(), PipelineError> {
        let mut skip = self.skip_rows;
        for file in &self.planned {
            let mut open = true;
            read_file(file, self.batch_rows, &mut |item| {
                let Some(item) = skipping(item, &mut skip) else {
                    return true;
                };
                crate::failpoint::hit("read");
                open = output.send(match item {
                    Flow::Batch(b) => Flow::Batch(RowBatch::from(b)),
                    Flow::Unreadable(u) => Flow::Unreadable(u),
                    Flow::GroupEnd(g) => Flow::GroupEnd(g),
                });
                open
            });
            if !open {
                break;
            }
        }
        Ok(())
    }
}

/// `item` minus the first `skip` rows of the run (`None`: all of it was done before).
fn skipping(item: SourceItem, skip: &mut u64) -> Option<SourceItem> {
    if *skip == 0 {
        return Some(item);
    }
    match item {
        Flow::Batch(SourceBatch {
            path,
            first_row,
            batch,
            mut rows,
        }) => {
            let n = batch.num_rows() as u64;
            if n <= *skip {
                *skip -= n;
                return None;
            }
            let cut = *skip as usize;
            *skip = 0;
            let rest = rows.split_off(cut);
            Some(Flow::Batch(SourceBatch {
                path,
                first_row: first_row + cut as u64,
                batch: batch.slice(cut, batch.num_rows() - cut),
                rows: rest,
            }))
        }
        // an unreadable group is skipped whole, as it was counted whole; a resume point inside
        // one cannot come from a commit and surfaces as a row-count mismatch
        Flow::Unreadable(u) if u.rows <= *skip => {
            *skip -= u.rows;
            None
        }
        item @ Flow::Unreadable(_) => {
            *skip = 0;
            Some(item)
        }
        other => Some(other),
    }
}
