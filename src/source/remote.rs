//! Remote `--input` patterns (`s3://bucket/corpus/`, `gs://b/data/*.parquet`,
//! `hf://datasets/ORG/NAME/data`): the files they name are fetched into the local cache (once:
//! a file whose size and version have not changed is not fetched again), and the pattern is
//! replaced by the same pattern over the cache, so every reader, plan and resume fingerprint
//! works as on local files. Memory stays bounded (files stream to disk); the cache needs the
//! disk space of the inputs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SourceError;
use crate::location::{self, Remote, RemoteObject, RemoteUrl};
use crate::sink::atomic::{commit, create_parent, process_tag, temp_path};
use crate::sink::write_atomic;

/// File types a remote folder or glob of data is fetched for (the readers pick among them as
/// locally).
const DATA: &[&str] = &["parquet", "jsonl", "json"];

/// File types of a checkpoint folder (`import --from hf://ORG/NAME`): configs, weights,
/// tokenizers; not the pickled `*.bin` weights, which import does not read.
const CHECKPOINT: &[&str] = &["json", "safetensors", "txt", "model", "jinja"];

/// `patterns` with every remote one replaced by its local copy in the cache.
pub fn localise(patterns: &[String]) -> Result<Vec<String>, SourceError> {
    each_remote(patterns, |url| mirror(url, DATA))
}

/// `patterns` with every remote one replaced by the local copy of its first file only (in key
/// order): enough to check a source's columns and queries (`validate`, and a pipeline run's
/// checks before any work) without fetching a whole corpus, whose other files the run fetches.
pub fn localise_first(patterns: &[String]) -> Result<Vec<String>, SourceError> {
    each_remote(patterns, |url| {
        let listing = list(url, DATA)?;
        let first = listing
            .files
            .iter()
            .min_by(|a, b| a.key.cmp(&b.key))
            .expect("a listing names at least one file");
        fetch_all(url, &listing.remote, std::slice::from_ref(first))?;
        Ok(url.cached(&first.key).display().to_string())
    })
}

/// `patterns` with `local(url)` in place of each remote one; local ones stay as they are.
fn each_remote(
    patterns: &[String],
    local: impl Fn(&RemoteUrl) -> Result<String, location::LocationError>,
) -> Result<Vec<String>, SourceError> {
    patterns
        .iter()
        .map(|pattern| match location::parse(pattern) {
            None => Ok(pattern.clone()),
            Some(url) => {
                let err = |message: String| SourceError::Input {
                    pattern: pattern.clone(),
                    message,
                };
                let url = url.map_err(|e| err(e.to_string()))?;
                local(&url).map_err(|e| err(e.to_string()))
            }
        })
        .collect()
}

/// The local copy of a remote checkpoint folder (`hf://ORG/NAME`, `s3://models/prm/`), or
/// `None` for a local path.
/// A bare `ORG/NAME` that is no local path is read as the Hub repository `hf://ORG/NAME`.
pub fn localise_checkpoint(from: &Path) -> Result<Option<PathBuf>, location::LocationError> {
    let text = from.to_string_lossy();
    let hub_id = !from.exists()
        && !text.starts_with(['.', '/'])
        && text.split('/').count() == 2
        && text.split('/').all(|part| !part.is_empty())
        && location::parse(&text).is_none();
    let text = if hub_id {
        format!("hf://{text}")
    } else {
        text.into_owned()
    };
    let Some(url) = location::parse(&text) else {
        return Ok(None);
    };
    let url = url?.into_folder();
    match mirror(&url, CHECKPOINT) {
        Ok(local) => Ok(Some(PathBuf::from(local))),
        Err(e) if hub_id => Err(location::LocationError::Local {
            path: from.to_path_buf(),
            message: format!("no such folder, and as a Hub repository: {e}"),
        }),
        Err(e) => Err(e),
    }
}

/// [`localise`] for file arguments (`eval`, `convert`, `finetune`).
pub fn localise_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SourceError> {
    let texts: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    Ok(localise(&texts)?.into_iter().map(PathBuf::from).collect())
}

/// What the cache records beside a fetched file, to know it is still current.
#[derive(Serialize, Deserialize)]
struct Fetched {
    url: String,
    version: Option<String>,
}

/// Fetches what `url` names and returns the local pattern that names the same files.
fn mirror(url: &RemoteUrl, types: &[&str]) -> Result<String, location::LocationError> {
    let Listing {
        remote,
        files,
        local,
        listed,
    } = list(url, types)?;
    if let Some((folder, pattern)) = listed {
        forget_removed(url, &folder, pattern, &files);
    }
    fetch_all(url, &remote, &files)?;
    Ok(local)
}

/// What a remote pattern names, nothing fetched yet.
struct Listing {
    remote: Remote,
    /// At least one.
    files: Vec<RemoteObject>,
    /// The same pattern over the cache.
    local: String,
    /// The folder listed (and the glob matched in it), whose cached copies of files no longer
    /// listed are to be forgotten; `None` for a single file.
    listed: Option<(String, Option<(glob::Pattern, glob::MatchOptions)>)>,
}

fn list(url: &RemoteUrl, types: &[&str]) -> Result<Listing, location::LocationError> {
    let remote = Remote::open(url)?;
    let wildcard = url.key.find(['*', '?', '[']);
    let (files, local, listed) = match wildcard {
        None => match remote.head(&url.key)? {
            Some(file) => {
                let local = url.cached(&file.key);
                (vec![file], local.display().to_string(), None)
            }
            None => {
                let files: Vec<RemoteObject> = remote
                    .list(&url.key)?
                    .into_iter()
                    .filter(|o| wanted(&o.key, types))
                    .collect();
                if files.is_empty() {
                    return Err(url_error(
                        url,
                        &format!("no such file, and no .{} file under it", types.join(", .")),
                    ));
                }
                let listed = (url.key.trim_end_matches('/').to_string(), None);
                (
                    files,
                    url.cached(&url.key).display().to_string(),
                    Some(listed),
                )
            }
        },
        Some(at) => {
            // list from the folder before the first wildcard, match the rest as a glob does
            let base = url.key[..at].rsplit_once('/').map_or("", |(b, _)| b);
            let pattern = glob::Pattern::new(&url.key)
                .map_err(|e| url_error(url, &format!("bad glob: {e}")))?;
            let options = glob::MatchOptions {
                require_literal_separator: true,
                ..Default::default()
            };
            let files: Vec<RemoteObject> = remote
                .list(base)?
                .into_iter()
                .filter(|o| pattern.matches_with(&o.key, options))
                .collect();
            if files.is_empty() {
                return Err(url_error(url, "matches no file"));
            }
            let rest = url.key[base.len()..].trim_start_matches('/');
            let local = url.cached(base).join(rest);
            let listed = (base.to_string(), Some((pattern, options)));
            (files, local.display().to_string(), Some(listed))
        }
    };
    Ok(Listing {
        remote,
        files,
        local,
        listed,
    })
}

fn url_error(url: &RemoteUrl, message: &str) -> location::LocationError {
    location::LocationError::Remote {
        url: url.url.clone(),
        message: message.to_string(),
    }
}

/// A file of one of `types`, not hidden (`.actprm-upload.json`, `.gitattributes`) nor in a
/// hidden folder, as the local folder walk skips them.
fn wanted(key: &str, types: &[&str]) -> bool {
    let hidden = key.split('/').any(|part| part.starts_with('.'));
    let typed = Path::new(key)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| types.iter().any(|t| e.eq_ignore_ascii_case(t)));
    typed && !hidden
}

/// Removes the cached copies of files that were fetched from under `folder` (and match
/// `pattern`) but are no longer listed there, so the local pattern names exactly the remote files.
fn forget_removed(
    url: &RemoteUrl,
    folder: &str,
    pattern: Option<(glob::Pattern, glob::MatchOptions)>,
    listed: &[RemoteObject],
) {
    let keep: std::collections::HashSet<PathBuf> =
        listed.iter().map(|f| url.cached(&f.key)).collect();
    let root = url.cached(folder);
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let fetched = record_path(&path).exists();
            let relative = path.strip_prefix(&root).unwrap_or(&path);
            let key = if folder.is_empty() {
                relative.display().to_string()
            } else {
                format!("{folder}/{}", relative.display())
            };
            let matches = pattern
                .as_ref()
                .is_none_or(|(p, options)| p.matches_with(&key, *options));
            if fetched && matches && !keep.contains(&path) {
                let _ = std::fs::remove_file(record_path(&path));
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Fetches every file not already current in the cache, saying on stderr what it fetches.
fn fetch_all(
    url: &RemoteUrl,
    remote: &Remote,
    files: &[RemoteObject],
) -> Result<(), location::LocationError> {
    let stale: Vec<&RemoteObject> = files.iter().filter(|f| !current(url, f)).collect();
    if stale.is_empty() {
        return Ok(());
    }
    let bytes: u64 = stale.iter().map(|f| f.size).sum();
    eprintln!(
        "actprm: fetching {} file{} ({:.1} MB) of {} into {}",
        stale.len(),
        if stale.len() == 1 { "" } else { "s" },
        bytes as f64 / 1e6,
        url.url,
        location::cache_root().join("inputs").display()
    );
    for file in stale {
        let local = url.cached(&file.key);
        fetch(remote, file, &local).map_err(|e| location::LocationError::Local {
            path: local.clone(),
            message: e.to_string(),
        })?;
        let record = Fetched {
            url: url.url_of(&file.key),
            version: file.version.clone(),
        };
        let text = serde_json::to_vec(&record).unwrap_or_default();
        write_atomic(&record_path(&local), &text).map_err(|e| location::LocationError::Local {
            path: record_path(&local),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// Puts the object at `local` the one way actprm puts a file in place (`sink/atomic.rs`):
/// streamed under a temporary name of this process, then renamed whole.
fn fetch(
    remote: &Remote,
    file: &RemoteObject,
    local: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    create_parent(local)?;
    let tmp = temp_path(local, &process_tag());
    let fetched = std::fs::File::create(&tmp)
        .map_err(Box::<dyn std::error::Error>::from)
        .and_then(|mut out| Ok(remote.download(file, &mut out)?))
        .and_then(|_| Ok(commit(&tmp, local)?));
    if fetched.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    fetched
}

/// The hidden file beside a fetched one that says what was fetched (the folder walk skips it).
fn record_path(local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    local.with_file_name(format!(".{name}.fetched"))
}

/// The cached copy exists, has the announced size, and was fetched from the same version.
fn current(url: &RemoteUrl, file: &RemoteObject) -> bool {
    let local = url.cached(&file.key);
    let Ok(meta) = std::fs::metadata(&local) else {
        return false;
    };
    let Some(record) = std::fs::read_to_string(record_path(&local))
        .ok()
        .and_then(|t| serde_json::from_str::<Fetched>(&t).ok())
    else {
        return false;
    };
    meta.len() == file.size && record.version == file.version && file.version.is_some()
}
