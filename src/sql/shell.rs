//! The interactive shell: statements end with `;` and may span lines; dot commands (`.tables`,
//! `\d NAME`, `.functions`, `.format`, `.quit`) act at once. History is kept in
//! `~/.actprm_sql_history`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use super::format::{write_stream, OutputFormat};
use super::{functions, session, SqlConfig, SqlError};

const HELP: &str = "\
Statements end with ';' and may span several lines. Query Parquet directly with
SELECT ... FROM 'path/*.parquet', or tables registered with --table NAME=PATH.

  .tables            list tables            (also \\d, \\dt)
  .schema NAME       columns of a table     (also \\d NAME; NAME may be a quoted path)
  .functions [NAME]  the PRM functions, or one in full   (also \\df)
  .format FORMAT     table, csv or json
  .help              this text              (also \\?)
  .quit              leave                  (also .exit, \\q, Ctrl-D)";

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".actprm_sql_history"))
}

/// Runs the shell until `.quit` or end of input.
pub async fn run(
    ctx: &SessionContext,
    config: &SqlConfig,
    mut format: OutputFormat,
) -> Result<(), SqlError> {
    let mut editor = DefaultEditor::new().map_err(|e| SqlError::Shell(e.to_string()))?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!("actprm sql: statements end with ';'; .help for commands, .quit to leave");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "actprm> "
        } else {
            "     -> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(SqlError::Shell(e.to_string())),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && (trimmed.starts_with('.') || trimmed.starts_with('\\')) {
            let _ = editor.add_history_entry(trimmed);
            match command(ctx, config, trimmed, &mut format).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    eprintln!("error: {e}");
                    continue;
                }
            }
        }
        if trimmed.is_empty() && buffer.is_empty() {
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(sql.trim_end());
        if let Err(e) = run_sql(ctx, config, &sql, format).await {
            eprintln!("error: {e}");
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// Runs every statement, printing each result and its row count and time.
async fn run_sql(
    ctx: &SessionContext,
    config: &SqlConfig,
    sql: &str,
    format: OutputFormat,
) -> Result<(), SqlError> {
    session::execute(ctx, config, sql, |frame| async move {
        let started = Instant::now();
        let stream = frame.execute_stream().await?;
        let rows = write_stream(stream, format, Box::new(std::io::stdout())).await?;
        eprintln!("({rows} rows, {:.3} s)", started.elapsed().as_secs_f64());
        Ok(())
    })
    .await
}

/// One dot/backslash command; `Ok(false)` ends the shell.
async fn command(
    ctx: &SessionContext,
    config: &SqlConfig,
    line: &str,
    format: &mut OutputFormat,
) -> Result<bool, SqlError> {
    let (name, arg) = match line.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim().trim_end_matches(';').trim()),
        None => (line.trim_end_matches(';'), ""),
    };
    match (name, arg) {
        (".quit" | ".exit" | "\\q", _) => return Ok(false),
        (".help" | "\\?", _) => println!("{HELP}"),
        (".tables" | "\\dt", _) | ("\\d", "") => {
            for t in table_names(ctx) {
                println!("{t}");
            }
        }
        (".schema" | ".describe" | "\\d", table) if !table.is_empty() => {
            describe(ctx, table, *format).await?
        }
        (".functions" | "\\df", which) => print_functions(&functions::udfs(config), which)?,
        (".format", f) => {
            *format = f.parse().map_err(SqlError::Usage)?;
            if *format == OutputFormat::Parquet {
                *format = OutputFormat::Table;
                return Err(SqlError::Usage(
                    "Parquet output needs a file: use COPY (query) TO 'DIR/file.parquet'".into(),
                ));
            }
        }
        _ => {
            return Err(SqlError::Usage(format!(
                "unknown command {line:?}; .help lists them"
            )))
        }
    }
    Ok(true)
}

/// Registered tables (not the information schema).
pub fn table_names(ctx: &SessionContext) -> Vec<String> {
    let mut names: Vec<String> = ctx
        .catalog_names()
        .iter()
        .filter_map(|c| ctx.catalog(c))
        .flat_map(|catalog| {
            catalog
                .schema_names()
                .into_iter()
                .filter(|s| s != "information_schema")
                .filter_map(|s| catalog.schema(&s))
                .flat_map(|schema| schema.table_names())
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names
}

/// Columns of a table or a quoted path: name, type, nullable.
async fn describe(ctx: &SessionContext, table: &str, format: OutputFormat) -> Result<(), SqlError> {
    let frame = ctx.sql(&format!("SELECT * FROM {table} LIMIT 0")).await?;
    let fields = frame.schema().fields();
    let batch = RecordBatch::try_from_iter([
        (
            "column_name",
            Arc::new(StringArray::from_iter_values(
                fields.iter().map(|f| f.name().as_str()),
            )) as ArrayRef,
        ),
        (
            "data_type",
            Arc::new(StringArray::from_iter_values(
                fields.iter().map(|f| f.data_type().to_string()),
            )) as ArrayRef,
        ),
        (
            "is_nullable",
            Arc::new(StringArray::from_iter_values(fields.iter().map(|f| {
                if f.is_nullable() {
                    "YES"
                } else {
                    "NO"
                }
            }))) as ArrayRef,
        ),
    ])
    .map_err(|e| SqlError::Usage(e.to_string()))?;
    let stream = ctx.read_batch(batch)?.execute_stream().await?;
    write_stream(stream, format, Box::new(std::io::stdout())).await?;
    Ok(())
}

/// Short list of the PRM functions, or one in full with its arguments and example.
pub fn print_functions(udfs: &[ScalarUDF], which: &str) -> Result<(), SqlError> {
    if which.is_empty() {
        for udf in udfs {
            if let Some(doc) = udf.documentation() {
                println!(
                    "{:<62} {}",
                    doc.syntax_example,
                    doc.description.split(". ").next().unwrap_or_default()
                );
            }
        }
        return Ok(());
    }
    let udf = udfs
        .iter()
        .find(|u| u.name().eq_ignore_ascii_case(which))
        .ok_or_else(|| {
            SqlError::Usage(format!("no PRM function {which:?}; .functions lists them"))
        })?;
    if let Some(doc) = udf.documentation() {
        println!("{}\n\n{}\n", doc.syntax_example, doc.description);
        for (name, text) in doc.arguments.iter().flatten() {
            println!("  {name:<12} {text}");
        }
        if let Some(example) = &doc.sql_example {
            println!(
                "\n{}",
                example
                    .trim_start_matches("```sql\n")
                    .trim_end_matches("```")
                    .trim_end()
            );
        }
    }
    Ok(())
}
