//! The command table: parses flags and renders reports, nothing else. Every flag is a field of a
//! library settings type (flattened here), the same type a pipeline file's stage deserializes,
//! so a flag and its file key cannot drift apart (tests/architecture.rs checks it).

mod render;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use actprm::eval::judge::run_judge_eval;
use actprm::eval::model::{evaluate_files, TauRule};
use actprm::experiment::ExperimentSettings;
use actprm::label::judge::JudgeConfig;
use actprm::label::LabelBudget;
use actprm::model::ModelOptions;
use actprm::pipeline::active::{run_active, ActiveJob, ActiveSettings};
use actprm::pipeline::config::{CheckOptions, ConfigError};
use actprm::pipeline::filter::ray::{run_on_ray, worker_args, RaySettings};
use actprm::pipeline::filter::{run_filter, FilterJob, FilterSettings};
use actprm::pipeline::finetune::FinetuneSettings;
use actprm::pipeline::score::{ScoreExtras, Scorer};
use actprm::pipeline::train::TrainSettings;
use actprm::pipeline::{run_label, run_score, LabelJob, ScoreJob};
use actprm::score::check::CheckRule;
use actprm::score::ScoreOptions;
use actprm::select::KeepRate;
use actprm::source::ColumnMapping;
use actprm::sql::{OutputFormat, SqlConfig, TableSpec};
use render::{render, Output};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Parser, Debug)]
#[command(
    name = "actprm",
    version,
    about = "Train and run Process Reward Models by active learning"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score every step of Parquet trajectories; write scored Parquet parts and summary.json.
    Score(ScoreArgs),
    /// Convert labelled data as released (JSON Lines, ProcessBench JSON, TRL stepwise JSON Lines,
    /// PRM800K raw, Math-Shepherd raw) to Parquet (id, problem, steps, label). A record that
    /// cannot be converted is reported with its line and reason, and kept in OUTPUT.rejects.jsonl.
    Convert {
        /// Input .jsonl or .json files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output Parquet file.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Train the ensemble heads (tch) on stored step features; export a model directory.
    Train(TrainArgs),
    /// Fine-tune the backbone's top layers with the heads (tch) on labelled trajectories; export a
    /// model directory whose backbone actprm builds from the fine-tuned fp32 weights.
    Finetune(FinetuneArgs),
    /// Label Parquet trajectories with a judge model behind an OpenAI-compatible endpoint (only
    /// rows with `selected` = true when that column exists); write Parquet parts and summary.json.
    Label(LabelArgs),
    /// The judge on its own.
    Judge {
        #[command(subcommand)]
        command: JudgeCommand,
    },
    /// ProcessBench / PRMBench metrics of a model on labelled subsets (one file = one subset).
    Eval(EvalArgs),
    /// Score a corpus and keep the uncertain trajectories: bounded memory, exact resume, shards.
    Filter(FilterArgs),
    /// Check that filter outputs (one folder per shard) cover every input unit exactly once.
    FilterVerify {
        #[arg(long, short, required = true, num_args = 1..)]
        input: Vec<String>,
        /// Output folders of the shards.
        #[arg(required = true)]
        outputs: Vec<PathBuf>,
        #[command(flatten)]
        columns: ColumnMapping,
    },
    /// Generate a large realistic corpus by copying and recombining real trajectories.
    Generate {
        /// Labelled JSON Lines / ProcessBench JSON files to draw from.
        #[arg(long, required = true, num_args = 1..)]
        from: Vec<PathBuf>,
        #[arg(long, short)]
        output: PathBuf,
        #[arg(long)]
        rows: u64,
        #[arg(long, default_value_t = 10)]
        files: usize,
        #[arg(long, default_value_t = 10_000)]
        row_group_rows: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write a model directory with a tiny backbone (same I/O contract) for scale and crash tests.
    TinyModel {
        #[arg(long, short)]
        output: PathBuf,
        #[arg(long, default_value_t = 32)]
        dim: usize,
        #[arg(long, default_value_t = 8)]
        heads: usize,
    },
    /// The streaming active loop: score -> select -> label (pool column or judge) -> train -> refresh.
    Active(Box<ActiveArgs>),
    /// The pool-based experiment: ActPRM vs random vs full data at equal label budgets.
    Experiment(ExperimentArgs),
    /// SQL over Parquet files and scored outputs: run QUERY, or open a shell without it.
    Sql(SqlArgs),
    /// Write a fresh model directory: the default backbone with newly initialised heads.
    InitModel {
        #[arg(long, short)]
        output: PathBuf,
        /// Ensemble size E.
        #[arg(long, default_value_t = 8)]
        heads: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Model name (versions are name@hash).
        #[arg(long, default_value = "minilm-actprm")]
        name: String,
    },
    /// Import a Hugging Face PRM checkpoint folder (Qwen2.5-Math-PRM, ActPRM, Skywork-PRM,
    /// Math-Shepherd, RLHFlow) as a model directory every command runs (see docs/models.md).
    Import {
        /// The checkpoint folder: config.json, *.safetensors (or shards + index), tokenizer.json.
        #[arg(long)]
        from: PathBuf,
        /// The model directory to write (replaced whole, or left as it was on failure).
        #[arg(long, short)]
        output: PathBuf,
        /// The PRM family; `auto` reads `architectures` and the head's tensor names.
        #[arg(long, value_enum, default_value_t = actprm::model::import::Family::Auto)]
        format: actprm::model::import::Family,
        /// Dense layers of the written backbone: f32; int8 (decoders: 8-bit weights in blocks of
        /// 32, f32 activations, a quarter of f32's weight memory; BERT encoders: per-channel s8
        /// weights, u8 activations quantised per call); int8-rows (encoders only).
        #[arg(long, value_enum, default_value_t = Default::default())]
        dtype: actprm::model::import::dense::Precision,
        #[command(flatten)]
        io: Output,
    },
    /// Check a pipeline file, then run it (see docs/pipelines.md).
    Run {
        /// Pipeline YAML file.
        file: PathBuf,
    },
    /// Check a pipeline file and report every problem with file:line:column; run nothing.
    Validate {
        /// Pipeline YAML file.
        file: PathBuf,
        /// Skip the environment checks (input files and columns, models, output folders, judge).
        #[arg(long)]
        skip_env: bool,
    },
    /// Print the JSON Schema of pipeline files.
    Schema,
}

#[derive(Subcommand, Debug)]
pub enum JudgeCommand {
    /// The judge's ProcessBench-style F1 on labelled files (one file = one subset), to check a
    /// judge and prompt before spending money on it.
    Eval {
        /// ProcessBench .json arrays, .jsonl, or Parquet with a label column.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        judge: JudgeConfig,
        /// Answer cache directory (default: no cache).
        #[arg(long)]
        cache: Option<PathBuf>,
        #[command(flatten)]
        output: Output,
    },
}

/// Input files and output folder of a command that streams Parquet.
#[derive(Args, Debug, Clone)]
pub struct InputOutput {
    /// Parquet files, globs or folders.
    #[arg(long, short, required = true, num_args = 1..)]
    pub input: Vec<String>,
    /// Output folder.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub io: InputOutput,
    #[command(flatten)]
    pub scorer: Scorer,
    #[command(flatten)]
    pub extras: ScoreExtras,
    /// Replace an earlier run's parts, rejects and summary in OUTPUT (else they are refused).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    #[command(flatten)]
    pub io: InputOutput,
    #[command(flatten)]
    pub scorer: Scorer,
    #[command(flatten)]
    pub filter: FilterSettings,
    #[command(flatten)]
    pub ray: RaySettings,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct ActiveArgs {
    /// The pool (with a label, ratings, hard_labels or labels column unless a judge labels it),
    /// and the output folder (model/, decisions/, eval.jsonl, state.json, summary.json).
    #[command(flatten)]
    pub io: InputOutput,
    #[command(flatten)]
    pub scorer: Scorer,
    #[command(flatten)]
    pub keep: KeepRate,
    #[command(flatten)]
    pub budget: LabelBudget,
    #[command(flatten)]
    pub labels: actprm::label::LabelOutput,
    #[command(flatten)]
    pub active: ActiveSettings,
    /// Label by an LLM judge instead of the pool's label column when --judge-url is given
    /// (answers cached in OUTPUT/judge-cache, so --resume pays only for new ones).
    #[command(flatten)]
    pub judge: JudgeConfig,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct LabelArgs {
    #[command(flatten)]
    pub io: InputOutput,
    #[command(flatten)]
    pub columns: ColumnMapping,
    #[command(flatten)]
    pub judge: JudgeConfig,
    /// Answer cache directory (default: OUTPUT/judge-cache); a rerun pays only for new answers.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Keep no answer cache.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
    /// Rows per batch read from Parquet.
    #[arg(long, default_value_t = LabelJob::DEFAULT_BATCH_ROWS)]
    pub batch_rows: usize,
    #[command(flatten)]
    pub labels: actprm::label::LabelOutput,
    /// Replace an earlier run's parts, rejects and summary in OUTPUT (else they are refused).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Step-feature stores written by `actprm score --features`.
    #[arg(long, required = true, num_args = 1..)]
    pub features: Vec<PathBuf>,
    /// Output model directory (manifest, heads, anchors, checkpoint).
    #[arg(long, short)]
    pub output: PathBuf,
    #[command(flatten)]
    pub settings: TrainSettings,
}

#[derive(Args, Debug, Clone)]
pub struct FinetuneArgs {
    /// Labelled trajectories: ProcessBench .json arrays, .jsonl, or .parquet with a label column.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output model directory.
    #[arg(long, short)]
    pub output: PathBuf,
    #[command(flatten)]
    pub settings: FinetuneSettings,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// ProcessBench .json arrays, .jsonl, .parquet with a label column, or .arrow step features.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelOptions,
    /// Fixed threshold; default: the model's own tau.
    #[arg(long, conflicts_with = "tau_from_first")]
    pub tau: Option<f32>,
    /// Choose tau on the first subset and reuse it on the others.
    #[arg(long)]
    pub tau_from_first: bool,
    /// Join the exact arithmetic check to the model: `min` predicts the earlier of the model's
    /// first error and the first step that states a false equality; default: the model's rule.
    #[arg(long, value_enum)]
    pub check: Option<CheckRule>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// Step features of the labelled pool (`actprm score --features`).
    #[arg(long)]
    pub pool: PathBuf,
    /// Development feature stores; the file stem names the subset.
    #[arg(long, required = true, num_args = 1..)]
    pub dev: Vec<PathBuf>,
    /// Output folder: results.json, table.md, curve.svg, budget.svg.
    #[arg(long, short)]
    pub output: PathBuf,
    #[command(flatten)]
    pub settings: ExperimentSettings,
}

#[derive(Args, Debug, Clone)]
pub struct SqlArgs {
    /// SQL to run (statements separated by ';'); without it, the shell (reading stdin when piped).
    pub query: Option<String>,
    /// Register a table NAME=PATH: a Parquet file, a glob, or a score output folder (its part-*.parquet).
    #[arg(long = "table", value_name = "NAME=PATH")]
    pub tables: Vec<TableSpec>,
    /// Register the Parquet outputs a pipeline file's run wrote, named after its sinks
    /// (SINK, SINK_rejects; after filter SINK_skipped; after train TRAIN_decisions).
    #[arg(long = "pipeline", value_name = "FILE")]
    pub pipelines: Vec<PathBuf>,
    /// table, csv, json (JSON Lines) or parquet; default: from --output's extension, else table on
    /// a terminal and csv otherwise.
    #[arg(long)]
    pub format: Option<OutputFormat>,
    /// Write the results to this file instead of stdout (required for --format parquet).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Let COPY, INSERT and CREATE EXTERNAL TABLE write under this folder (default: no writes).
    #[arg(long, value_name = "DIR")]
    pub allow_write: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelOptions,
    /// Thresholds prm_score applies.
    #[command(flatten)]
    pub score: ScoreOptions,
}

/// Parses the command line, runs the command, prints a clear error.
pub fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("actprm: error: {e}");
        std::process::exit(1);
    }
}

/// A pipeline file's problems are printed as they are (located, one after another), not as one
/// `actprm: error:` line.
fn pipeline_file<T>(result: std::result::Result<T, ConfigError>) -> Result<T> {
    match result {
        Err(ConfigError::Invalid(report)) => {
            eprintln!("{report}");
            std::process::exit(1);
        }
        other => Ok(other?),
    }
}

fn progress() -> bool {
    std::io::stderr().is_terminal()
}

pub fn run(cli: Cli) -> Result {
    match cli.command {
        Command::Run { file } => {
            let outcome = pipeline_file(actprm::pipeline::config::run_file(&file))?;
            render::run_outcome(&outcome);
        }
        Command::Validate { file, skip_env } => {
            let checked = pipeline_file(actprm::pipeline::config::check_file(
                &file,
                CheckOptions { skip_env },
            ))?;
            println!(
                "{}: ok ({} job{})",
                file.display(),
                checked.plan.job(),
                if skip_env {
                    "; environment not checked"
                } else {
                    ""
                }
            );
        }
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&actprm::pipeline::config::schema())?
            );
        }
        Command::Score(a) => {
            let mut job = ScoreJob::configured(a.io.input, a.io.output.clone(), &a.scorer);
            job.features = a.extras.features;
            job.watch_model = a.extras.watch_model;
            job.overwrite = a.overwrite;
            job.progress = progress();
            render(
                &run_score(&job, Default::default())?,
                &a.output,
                Some(&a.io.output),
            )?;
        }
        Command::Filter(a) => {
            let mut score = ScoreJob::configured(a.io.input, a.io.output.clone(), &a.scorer);
            score.progress = progress();
            let mut job = FilterJob::new(score, &a.filter);
            job.units = a.ray.ray_unit.clone();
            let summary = match &a.ray.ray {
                Some(address) => {
                    run_on_ray(&job, address, &a.ray, worker_args(std::env::args().skip(1)))?
                }
                None => run_filter(&job)?,
            };
            render(&summary, &a.output, None)?;
        }
        Command::Active(a) => {
            let a = *a;
            let mut score = ScoreJob::configured(a.io.input, a.io.output.clone(), &a.scorer);
            score.progress = progress();
            let judge = a
                .judge
                .is_given()
                .then(|| a.judge.with_cache(Some(a.io.output.join("judge-cache"))));
            let job = ActiveJob::configured(
                score,
                a.io.output.clone(),
                a.keep.keep(),
                a.budget,
                &a.active,
                judge,
            )
            .with_label_format(a.labels.label_format);
            render(&run_active(&job)?, &a.output, Some(&a.io.output))?;
        }
        Command::Label(a) => {
            let cache = (!a.no_cache).then(|| {
                a.cache
                    .clone()
                    .unwrap_or_else(|| a.io.output.join("judge-cache"))
            });
            let mut job = LabelJob::new(
                a.io.input,
                a.io.output.clone(),
                a.judge.with_cache(cache),
                actprm::report::Log::default(),
            );
            job.columns = a.columns;
            job.batch_rows = a.batch_rows;
            job.overwrite = a.overwrite;
            job.label_format = a.labels.label_format;
            job.progress = progress();
            render(&run_label(&job)?, &a.output, Some(&a.io.output))?;
        }
        Command::Judge {
            command:
                JudgeCommand::Eval {
                    files,
                    judge,
                    cache,
                    output,
                },
        } => {
            let report = run_judge_eval(
                &files,
                &judge.with_cache(cache),
                actprm::report::Log::default(),
            )?;
            render(&report, &output, None)?;
        }
        Command::Eval(a) => {
            let loaded = a.model.open()?;
            let rule = if a.tau_from_first {
                TauRule::FromFirstSubset
            } else {
                TauRule::Fixed(a.tau.unwrap_or(loaded.manifest.tau))
            };
            let check = a.check.unwrap_or(loaded.manifest.check);
            let report = evaluate_files(&a.files, &loaded, &a.model.runtime(), rule, check)?;
            render(&report, &a.output, None)?;
        }
        Command::Train(a) => {
            let report =
                actprm::pipeline::train::run_train(&a.features, &a.output, &a.settings, |r| {
                    if r.step % 50 == 0 {
                        eprintln!(
                            "step {:>6}  loss {:.4}  bce {:.4}  anchor {:.2e}  |g| {:.3}",
                            r.step, r.loss, r.bce, r.anchor, r.grad_norm
                        );
                    }
                })?;
            print!("{}", actprm::report::Report::table(&report));
        }
        Command::Finetune(a) => {
            let report =
                actprm::pipeline::finetune::run_finetune(&a.files, &a.output, &a.settings, |p| {
                    let r = p.report;
                    if r.step % 10 == 0 || r.step == p.total_steps {
                        eprintln!(
                            "step {:>5}/{}  loss {:.4}  bce {:.4}  |g| {:.3}  {:.0} tokens/s",
                            r.step, p.total_steps, r.loss, r.bce, r.grad_norm, p.tokens_per_s
                        );
                    }
                })?;
            print!("{}", actprm::report::Report::table(&report));
        }
        Command::Experiment(a) => {
            let run = actprm::experiment::run_experiment_files(
                &a.pool,
                &a.dev,
                &a.output,
                &a.settings,
                |c| {
                    if let Some(p) = c.points.last() {
                        let retrained = c.retrained.as_ref().map_or(String::new(), |r| {
                            format!("  retrained {:.3} (tau {:.2})", r.mean_f1, r.tau)
                        });
                        eprintln!(
                            "{:<16} seed {}  labels {:>5}  steps {:>4}  dev F1 {:.3}  (tau {:.2}){retrained}",
                            c.strategy, c.seed, p.labels, p.steps, p.mean_f1, p.tau
                        );
                    }
                },
            )?;
            println!(
                "{}({:.0} s; results.json, table.md, curve.svg, budget.svg in {})",
                run.table,
                run.seconds,
                run.output.display()
            );
        }
        Command::Sql(a) => {
            let mut tables = a.tables;
            for file in &a.pipelines {
                tables.extend(pipeline_file(
                    actprm::pipeline::config::outputs::sql_tables(file),
                )?);
            }
            actprm::sql::run::run(actprm::sql::run::SqlRequest {
                query: a.query,
                tables,
                format: a.format,
                output: a.output,
                config: SqlConfig {
                    allow_write: a.allow_write,
                    runtime: a.model.runtime(),
                    model: a.model.model,
                    score: a.score,
                    ..SqlConfig::default()
                },
            })?;
        }
        Command::FilterVerify {
            input,
            outputs,
            columns,
        } => {
            let (s, problems) = actprm::pipeline::filter::verify(&input, &columns, &outputs)?;
            for p in &problems {
                eprintln!("actprm: {p}");
            }
            println!(
                "{} units, {} rows in, {} kept, {} rejected",
                s.units, s.rows_in, s.rows_kept, s.rows_rejected
            );
            if !problems.is_empty() {
                return Err(format!(
                    "{} problem(s): the shard outputs are not complete",
                    problems.len()
                )
                .into());
            }
            println!("complete: every unit committed exactly once");
        }
        Command::Generate {
            from,
            output,
            rows,
            files,
            row_group_rows,
            seed,
        } => {
            let spec = actprm::source::generate::GenerateSpec {
                rows,
                files,
                row_group_rows,
                seed,
            };
            let paths = actprm::source::generate::generate_from_files(&from, &output, &spec)?;
            println!(
                "wrote {rows} rows in {} files to {}",
                paths.len(),
                output.display()
            );
        }
        Command::Convert { inputs, output } => {
            let report = actprm::pipeline::convert::convert(&inputs, &output)?;
            for r in &report.rejected {
                eprintln!("actprm: {}:{}: {} (rejected)", r.file, r.line, r.reason);
            }
            print!("{}", actprm::report::Report::table(&report));
        }
        Command::Import {
            from,
            output,
            format,
            dtype,
            io,
        } => {
            let report = actprm::model::import::import(&from, &output, format, dtype)?;
            render(&report, &io, None)?;
        }
        Command::TinyModel { output, dim, heads } => {
            let version = actprm::model::create::tiny_model(&output, dim, heads)?;
            println!("wrote {} ({version})", output.display());
        }
        Command::InitModel {
            output,
            heads,
            seed,
            name,
        } => {
            let version = actprm::model::create::init_model(&output, heads, seed, &name)?;
            println!("wrote {} ({version})", output.display());
        }
    }
    Ok(())
}
