//! The command table. Flags are defined once here and fill the same job structs that pipeline
//! files fill.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use actprm::model::{Device, HeadsWeights, LoadedModel, RuntimeOptions};
use actprm::pipeline::evaluate::{evaluate_files, TauRule};
use actprm::pipeline::features::read_features;
use actprm::pipeline::{run_score, ScoreJob};
use actprm::train::{torch_device, TrainConfig, Trainer};
use actprm::score::ScoreOptions;
use actprm::select::SelectionRule;
use actprm::source::ColumnMapping;
use actprm::sql::{OutputFormat, SqlConfig, TableSpec};

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
    /// Problem column (default: problem, question, prompt, input or instruction).
    #[arg(long)]
    problem_column: Option<String>,
    /// Steps column, a list of strings (default: steps, completions or model_output_steps).
    #[arg(long)]
    steps_column: Option<String>,
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

#[derive(Args, Debug, Clone)]
struct SqlArgs {
    /// SQL to run (statements separated by ';'); without it, the shell (reading stdin when piped).
    query: Option<String>,
    /// Register a table NAME=PATH: a Parquet file, a glob, or a score output folder (its part-*.parquet).
    #[arg(long = "table", value_name = "NAME=PATH")]
    tables: Vec<TableSpec>,
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
            job.columns = ColumnMapping { problem: a.problem_column.clone(), steps: a.steps_column.clone() };
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
        Command::Sql(a) => sql(a)?,
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

fn sql(a: SqlArgs) -> Result<(), Box<dyn std::error::Error>> {
    use actprm::sql::{format::write_stream, register_tables, session, shell, SqlError};
    use std::io::IsTerminal;

    validate_thresholds(&a.select)?;
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
    let file = match (&query, &a.output) {
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
    runtime.block_on(async {
        let ctx = session(&config);
        register_tables(&ctx, &a.tables).await?;
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
    })?;
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
