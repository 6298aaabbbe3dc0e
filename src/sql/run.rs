//! `actprm sql` as a library call: run statements (or the shell) over registered tables and write
//! the results to stdout or, all statements having succeeded, atomically to a file.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::format::write_stream;
use super::{register_tables, session, shell, OutputFormat, SqlConfig, SqlError, TableSpec};

/// One `actprm sql` invocation.
#[derive(Debug, Clone, Default)]
pub struct SqlRequest {
    /// Statements separated by ';'; `None` opens the shell.
    pub query: Option<String>,
    pub tables: Vec<TableSpec>,
    /// Default: from `output`'s extension, else a table on a terminal and CSV otherwise.
    pub format: Option<OutputFormat>,
    pub output: Option<PathBuf>,
    pub config: SqlConfig,
}

pub fn run(request: SqlRequest) -> Result<(), SqlError> {
    let SqlRequest {
        query,
        tables,
        format,
        output,
        config,
    } = request;
    config
        .score
        .validate()
        .map_err(|e| SqlError::Usage(e.to_string()))?;
    let from_extension = output
        .as_ref()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .and_then(|e| e.parse().ok());
    let format = format.or(from_extension).unwrap_or(
        if output.is_none() && std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Csv
        },
    );
    if format == OutputFormat::Parquet && output.is_none() {
        return Err(SqlError::Usage(
            "--format parquet needs --output FILE (or use COPY (query) TO 'file.parquet')".into(),
        ));
    }
    let output_error = |target: &std::path::Path, e: &dyn std::fmt::Display| SqlError::Output {
        target: target.display().to_string(),
        message: e.to_string(),
    };
    // --output is written under a temporary name and renamed once every statement succeeded
    let partial = output
        .as_ref()
        .map(|p| crate::sink::atomic::temp_path(p, &crate::sink::atomic::process_tag()));
    let file = match (&query, &partial) {
        (Some(_), Some(path)) => {
            Some(std::fs::File::create(path).map_err(|e| output_error(path, &e))?)
        }
        (None, Some(_)) => {
            return Err(SqlError::Usage(
                "--output needs a QUERY (the shell prints to the terminal)".into(),
            ))
        }
        _ => None,
    };
    let runtime = crate::runtime::start("actprm-sql", None)
        .map_err(|e| SqlError::Usage(format!("cannot start the runtime: {e}")))?;
    let ran = runtime.block_on(async {
        let ctx = session(&config);
        register_tables(&ctx, &tables).await?;
        let Some(query) = query else {
            return shell::run(&ctx, &config, format).await;
        };
        let mut results = 0;
        super::execute(&ctx, &config, &query, |frame| {
            let produces_rows = !frame.schema().fields().is_empty();
            results += usize::from(produces_rows);
            let repeated_parquet = format == OutputFormat::Parquet && results > 1;
            let out: Result<Box<dyn std::io::Write + Send>, SqlError> = match &file {
                _ if repeated_parquet => Err(SqlError::Usage(
                    "Parquet output holds one result: run one query per file".into(),
                )),
                Some(f) => f
                    .try_clone()
                    .map(|f| Box::new(std::io::BufWriter::new(f)) as Box<dyn std::io::Write + Send>)
                    .map_err(|e| SqlError::Output {
                        target: "--output".into(),
                        message: e.to_string(),
                    }),
                None => Ok(Box::new(std::io::BufWriter::new(std::io::stdout()))),
            };
            async move {
                let stream = frame.execute_stream().await?;
                if produces_rows {
                    write_stream(stream, format, out?).await?;
                } else {
                    // DDL: run it, nothing to print.
                    write_stream(stream, OutputFormat::Csv, Box::new(std::io::sink())).await?;
                }
                Ok(())
            }
        })
        .await
    });
    if let (Some(partial), Some(target)) = (&partial, &output) {
        if ran.is_ok() {
            crate::sink::atomic::commit(partial, target).map_err(|e| output_error(target, &e))?;
        } else {
            let _ = std::fs::remove_file(partial);
        }
    }
    ran
}
