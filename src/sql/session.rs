//! The session factory: one DataFusion `SessionContext` with Parquet paths queryable by name
//! (`SELECT * FROM 'x.parquet'`), the PRM functions registered, and a write guard so a query can
//! only write under the folder the user allowed.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::config::ConfigOptions;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::options::{
    ArrowReadOptions, JsonReadOptions, ParquetReadOptions, ReadOptions,
};
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::{source_as_provider, MemTable};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};

use super::{functions, SqlError, WriteRefused};
use crate::model::RuntimeOptions;
use crate::score::ScoreOptions;

/// Everything a session needs; the CLI flags and (later) pipeline files fill the same struct.
#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// Folder under which statements may write (COPY, INSERT, CREATE EXTERNAL TABLE);
    /// `None` refuses every write.
    pub allow_write: Option<PathBuf>,
    /// Model that `prm_score` runs; `None` = the embedded default model.
    pub model: Option<PathBuf>,
    pub runtime: RuntimeOptions,
    /// Thresholds `prm_score` applies (tau, delta_pred, delta_std).
    pub score: ScoreOptions,
    /// Rows per batch inside DataFusion; also the most rows one `prm_score` call scores at once.
    pub batch_size: usize,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            allow_write: None,
            model: None,
            runtime: RuntimeOptions::default(),
            score: ScoreOptions::default(),
            batch_size: 8192,
        }
    }
}

/// A `--table NAME=PATH` registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    /// A Parquet file, a glob, or a folder (a score output: its `part-*.parquet`).
    pub path: String,
}

impl FromStr for TableSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, path) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=PATH"))?;
        let name = name.trim().to_ascii_lowercase();
        let plain = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(format!(
                "table name {name:?} must be letters, digits and _ (not starting with a digit)"
            ));
        }
        if path.trim().is_empty() {
            return Err(format!("table {name} has an empty path"));
        }
        Ok(Self {
            name,
            path: path.trim().to_string(),
        })
    }
}

/// A new session: Parquet paths queryable directly, the PRM functions, the write guard.
/// Cheap: the model behind `prm_score` is loaded on its first call only.
pub fn session(config: &SqlConfig) -> SessionContext {
    let options = SessionConfig::new()
        .with_information_schema(true)
        .with_batch_size(config.batch_size.max(1));
    // URLs in SQL text (`FROM 's3://bucket/x/'`) find their store through this registry
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(super::object_stores::RemoteStores::default()))
        .build_arc();
    let ctx = match runtime {
        Ok(runtime) => SessionContext::new_with_config_rt(options, runtime),
        // (builds only fail on a disk manager the default settings do not ask for)
        Err(_) => SessionContext::new_with_config(options),
    }
    .enable_url_table();
    // The guard sits in the analyzer, so writes built through the DataFrame API (a future
    // pipeline stage) are checked too, not only SQL text.
    ctx.add_analyzer_rule(Arc::new(WriteGuard {
        allowed: config.allow_write.clone(),
    }));
    functions::register(&ctx, config);
    // only fails when a factory for the extension is already registered, which it is not
    let _ = super::json_lines::register(&ctx);
    ctx
}

/// Registers every `--table`.
pub async fn register_tables(ctx: &SessionContext, tables: &[TableSpec]) -> Result<(), SqlError> {
    for t in tables {
        register_table(ctx, t).await?;
    }
    Ok(())
}

/// Registers one Parquet file, glob or folder as a table.
pub async fn register_table(ctx: &SessionContext, spec: &TableSpec) -> Result<(), SqlError> {
    let files = table_files(&spec.path).map_err(|message| SqlError::Table {
        spec: format!("{}={}", spec.name, spec.path),
        message,
    })?;
    register_files(
        ctx,
        &spec.name,
        &files,
        &format!("{}={}", spec.name, spec.path),
    )
    .await
}

/// The kind of a table file, by its extension: JSON Lines (`.jsonl`, `.ndjson`), Arrow IPC
/// (`.arrow`, as `--format arrow_ipc` writes), else Parquet.
fn file_kind(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jsonl" | "ndjson") => "JSON Lines",
        Some("arrow") => "Arrow IPC",
        _ => "Parquet",
    }
}

/// Registers Parquet, JSON Lines or Arrow IPC `files` (all of one kind) as one table `name`;
/// `spec` names the registration in errors. JSON Lines keep every field: nested objects become
/// structs and arrays lists, as DataFusion infers them.
pub async fn register_files(
    ctx: &SessionContext,
    name: &str,
    files: &[PathBuf],
    spec: &str,
) -> Result<(), SqlError> {
    let err = |message: String| SqlError::Table {
        spec: spec.to_string(),
        message,
    };
    let Some(kind) = files.first().map(|f| file_kind(f)) else {
        return Err(err("no data file to register".into()));
    };
    if let Some(other) = files.iter().find(|f| file_kind(f) != kind) {
        return Err(err(format!(
            "mixes {kind} and {} files ({}); register each kind as its own table",
            file_kind(other),
            other.display()
        )));
    }
    let urls = files
        .iter()
        .map(|f| {
            let abs = std::path::absolute(f).map_err(|e| err(format!("{}: {e}", f.display())))?;
            ListingTableUrl::parse(abs.to_string_lossy())
                .map_err(|e| err(format!("{}: {e}", f.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let state = ctx.state();
    let (config, defaults) = (state.config(), state.default_table_options());
    let options = match kind {
        "JSON Lines" => JsonReadOptions::default()
            .file_extension("")
            .to_listing_options(config, defaults),
        "Arrow IPC" => ArrowReadOptions {
            file_extension: "",
            ..Default::default()
        }
        .to_listing_options(config, defaults),
        _ => ParquetReadOptions::default().to_listing_options(config, defaults),
    };
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .infer_schema(&state)
        .await
        .map_err(|e| err(format!("reading the {kind} schema: {e}")))?;
    let table = ListingTable::try_new(config).map_err(|e| err(e.to_string()))?;
    ctx.register_table(TableReference::bare(name.to_string()), Arc::new(table))
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// The Parquet (or JSON Lines, or Arrow IPC) files behind a table path, sorted. A folder means
/// an actprm output in any `--format`: a score or label output's `part-*` or `data/train-*`
/// (never `rejects/`, whose rows have other columns), a filter output's kept rows (`kept/*`,
/// or `data/train-*`), an active run's scored rows (`scored/part-*.parquet`); else the folder's
/// `*.parquet`, else its `*.jsonl`. A remote path
/// (`s3://...`, `hf://...`) names the same files in the store.
pub fn table_files(path: &str) -> Result<Vec<PathBuf>, String> {
    // a remote table is read from its copy in the input cache
    let local = crate::source::remote::localise(&[path.to_string()]).map_err(|e| e.to_string())?;
    let path = local[0].as_str();
    let p = Path::new(path);
    let matches = |pattern: &str| -> Result<Vec<PathBuf>, String> {
        let mut files: Vec<PathBuf> = glob::glob(pattern)
            .map_err(|e| format!("bad glob {pattern:?}: {e}"))?
            .filter_map(Result::ok)
            .filter(|f| f.is_file())
            .collect();
        files.sort();
        Ok(files)
    };
    let files = if p.is_dir() {
        let escaped = glob::Pattern::escape(path.trim_end_matches('/'));
        let mut found = Vec::new();
        // an actprm output's data files in each format (score and label parts, then a filter's
        // kept rows), an active run's stream, then any Parquet or JSON Lines file
        use crate::sink::DataFormat;
        let outputs = DataFormat::ALL
            .iter()
            .map(|f| f.parts_pattern())
            .chain(DataFormat::ALL.iter().map(|f| f.units_pattern("kept")));
        let others = ["scored/part-*.parquet", "*.parquet", "*.jsonl"].map(String::from);
        for pattern in outputs.chain(others) {
            found = matches(&format!("{escaped}/{pattern}"))?;
            if !found.is_empty() {
                break;
            }
        }
        found
    } else if p.is_file() {
        vec![p.to_path_buf()]
    } else if path.contains(['*', '?', '[']) {
        matches(path)?
    } else {
        return Err("no such file or folder".into());
    };
    if files.is_empty() {
        return Err(
            "matches no Parquet or JSON Lines file (a folder needs an actprm output's data \
             files (part-*, kept/*, data/train-*, scored/part-*), *.parquet or *.jsonl in it)"
                .into(),
        );
    }
    Ok(files)
}

/// Splits SQL text into statements (so `a; b` runs both), with DataFusion's own parser.
pub fn parse_statements(sql: &str) -> Result<Vec<Statement>, SqlError> {
    Ok(DFParser::parse_sql(sql)?.into_iter().collect())
}

/// Plans one statement, refuses it if it writes outside the allowed folder, and runs it.
/// DDL takes effect here; queries, COPY and INSERT run when the returned frame is streamed.
pub async fn execute_statement(
    ctx: &SessionContext,
    config: &SqlConfig,
    statement: Statement,
) -> Result<DataFrame, SqlError> {
    let plan = ctx.state().statement_to_plan(statement).await?;
    // CREATE EXTERNAL TABLE never reaches the analyzer, so it is checked here (and every other
    // write is refused before any work starts).
    check_writes(&plan, config.allow_write.as_deref())?;
    Ok(ctx.execute_logical_plan(plan).await?)
}

/// Runs every statement of `sql`, handing each result frame to `each` in order.
pub async fn execute<F, Fut>(
    ctx: &SessionContext,
    config: &SqlConfig,
    sql: &str,
    mut each: F,
) -> Result<(), SqlError>
where
    F: FnMut(DataFrame) -> Fut,
    Fut: std::future::Future<Output = Result<(), SqlError>>,
{
    let statements = parse_statements(sql)?;
    if statements.is_empty() {
        return Err(SqlError::Usage("no SQL statement given".into()));
    }
    for statement in statements {
        let frame = execute_statement(ctx, config, statement).await?;
        each(frame).await?;
    }
    Ok(())
}

/// The analyzer rule behind [`check_writes`].
#[derive(Debug)]
struct WriteGuard {
    allowed: Option<PathBuf>,
}

impl AnalyzerRule for WriteGuard {
    fn analyze(
        &self,
        plan: LogicalPlan,
        _config: &ConfigOptions,
    ) -> datafusion::error::Result<LogicalPlan> {
        check_writes(&plan, self.allowed.as_deref())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "actprm_write_guard"
    }
}

/// Refuses a plan that writes files outside `allowed` (or anywhere, when `None`): COPY,
/// INSERT into a file-backed table and CREATE EXTERNAL TABLE. In-memory tables may change freely.
pub fn check_writes(plan: &LogicalPlan, allowed: Option<&Path>) -> Result<(), WriteRefused> {
    let mut refused = None;
    let visit = plan.apply_with_subqueries(|node| {
        let result = match node {
            LogicalPlan::Copy(copy) => check_target("COPY", &copy.output_url, allowed),
            LogicalPlan::Dml(dml) => check_dml(dml, allowed),
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => create
                .locations
                .iter()
                .try_for_each(|l| check_target("CREATE EXTERNAL TABLE", l, allowed)),
            _ => Ok(()),
        };
        match result {
            Ok(()) => Ok(TreeNodeRecursion::Continue),
            Err(e) => {
                refused = Some(e);
                Ok(TreeNodeRecursion::Stop)
            }
        }
    });
    if let Err(e) = visit {
        // The visitor itself never fails; be strict anyway.
        return Err(WriteRefused {
            statement: "statement".into(),
            target: "?".into(),
            reason: format!("could not be checked: {e}"),
        });
    }
    refused.map_or(Ok(()), Err)
}

fn check_dml(dml: &DmlStatement, allowed: Option<&Path>) -> Result<(), WriteRefused> {
    let statement = dml.op.name().to_ascii_uppercase();
    let refuse = |reason: String| WriteRefused {
        statement: statement.clone(),
        target: format!("table {}", dml.table_name),
        reason,
    };
    let provider = source_as_provider(&dml.target)
        .map_err(|_| refuse("whose storage cannot be checked".into()))?;
    if provider.is::<MemTable>() {
        return Ok(());
    }
    match provider.downcast_ref::<ListingTable>() {
        Some(listing) => listing
            .table_paths()
            .iter()
            .try_for_each(|url| check_target(&statement, url.as_str(), allowed)),
        None => Err(refuse(
            "whose storage cannot be checked (only in-memory and Parquet tables are writable)"
                .into(),
        )),
    }
}

fn check_target(statement: &str, target: &str, allowed: Option<&Path>) -> Result<(), WriteRefused> {
    let refuse = |reason: String| WriteRefused {
        statement: statement.to_string(),
        target: target.to_string(),
        reason,
    };
    let Some(allowed) = allowed else {
        return Err(refuse(
            "and writing is off: start with --allow-write DIR to allow writes under DIR".into(),
        ));
    };
    let path = local_path(target).map_err(refuse)?;
    let resolved = resolve(&path).map_err(|e| refuse(format!("which cannot be resolved: {e}")))?;
    let root = resolve(allowed).map_err(|e| {
        refuse(format!(
            "and the allowed folder {} cannot be resolved: {e}",
            allowed.display()
        ))
    })?;
    if resolved.starts_with(&root) {
        Ok(())
    } else {
        Err(refuse(format!(
            "which is outside the allowed output folder {} (--allow-write)",
            root.display()
        )))
    }
}

/// The local path a write target names, parsed exactly as DataFusion parses it when it writes
/// (`ListingTableUrl::parse`: a path, or any URL such as `file:/x` or `file:///x`); other schemes
/// are refused.
fn local_path(target: &str) -> Result<PathBuf, String> {
    let url = ListingTableUrl::parse(target)
        .map_err(|e| format!("which is not a path or URL DataFusion accepts: {e}"))?;
    if !url.scheme().eq_ignore_ascii_case("file") {
        return Err(format!(
            "but only local paths can be written, not {}: URLs",
            url.scheme()
        ));
    }
    url.get_url()
        .to_file_path()
        .map_err(|()| "which is not a valid file URL".to_string())
}

/// Absolute path with `.`/`..` removed and symlinks resolved for the part that exists, so
/// `out/../../etc` or a symlink out of the allowed folder cannot pass as inside it.
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out.push(component),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                if out.symlink_metadata().is_ok() {
                    out = std::fs::canonicalize(&out)?;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_specs_parse_and_reject_odd_names() {
        let t: TableSpec = "Scored=out/run1".parse().unwrap();
        assert_eq!(
            t,
            TableSpec {
                name: "scored".into(),
                path: "out/run1".into()
            }
        );
        assert!("x".parse::<TableSpec>().is_err());
        assert!("1x=a".parse::<TableSpec>().is_err());
        assert!("a.b=c".parse::<TableSpec>().is_err());
        assert!("a=".parse::<TableSpec>().is_err());
    }

    #[test]
    fn resolve_removes_dot_dot_and_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("out")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("out/escape")).unwrap();
        assert_eq!(resolve(&root.join("out/../x/y")).unwrap(), root.join("x/y"));
        assert!(!resolve(&root.join("out/escape/f.parquet"))
            .unwrap()
            .starts_with(root.join("out")));
        let allowed = root.join("out");
        assert!(check_target(
            "COPY",
            &root.join("out/a/b.parquet").display().to_string(),
            Some(&allowed)
        )
        .is_ok());
        assert!(check_target(
            "COPY",
            &root.join("out/../b.parquet").display().to_string(),
            Some(&allowed)
        )
        .is_err());
        assert!(check_target(
            "COPY",
            &root.join("out/escape/b.parquet").display().to_string(),
            Some(&allowed)
        )
        .is_err());
        assert!(check_target("COPY", "s3://bucket/x", Some(&allowed)).is_err());
        assert!(check_target(
            "COPY",
            &format!("file://{}", root.join("out/c.csv").display()),
            Some(&allowed)
        )
        .is_ok());
        assert!(check_target("COPY", "anything", None).is_err());
        // DataFusion reads `file:/x` (one slash) as a URL: it must be checked as the path /x
        assert!(check_target("COPY", "file:/tmp/x.csv", Some(&allowed)).is_err());
        assert!(check_target("COPY", "FILE:/tmp/x.csv", Some(&allowed)).is_err());
        assert!(check_target(
            "COPY",
            &format!("file:{}", root.join("out/d.csv").display()),
            Some(&allowed)
        )
        .is_ok());
    }
}
