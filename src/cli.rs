//! The command table. Flags are defined once here and fill the same job structs that pipeline
//! files fill.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use actprm::model::{Device, HeadsWeights, LoadedModel, RuntimeOptions};
use actprm::pipeline::evaluate::{evaluate_files, TauRule};
use actprm::pipeline::features::read_features;
use actprm::label::judge::{stderr_logger, JudgeConfig, PromptFormat};
use actprm::pipeline::{run_judge_eval, run_label, run_score, LabelJob, ScoreJob};
use actprm::train::{torch_device, TrainConfig, Trainer};
use actprm::score::ScoreOptions;
use actprm::select::SelectionRule;
use actprm::source::ColumnMapping;

#[derive(Parser, Debug)]
#[command(name = "actprm", version, about = "Train and run Process Reward Models by active learning")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Score every step of Parquet trajectories; write scored Parquet parts and summary.json.
    Score(ScoreArgs),
    /// Convert labelled JSON Lines / ProcessBench JSON to Parquet (id, problem, steps, label).
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
        ColumnMapping { problem: self.problem_column.clone(), steps: self.steps_column.clone() }
    }
}

/// The judge endpoint, prompt, sampling, retries and budget (the API key comes from the
/// environment only, never from a flag, so it stays out of shell history and process lists).
#[derive(Args, Debug, Clone)]
struct JudgeArgs {
    /// Base URL of the OpenAI-compatible API, e.g. http://localhost:8000/v1.
    #[arg(long)]
    judge_url: String,
    /// Model name as served (vLLM: --served-model-name).
    #[arg(long)]
    judge_model: String,
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
    fn config(&self, cache: Option<PathBuf>) -> JudgeConfig {
        JudgeConfig {
            url: self.judge_url.clone(),
            model: self.judge_model.clone(),
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
    #[arg(long)]
    tau_from: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: Device,
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
        RuntimeOptions { device: self.device, intra_threads: self.threads }
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
    /// Padded tokens per backbone call.
    #[arg(long, default_value_t = 8192)]
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
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn validate_thresholds(s: &SelectArgs) -> Result<(), String> {
    for (name, v) in [("delta_pred", s.delta_pred), ("delta_std", s.delta_std)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("--{} {v} is outside 0..1", name.replace('_', "-")));
        }
    }
    if let Some(t) = s.tau.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(format!("--tau {t} is outside 0..1"));
    }
    Ok(())
}

pub fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Score(a) => {
            validate_thresholds(&a.select)?;
            let mut job = ScoreJob::new(a.input.clone(), a.output.clone());
            job.model = a.model.model.clone();
            job.runtime = a.model.runtime();
            job.columns = a.columns.mapping();
            job.score = ScoreOptions {
                tau: a.select.tau,
                rule: SelectionRule { delta_pred: a.select.delta_pred, delta_std: a.select.delta_std },
                token_budget: a.token_budget,
                ..ScoreOptions::default()
            };
            job.batch_rows = a.batch_rows;
            job.with_head_probs = a.head_probs;
            job.features = a.features.clone();
            job.watch_model = a.watch_model.clone();
            job.progress = std::io::stderr().is_terminal();
            let summary = run_score(&job, None)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                summary.print();
                println!("output         {}", a.output.display());
            }
        }
        Command::Train(a) => train(a)?,
        Command::Label(a) => {
            let cache = if a.no_cache { None } else { Some(a.cache.clone().unwrap_or_else(|| a.output.join("judge-cache"))) };
            let mut job = LabelJob::new(a.input.clone(), a.output.clone(), a.judge.config(cache), stderr_logger());
            job.columns = a.columns.mapping();
            job.batch_rows = a.batch_rows;
            job.progress = std::io::stderr().is_terminal();
            let summary = run_label(&job)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                summary.print();
                println!("output         {}", a.output.display());
            }
        }
        Command::Judge { command: JudgeCommand::Eval { files, judge, cache, json } } => {
            let report = run_judge_eval(&files, &judge.config(cache), stderr_logger())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                report.print();
            }
        }
        Command::Eval { files, model, tau, tau_from_first, json } => {
            let loaded = LoadedModel::open(model.model.as_deref())?;
            let rule = if tau_from_first { TauRule::FromFirstSubset } else { TauRule::Fixed(tau.unwrap_or(loaded.manifest.tau)) };
            let report = evaluate_files(&files, &loaded, &model.runtime(), rule)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                report.print();
            }
        }
        Command::Convert { inputs, output } => {
            let mut records = Vec::new();
            for path in &inputs {
                records.extend(actprm::source::jsonl::read_labelled(path)?);
            }
            let batch = actprm::source::jsonl::to_record_batch(&records);
            let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            let stem = output.file_stem().and_then(|s| s.to_str()).unwrap_or("converted").to_string();
            let mut writer = actprm::sink::PartWriter::new(&dir, &stem, usize::MAX)?;
            writer.write(&batch)?;
            let parts = writer.finish()?;
            if let Some(part) = parts.first() {
                std::fs::rename(part, &output)?;
            }
            println!("wrote {} trajectories to {}", records.len(), output.display());
        }
        Command::InitModel { output, heads, seed, name } => {
            let base = LoadedModel::embedded()?;
            let weights = HeadsWeights::init(heads, base.manifest.hidden_size, seed);
            let bytes = weights.to_onnx(&[("actprm.seed", seed.to_string())]);
            let mut model = base;
            model.manifest.name = name;
            model.manifest.ensemble_size = heads;
            model.manifest.seed = seed;
            model.manifest.provenance = format!("heads initialised by `actprm init-model --heads {heads} --seed {seed}`");
            model.write_dir(&output, &bytes, Some(&bytes), &[])?;
            let written = LoadedModel::from_dir(&output)?;
            println!("wrote {} ({})", output.display(), written.version());
        }
    }
    Ok(())
}

fn train(a: TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    let device = torch_device(a.device)?;
    let mut rows = Vec::new();
    let mut dim = None;
    for path in &a.features {
        let (d, r) = read_features(path)?;
        if let Some(prev) = dim.filter(|&p| p != d) {
            return Err(format!("{}: features have dimension {d}, earlier files {prev}", path.display()).into());
        }
        dim = Some(d);
        rows.extend(r);
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
        return Err(format!("{}: features have dimension {d}, the heads take {}", a.features[0].display(), trainer.heads.dim).into());
    }
    let started = std::time::Instant::now();
    let first = trainer.step();
    let mut last = None;
    trainer.fit(&rows, a.epochs, a.stop_after, |r| {
        if r.step % 50 == 0 {
            eprintln!("step {:>6}  loss {:.4}  bce {:.4}  anchor {:.2e}  |g| {:.3}", r.step, r.loss, r.bce, r.anchor, r.grad_norm);
        }
        last = Some(*r);
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let steps = trainer.step() - first;
    let tau = match &a.tau_from {
        Some(dev) => {
            let (_, dev_rows) = read_features(dev)?;
            let features: Vec<f32> = dev_rows.iter().flat_map(|r| r.features.iter().copied()).collect();
            let probs = trainer.probabilities(&features)?;
            let samples = actprm::pipeline::evaluate::samples_from_probs(&dev_rows, &probs, trainer.heads.heads);
            Some(actprm::eval::choose_tau(&samples))
        }
        None => None,
    };
    let version = trainer.export(&base, &a.output, tau)?;
    println!(
        "trained {} steps ({} labelled trajectories, {:.0} trajectories/s), final loss {:.4}",
        steps,
        labelled,
        (steps as f64 * a.batch_size as f64).min(labelled as f64 * a.epochs as f64) / seconds.max(1e-9),
        last.map_or(f64::NAN, |r| r.loss)
    );
    if let Some(t) = tau {
        println!("tau {t:.2} chosen on {}", a.tau_from.as_ref().map_or(String::new(), |p| p.display().to_string()));
    }
    println!("wrote {} ({version})", a.output.display());
    Ok(())
}
