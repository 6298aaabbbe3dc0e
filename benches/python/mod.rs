//! The Python side of the side-by-side benches: `python_baseline.py`'s packages, installed once
//! into `.deps/pybench` (pyarrow, tokenizers, the same onnxruntime, numpy).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder to put on PYTHONPATH, or `None` when pip cannot install the packages.
pub fn python_env(root: &Path) -> Option<PathBuf> {
    let site = root.join(".deps/pybench");
    if !site.join("pyarrow").exists() {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&site)
            .args(["pyarrow", "tokenizers", "onnxruntime==1.31.1", "numpy"])
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
    }
    Some(site)
}
