//! `FROM 'x.jsonl'`: DataFusion reads JSON Lines but knows them by `.json` only; this registers
//! the same reader under the extension the files usually have.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::common::GetExt;
use datafusion::datasource::file_format::json::JsonFormatFactory;
use datafusion::datasource::file_format::{FileFormat, FileFormatFactory};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

/// DataFusion's newline-delimited JSON reader, under `.jsonl`.
#[derive(Debug)]
struct JsonLinesFormatFactory(JsonFormatFactory);

impl FileFormatFactory for JsonLinesFormatFactory {
    fn create(
        &self,
        state: &dyn Session,
        format_options: &HashMap<String, String>,
    ) -> Result<Arc<dyn FileFormat>> {
        self.0.create(state, format_options)
    }

    fn default(&self) -> Arc<dyn FileFormat> {
        self.0.default()
    }
}

impl GetExt for JsonLinesFormatFactory {
    fn get_ext(&self) -> String {
        "jsonl".into()
    }
}

/// Lets queries name `.jsonl` files directly, as they name Parquet files.
pub fn register(ctx: &SessionContext) -> Result<()> {
    ctx.state_ref().write().register_file_format(
        Arc::new(JsonLinesFormatFactory(JsonFormatFactory::new())),
        false,
    )
}
