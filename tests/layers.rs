//! The layers of docs/architecture.md, enforced: a top-level module of `src/` may use only
//! modules of lower layers, so the dataflow's building blocks never reach up into the stages,
//! presets or the command line that are built on them.

use std::collections::BTreeSet;
use std::path::Path;

/// Lowest first. A module may use modules of strictly lower layers only.
const LAYERS: &[&[&str]] = &[
    &["limits", "failpoint", "report", "sink"],
    &["model", "formats", "label", "select"],
    &["tokenise", "source"],
    &["score"],
    &["train", "eval", "sql"],
    &["pipeline"],
    &["experiment"],
    &["cli"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::NAME` modules a file refers to.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer(&module) else {
            problems.push(format!("src/{module}: not in any layer of tests/layers.rs"));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains("crate::{"),
            "{}: name modules one by one",
            rel.display()
        );
        for used in uses(&text).into_iter().filter(|u| *u != module) {
            checked += 1;
            match layer(&used) {
                Some(l) if l < own => {}
                Some(_) => problems.push(format!(
                    "src/{}: `{module}` uses `crate::{used}`, which is not below it",
                    rel.display()
                )),
                None => problems.push(format!(
                    "src/{}: uses `crate::{used}`, which is in no layer",
                    rel.display()
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 100, "only {checked} references checked");
}
