//! The `sql` transform of pipeline files: one query over the source, its rows materialised as
//! one Parquet file the next stage reads. Same session, functions and write guard as `actprm sql`.

use std::path::Path;

use super::format::{write_stream, OutputFormat};
use super::session::{execute_statement, parse_statements, register_files, session, table_files};
use super::{SqlConfig, SqlError};

/// Runs `query` with every file behind `inputs` (files, globs or folders) registered as table
/// `input`, and writes its rows to `target` (a temporary name, then renamed, so a crash never
/// leaves half a file where the next stage looks). Returns the number of rows written.
pub fn query_to_parquet(
    config: &SqlConfig,
    inputs: &[String],
    query: &str,
    target: &Path,
) -> Result<u64, SqlError> {
    let mut files = Vec::new();
    for input in inputs {
        files.extend(table_files(input).map_err(|message| SqlError::Table {
            spec: format!("input={input}"),
            message,
        })?);
    }
    let statements = parse_statements(query)?;
    let [statement] = <[_; 1]>::try_from(statements).map_err(|s: Vec<_>| {
        SqlError::Usage(format!(
            "an sql stage runs one query, this one has {} statements",
            s.len()
        ))
    })?;
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| output_error(parent, e))?;
    }
    let partial = crate::sink::atomic::temp_path(target, &crate::sink::atomic::process_tag());
    let runtime = crate::runtime::start("actprm-sql", None)
        .map_err(|e| SqlError::Usage(format!("starting the SQL runtime: {e}")))?;
    let rows = runtime.block_on(async {
        let ctx = session(config);
        register_files(&ctx, "input", &files, "input").await?;
        let frame = execute_statement(&ctx, config, statement).await?;
        if frame.schema().fields().is_empty() {
            return Err(SqlError::Usage(
                "an sql stage needs a query that returns rows (SELECT ...), not a statement".into(),
            ));
        }
        let out = std::fs::File::create(&partial).map_err(|e| output_error(&partial, e))?;
        let stream = frame.execute_stream().await?;
        write_stream(
            stream,
            OutputFormat::Parquet,
            Box::new(std::io::BufWriter::new(out)),
        )
        .await
    });
    match rows {
        Ok(rows) => {
            crate::sink::atomic::commit(&partial, target).map_err(|e| SqlError::Output {
                target: target.display().to_string(),
                message: e.to_string(),
            })?;
            Ok(rows)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn output_error(path: &Path, e: std::io::Error) -> SqlError {
    SqlError::Output {
        target: path.display().to_string(),
        message: e.to_string(),
    }
}
