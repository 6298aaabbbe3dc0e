//! Issue 31, item 4: paths where data lives. Inputs and outputs at `s3://` URLs, against a real S3
//! API on loopback (moto's server, pinned in tests/python/s3-requirements.txt), checked through
//! boto3 (AWS's own client) and against the same command run on local files; `hf://` data sets
//! and `import --from ORG/NAME` against a loopback server that answers the Hub's tree and resolve
//! routes (tests/python/hub_server.py).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn python() -> PathBuf {
    let python = actprm::model::deps_dir().join("s3/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `ACTPRM_RAY=1 ./setup.sh` (it installs the pinned moto server)",
        python.display()
    );
    python
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A moto S3 server on a free loopback port, with its own input cache and staging folders.
struct S3 {
    server: Child,
    port: u16,
    cache: tempfile::TempDir,
}

impl S3 {
    fn start() -> S3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto server starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let s3 = S3 {
            server,
            port,
            cache: tempfile::tempdir().unwrap(),
        };
        s3.boto(&["mkbucket", "data"]);
        s3
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("ACTPRM_REMOTE_CACHE", self.cache.path());
    }

    /// `tests/python/s3_objects.py ARGS` (boto3), its stdout.
    fn boto(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(python());
        cmd.arg(script("s3_objects.py")).args(args);
        self.env(&mut cmd);
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "boto3 {args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Keys (relative to `prefix`) and sizes under `prefix` of bucket `data`, as boto3 lists them.
    fn list(&self, prefix: &str) -> BTreeMap<String, u64> {
        let found: BTreeMap<String, u64> =
            serde_json::from_str(self.boto(&["list", "data", prefix]).trim()).unwrap();
        found
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(prefix).unwrap().to_string(), v))
            .collect()
    }

    fn put(&self, key: &str, file: &Path) {
        self.boto(&["put", "data", key, s(file)]);
    }

    /// Downloads every object under `prefix` into `dir` (with boto3), keeping their paths.
    fn download(&self, prefix: &str, dir: &Path) {
        for key in self.list(prefix).keys() {
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            self.boto(&["get", "data", &format!("{prefix}{key}"), s(&path)]);
        }
    }

    fn actprm(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_actprm"));
        cmd.args(args);
        self.env(&mut cmd);
        cmd.output().unwrap()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Every file under `dir` (relative path -> size), hidden ones left out.
fn files(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, p.metadata().unwrap().len());
            }
        }
    }
    out
}

/// A corpus folder: the PRM800K sample as Parquet (in a sub-folder) and a file of neither kind.
fn local_corpus(dir: &Path) -> PathBuf {
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(corpus.join("sub")).unwrap();
    std::fs::rename(prm800k_parquet(dir), corpus.join("sub/a.parquet")).unwrap();
    std::fs::write(corpus.join("notes.txt"), "not data").unwrap();
    corpus
}

/// `mixed.jsonl`: one row that scores and one that is rejected (no steps), so an output of it
/// has a `rejects/` folder.
fn with_a_reject(dir: &Path) -> PathBuf {
    let path = dir.join("mixed.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"g1\",\"problem\":\"1+1?\",\"steps\":[\"1+1=2\",\"So 2.\"]}\n\
         {\"id\":\"b1\",\"problem\":\"x\",\"steps\":[]}\n",
    )
    .unwrap();
    path
}

fn upload_folder(s3: &S3, local: &Path, prefix: &str) {
    for key in files(local).keys() {
        s3.put(&format!("{prefix}{key}"), &local.join(key));
    }
}

#[test]
fn s3_inputs_and_outputs_hold_what_a_local_run_writes() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = local_corpus(dir.path());
    upload_folder(&s3, &corpus, "corpus/");
    let lines = data("sql_records.jsonl");
    s3.put("extra/b.jsonl", &lines);

    let local = dir.path().join("local");
    let o = actprm(&[
        "score",
        "-i",
        s(&corpus),
        "-i",
        s(&lines),
        "-o",
        s(&local),
        "--model",
        s(&model),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s3.actprm(&[
        "score",
        "-i",
        "s3://data/corpus/",
        "-i",
        "s3://data/extra/b.jsonl",
        "-o",
        "s3://data/scored",
        "--model",
        s(&model),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("uploaded"), "{}", stderr(&o));

    // the bucket holds the local run's files (and the upload list), with the same rows and scores
    let listed = s3.list("scored/");
    let mut expected: BTreeSet<String> = files(&local).into_keys().collect();
    expected.insert(".actprm-upload.json".into());
    assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), expected);
    let fetched = dir.path().join("fetched");
    s3.download("scored/", &fetched);
    let (want, got) = (step_means_in(&local), step_means_in(&fetched));
    assert_eq!(got.len(), 24 + 20, "both input files were read");
    assert_eq!(got, want);
    assert_eq!(summary(&fetched)["rows_in"], summary(&local)["rows_in"]);
    // nothing is left staged once the upload is complete
    let outputs = s3.cache.path().join("outputs");
    assert_eq!(std::fs::read_dir(&outputs).unwrap().count(), 0);

    // SQL reads the remote output as a table
    let o = s3.actprm(&[
        "sql",
        "--table",
        "t=s3://data/scored",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM t",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "n\n44");
    // and a URL in the SQL text, read by DataFusion from the store itself
    let o = s3.actprm(&[
        "sql",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM 's3://data/corpus/sub/a.parquet'",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "n\n24");

    // a glob reads only what it matches
    let out = dir.path().join("glob");
    let o = s3.actprm(&[
        "score",
        "-i",
        "s3://data/corpus/*/*.parquet",
        "-o",
        s(&out),
        "--model",
        s(&model),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(step_means_in(&out).len(), 24);

    // a missing key is an error that names it
    let o = s3.actprm(&[
        "score",
        "-i",
        "s3://data/nothing/",
        "-o",
        s(&dir.path().join("x")),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("s3://data/nothing/"), "{}", stderr(&o));
}

#[test]
fn a_remote_output_is_never_mixed_and_foreign_objects_are_kept() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = local_corpus(dir.path());
    // the first input has rows that are rejected, so its output has a `rejects/` folder that the
    // second run's output does not: an overwrite that kept it would mix the two runs
    let first_input = with_a_reject(dir.path());
    let one = corpus.join("sub/a.parquet");
    let score = |input: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["score", "-i", input, "-o", out, "--model", s(&model)];
        args.extend_from_slice(extra);
        s3.actprm(&args)
    };
    assert!(score(s(&first_input), "s3://data/run", &[])
        .status
        .success());
    let first = s3.list("run/");
    assert!(first.keys().any(|k| k.starts_with("rejects/")), "{first:?}");

    // a second run into the same prefix is refused, and changes nothing
    let o = score(s(&one), "s3://data/run", &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    assert_eq!(s3.list("run/"), first);

    // --overwrite replaces actprm's files only: a user's object stays
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "mine").unwrap();
    s3.put("run/notes.txt", &notes);
    let o = score(s(&one), "s3://data/run", &["--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let fetched = dir.path().join("fetched");
    s3.download("run/", &fetched);
    assert_eq!(
        std::fs::read_to_string(fetched.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(step_means_in(&fetched).len(), 24, "only the new run's rows");
    let now: BTreeSet<String> = s3.list("run/").into_keys().collect();
    assert!(!now.iter().any(|k| k.starts_with("rejects/")), "{now:?}");
    let mut expected: BTreeSet<String> = files(&fetched).into_keys().collect();
    expected.insert(".actprm-upload.json".into());
    assert_eq!(now, expected);

    // a prefix holding a file of the same name that actprm did not write: nothing is uploaded,
    // and the output waits in the staging folder, which the message names
    let theirs = dir.path().join("summary.json");
    std::fs::write(&theirs, "{\"theirs\": true}").unwrap();
    s3.put("taken/summary.json", &theirs);
    let o = score(s(&one), "s3://data/taken", &[]);
    assert!(!o.status.success());
    let message = stderr(&o);
    assert!(message.contains("actprm did not write"), "{message}");
    assert_eq!(s3.list("taken/").len(), 1);
    let staged = s3.cache.path().join("outputs");
    let staged: Vec<PathBuf> = std::fs::read_dir(staged)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(staged.len(), 1);
    assert!(message.contains(s(&staged[0])), "{message}");
    assert_eq!(step_means_in(&staged[0]).len(), 24, "the output is kept");
}

#[test]
fn an_upload_that_stops_part_way_is_finished_by_the_rerun() {
    if !cfg!(debug_assertions) {
        eprintln!("SKIPPED: this build has no failpoints (a release build)");
        return;
    }
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = prm800k_parquet(dir.path());
    let args = |extra: &'static str| {
        let mut args = vec![
            "score",
            "-i",
            s(&input),
            "-o",
            "s3://data/half",
            "--model",
            s(&model),
        ];
        if !extra.is_empty() {
            args.push(extra);
        }
        args
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_actprm"));
    cmd.args(args(""))
        .env("ACTPRM_FAILPOINT", "remote-upload:1");
    s3.env(&mut cmd);
    let o = cmd.output().unwrap();
    assert!(!o.status.success(), "the failpoint stops the upload");
    let half = s3.list("half/");
    assert_eq!(half.len(), 1, "one file went before the stop: {half:?}");
    assert!(!half.contains_key(".actprm-upload.json"));

    // the staged output is complete, so score reruns with --overwrite; the object the stopped
    // upload wrote is its own, not a stranger's
    let o = s3.actprm(&args("--overwrite"));
    assert!(o.status.success(), "{}", stderr(&o));
    let fetched = dir.path().join("fetched");
    s3.download("half/", &fetched);
    assert!(fetched.join(".actprm-upload.json").exists());
    assert_eq!(step_means_in(&fetched).len(), 24);
    assert_eq!(summary(&fetched)["rows_in"], 24);
}

#[test]
fn changed_remote_inputs_are_fetched_again() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let small = prm800k_parquet(dir.path());
    s3.put("in/x.parquet", &small);
    let run = |out: &Path| {
        let o = s3.actprm(&[
            "score",
            "-i",
            "s3://data/in/x.parquet",
            "-o",
            s(out),
            "--model",
            s(&model),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (step_means_in(out).len(), stderr(&o).contains("fetching"))
    };
    assert_eq!(run(&dir.path().join("1")), (24, true));
    assert_eq!(
        run(&dir.path().join("2")),
        (24, false),
        "a current copy is reused"
    );
    s3.put("in/x.parquet", &data("prm800k_phase1_test.parquet"));
    assert_eq!(
        run(&dir.path().join("3")),
        (353, true),
        "a changed object is fetched again"
    );
}

#[test]
fn an_interrupted_filter_into_s3_resumes_from_its_staging_folder() {
    if !cfg!(debug_assertions) {
        eprintln!("SKIPPED: this build has no failpoints (a release build)");
        return;
    }
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = corpus(dir.path(), 400, 2, 50);
    upload_folder(&s3, &corpus, "big/");
    let local = dir.path().join("local");
    let o = actprm(&filter_args(s(&model), s(&corpus), s(&local)));
    assert!(o.status.success(), "{}", stderr(&o));

    let args = filter_args(s(&model), "s3://data/big/", "s3://data/kept");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_actprm"));
    cmd.args(&args).env("ACTPRM_FAILPOINT", "filter-commit:3");
    s3.env(&mut cmd);
    let o = cmd.output().unwrap();
    assert!(!o.status.success(), "the failpoint stops the run");
    assert!(
        s3.list("kept/").is_empty(),
        "nothing is uploaded by a failed run"
    );

    let o = s3.actprm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let resumed = report["units"].as_u64().unwrap() - report["units_this_run"].as_u64().unwrap();
    assert_eq!(
        resumed, 2,
        "the two units committed before the failure: {report}"
    );
    let fetched = dir.path().join("fetched");
    s3.download("kept/", &fetched);
    assert_eq!(
        ids_in(&fetched.join("kept"), ""),
        ids_in(&local.join("kept"), "")
    );
}

/// The loopback Hub of tests/python/hub_server.py over `root`, and its address.
struct Hub {
    server: Child,
    endpoint: String,
}

impl Hub {
    fn start(root: &Path, token: &str) -> Hub {
        Hub::start_with(root, token, &[])
    }

    fn start_with(root: &Path, token: &str, extra: &[&str]) -> Hub {
        let mut server = Command::new(python())
            .arg(script("hub_server.py"))
            .arg(root)
            .args(["--token", token])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("hub server starts");
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Hub {
            server,
            endpoint: format!("http://127.0.0.1:{}", line.trim()),
        }
    }

    fn actprm(&self, args: &[&str], token: &str, cache: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_actprm"))
            .args(args)
            .env("HF_ENDPOINT", &self.endpoint)
            .env("HF_TOKEN", token)
            .env("ACTPRM_REMOTE_CACHE", cache)
            .output()
            .unwrap()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn hub_data_sets_and_checkpoints_are_fetched_by_url_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let data_dir = root.join("datasets/org/prm/data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let sample = prm800k_parquet(dir.path());
    // three files, so the listing spans pages of two
    for split in [
        "train-00000-of-00002",
        "train-00001-of-00002",
        "test-00000-of-00001",
    ] {
        std::fs::copy(&sample, data_dir.join(format!("{split}.parquet"))).unwrap();
    }
    copy_dir(&data("hf/qwen-prm"), &root.join("models/org/qwen-prm"));
    let hub = Hub::start(&root, "secret");
    let cache = dir.path().join("cache");
    let model = tiny_model(dir.path());

    let out = dir.path().join("scored");
    let args = [
        "score",
        "-i",
        "hf://datasets/org/prm/data",
        "--split",
        "train",
        "-o",
        s(&out),
        "--model",
        s(&model),
    ];
    let o = hub.actprm(&args, "secret", &cache);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&out)["rows_in"], 48, "both train files, not test");

    // a wrong token is refused with what to do, and never printed
    let o = hub.actprm(&args, "wrong-token", &dir.path().join("cache2"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("HF_TOKEN"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("wrong-token"), "{}", stderr(&o));

    // import --from ORG/NAME writes the model a local import of the same files writes
    let (from_hub, from_disk) = (dir.path().join("m-hub"), dir.path().join("m-disk"));
    let o = hub.actprm(
        &["import", "--from", "org/qwen-prm", "-o", s(&from_hub)],
        "secret",
        &cache,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = actprm(&[
        "import",
        "--from",
        s(&data("hf/qwen-prm")),
        "-o",
        s(&from_disk),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scored = |model: &Path, name: &str| {
        let out = dir.path().join(name);
        let input = s(&sample);
        let o = actprm(&["score", "-i", input, "-o", s(&out), "--model", s(model)]);
        assert!(o.status.success(), "{}", stderr(&o));
        step_means_in(&out)
    };
    assert_eq!(scored(&from_hub, "s-hub"), scored(&from_disk, "s-disk"));
}

/// `filter --ray` with its input and its output in S3: no node needs a shared mount. Each task
/// fetches its input and uploads the units it commits; the driver checks them in the store and
/// uploads the run's records last, with a list naming every object the tasks wrote. A run whose
/// tasks fail part way resumes; a prefix holding units of an unfinished run whose staging folder
/// is not on this machine is refused (nothing deleted) until `--restart`.
#[test]
fn filter_on_ray_reads_and_writes_s3_without_a_shared_mount() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = corpus(dir.path(), 400, 2, 50);
    upload_folder(&s3, &corpus, "gen/");
    let local = dir.path().join("local");
    let o = actprm(&filter_args(s(&model), s(&corpus), s(&local)));
    assert!(o.status.success(), "{}", stderr(&o));
    let on_ray = |out: &'static str, extra: &[&str], failpoint: Option<&str>| {
        let mut args = filter_args(s(&model), "s3://data/gen/", out);
        args.extend(["--ray", "local:2"]);
        args.extend_from_slice(extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_actprm"));
        cmd.args(&args);
        s3.env(&mut cmd);
        if let Some(point) = failpoint {
            cmd.env("ACTPRM_FAILPOINT", point);
        }
        cmd.output().unwrap()
    };
    let staged = || -> Vec<PathBuf> {
        std::fs::read_dir(s3.cache.path().join("outputs"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    // the whole output in the store: the local run's rows, every object listed, all 8 units
    // done once each, nothing left staged
    let check = |prefix: &str, o: &Output| {
        assert!(o.status.success(), "{}", stderr(o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["units"], 8, "{report}");
        let fetched = dir
            .path()
            .join(format!("fetched-{}", prefix.trim_end_matches('/')));
        s3.download(prefix, &fetched);
        assert_eq!(
            ids_in(&fetched.join("kept"), ""),
            ids_in(&local.join("kept"), "")
        );
        assert_eq!(summary(&fetched)["rows_in"], 400);
        let list: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fetched.join(".actprm-upload.json")).unwrap())
                .unwrap();
        let listed: BTreeSet<String> = list["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        let mut present: BTreeSet<String> = s3.list(prefix).into_keys().collect();
        present.remove(".actprm-upload.json");
        assert_eq!(listed, present);
        let units = present.iter().filter(|k| k.starts_with("units/")).count();
        assert_eq!(units, 8, "{present:?}");
        assert!(staged().is_empty(), "{:?}", staged());
        report
    };

    // every task stops after its first upload: the run fails, and the store holds data files
    // of units that no record commits
    let o = on_ray(
        "s3://data/out",
        &["--ray-retries", "0"],
        Some("remote-upload:1"),
    );
    assert!(!o.status.success());
    let half = s3.list("out/");
    assert!(!half.is_empty());
    assert!(
        half.keys()
            .all(|k| !k.starts_with("units/") && k != ".actprm-upload.json"),
        "{half:?}"
    );
    // the same command resumes from its staging folder and completes the output
    let report = check("out/", &on_ray("s3://data/out", &[], None));
    assert_eq!(report["ray"]["attempts"], 8, "{report}");

    // units of another run's inputs at a fresh prefix, staged on no machine here: refused, and
    // kept, until --restart deletes them
    let unit_file = half.keys().next().unwrap();
    let stray = dir.path().join("stray");
    s3.boto(&["get", "data", &format!("out/{unit_file}"), s(&stray)]);
    s3.put(&format!("again/{unit_file}"), &stray);
    let o = on_ray("s3://data/again", &[], None);
    assert!(!o.status.success());
    let message = stderr(&o);
    assert!(
        message.contains("unfinished") && message.contains("--restart"),
        "{message}"
    );
    assert_eq!(s3.list("again/").len(), 1);
    check("again/", &on_ray("s3://data/again", &["--restart"], None));
}

/// `validate` (and a pipeline run's checks before any work) reads a remote source's columns from
/// its first file only, so checking a pipeline over a large bucket fetches one file, not the
/// corpus; a column the file lacks is still found, and the run then fetches every file.
#[test]
fn validate_checks_a_remote_source_on_its_first_file() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let small = prm800k_parquet(dir.path());
    for name in ["a", "b", "c"] {
        s3.put(&format!("in/{name}.parquet"), &small);
    }
    let pipeline = |steps_column: &str| {
        let file = dir.path().join(format!("{steps_column}.yaml"));
        let text = format!(
            "models:\n  tiny:\n    path: {}\nsources:\n  corpus:\n    type: parquet\n    \
             paths: [\"s3://data/in/\"]\n    steps_column: {steps_column}\ntransforms:\n  \
             scored:\n    type: score\n    inputs: [corpus]\n    model: tiny\nsinks:\n  out:\n    type: parquet\n    \
             inputs: [scored]\n    path: {}\n",
            s(&model),
            s(&dir.path().join(format!("out-{steps_column}")))
        );
        std::fs::write(&file, text).unwrap();
        file
    };
    let cached = || {
        files(s3.cache.path())
            .keys()
            .filter(|k| k.ends_with(".parquet"))
            .count()
    };
    let o = s3.actprm(&["validate", s(&pipeline("steps"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cached(), 1, "validate fetched more than one file");
    let o = s3.actprm(&["validate", s(&pipeline("answers"))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("answers"), "{}", stderr(&o));
    let o = s3.actprm(&["run", s(&pipeline("steps"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cached(), 3);
    assert_eq!(step_means_in(&dir.path().join("out-steps")).len(), 3 * 24);
}

/// The commits the loopback Hub applied (tests/python/hub_server.py's log).
fn hub_commits(root: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(root.join(".commits.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `-o hf://datasets/ORG/NAME` commits the output to a Hub repository in one commit (created,
/// private, when missing): data files through LFS (large ones in parts), the card and records
/// inline, exactly the files a local run writes plus the upload list. `--overwrite` replaces
/// an earlier output in one commit that also deletes its files; without a token nothing is
/// written.
#[test]
fn outputs_are_committed_to_a_hub_repository() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    std::fs::create_dir_all(&root).unwrap();
    let hub = Hub::start_with(&root, "secret", &["--multipart-above", "20000"]);
    let cache = dir.path().join("cache");
    let model = tiny_model(dir.path());
    let input = data("prm800k_phase1_test.parquet");
    // a second input with a row that is rejected: the first output has rejects, the second not
    let mixed = with_a_reject(dir.path());
    let score = |out: &str, inputs: &[&Path], extra: &[&str], token: &str| {
        let mut args = vec!["score", "-o", out, "--model", s(&model)];
        args.extend(["--format", "hf_dataset", "-i"]);
        args.extend(inputs.iter().map(|p| s(p)));
        args.extend_from_slice(extra);
        hub.actprm(&args, token, &cache)
    };
    let local = dir.path().join("local");
    let o = score(s(&local), &[&input, &mixed], &[], "secret");
    assert!(o.status.success(), "{}", stderr(&o));

    let o = score("hf://datasets/me/scored", &[&input, &mixed], &[], "");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("HF_TOKEN"), "{}", stderr(&o));
    assert!(hub_commits(&root).is_empty());

    let o = score("hf://datasets/me/scored", &[&input, &mixed], &[], "secret");
    assert!(o.status.success(), "{}", stderr(&o));
    let repo = root.join("datasets/me/scored");
    let created = std::fs::read_to_string(root.join(".created.jsonl")).unwrap();
    assert!(created.contains("\"private\": true"), "{created}");
    let commits = hub_commits(&root);
    assert_eq!(commits.len(), 1, "one commit: {commits:?}");
    let mut expected: BTreeSet<String> = files(&local).into_keys().collect();
    expected.insert(".actprm-upload.json".into());
    let committed: BTreeSet<String> = files(&repo).into_keys().collect();
    assert_eq!(
        committed,
        expected
            .iter()
            .filter(|k| !k.starts_with('.'))
            .cloned()
            .collect()
    );
    assert!(repo.join(".actprm-upload.json").exists());
    for file in commits[0]["files"].as_array().unwrap() {
        let path = file["path"].as_str().unwrap();
        let lfs = path.ends_with(".parquet");
        assert_eq!(file["mode"], if lfs { "lfs" } else { "regular" }, "{file}");
    }
    assert!(
        commits[0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["parts"].as_u64().unwrap_or(0) > 1),
        "a data file larger than the Hub's part size went up in parts: {commits:?}"
    );
    assert_eq!(
        step_means_of(&repo.join("data"), "train-"),
        step_means_of(&local.join("data"), "train-")
    );

    // an output already there: refused without --overwrite; replaced whole with it, the files
    // the new output lacks deleted in the same commit
    let small = prm800k_parquet(dir.path());
    let o = score("hf://datasets/me/scored", &[&small], &[], "secret");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    assert_eq!(hub_commits(&root).len(), 1);
    let before = files(&repo);
    let o = score(
        "hf://datasets/me/scored",
        &[&small],
        &["--overwrite"],
        "secret",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let commits = hub_commits(&root);
    assert_eq!(commits.len(), 2);
    let local_small = dir.path().join("local-small");
    let o = score(s(&local_small), &[&small], &[], "secret");
    assert!(o.status.success(), "{}", stderr(&o));
    let now: BTreeSet<String> = files(&repo).into_keys().collect();
    let want: BTreeSet<String> = files(&local_small).into_keys().collect();
    assert_eq!(now, want);
    let deleted: BTreeSet<&str> = commits[1]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["mode"] == "deleted")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let gone: BTreeSet<&str> = before
        .keys()
        .filter(|k| !want.contains(*k))
        .map(String::as_str)
        .collect();
    assert!(!gone.is_empty(), "{before:?}");
    assert_eq!(deleted, gone);
    assert_eq!(
        step_means_of(&repo.join("data"), "train-").len(),
        24,
        "only the new output's rows"
    );
}
