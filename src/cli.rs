//! The command table. Flags are defined once here and fill the same job structs that pipeline
//! files fill.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use actprm::label::judge::{stderr_logger, JudgeConfig, PromptFormat};
use actprm::model::{Device, HeadsWeights, LoadedModel, RuntimeOptions};
use actprm::pipeline::evaluate::{evaluate_files, TauRule};
use actprm::pipeline::features::read_features;
use actprm::pipeline::{run_judge_eval, run_label, run_score, LabelJob, ScoreJob};
use actprm::score::ScoreOptions;
use actprm::select::SelectionRule;
use actprm::source::ColumnMapping;
use actprm::sql::{OutputFormat, SqlConfig, TableSpec};
use actprm::train::{torch_device, TrainConfig, Trainer};

#[derive(Parser, Debug)]
#[command(
    name = "actprm",
    version,
    about = "Train and run Process Reward Models by active learning"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// Label Parquet trajectories with a judge model behind an OpenAI-compatible endpoint (only
    /// rows with `selected` = true when that column exists); write Parquet parts and summary.json.
    Label(LabelArgs),
    /// The judge on its own.
    Judge {
        #[command(subcommand)]
        command: JudgeCommand,
    },
    /// ProcessBench / PRMBench metrics of a model on labelled subsets (one file = one subset).
    Eval {
        /// ProcessBench .json arrays, .jsonl, .parquet with a label column, or .arrow step features.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// Fixed threshold; default: the model's own tau.
        #[arg(long, conflicts_with = "tau_from_first")]
        tau: Option<f32>,
        /// Choose tau on the first subset and reuse it on the others.
        #[arg(long)]
        tau_from_first: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Score a corpus and keep the uncertain trajectories: bounded memory, exact resume, shards.
    Filter(FilterArgs),
    /// Check that filter outputs (one folder per shard) cover every input unit exactly once.
    FilterVerify {
        #[arg(long, short, required = true, num_args = 1..)]
        input: Vec<String>,
        /// Output folders of the shards.
        #[arg(required = true)]
        outputs: Vec<PathBuf>,
        #[arg(long)]
        problem_column: Option<String>,
        #[arg(long)]
        steps_column: Option<String>,
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
    /// The streaming active loop: score -> select -> label (pool column) -> train -> refresh.
    Active(ActiveArgs),
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
enum JudgeCommand {
    /// The judge's ProcessBench-style F1 on labelled files (one file = one subset), to check a
    /// judge and prompt before spending money on it.
    Eval {
        /// ProcessBench .json arrays, .jsonl, or Parquet with a label column.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        judge: JudgeArgs,
        /// Answer cache directory (default: no cache).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Clone)]
struct ColumnArgs {
    /// Problem column (default: problem, question, prompt, input or instruction).
    #[arg(long)]
    problem_column: Option<String>,
    /// Steps column, a list of strings (default: steps, completions or model_output_steps).
    #[arg(long)]
    steps_column: Option<String>,
}

impl ColumnArgs {
    fn mapping(&self) -> ColumnMapping {
        ColumnMapping {
            problem: self.problem_column.clone(),
            steps: self.steps_column.clone(),
        }
    }
}

/// The judge endpoint, prompt, sampling, retries and budget (the API key comes from the
/// environment only, never from a flag, so it stays out of shell history and process lists).
#[derive(Args, Debug, Clone)]
struct JudgeArgs {
    /// Base URL of the OpenAI-compatible API, e.g. http://localhost:8000/v1 (required by `label`
    /// and `judge eval`; `active` labels by the judge only when it is given).
    #[arg(long, requires = "judge_model")]
    judge_url: Option<String>,
    /// Model name as served (vLLM: --served-model-name).
    #[arg(long, requires = "judge_url")]
    judge_model: Option<String>,
    /// Environment variable holding the API key (unset: no Authorization header).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    #[arg(long, default_value_t = 0.5)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Most tokens the judge may generate per answer.
    #[arg(long, default_value_t = 8192)]
    max_tokens: u32,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Retries per request after 5xx, 429, timeouts, dropped connections, broken bodies.
    #[arg(long, default_value_t = 6)]
    retries: u32,
    /// Samples per trajectory (majority vote).
    #[arg(long, default_value_t = 1)]
    votes: u32,
    /// Answer format: critique (paragraph analyses + conclusion) or processbench (index in \boxed{}).
    #[arg(long, value_enum, default_value_t = PromptFormat::Critique)]
    prompt: PromptFormat,
    /// Own prompt template with {problem} and {paragraphs} placeholders (parsed as --prompt says).
    #[arg(long)]
    template: Option<PathBuf>,
    /// Hard cap on HTTP requests (retries included); the rest pass through as over_budget.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Hard cap on generated tokens; a request is sent only if its max_tokens still fit.
    #[arg(long)]
    max_completion_tokens: Option<u64>,
}

impl JudgeArgs {
    /// The judge, when `--judge-url` (and so `--judge-model`) was given. The flags carry
    /// defaults, so clap cannot make the whole group optional by itself.
    fn given(&self, cache: Option<PathBuf>) -> Option<JudgeConfig> {
        self.judge_url.is_some().then(|| self.config(cache))
    }

    /// The judge, which this command needs.
    fn required(&self, cache: Option<PathBuf>) -> Result<JudgeConfig, String> {
        self.given(cache)
            .ok_or_else(|| "--judge-url and --judge-model are required".to_string())
    }

    fn config(&self, cache: Option<PathBuf>) -> JudgeConfig {
        JudgeConfig {
            url: self.judge_url.clone().unwrap_or_default(),
            model: self.judge_model.clone().unwrap_or_default(),
            api_key_env: self.api_key_env.clone(),
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            timeout_secs: self.timeout,
            concurrency: self.concurrency,
            max_retries: self.retries,
            votes: self.votes,
            format: self.prompt,
            template: self.template.clone(),
            max_requests: self.max_requests,
            max_completion_tokens: self.max_completion_tokens,
            cache,
            ..JudgeConfig::default()
        }
    }
}

#[derive(Args, Debug, Clone)]
struct LabelArgs {
    /// Parquet files, globs or folders.
    #[arg(long, short, required = true, num_args = 1..)]
    input: Vec<String>,
    /// Output folder (part-*.parquet with judge_* columns, summary.json).
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    columns: ColumnArgs,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Answer cache directory (default: OUTPUT/judge-cache); a rerun pays only for new answers.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Keep no answer cache.
    #[arg(long, conflicts_with = "cache")]
    no_cache: bool,
    /// Rows per batch read from Parquet.
    #[arg(long, default_value_t = 64)]
    batch_rows: usize,
    /// Replace an earlier run's parts, rejects and summary in OUTPUT (else they are refused).
    #[arg(long)]
    overwrite: bool,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct TrainArgs {
    /// Step-feature stores written by `actprm score --features`.
    #[arg(long, required = true, num_args = 1..)]
    features: Vec<PathBuf>,
    /// Output model directory (manifest, heads, anchors, checkpoint).
    #[arg(long, short)]
    output: PathBuf,
    /// Start from this model's heads (default: the embedded default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Re-initialise E heads (ActPRM init with --seed) instead of starting from the model's.
    #[arg(long)]
    heads: Option<usize>,
    /// Continue from the checkpoint in this model directory.
    #[arg(long, conflicts_with_all = ["heads", "model"])]
    resume: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    epochs: u64,
    /// Stop after this many optimiser steps in total (checkpoint and continue later with --resume).
    #[arg(long)]
    stop_after: Option<u64>,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Anchor weight lambda.
    #[arg(long, default_value_t = 0.5)]
    lambda: f64,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 50)]
    warmup: u64,
    /// Bagging probability per (head, trajectory).
    #[arg(long, default_value_t = 1.0)]
    p_learn: f64,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Loss weight of wrong steps relative to correct ones.
    #[arg(long, default_value_t = 1.0)]
    wrong_weight: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Choose tau on these development features and store it in the manifest.
    #[arg(long, conflicts_with = "tau_holdout_every")]
    tau_from: Option<PathBuf>,
    /// Hold out every N-th labelled trajectory from training and choose tau on them.
    #[arg(long)]
    tau_holdout_every: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: Device,
}

#[derive(Args, Debug, Clone)]
struct FilterArgs {
    /// Parquet files, globs or folders.
    #[arg(long, short, required = true, num_args = 1..)]
    input: Vec<String>,
    /// Output folder: kept/, skipped/ (with --write-skipped), rejects/, units/, summary.json.
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Keep this fraction of each batch, most uncertain first (default: ActPRM's threshold rule).
    #[arg(long)]
    keep_rate: Option<f64>,
    /// This process's share of the units, as i/n (0-based).
    #[arg(long, default_value = "0/1")]
    shard: String,
    /// Also write the rows that were not kept.
    #[arg(long)]
    write_skipped: bool,
    /// Discard an earlier run's outputs in OUTPUT instead of resuming it (a rerun with other
    /// settings is refused without this).
    #[arg(long)]
    restart: bool,
    /// Report keep rates per value of this column.
    #[arg(long)]
    group_by: Option<String>,
    #[arg(long)]
    problem_column: Option<String>,
    #[arg(long)]
    steps_column: Option<String>,
    #[arg(long, default_value_t = 64)]
    batch_rows: usize,
    /// Padded tokens per backbone call (small suits the CPU; raise it on a GPU).
    #[arg(long, default_value_t = actprm::score::DEFAULT_TOKEN_BUDGET)]
    token_budget: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("--shard {s:?}: expected i/n, e.g. 0/4"))?;
    let (i, n): (u64, u64) = (
        i.parse().map_err(|_| format!("--shard {s:?}: bad i"))?,
        n.parse().map_err(|_| format!("--shard {s:?}: bad n"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("--shard {s:?}: need 0 <= i < n"));
    }
    Ok((i, n))
}

#[derive(Args, Debug, Clone)]
struct ActiveArgs {
    /// The pool: Parquet files, globs or folders (with a label, ratings, hard_labels or labels column
    /// unless a judge labels it).
    #[arg(long, short, required = true, num_args = 1..)]
    input: Vec<String>,
    /// Output folder (model/, decisions/, eval.jsonl, state.json, summary.json).
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Cold start with fresh heads (the paper's setting): E heads.
    #[arg(long)]
    cold_start: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Label this fraction of each batch, most uncertain first, instead of the threshold rule.
    #[arg(long)]
    keep_rate: Option<f64>,
    /// At most this many labels.
    #[arg(long)]
    label_budget: Option<u64>,
    /// Trajectories per scored batch (Algorithm 1's batch).
    #[arg(long, default_value_t = 64)]
    batch_rows: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.5)]
    lambda: f64,
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Export + refresh the scorer + checkpoint every this many steps.
    #[arg(long, default_value_t = 5)]
    export_every: u64,
    /// Development feature stores (`actprm score --features`), evaluated every --eval-every labels.
    #[arg(long, num_args = 1..)]
    dev: Vec<PathBuf>,
    #[arg(long, default_value_t = 500)]
    eval_every: u64,
    /// Continue a stopped run in the same output folder.
    #[arg(long)]
    resume: bool,
    /// Stop after this many pool rows (resumable with --resume).
    #[arg(long)]
    stop_after_rows: Option<u64>,
    /// Label by an LLM judge instead of the pool's label column (answers cached in
    /// OUTPUT/judge-cache, so --resume pays only for new ones).
    #[command(flatten)]
    judge: JudgeArgs,
}

#[derive(Args, Debug, Clone)]
struct ExperimentArgs {
    /// Step features of the labelled pool (`actprm score --features`).
    #[arg(long)]
    pool: PathBuf,
    /// Development feature stores; the file stem names the subset.
    #[arg(long, required = true, num_args = 1..)]
    dev: Vec<PathBuf>,
    /// Output folder: results.json, table.md, curve.svg.
    #[arg(long, short)]
    output: PathBuf,
    /// Comma-separated: actprm, actprm@RATE, random@RATE, full.
    #[arg(
        long,
        default_value = "actprm@50%,random@50%,full",
        value_delimiter = ','
    )]
    strategies: Vec<actprm::experiment::Strategy>,
    #[arg(long, default_value = "0,1,2", value_delimiter = ',')]
    seeds: Vec<u64>,
    #[arg(long, default_value_t = 8)]
    heads: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.5)]
    lambda: f64,
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    #[arg(long, default_value_t = 64)]
    stream_batch: usize,
    /// Passes over the pool (the paper makes one).
    #[arg(long, default_value_t = 1)]
    passes: usize,
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
    #[arg(long, default_value_t = 10)]
    holdout_every: usize,
    #[arg(long, default_value_t = 0.9)]
    delta_pred: f32,
    #[arg(long, default_value_t = 0.01)]
    delta_std: f32,
    #[arg(long, default_value_t = 1.0)]
    wrong_weight: f64,
}

#[derive(Args, Debug, Clone)]
struct ModelArgs {
    /// Model directory (manifest.json + files); default: the embedded default model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// cpu, cuda or cuda:N (CUDA fails loudly if its provider cannot start).
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

impl ModelArgs {
    fn runtime(&self) -> RuntimeOptions {
        RuntimeOptions {
            device: self.device,
            intra_threads: self.threads,
        }
    }
}

#[derive(Args, Debug, Clone)]
struct SelectArgs {
    /// First-error threshold; default: the model's own tau.
    #[arg(long)]
    tau: Option<f32>,
    /// A step is confident only if max(mu, 1 - mu) >= delta_pred ...
    #[arg(long, default_value_t = 0.9)]
    delta_pred: f32,
    /// ... and its std over heads <= delta_std.
    #[arg(long, default_value_t = 0.01)]
    delta_std: f32,
}

#[derive(Args, Debug, Clone)]
struct ScoreArgs {
    /// Parquet files, globs or folders.
    #[arg(long, short, required = true, num_args = 1..)]
    input: Vec<String>,
    /// Output folder (part-*.parquet, rejects/, summary.json).
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    select: SelectArgs,
    #[command(flatten)]
    columns: ColumnArgs,
    /// Rows per batch read from Parquet.
    #[arg(long, default_value_t = 64)]
    batch_rows: usize,
    /// Padded tokens per backbone call (small suits the CPU; raise it on a GPU).
    #[arg(long, default_value_t = actprm::score::DEFAULT_TOKEN_BUDGET)]
    token_budget: usize,
    /// Also write per-head probabilities (step_head_probs).
    #[arg(long)]
    head_probs: bool,
    /// Also write step features (Arrow IPC) for `actprm train`.
    #[arg(long)]
    features: Option<PathBuf>,
    /// Swap in this model directory's heads whenever they change (hot refresh from a trainer).
    #[arg(long)]
    watch_model: Option<PathBuf>,
    /// Replace an earlier run's parts, rejects and summary in OUTPUT (else they are refused).
    #[arg(long)]
    overwrite: bool,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A pipeline file's problems are printed as they are (located, one after another), not as one
/// `actprm: error:` line.
fn pipeline_file<T>(
    result: Result<T, actprm::pipeline::config::ConfigError>,
) -> Result<T, Box<dyn std::error::Error>> {
    match result {
        Err(actprm::pipeline::config::ConfigError::Invalid(report)) => {
            eprintln!("{report}");
            std::process::exit(1);
        }
        other => Ok(other?),
    }
}

#[derive(Args, Debug, Clone)]
struct SqlArgs {
    /// SQL to run (statements separated by ';'); without it, the shell (reading stdin when piped).
    query: Option<String>,
    /// Register a table NAME=PATH: a Parquet file, a glob, or a score output folder (its part-*.parquet).
    #[arg(long = "table", value_name = "NAME=PATH")]
    tables: Vec<TableSpec>,
    /// Register the Parquet outputs a pipeline file's run wrote, named after its sinks
    /// (SINK, SINK_rejects; after select SINK_skipped; after train TRAIN_decisions).
    #[arg(long = "pipeline", value_name = "FILE")]
    pipelines: Vec<PathBuf>,
    /// table, csv, json (JSON Lines) or parquet; default: from --output's extension, else table on
    /// a terminal and csv otherwise.
    #[arg(long)]
    format: Option<OutputFormat>,
    /// Write the results to this file instead of stdout (required for --format parquet).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Let COPY, INSERT and CREATE EXTERNAL TABLE write under this folder (default: no writes).
    #[arg(long, value_name = "DIR")]
    allow_write: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Thresholds prm_score applies.
    #[command(flatten)]
    select: SelectArgs,
}

pub fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Run { file } => {
            pipeline_file(actprm::pipeline::config::run_file(&file))?;
        }
        Command::Validate { file, skip_env } => {
            let options = actprm::pipeline::config::CheckOptions { skip_env };
            let checked = pipeline_file(actprm::pipeline::config::check_file(&file, options))?;
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
            let mut job = ScoreJob::new(a.input.clone(), a.output.clone());
            job.model = a.model.model.clone();
            job.runtime = a.model.runtime();
            job.columns = a.columns.mapping();
            job.score = ScoreOptions {
                tau: a.select.tau,
                rule: SelectionRule {
                    delta_pred: a.select.delta_pred,
                    delta_std: a.select.delta_std,
                },
                token_budget: a.token_budget,
                ..ScoreOptions::default()
            };
            job.batch_rows = a.batch_rows;
            job.with_head_probs = a.head_probs;
            job.features = a.features.clone();
            job.watch_model = a.watch_model.clone();
            job.overwrite = a.overwrite;
            job.progress = std::io::stderr().is_terminal();
            let summary = run_score(&job, Default::default())?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                summary.print();
                println!("output         {}", a.output.display());
            }
        }
        Command::Train(a) => train(a)?,
        Command::Sql(a) => sql(a)?,
        Command::Label(a) => {
            let cache = if a.no_cache {
                None
            } else {
                Some(
                    a.cache
                        .clone()
                        .unwrap_or_else(|| a.output.join("judge-cache")),
                )
            };
            let mut job = LabelJob::new(
                a.input.clone(),
                a.output.clone(),
                a.judge.required(cache)?,
                stderr_logger(),
            );
            job.columns = a.columns.mapping();
            job.batch_rows = a.batch_rows;
            job.overwrite = a.overwrite;
            job.progress = std::io::stderr().is_terminal();
            let summary = run_label(&job)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                summary.print();
                println!("output         {}", a.output.display());
            }
        }
        Command::Judge {
            command:
                JudgeCommand::Eval {
                    files,
                    judge,
                    cache,
                    json,
                },
        } => {
            let report = run_judge_eval(&files, &judge.required(cache)?, stderr_logger())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                report.print();
            }
        }
        Command::Experiment(a) => experiment(a)?,
        Command::Filter(a) => {
            let mut score = ScoreJob::new(a.input.clone(), a.output.clone());
            score.model = a.model.model.clone();
            score.runtime = a.model.runtime();
            score.columns = ColumnMapping {
                problem: a.problem_column.clone(),
                steps: a.steps_column.clone(),
            };
            score.score = ScoreOptions {
                tau: a.select.tau,
                rule: SelectionRule {
                    delta_pred: a.select.delta_pred,
                    delta_std: a.select.delta_std,
                },
                token_budget: a.token_budget,
                ..ScoreOptions::default()
            };
            score.batch_rows = a.batch_rows;
            score.progress = std::io::stderr().is_terminal();
            let job = actprm::pipeline::filter::FilterJob {
                score,
                keep: a.keep_rate.map_or(
                    actprm::pipeline::filter::Keep::Rule,
                    actprm::pipeline::filter::Keep::Rate,
                ),
                shard: parse_shard(&a.shard)?,
                write_skipped: a.write_skipped,
                group_by: a.group_by.clone(),
                restart: a.restart,
            };
            let s = actprm::pipeline::filter::run_filter(&job)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                s.print();
            }
        }
        Command::FilterVerify {
            input,
            outputs,
            problem_column,
            steps_column,
        } => {
            let columns = ColumnMapping {
                problem: problem_column,
                steps: steps_column,
            };
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
            actprm::limits::at_least("files", files, 1)?;
            actprm::limits::at_least("row_group_rows", row_group_rows, 1)?;
            let mut records = Vec::new();
            for f in &from {
                records.extend(actprm::source::jsonl::read_labelled(f)?);
            }
            let spec = actprm::source::generate::GenerateSpec {
                rows,
                files,
                row_group_rows,
                seed,
            };
            let paths = actprm::source::generate::generate(&records, &output, &spec)?;
            println!(
                "wrote {rows} rows in {} files to {}",
                paths.len(),
                output.display()
            );
        }
        Command::TinyModel { output, dim, heads } => {
            actprm::limits::at_least("dim", dim, 1)?;
            actprm::limits::at_least("heads", heads, 1)?;
            let base = LoadedModel::embedded()?;
            let backbone = actprm::model::tiny::tiny_backbone(30522, dim, 0);
            let weights = HeadsWeights::init(heads, dim, 0);
            let bytes = weights.to_onnx(&[]);
            let mut model = base.clone();
            model.manifest.name = format!("tiny-d{dim}-e{heads}");
            model.manifest.hidden_size = dim;
            model.manifest.ensemble_size = heads;
            model.manifest.backbone = "backbone.onnx".into();
            // relative: resolved inside the new directory, where the file is written
            model.backbone_path = PathBuf::from("backbone.onnx");
            model.manifest.backbone_sha256 = None;
            model.manifest.tau = 0.5;
            model.manifest.provenance = "tiny test backbone (embedding + running mean), random heads: for scale and crash tests only".into();
            model.write_dir(
                &output,
                &bytes,
                Some(&bytes),
                &[("backbone.onnx", &backbone)],
            )?;
            let written = LoadedModel::from_dir(&output)?;
            println!("wrote {} ({})", output.display(), written.version());
        }
        Command::Active(a) => {
            let mut score = ScoreJob::new(a.input.clone(), a.output.clone());
            score.runtime = a.model.runtime();
            score.model = a.model.model.clone();
            score.batch_rows = a.batch_rows;
            score.score.rule = SelectionRule {
                delta_pred: a.select.delta_pred,
                delta_std: a.select.delta_std,
            };
            score.score.tau = a.select.tau;
            score.progress = std::io::stderr().is_terminal();
            let job = actprm::pipeline::active::ActiveJob {
                score,
                output: a.output.clone(),
                cold_start: a.cold_start.map(|e| (e, a.seed)),
                train: TrainConfig {
                    lr: a.lr,
                    lambda: a.lambda,
                    warmup_steps: a.warmup,
                    seed: a.seed,
                    ..TrainConfig::default()
                },
                selection: match a.keep_rate {
                    Some(r) => actprm::pipeline::active::Selection::Rate(r),
                    None => actprm::pipeline::active::Selection::Rule,
                },
                label_budget: a.label_budget,
                export_every: a.export_every,
                dev: a.dev.clone(),
                eval_every: a.eval_every,
                resume: a.resume,
                stop_after_rows: a.stop_after_rows,
                judge: a.judge.given(Some(a.output.join("judge-cache"))),
            };
            let summary = actprm::pipeline::active::run_active(&job)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Eval {
            files,
            model,
            tau,
            tau_from_first,
            json,
        } => {
            let loaded = LoadedModel::open(model.model.as_deref())?;
            let rule = if tau_from_first {
                TauRule::FromFirstSubset
            } else {
                TauRule::Fixed(tau.unwrap_or(loaded.manifest.tau))
            };
            let report = evaluate_files(&files, &loaded, &model.runtime(), rule)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                report.print();
            }
        }
        Command::Convert { inputs, output } => {
            let mut records = Vec::new();
            let mut rejects = Vec::new();
            for path in &inputs {
                let (r, bad) = actprm::source::raw::convert_file(path)?;
                records.extend(r);
                rejects.extend(bad);
            }
            if records.is_empty() {
                return Err(
                    format!("no record could be converted ({} rejected)", rejects.len()).into(),
                );
            }
            let batch = actprm::source::jsonl::to_record_batch(&records);
            // straight to OUTPUT under a temporary name: no other file in its folder is touched
            actprm::sink::parquet::write_file(&output, &[batch])?;
            let rejects_path = PathBuf::from(format!("{}.rejects.jsonl", output.display()));
            if rejects.is_empty() {
                let _ = std::fs::remove_file(&rejects_path);
            } else {
                let mut text = String::new();
                for r in &rejects {
                    eprintln!("actprm: {}:{}: {} (rejected)", r.file, r.line, r.reason);
                    text +=
                        &serde_json::json!({"file": r.file, "line": r.line, "reason": r.reason})
                            .to_string();
                    text.push('\n');
                }
                actprm::sink::write_atomic(&rejects_path, text.as_bytes())?;
            }
            println!(
                "wrote {} trajectories to {}{}",
                records.len(),
                output.display(),
                if rejects.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} records rejected (listed in {})",
                        rejects.len(),
                        rejects_path.display()
                    )
                }
            );
        }
        Command::InitModel {
            output,
            heads,
            seed,
            name,
        } => {
            actprm::limits::at_least("heads", heads, 1)?;
            let base = LoadedModel::embedded()?;
            let weights = HeadsWeights::init(heads, base.manifest.hidden_size, seed);
            let bytes = weights.to_onnx(&[("actprm.seed", seed.to_string())]);
            let mut model = base;
            model.manifest.name = name;
            model.manifest.ensemble_size = heads;
            model.manifest.seed = seed;
            model.manifest.provenance =
                format!("heads initialised by `actprm init-model --heads {heads} --seed {seed}`");
            model.write_dir(&output, &bytes, Some(&bytes), &[])?;
            let written = LoadedModel::from_dir(&output)?;
            println!("wrote {} ({})", output.display(), written.version());
        }
    }
    Ok(())
}

/// The tables a pipeline file's run wrote (those that exist yet).
fn pipeline_tables(file: &std::path::Path) -> Result<Vec<TableSpec>, Box<dyn std::error::Error>> {
    let checked = pipeline_file(actprm::pipeline::config::check_file(
        file,
        actprm::pipeline::config::CheckOptions { skip_env: true },
    ))?;
    let has_parquet = |dir: &std::path::Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        })
    };
    let tables: Vec<TableSpec> =
        actprm::pipeline::config::compile::output_tables(&checked.file, &checked.plan)
            .into_iter()
            .filter(|(_, path)| has_parquet(path))
            .map(|(name, path)| TableSpec {
                // a plain SQL identifier: sink `my-kept` is table `my_kept`
                name: name
                    .to_ascii_lowercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
                path: path.display().to_string(),
            })
            .collect();
    if tables.is_empty() {
        return Err(format!(
            "--pipeline {}: no Parquet output of this pipeline exists yet (run `actprm run {0}` first)",
            file.display()
        )
        .into());
    }
    Ok(tables)
}

fn sql(a: SqlArgs) -> Result<(), Box<dyn std::error::Error>> {
    use actprm::sql::{format::write_stream, register_tables, session, shell, SqlError};
    use std::io::IsTerminal;

    let mut tables = a.tables.clone();
    for file in &a.pipelines {
        tables.extend(pipeline_tables(file)?);
    }
    let config = SqlConfig {
        allow_write: a.allow_write.clone(),
        model: a.model.model.clone(),
        runtime: a.model.runtime(),
        score: ScoreOptions {
            tau: a.select.tau,
            rule: SelectionRule {
                delta_pred: a.select.delta_pred,
                delta_std: a.select.delta_std,
            },
            ..ScoreOptions::default()
        },
        ..SqlConfig::default()
    };
    config.score.validate()?;
    let query = a.query.clone();
    let from_extension = a
        .output
        .as_ref()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .and_then(|e| e.parse().ok());
    let format = a.format.or(from_extension).unwrap_or(
        if a.output.is_none() && std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Csv
        },
    );
    if format == OutputFormat::Parquet && a.output.is_none() {
        return Err(SqlError::Usage(
            "--format parquet needs --output FILE (or use COPY (query) TO 'file.parquet')".into(),
        )
        .into());
    }
    // --output is written under a temporary name and renamed once every statement succeeded
    let partial = a
        .output
        .as_ref()
        .map(|p| actprm::sink::atomic::temp_path(p, &actprm::sink::atomic::process_tag()));
    let file = match (&query, &partial) {
        (Some(_), Some(path)) => Some(
            std::fs::File::create(path).map_err(|e| format!("--output {}: {e}", path.display()))?,
        ),
        (None, Some(_)) => {
            return Err(SqlError::Usage(
                "--output needs a QUERY (the shell prints to the terminal)".into(),
            )
            .into())
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ran = runtime.block_on(async {
        let ctx = session(&config);
        register_tables(&ctx, &tables).await?;
        let Some(query) = query else {
            return shell::run(&ctx, &config, format).await;
        };
        let mut results = 0;
        actprm::sql::execute(&ctx, &config, &query, |frame| {
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
    if let (Some(partial), Some(target)) = (&partial, &a.output) {
        if ran.is_ok() {
            actprm::sink::atomic::commit(partial, target)
                .map_err(|e| format!("--output {}: {e}", target.display()))?;
        } else {
            let _ = std::fs::remove_file(partial);
        }
    }
    ran?;
    Ok(())
}

fn train(a: TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    actprm::limits::at_least("epochs", a.epochs, 1)?;
    let device = torch_device(a.device)?;
    let mut rows = Vec::new();
    let mut dim = None;
    for path in &a.features {
        let (d, r) = read_features(path)?;
        if let Some(prev) = dim.filter(|&p| p != d) {
            return Err(format!(
                "{}: features have dimension {d}, earlier files {prev}",
                path.display()
            )
            .into());
        }
        dim = Some(d);
        rows.extend(r);
    }
    let mut holdout = Vec::new();
    if let Some(every) = a.tau_holdout_every.filter(|&n| n >= 2) {
        let (kept, held): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % every != 0);
        holdout = held.into_iter().map(|(_, r)| r).collect();
        rows = kept.into_iter().map(|(_, r)| r).collect();
    }
    let labelled = rows.iter().filter(|r| r.label.is_some()).count();
    let base = match (&a.resume, &a.model) {
        (Some(dir), _) | (None, Some(dir)) => LoadedModel::from_dir(dir)?,
        (None, None) => LoadedModel::embedded()?,
    };
    let config = TrainConfig {
        lambda: a.lambda,
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup_steps: a.warmup,
        total_steps: a.epochs * labelled.div_ceil(a.batch_size.max(1)) as u64,
        batch_size: a.batch_size,
        max_grad_norm: 1.0,
        p_learn: a.p_learn,
        seed: a.seed,
        pos_weight_wrong: a.wrong_weight,
        threads: 1,
    };
    let mut trainer = match (&a.resume, a.heads) {
        (Some(dir), _) => Trainer::resume(dir, device)?,
        (None, Some(e)) => {
            let w = HeadsWeights::init(e, base.manifest.hidden_size, a.seed);
            Trainer::new(&w, &w, config, device)?
        }
        (None, None) => Trainer::from_model(&base, config, device)?,
    };
    if let Some(d) = dim.filter(|&d| d != trainer.heads.dim) {
        return Err(format!(
            "{}: features have dimension {d}, the heads take {}",
            a.features[0].display(),
            trainer.heads.dim
        )
        .into());
    }
    let started = std::time::Instant::now();
    let first = trainer.step();
    let mut last = None;
    trainer.fit(&rows, a.epochs, a.stop_after, |r| {
        if r.step % 50 == 0 {
            eprintln!(
                "step {:>6}  loss {:.4}  bce {:.4}  anchor {:.2e}  |g| {:.3}",
                r.step, r.loss, r.bce, r.anchor, r.grad_norm
            );
        }
        last = Some(*r);
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let steps = trainer.step() - first;
    let tau_rows = match &a.tau_from {
        Some(dev) => Some(read_features(dev)?.1),
        None if !holdout.is_empty() => Some(holdout),
        None => None,
    };
    let tau = match tau_rows {
        Some(dev_rows) => {
            let features: Vec<f32> = dev_rows
                .iter()
                .flat_map(|r| r.features.iter().copied())
                .collect();
            let probs = trainer.probabilities(&features)?;
            let samples = actprm::pipeline::evaluate::samples_from_probs(
                &dev_rows,
                &probs,
                trainer.heads.heads,
            );
            Some(actprm::eval::choose_tau(&samples))
        }
        None => None,
    };
    let version = trainer.export(&base, &a.output, tau)?;
    println!(
        "trained {} steps ({} labelled trajectories, {:.0} trajectories/s), final loss {:.4}",
        steps,
        labelled,
        (steps as f64 * a.batch_size as f64).min(labelled as f64 * a.epochs as f64)
            / seconds.max(1e-9),
        last.map_or(f64::NAN, |r| r.loss)
    );
    if let Some(t) = tau {
        let source = match (&a.tau_from, a.tau_holdout_every) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(n)) => format!("every {n}-th training trajectory, held out"),
            _ => String::new(),
        };
        println!("tau {t:.2} chosen on {source}");
    }
    println!("wrote {} ({version})", a.output.display());
    Ok(())
}

fn experiment(a: ExperimentArgs) -> Result<(), Box<dyn std::error::Error>> {
    use actprm::experiment::{plot::learning_curve_svg, run_experiment, ExperimentConfig};
    let (_, pool) = read_features(&a.pool)?;
    let mut dev = Vec::new();
    for path in &a.dev {
        let (_, rows) = read_features(path)?;
        dev.push((actprm::source::jsonl::subset_name(path), rows));
    }
    let cfg = ExperimentConfig {
        strategies: a.strategies.clone(),
        seeds: a.seeds.clone(),
        heads: a.heads,
        train: TrainConfig {
            lr: a.lr,
            lambda: a.lambda,
            warmup_steps: a.warmup,
            pos_weight_wrong: a.wrong_weight,
            ..TrainConfig::default()
        },
        rule: SelectionRule {
            delta_pred: a.delta_pred,
            delta_std: a.delta_std,
        },
        stream_batch: a.stream_batch,
        passes: a.passes,
        eval_every: a.eval_every,
        holdout_every: a.holdout_every,
    };
    let started = std::time::Instant::now();
    let report = run_experiment(&pool, &dev, &cfg, |c| {
        if let Some(p) = c.points.last() {
            eprintln!(
                "{:<14} seed {}  labels {:>5}  steps {:>4}  dev F1 {:.3}  (tau {:.2})",
                c.strategy, c.seed, p.labels, p.steps, p.mean_f1, p.tau
            );
        }
    })?;
    std::fs::create_dir_all(&a.output)?;
    let table = report.table();
    let mut notes = String::new();
    for s in report
        .strategies()
        .iter()
        .filter(|s| s.starts_with("actprm"))
    {
        notes += &match report.budget_to_match_full(s) {
            Some(b) => format!("{s} first reaches the full-data F1 at {b} labels.\n"),
            None => format!("{s} does not reach the full-data F1 within its labels.\n"),
        };
    }
    actprm::sink::write_atomic(
        &a.output.join("results.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    actprm::sink::write_atomic(
        &a.output.join("table.md"),
        format!("{table}\n{notes}").as_bytes(),
    )?;
    let title = format!(
        "Pool-based active learning: {} pool trajectories, dev = {}",
        report.pool_streamed,
        report.dev.join(", ")
    );
    actprm::sink::write_atomic(
        &a.output.join("curve.svg"),
        learning_curve_svg(&report, &title).as_bytes(),
    )?;
    println!(
        "{table}\n{notes}({:.0} s; results.json, table.md, curve.svg in {})",
        started.elapsed().as_secs_f64(),
        a.output.display()
    );
    Ok(())
}
