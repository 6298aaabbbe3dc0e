//! The windows the scorer cuts from a Parquet file's rows (read in batches of 64, as the
//! pipeline does), for the benches that time the backbone alone or count its work.

use std::path::Path;

use actprm::source::flow::{Flow, SourceBatch};
use actprm::source::parquet::{plan, read_file};
use actprm::source::ColumnMapping;
use actprm::tokenise::{Tokeniser, Window};

pub fn windows(input: &Path, tokeniser: &Tokeniser) -> Vec<Window> {
    let planned = plan(&[input.to_path_buf()], &ColumnMapping::default()).expect("plan");
    let mut windows = Vec::new();
    read_file(&planned[0], 64, &mut |item| {
        if let Flow::Batch(SourceBatch { rows, .. }) = item {
            let ok: Vec<_> = rows.into_iter().flatten().collect();
            let refs: Vec<(&str, &[String])> = ok
                .iter()
                .map(|t| (t.problem.as_str(), t.steps.as_slice()))
                .collect();
            for t in tokeniser.encode(&refs).expect("encode") {
                windows.extend(t.windows);
            }
        }
        true
    });
    windows
}
