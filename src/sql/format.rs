//! Query results to text or Parquet, batch by batch: a result is never collected in memory, so
//! `SELECT * FROM` a million scored rows streams straight to a pipe or file.

use std::io::Write;
use std::str::FromStr;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::arrow::json::{Writer as JsonWriter, WriterBuilder};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::StreamExt;

use super::SqlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people; long cells are cut (see [`TABLE_CELL_WIDTH`]).
    Table,
    /// RFC 4180 CSV with a header; lists and structs as their display text.
    Csv,
    /// JSON Lines: one object per row, nulls written out, lists as arrays.
    Json,
    /// One Parquet file (needs an output path).
    Parquet,
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Self::Table),
            "csv" => Ok(Self::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Self::Json),
            "parquet" => Ok(Self::Parquet),
            other => Err(format!(
                "unknown format {other:?}: expected table, csv, json or parquet"
            )),
        }
    }
}

/// Longest cell shown in table output, in characters; CSV, JSON and Parquet are never cut.
pub const TABLE_CELL_WIDTH: usize = 60;
/// Table output sizes its columns on the first this many rows, then streams the rest.
const TABLE_WINDOW: usize = 1000;

/// Writes every batch of `stream` to `out`; returns the number of rows written. A reader that
/// goes away (`| head`) ends the output quietly.
pub async fn write_stream(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    out: Box<dyn Write + Send>,
) -> Result<u64, SqlError> {
    let schema = stream.schema();
    let mut sink = Sink::new(format, schema, out)?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        match sink.write(&batch) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(rows),
            Err(e) => return Err(output_error(e)),
        }
    }
    match sink.finish() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(output_error(e)),
        _ => Ok(rows),
    }
}

fn write_csv_header(out: &mut dyn Write, schema: &SchemaRef) -> std::io::Result<()> {
    if schema.fields().is_empty() {
        return Ok(());
    }
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| csv_field(f.name()))
        .collect();
    writeln!(out, "{}", names.join(","))
}

fn output_error(e: std::io::Error) -> SqlError {
    SqlError::Output {
        target: "output".into(),
        message: e.to_string(),
    }
}

fn io(e: ArrowError) -> std::io::Error {
    match e {
        ArrowError::IoError(_, e) => e,
        other => std::io::Error::other(other),
    }
}

enum Sink {
    Table(TableWriter),
    Csv {
        out: Box<dyn Write + Send>,
        header: bool,
        schema: SchemaRef,
    },
    Json(JsonWriter<Box<dyn Write + Send>, LineDelimited>),
    Parquet(Box<ArrowWriter<Box<dyn Write + Send>>>),
}

impl Sink {
    fn new(
        format: OutputFormat,
        schema: SchemaRef,
        out: Box<dyn Write + Send>,
    ) -> Result<Self, SqlError> {
        Ok(match format {
            OutputFormat::Table => Sink::Table(TableWriter {
                out,
                schema,
                widths: None,
                pending: Vec::new(),
            }),
            OutputFormat::Csv => Sink::Csv {
                out,
                header: false,
                schema,
            },
            OutputFormat::Json => Sink::Json(
                WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, LineDelimited>(out),
            ),
            OutputFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(
                        ZstdLevel::try_new(3).expect("zstd level 3 is valid"),
                    ))
                    .build();
                let writer = ArrowWriter::try_new(out, schema, Some(props)).map_err(|e| {
                    SqlError::Output {
                        target: "Parquet output".into(),
                        message: e.to_string(),
                    }
                })?;
                Sink::Parquet(Box::new(writer))
            }
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        match self {
            Sink::Table(t) => t.write(batch),
            Sink::Csv {
                out,
                header,
                schema,
            } => {
                if !*header {
                    *header = true;
                    write_csv_header(out, schema)?;
                }
                for row in cells(batch, "").map_err(io)? {
                    let fields: Vec<String> = row.iter().map(|c| csv_field(c)).collect();
                    writeln!(out, "{}", fields.join(","))?;
                }
                out.flush()
            }
            Sink::Json(w) => {
                w.write(batch).map_err(io)?;
                w.get_mut().flush()
            }
            Sink::Parquet(w) => w.write(batch).map_err(std::io::Error::other),
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Table(t) => t.finish(),
            Sink::Csv {
                mut out,
                header,
                schema,
            } => {
                if !header {
                    // an empty result still gets its header
                    write_csv_header(&mut out, &schema)?;
                }
                out.flush()
            }
            Sink::Json(mut w) => {
                w.finish().map_err(io)?;
                w.get_mut().flush()
            }
            Sink::Parquet(w) => (*w).close().map(|_| ()).map_err(std::io::Error::other),
        }
    }
}

/// Every cell of a batch as display text, row by row (`null` for NULL).
pub fn cells(batch: &RecordBatch, null: &str) -> Result<Vec<Vec<String>>, ArrowError> {
    let options = FormatOptions::new().with_null(null);
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect())
        .collect())
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// Aligned table output with bounded memory: columns are sized on the first rows.
struct TableWriter {
    out: Box<dyn Write + Send>,
    schema: SchemaRef,
    widths: Option<Vec<usize>>,
    pending: Vec<Vec<String>>,
}

/// One line of a table cell, cut to the column's width with an ellipsis.
fn table_cell(value: &str, width: usize) -> String {
    let flat: String = value
        .chars()
        .map(|c| {
            if c == '\n' || c == '\r' || c == '\t' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let len = flat.chars().count();
    if len <= width {
        format!("{flat}{}", " ".repeat(width - len))
    } else {
        let cut: String = flat.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

impl TableWriter {
    fn write(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        let rows = cells(batch, "NULL").map_err(io)?;
        if self.widths.is_some() {
            return self.print_rows(&rows);
        }
        self.pending.extend(rows);
        if self.pending.len() >= TABLE_WINDOW {
            self.start()?;
        }
        Ok(())
    }

    /// Sizes the columns on the rows seen so far and prints the header and those rows.
    fn start(&mut self) -> std::io::Result<()> {
        let names: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let widths: Vec<usize> = (0..names.len())
            .map(|c| {
                let longest = self
                    .pending
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([names[c].chars().count()])
                    .max()
                    .unwrap_or(1);
                longest.clamp(1, TABLE_CELL_WIDTH)
            })
            .collect();
        let pending = std::mem::take(&mut self.pending);
        self.widths = Some(widths);
        if names.is_empty() {
            return Ok(());
        }
        self.border()?;
        self.print_rows(&[names])?;
        self.border()?;
        self.print_rows(&pending)
    }

    fn border(&mut self) -> std::io::Result<()> {
        let widths = self.widths.as_deref().unwrap_or_default();
        let line: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
        writeln!(self.out, "+{}+", line.join("+"))
    }

    fn print_rows(&mut self, rows: &[Vec<String>]) -> std::io::Result<()> {
        let widths = self.widths.clone().unwrap_or_default();
        if widths.is_empty() {
            return Ok(());
        }
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(v, &w)| table_cell(v, w))
                .collect();
            writeln!(self.out, "| {} |", line.join(" | "))?;
        }
        self.out.flush()
    }

    fn finish(mut self) -> std::io::Result<()> {
        if self.widths.is_none() {
            self.start()?;
        }
        if !self.schema.fields().is_empty() {
            self.border()?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("abc"), "abc");
        assert_eq!(csv_field("[0.5, 0.25]"), "\"[0.5, 0.25]\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("a\nb"), "\"a\nb\"");
    }

    #[test]
    fn table_cells_are_padded_or_cut() {
        assert_eq!(table_cell("ab", 4), "ab  ");
        assert_eq!(table_cell("abcdef", 4), "abc…");
        assert_eq!(table_cell("a\nb", 3), "a b");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("JSON".parse::<OutputFormat>(), Ok(OutputFormat::Json));
        assert_eq!("jsonl".parse::<OutputFormat>(), Ok(OutputFormat::Json));
        assert!("xml".parse::<OutputFormat>().is_err());
    }
}
