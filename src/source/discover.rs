//! Turns the user's `--input` arguments (files, globs, folders, remote URLs: see
//! [`super::remote`]) into a sorted list of files.

use std::path::{Path, PathBuf};

use super::SourceError;

/// Files, globs (`data/*.parquet`) and folders (searched recursively for `extension`), in a stable
/// order without duplicates. A pattern that matches nothing is an error, never silently empty.
/// In a Hugging Face data set folder, only the files of `split` (see [`hub_split`]); a pattern
/// that holds several splits and no `split` is an error, since reading them all would mix train
/// and test.
pub fn discover_inputs(
    patterns: &[String],
    extension: &str,
    split: Option<&str>,
) -> Result<Vec<PathBuf>, SourceError> {
    Ok(discover_named(patterns, extension, split)?
        .into_iter()
        .map(|f| f.path)
        .collect())
}

/// An input file and its name relative to the input root it was found under: the folder given,
/// the literal folder part of a glob, or (for a file given by path) its own file name. The name
/// does not depend on how the root was spelled (`corpus`, `./corpus`, `/mnt/x/corpus`), so it
/// identifies the file across reruns and machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    pub name: String,
}

pub fn discover_named(
    patterns: &[String],
    extension: &str,
    split: Option<&str>,
) -> Result<Vec<InputFile>, SourceError> {
    let mut found: Vec<InputFile> = Vec::new();
    for pattern in &super::remote::localise(patterns)? {
        let before = found.len();
        let root = if Path::new(pattern).is_dir() {
            PathBuf::from(pattern)
        } else if Path::new(pattern).is_file() {
            Path::new(pattern)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        } else {
            glob_root(pattern)
        };
        for path in select_split(pattern, discover_pattern(pattern, extension)?, split)? {
            let name = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("/");
            found.push(InputFile { path, name });
        }
        found[before..].sort_by(|a, b| a.path.cmp(&b.path));
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|f| seen.insert(f.path.clone()));
    Ok(found)
}

/// The split of a file laid out as `huggingface-cli download --repo-type dataset` leaves a data
/// set: `data/train-00000-of-00003.parquet` (train), or the Hub's Parquet export
/// `default/test/0000.parquet` (test). `None` for any other name.
pub fn hub_split(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((left, total)) = stem.rsplit_once("-of-") {
        if let Some((split, index)) = left.rsplit_once('-') {
            if digits(index) && digits(total) && !split.is_empty() {
                return Some(split.to_string());
            }
        }
    }
    if digits(stem) {
        return path.parent()?.file_name()?.to_str().map(str::to_string);
    }
    None
}

/// A split's name (`None`: a folder that is not a Hugging Face data set) and its files.
pub type SplitFiles = (Option<String>, Vec<PathBuf>);

/// The files of one folder (or pattern) grouped by their Hugging Face split, in split-name order:
/// one group per split when any file is named like one (files that are not are left out), else
/// one group (`None`) of every file.
pub fn discover_by_split(pattern: &str, extension: &str) -> Result<Vec<SplitFiles>, SourceError> {
    let local = super::remote::localise(&[pattern.to_string()])?;
    let files = discover_pattern(&local[0], extension)?;
    let mut groups: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for file in &files {
        if let Some(split) = hub_split(file) {
            groups.entry(split).or_default().push(file.clone());
        }
    }
    if groups.is_empty() {
        return Ok(vec![(None, files)]);
    }
    Ok(groups.into_iter().map(|(s, f)| (Some(s), f)).collect())
}

/// The files of `split`; without one, the files as they are unless they span several splits.
fn select_split(
    pattern: &str,
    files: Vec<PathBuf>,
    split: Option<&str>,
) -> Result<Vec<PathBuf>, SourceError> {
    let mut splits: Vec<String> = files.iter().filter_map(|f| hub_split(f)).collect();
    splits.sort();
    splits.dedup();
    let err = |message: String| SourceError::Input {
        pattern: pattern.to_string(),
        message,
    };
    match split {
        None if splits.len() > 1 => Err(err(format!(
            "holds the splits {} of a Hugging Face data set: pass --split NAME (reading them \
             all would mix them)",
            splits.join(", ")
        ))),
        None => Ok(files),
        Some(name) => {
            let kept: Vec<PathBuf> = files
                .into_iter()
                .filter(|f| hub_split(f).as_deref() == Some(name))
                .collect();
            if kept.is_empty() {
                return Err(err(if splits.is_empty() {
                    format!("--split {name}: no file is named like a Hugging Face data set split (data/{name}-00000-of-00001.parquet or CONFIG/{name}/0000.parquet)")
                } else {
                    format!(
                        "--split {name}: no such split (found {})",
                        splits.join(", ")
                    )
                }));
            }
            Ok(kept)
        }
    }
}

/// The folder part of a glob before its first wildcard component.
fn glob_root(pattern: &str) -> PathBuf {
    Path::new(pattern)
        .components()
        .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
        .collect()
}

/// The files of one `--input` pattern, sorted.
fn discover_pattern(pattern: &String, extension: &str) -> Result<Vec<PathBuf>, SourceError> {
    let err = |message: String| SourceError::Input {
        pattern: pattern.clone(),
        message,
    };
    let path = Path::new(pattern);
    let mut files = Vec::new();
    if path.is_dir() {
        walk(path, extension, &mut files).map_err(|e| err(e.to_string()))?;
        if files.is_empty() && extension == "parquet" {
            // a folder of JSON Lines (else JSON array) files is read as they are (the Parquet
            // source reads all three)
            walk(path, "jsonl", &mut files).map_err(|e| err(e.to_string()))?;
            if files.is_empty() {
                walk(path, "json", &mut files).map_err(|e| err(e.to_string()))?;
            }
            if files.is_empty() {
                return Err(err("matches no .parquet, .jsonl or .json file".into()));
            }
        }
    } else if path.is_file() {
        files.push(path.to_path_buf());
    } else if pattern.contains(['*', '?', '[']) {
        let paths = glob::glob(pattern).map_err(|e| err(format!("bad glob: {e}")))?;
        for entry in paths {
            let p = entry.map_err(|e| err(e.to_string()))?;
            if p.is_file() {
                files.push(p);
            }
        }
    } else {
        return Err(err("no such file or folder".into()));
    }
    if files.is_empty() {
        return Err(err(format!("matches no .{extension} file")));
    }
    files.sort();
    Ok(files)
}

fn walk(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let p = entry.path();
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, extension, out)?;
        } else if p.extension().and_then(|e| e.to_str()) == Some(extension) {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_do_not_depend_on_how_the_root_is_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        std::fs::create_dir_all(corpus.join("sub")).unwrap();
        std::fs::write(corpus.join("a.parquet"), b"x").unwrap();
        std::fs::write(corpus.join("sub/b.parquet"), b"x").unwrap();
        let names = |pattern: String| -> Vec<String> {
            discover_named(&[pattern], "parquet", None)
                .unwrap()
                .into_iter()
                .map(|f| f.name)
                .collect()
        };
        let plain = names(corpus.display().to_string());
        assert_eq!(plain, vec!["a.parquet", "sub/b.parquet"]);
        assert_eq!(names(format!("{}/./", corpus.display())), plain);
        assert_eq!(names(format!("{}/../corpus", corpus.display())), plain);
        assert_eq!(
            names(format!("{}/*.parquet", corpus.display())),
            vec!["a.parquet"]
        );
        assert_eq!(
            names(corpus.join("sub/b.parquet").display().to_string()),
            vec!["b.parquet"]
        );
    }

    #[test]
    fn hub_layouts_name_their_splits() {
        let split = |p: &str| hub_split(Path::new(p));
        assert_eq!(
            split("d/data/train-00000-of-00003.parquet").as_deref(),
            Some("train")
        );
        assert_eq!(
            split("d/data/my-split-00001-of-00002.parquet").as_deref(),
            Some("my-split")
        );
        assert_eq!(
            split("d/default/test/0000.parquet").as_deref(),
            Some("test")
        );
        assert_eq!(split("d/corpus/part-00000.parquet"), None);
        assert_eq!(split("d/train.parquet"), None);
    }
}
