//! The Python module (`python/`), through its own pytest suite (`python/tests`), run with the
//! environment `./setup.sh python` builds (`.deps/python`): `Model.score` against this build's
//! `actprm score`, polars/pandas/datasets inputs, rejects and errors as exceptions, `eval` and
//! `sql` against the command line, and Ray Data `map_batches` on a 2-node loopback cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The newest modification time of the Rust sources the module is built from.
fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        let time = if path.is_dir() {
            newest_source(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.metadata().and_then(|m| m.modified()).expect("mtime")
        } else {
            continue;
        };
        newest = newest.max(time);
    }
    newest
}

#[test]
fn the_python_module_passes_its_tests_against_this_build() {
    let python = actprm::model::deps_dir().join("python/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `./setup.sh python` (ACTPRM_RAY=1 for the Ray Data test)",
        python.display()
    );
    // a module older than the sources would test yesterday's engine
    let installed = Command::new(&python)
        .args(["-c", "import actprm._actprm as m; print(m.__file__)"])
        .output()
        .expect("python runs");
    assert!(
        installed.status.success(),
        "import actprm failed: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let module = PathBuf::from(String::from_utf8_lossy(&installed.stdout).trim());
    let built = module
        .metadata()
        .and_then(|m| m.modified())
        .expect("module mtime");
    let sources = newest_source(&root().join("src")).max(newest_source(&root().join("python/src")));
    assert!(
        built >= sources,
        "the installed module {} is older than the Rust sources: run `./setup.sh python` again",
        module.display()
    );
    let out = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "python/tests",
        ])
        .current_dir(root())
        .env("ACTPRM_BIN", env!("CARGO_BIN_EXE_actprm"))
        .output()
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pytest failed:\n{stdout}");
    assert!(
        !stdout.contains("skipped"),
        "every Python test must run:\n{stdout}"
    );
}
