//! `actprm filter --ray ADDRESS`: the same filter job, its units run as tasks on a Ray cluster.
//!
//! This process plans the units exactly as a local run does (settings check, resume, shard),
//! then hands the plan to `driver.py`, run with the pinned Ray (`ACTPRM_RAY=1 ./setup.sh`). The
//! driver starts one Ray task per unit; each runs `actprm filter --ray-unit FILE#GROUP` on its
//! node with this run's own command line, and that child commits the unit with the local
//! protocol (files renamed into place, then the commit record). Ray retries a task whose worker
//! or node is lost; a retry finds the unit committed, or redoes it under a per-unit lock, so no
//! row is lost or written twice. Ray tells this process about each finished unit on the driver's
//! stdout (lines starting `@actprm `), which drives the progress bar.
//!
//! Every node must see the model and this binary at the same paths, and the inputs and output
//! folder too unless they are in an object store (`remote.rs`: tasks upload their units); tasks
//! run in this process's working directory, which must exist there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

mod remote;

pub use remote::run_task;
use remote::RunObjects;

use super::{
    commit_record, committed_units, plan_units, shard_file, start_shard, summarise, write_summary,
    Committed, FilterJob, FilterSummary, RaySummary, UnitRef, UnitSource,
};
use crate::pipeline::PipelineError;
use crate::sink::atomic::write_atomic_tagged;
use crate::sink::remote::RemoteOutput;
use crate::source::parquet::PlannedFile;

/// The driver program, shipped inside the binary and written beside the outputs for each run.
const DRIVER: &str = include_str!("driver.py");

/// The Ray flags of `actprm filter` (command line only: each task reruns this command line).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RaySettings {
    /// Run the units as tasks on a Ray cluster: HOST:PORT or `auto` for a running one, or
    /// `local:N` to start an N-node cluster on this machine for the run. Every node must see
    /// the model and this binary at the same paths, and the inputs and the output folder unless
    /// they are object-store URLs.
    #[arg(long, value_name = "ADDRESS", conflicts_with = "ray_unit")]
    pub ray: Option<String>,
    /// With --ray: how often a unit is retried when its task fails or its node is lost.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub ray_retries: u32,
    /// With --ray: units per task. Each task starts `actprm` and opens the model once, so a
    /// model that takes long to load wants several units per task; a lost task redoes them all.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub ray_units_per_task: usize,
    /// The units a Ray task does, FILE#GROUP each (set by the driver, not by hand).
    #[arg(long, hide = true, value_name = "UNIT", num_args = 1)]
    pub ray_unit: Vec<UnitRef>,
}

/// Where the driver runs: `$ACTPRM_RAY_PYTHON` (a Python with the cluster's Ray version), else
/// the one `ACTPRM_RAY=1 ./setup.sh` installed.
pub fn python() -> Result<PathBuf, PipelineError> {
    let python = std::env::var_os("ACTPRM_RAY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::model::deps_dir().join("ray/bin/python"));
    if python.exists() {
        Ok(python)
    } else {
        Err(PipelineError::RayNotInstalled { python })
    }
}

/// A task's `actprm` must not outlive the Ray worker that started it, so that a lost node
/// leaves no process writing: the driver names that worker in `ACTPRM_RAY_WORKER_PID`, and this
/// process exits (status 75, temporary failure) as soon as the worker is no longer its parent.
pub(super) fn exit_with_ray_worker() {
    let Some(worker) = std::env::var("ACTPRM_RAY_WORKER_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return;
    };
    let gone = move || std::os::unix::process::parent_id() != worker;
    if gone() {
        std::process::exit(75);
    }
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if gone() {
            std::process::exit(75);
        }
    });
}

/// The command line a task runs: this one without the flags that concern only the driver
/// (`--restart` has been done by then, and must not be done again by every task).
pub fn worker_args(argv: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut args = Vec::new();
    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--ray" | "--ray-retries" | "--ray-units-per-task" => {
                argv.next();
            }
            // `--restart` has been done by then; `--quiet` every task gets anyway
            "--restart" | "--quiet" | "-q" => {}
            a if ["--ray=", "--ray-retries=", "--ray-units-per-task="]
                .iter()
                .any(|flag| a.starts_with(flag)) => {}
            _ => args.push(arg),
        }
    }
    args
}

/// The flags of `filter` whose values are paths (`-i` takes several).
const PATH_FLAGS: &[&str] = &["-i", "--input", "-o", "--output", "--model"];

/// `args` with every relative path value of [`PATH_FLAGS`] made absolute against `cwd`, so a
/// task reads and writes the driver's files wherever its worker runs.
fn with_absolute_paths(args: Vec<String>, cwd: &Path) -> Vec<String> {
    let absolute = |value: &str| {
        if Path::new(value).is_absolute() || crate::location::is_remote(value) {
            value.to_string()
        } else {
            cwd.join(value).display().to_string()
        }
    };
    let mut out = Vec::with_capacity(args.len());
    // how many path values the last flag still takes: -i/--input several, the others one
    let mut paths_left = 0usize;
    for arg in args {
        if let Some((flag, value)) = arg.split_once('=').filter(|(f, _)| f.starts_with('-')) {
            paths_left = 0;
            if PATH_FLAGS.contains(&flag) {
                out.push(format!("{flag}={}", absolute(value)));
                continue;
            }
        } else if arg.starts_with('-') {
            paths_left = match arg.as_str() {
                "-i" | "--input" => usize::MAX,
                flag if PATH_FLAGS.contains(&flag) => 1,
                _ => 0,
            };
        } else if paths_left > 0 {
            paths_left -= 1;
            out.push(absolute(&arg));
            continue;
        }
        out.push(arg);
    }
    out
}

#[derive(Serialize)]
struct Plan {
    address: String,
    actprm: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    out: PathBuf,
    units: Vec<PlanUnit>,
    num_cpus: usize,
    num_gpus: u32,
    max_retries: u32,
    units_per_task: usize,
    manifest: String,
}

#[derive(Serialize)]
struct PlanUnit {
    id: String,
    spec: String,
}

/// What the driver reports, one `@actprm {json}` line each.
#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Event {
    Start { units: u64, nodes: u64 },
    Unit { unit: String },
    Failed { unit: String, error: String },
    Nodes { alive: u64 },
    Done { not_run: usize },
}

/// The manifest the driver writes: which node did which unit, in how many attempts.
#[derive(Deserialize)]
struct Manifest {
    units: BTreeMap<String, ManifestUnit>,
}

#[derive(Deserialize)]
struct ManifestUnit {
    node: String,
    attempts: u64,
}

fn check_address(address: &str) -> Result<(), PipelineError> {
    let refuse = |why: &str| crate::limits::refuse("ray", format!("`{address}`: {why}"));
    match address.strip_prefix("local:") {
        Some(n) => match n.parse::<u32>() {
            Ok(1..=16) => Ok(()),
            _ => Err(refuse("local:N needs 1 <= N <= 16 nodes").into()),
        },
        None if address.trim().is_empty() => {
            Err(refuse("expected HOST:PORT, auto or local:N").into())
        }
        None => Ok(()),
    }
}

/// Every unit of the planned files, as the driver hands them out.
fn units_of(planned: &[PlannedFile], sources: &[UnitSource]) -> Vec<PlanUnit> {
    let mut units = Vec::new();
    for (file, source) in planned.iter().zip(sources) {
        let groups: Vec<Option<usize>> = if file.columns.is_err() {
            vec![None]
        } else {
            match &file.groups {
                Some(g) => g.iter().copied().map(Some).collect(),
                None => (0..file.row_groups).map(Some).collect(),
            }
        };
        for group in groups {
            let unit = UnitRef {
                path: file.path.as_ref().clone(),
                group,
            };
            units.push(PlanUnit {
                id: source.unit_id(group),
                spec: unit.to_string(),
            });
        }
    }
    units
}

/// Runs the filter job's units on the Ray cluster at `address`; `args` is the command line each
/// task reruns (see `worker_args`). With a remote output, the job's folder is its staging
/// folder and the tasks upload their units themselves (`remote.rs`).
pub fn run_on_ray(
    job: &FilterJob,
    address: &str,
    settings: &RaySettings,
    args: Vec<String>,
    remote: Option<&RemoteOutput>,
) -> Result<FilterSummary, PipelineError> {
    job.validate()?;
    check_address(address)?;
    if settings.ray_units_per_task == 0 {
        return Err(
            crate::limits::refuse("ray_units_per_task", "must be at least 1".into()).into(),
        );
    }
    let python = python()?;
    let out =
        std::path::absolute(&job.score.output).map_err(PipelineError::io(&job.score.output))?;
    std::fs::create_dir_all(&out).map_err(PipelineError::io(&out))?;
    let resumed = out.join(crate::sink::commit::FINGERPRINT_FILE).exists() && !job.restart;
    let (shard, planned, sources) = start_shard(job)?;
    let tag = &shard.tag;
    let started = Instant::now();
    let store = remote.map(|output| RunObjects::new(output, &sources));
    let (planned, sources, todo) = match &store {
        Some(store) => {
            let objects = store.start(&out, resumed, job.restart)?;
            plan_units(job, planned, sources, &Committed::Listed(&objects))?
        }
        None => plan_units(job, planned, sources, &Committed::Folder(&out))?,
    };
    let units = units_of(&planned, &sources);
    let manifest = shard_file(job.shard, "manifest");
    let (num_cpus, num_gpus) = task_resources(job);
    let cwd = std::env::current_dir().map_err(PipelineError::io(Path::new(".")))?;
    let plan = Plan {
        address: address.to_string(),
        actprm: std::env::current_exe().map_err(PipelineError::io(Path::new("actprm")))?,
        // a task's stderr is its error report: no progress lines in it
        args: with_absolute_paths(args, &cwd)
            .into_iter()
            .chain(["--quiet".to_string()])
            .collect(),
        cwd,
        env: task_env(),
        out: out.clone(),
        units,
        num_cpus,
        num_gpus,
        max_retries: settings.ray_retries,
        units_per_task: settings.ray_units_per_task,
        manifest: manifest.clone(),
    };
    let done = if plan.units.is_empty() {
        BTreeSet::new()
    } else {
        drive(job, &python, &plan, tag)?
    };
    // a task's exit status is its word only: every planned unit must be committed whole in the
    // output before the run reports success
    let ids: Vec<String> = plan.units.iter().map(|u| u.id.clone()).collect();
    match &store {
        Some(store) => store.finish(&out, &ids)?,
        None => check_committed_here(&out, &ids)?,
    }
    let all = committed_units(&out)?;
    let this_run: Vec<_> = all.iter().filter(|u| done.contains(&u.unit)).collect();
    let mut summary = summarise(&all);
    summary.units_this_run = todo;
    summary.seconds = started.elapsed().as_secs_f64();
    let rows: u64 = this_run.iter().map(|u| u.rows_in).sum();
    let tokens: u64 = this_run.iter().map(|u| u.tokens).sum();
    summary.rows_per_second = rows as f64 / summary.seconds.max(1e-9);
    summary.tokens_per_second = tokens as f64 / summary.seconds.max(1e-9);
    summary.model_version = shard.settings.model_version.clone();
    summary.ray = Some(ray_summary(&out, address, &manifest, !done.is_empty())?);
    write_summary(job, summary)
}

/// What each task asks Ray for: `--threads` CPUs (1 for 0, one per core: the node's cores are
/// shared by its tasks), and one GPU with `--device cuda` (Ray sets `CUDA_VISIBLE_DEVICES`, so
/// `cuda` or `cuda:0` is the task's own GPU).
fn task_resources(job: &FilterJob) -> (usize, u32) {
    let runtime = &job.score.runtime;
    (
        runtime.intra_threads.max(1),
        u32::from(runtime.device != crate::model::Device::Cpu),
    )
}

/// The variables a task's `actprm` needs as this process has them: every `ACTPRM_*` (the
/// native parts' folder among them, so workers use the same ONNX Runtime).
fn task_env() -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("ACTPRM_"))
        .collect();
    env.insert(
        "ACTPRM_DEPS".into(),
        crate::model::deps_dir().display().to_string(),
    );
    env
}

/// Runs the driver over the plan, following its events; returns the units it finished.
fn drive(
    job: &FilterJob,
    python: &Path,
    plan: &Plan,
    tag: &str,
) -> Result<BTreeSet<String>, PipelineError> {
    let dir = plan.out.join("ray");
    let driver = dir.join("driver.py");
    write_atomic_tagged(&driver, DRIVER.as_bytes(), tag)?;
    let plan_path = dir.join(format!("plan-{tag}.json"));
    let plan_json = serde_json::to_vec_pretty(plan).expect("plan serialises");
    write_atomic_tagged(&plan_path, &plan_json, tag)?;
    let log_path = dir.join(format!("driver-{tag}.log"));
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(PipelineError::io(&log_path))
    };
    std::fs::write(&log_path, b"").map_err(PipelineError::io(&log_path))?;
    let (log, mut ray_lines) = (open_log()?, open_log()?);
    let mut child = Command::new(python)
        .arg(&driver)
        .arg(&plan_path)
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(PipelineError::io(python))?;
    let bar = crate::pipeline::progress::units_bar(plan.units.len() as u64, job.score.progress);
    let (mut done, mut failed) = (BTreeSet::new(), Vec::new());
    let (mut finished, mut not_run, mut rows, mut nodes) = (false, 0, 0u64, 0u64);
    let started = Instant::now();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(PipelineError::io(&driver))?;
        // the log keeps everything (events carry their time); Ray's own messages (raylet
        // logs, warnings) go only there
        let _ = writeln!(ray_lines, "{line}");
        let Some(event) = line.strip_prefix("@actprm ") else {
            continue;
        };
        match serde_json::from_str::<Event>(event) {
            Ok(Event::Start { units, nodes: n }) => {
                bar.set_length(units);
                nodes = n;
            }
            Ok(Event::Unit { unit }) => {
                rows += unit_rows(&plan.out, &unit);
                done.insert(unit);
                bar.inc(1);
            }
            Ok(Event::Failed { unit, error }) => {
                job.score
                    .log
                    .line(&format!("ray: unit {unit} failed: {error}"));
                failed.push(format!("{unit}: {error}"));
                bar.inc(1);
            }
            Ok(Event::Nodes { alive }) => {
                if alive < nodes {
                    job.score.log.line(&format!(
                        "ray: {} node(s) lost, {alive} alive: their units run again elsewhere",
                        nodes - alive
                    ));
                }
                nodes = alive;
            }
            Ok(Event::Done { not_run: n }) => {
                finished = true;
                not_run = n;
            }
            Err(e) => job
                .score
                .log
                .line(&format!("ray: unreadable event {event}: {e}")),
        }
        let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
        // a remote output's records are in the store, not here: no rows to count
        let rate = if rows > 0 {
            format!("{rate:.0} rows/s, ")
        } else {
            String::new()
        };
        bar.set_message(format!("{rate}{nodes} node(s) alive"));
    }
    let status = child.wait().map_err(PipelineError::io(python))?;
    bar.finish_and_clear();
    if !failed.is_empty() {
        return Err(PipelineError::RayUnitsFailed {
            failed: failed.len(),
            not_run,
            units: plan.units.len(),
            first: failed.swap_remove(0),
        });
    }
    if !status.success() || !finished {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        return Err(PipelineError::RayDriver {
            status: status.to_string(),
            log: log_path,
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(done)
}

/// Every unit of `ids` committed in `out` with its files whole.
fn check_committed_here(out: &Path, ids: &[String]) -> Result<(), PipelineError> {
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| {
            commit_record(out, id)
                .ok()
                .flatten()
                .is_none_or(|r| super::unit::check_committed(out, &r).is_err())
        })
        .collect();
    match missing.first() {
        Some(first) => Err(PipelineError::RayUnitsFailed {
            failed: missing.len(),
            not_run: 0,
            units: ids.len(),
            first: format!(
                "{first}: its task reported success but {} holds no whole commit of it (did the \
                 task write into another folder?)",
                out.display()
            ),
        }),
        None => Ok(()),
    }
}

/// Rows a committed unit read (0 when its record is not readable yet: progress only).
fn unit_rows(out: &Path, unit: &str) -> u64 {
    commit_record(out, unit)
        .ok()
        .flatten()
        .map_or(0, |u| u.rows_in)
}

/// What the driver's manifest says of this run (`ran`: a driver ran; else nothing was left to
/// do, and the manifest on disk is an earlier run's).
fn ray_summary(
    out: &Path,
    address: &str,
    manifest: &str,
    ran: bool,
) -> Result<RaySummary, PipelineError> {
    let path = out.join("ray").join(manifest);
    let mut summary = RaySummary {
        address: address.to_string(),
        manifest: format!("ray/{manifest}"),
        ..RaySummary::default()
    };
    if !ran {
        return Ok(summary);
    }
    let text = std::fs::read_to_string(&path).map_err(PipelineError::io(&path))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(PipelineError::json(&path))?;
    let nodes: BTreeSet<&str> = manifest.units.values().map(|u| u.node.as_str()).collect();
    summary.nodes_used = nodes.len();
    summary.attempts = manifest.units.values().map(|u| u.attempts).sum();
    summary.units_retried = manifest.units.values().filter(|u| u.attempts > 1).count() as u64;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_rerun_the_command_line_without_the_driver_flags() {
        let argv = "filter -i c -o out --ray local:2 --restart --ray-retries=5 --keep-rate 0.5 \
                    --ray-units-per-task 4 --quiet"
            .split(' ')
            .map(String::from);
        assert_eq!(
            worker_args(argv).join(" "),
            "filter -i c -o out --keep-rate 0.5"
        );
    }

    #[test]
    fn tasks_get_the_drivers_paths_as_absolute_paths() {
        let args = "filter -i c /abs/d s3://b/k -o out --model=m --group-by source \
                    --keep-rate 0.5 --input=e"
            .split(' ')
            .map(String::from)
            .collect();
        assert_eq!(
            with_absolute_paths(args, Path::new("/work")).join(" "),
            "filter -i /work/c /abs/d s3://b/k -o /work/out --model=/work/m --group-by source \
             --keep-rate 0.5 --input=/work/e"
        );
    }

    #[test]
    fn a_task_asks_for_the_threads_and_the_gpu_it_runs_with() {
        let score = crate::pipeline::score::ScoreJob::new(vec!["c".into()], "out".into());
        let mut job = FilterJob::new(score, &Default::default());
        assert_eq!(task_resources(&job), (1, 0));
        job.score.runtime.intra_threads = 4;
        job.score.runtime.device = "cuda".parse().unwrap();
        assert_eq!(task_resources(&job), (4, 1));
    }

    #[test]
    fn a_unit_reads_back_as_written() {
        for text in ["/data/a#b.parquet#3", "/data/x.parquet#file"] {
            let unit: UnitRef = text.parse().unwrap();
            assert_eq!(unit.to_string(), text);
        }
        assert!("/data/x.parquet#three".parse::<UnitRef>().is_err());
        assert!(check_address("local:0").is_err());
        assert!(check_address("local:2").is_ok());
    }
}
