//! `actprm filter --ray` on real Ray clusters on loopback (the pinned Ray of `ACTPRM_RAY=1
//! ./setup.sh`): the same kept set as a run on one machine, and no unit lost or written twice
//! when a worker node's raylet or a task's `actprm` is killed mid-job.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{actprm, corpus, filter_args, ids_in, stderr, tiny_model};

/// One cluster at a time: Ray's many ports and the 2 cores are shared.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn ray_dir() -> PathBuf {
    let dir = actprm::model::deps_dir().join("ray");
    assert!(
        dir.join("bin/python").exists(),
        "Ray is not installed in {}: run `ACTPRM_RAY=1 ./setup.sh` (CI does)",
        dir.display()
    );
    dir
}

/// Whether the binary under test has failpoints: the kill tests hold each unit open with
/// `ACTPRM_FAILPOINT=filter-commit:sleep-ms=..` so the kill lands inside one. Failpoints
/// (src/failpoint.rs) are compiled in debug builds only, and the binary is built with this test's
/// profile; under `--release` the test says it is skipped rather than racing a run that no longer
/// waits.
fn failpoints_or_skip(test: &str) -> bool {
    if !cfg!(debug_assertions) {
        eprintln!("SKIPPED {test}: this build has no failpoints (a release build); run it without --release");
    }
    cfg!(debug_assertions)
}

/// Ray's failure detection in seconds rather than half a minute.
const FAST_HEALTH: [(&str, &str); 4] = [
    ("RAY_health_check_initial_delay_ms", "1000"),
    ("RAY_health_check_period_ms", "500"),
    ("RAY_health_check_timeout_ms", "1000"),
    ("RAY_health_check_failure_threshold", "4"),
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Processes whose command line contains `needle`, as (pid, command line).
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(needle) && pid != std::process::id() {
            found.push((pid, line));
        }
    }
    found
}

fn kill(pid: u32) {
    let o = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "kill -9 {pid}: {}", stderr(&o));
}

/// A head and a worker node started with `ray start`, as on a real cluster. Each `ray start`
/// leads a process group of its own that its daemons keep: killing the groups on drop stops
/// this cluster and touches no other Ray on the machine.
struct Cluster {
    temp: PathBuf,
    port: u16,
    worker_manager_port: u16,
    groups: Vec<u32>,
}

impl Cluster {
    fn start(temp: &Path) -> Self {
        let ray = ray_dir().join("bin/ray");
        let mut cluster = Self {
            temp: temp.to_path_buf(),
            port: free_port(),
            worker_manager_port: free_port(),
            groups: Vec::new(),
        };
        let common = |cmd: &mut Command| {
            std::os::unix::process::CommandExt::process_group(cmd, 0);
            cmd.args(["--num-cpus", "1", "--num-gpus", "1"])
                .args(["--object-store-memory", "100000000"])
                .envs(FAST_HEALTH)
                .env("RAY_USAGE_STATS_ENABLED", "0")
                .stdin(Stdio::null());
        };
        let mut head = Command::new(&ray);
        head.args(["start", "--head", "--include-dashboard=false"])
            .arg(format!("--port={}", cluster.port))
            .arg(format!("--temp-dir={}", temp.display()));
        common(&mut head);
        let o = cluster.start_node(&mut head);
        assert!(o.status.success(), "ray start --head: {}", stderr(&o));
        let mut worker = Command::new(&ray);
        worker
            .args(["start", "--address", &cluster.address()])
            .arg(format!(
                "--node-manager-port={}",
                cluster.worker_manager_port
            ));
        common(&mut worker);
        let o = cluster.start_node(&mut worker);
        assert!(o.status.success(), "ray start --address: {}", stderr(&o));
        cluster
    }

    fn start_node(&mut self, cmd: &mut Command) -> Output {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.groups.push(child.id());
        child.wait_with_output().unwrap()
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn worker_raylet(&self) -> u32 {
        let port = format!("--node_manager_port={}", self.worker_manager_port);
        let raylets: Vec<u32> = processes_with(&self.temp.display().to_string())
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("/raylet ") && cmd.contains(&port))
            .map(|(pid, _)| pid)
            .collect();
        assert_eq!(raylets.len(), 1, "the worker node's raylet");
        raylets[0]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for group in &self.groups {
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{group}")])
                .output();
        }
    }
}

struct Job {
    _dir: tempfile::TempDir,
    model: String,
    corpus: String,
    root: PathBuf,
    /// Kept ids of the same job on one machine, without Ray.
    expected: Vec<String>,
}

/// A generated corpus of `units` units (files of 4 row groups of 250 rows), and what a local
/// filter keeps.
fn job(units: u64) -> Job {
    let dir = tempfile::Builder::new()
        .prefix("ray")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().to_path_buf();
    let model = tiny_model(&root).display().to_string();
    let corpus = corpus(&root, 250 * units, units / 4, 250)
        .display()
        .to_string();
    let local = root.join("local");
    let o = actprm(&filter_args(&model, &corpus, local.to_str().unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = ids_in(&local.join("kept"), "");
    assert_eq!(expected.len() as u64, 150 * units, "keep rate 0.6");
    Job {
        _dir: dir,
        model,
        corpus,
        root,
        expected,
    }
}

impl Job {
    fn out(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `actprm filter --ray ADDRESS` into `out`, each unit's commit delayed by `pause_ms`.
    fn spawn(
        &self,
        out: &Path,
        address: &str,
        pause_ms: u64,
        extra: &[&str],
    ) -> std::process::Child {
        let mut args = filter_args(&self.model, &self.corpus, out.to_str().unwrap());
        args.extend(["--ray", address]);
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_actprm"))
            .args(&args)
            .env(
                "ACTPRM_FAILPOINT",
                format!("filter-commit:sleep-ms={pause_ms}"),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits for the run, and checks that it kept exactly what the local run kept, each unit
    /// committed once; returns its summary.
    fn check(&self, run: std::process::Child, out: &Path) -> serde_json::Value {
        let o: Output = run.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(ids_in(&out.join("kept"), ""), self.expected);
        let verify = actprm(&["filter-verify", out.to_str().unwrap(), "-i", &self.corpus]);
        assert!(verify.status.success(), "{}", stderr(&verify));
        serde_json::from_slice(&o.stdout).expect("JSON summary")
    }
}

/// Waits until `ready` holds (panics after a minute).
fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited a minute for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn a_local_two_node_cluster_keeps_what_one_machine_keeps() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    ray_dir();
    let job = job(8);
    let out = job.out("ray");
    let summary = job.check(job.spawn(&out, "local:2", 0, &[]), &out);
    let ray = &summary["ray"];
    assert_eq!(summary["units_this_run"], 8);
    assert_eq!(ray["nodes_used"], 2, "both nodes did units: {summary}");
    assert_eq!(ray["attempts"], 8);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ray/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["units"].as_object().unwrap().len(), 8);
    assert!(
        processes_with("--ray-unit").is_empty(),
        "no task left behind"
    );
    // a rerun finds every unit committed and starts no cluster
    let again = job.check(job.spawn(&out, "local:2", 0, &[]), &out);
    assert_eq!(again["units_this_run"], 0);
    assert_eq!(again["units"], 8);
    assert_eq!(again["ray"]["attempts"], 0, "no task ran: {again}");
}

#[test]
fn a_killed_worker_node_loses_no_unit() {
    if !failpoints_or_skip("a_killed_worker_node_loses_no_unit") {
        return;
    }
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    ray_dir();
    let job = job(4);
    let cluster = Cluster::start(&job.out("r"));
    let out = job.out("ray");
    // each node has one CPU: the first two attempts are one per node, and each stays a few
    // seconds in its unit, longer than a worker takes to notice that its raylet is gone
    let run = job.spawn(&out, &cluster.address(), 4000, &[]);
    let marker = format!("--ray-unit {}", job.corpus);
    wait_for("both nodes to start a unit", || {
        processes_with(&marker).len() >= 2
    });
    kill(cluster.worker_raylet());
    let summary = job.check(run, &out);
    let ray = &summary["ray"];
    assert!(
        ray["units_retried"].as_u64().unwrap() >= 1,
        "the lost node's unit ran again: {summary}"
    );
}

#[test]
fn a_killed_task_is_retried() {
    if !failpoints_or_skip("a_killed_task_is_retried") {
        return;
    }
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    ray_dir();
    let job = job(4);
    let out = job.out("ray");
    // two units per task: the killed process's task redoes both (or skips one it committed)
    let run = job.spawn(&out, "local:2", 1500, &["--ray-units-per-task", "2"]);
    let marker = format!("--ray-unit {}", job.corpus);
    wait_for("a task's actprm", || !processes_with(&marker).is_empty());
    let (pid, victim) = processes_with(&marker).remove(0);
    assert_eq!(victim.matches("--ray-unit").count(), 2, "{victim}");
    kill(pid);
    let summary = job.check(run, &out);
    assert_eq!(
        summary["ray"]["units_retried"].as_u64().unwrap(),
        2,
        "{victim} ran again: {summary}"
    );
}

#[test]
fn a_unit_failing_on_every_node_fails_the_run_and_stops_it() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let python = ray_dir().join("bin/python");
    let job = job(8);
    let out = job.out("ray");
    // the nodes' actprm finds none of the native parts: every attempt of every unit fails alike
    let mut args = filter_args(&job.model, &job.corpus, out.to_str().unwrap());
    args.extend(["--ray", "local:1", "--ray-retries", "1"]);
    let o = Command::new(env!("CARGO_BIN_EXE_actprm"))
        .args(&args)
        .env("ACTPRM_RAY_PYTHON", &python)
        .env("ACTPRM_DEPS", job.out("no-deps"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("of 8 units failed on Ray after their retries"),
        "{err}"
    );
    assert!(err.contains("not started"), "{err}");
    assert!(
        err.contains("no-deps/"),
        "the task's own error is shown: {err}"
    );
    assert_eq!(files_in(&out.join("units")), 0, "nothing committed");
}

#[test]
fn a_gpu_run_on_a_cluster_without_gpus_fails_saying_so() {
    // on a machine with an NVIDIA card the head node has it, and the run goes on to CUDA
    if Path::new("/dev/nvidia0").exists() {
        eprintln!("SKIPPED: this machine has a GPU");
        return;
    }
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let job = job(4);
    let out = job.out("ray");
    let mut args = filter_args(&job.model, &job.corpus, out.to_str().unwrap());
    // two fake nodes on this machine: neither may claim a GPU it does not have (before, each
    // claimed one, and the tasks were placed and failed in ONNX Runtime instead)
    args.extend(["--ray", "local:2", "--device", "cuda"]);
    let o = actprm(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has 0 GPU(s) and --device cuda asks 1 per task"),
        "{err}"
    );
    assert_eq!(files_in(&out.join("units")), 0, "nothing committed");
}
