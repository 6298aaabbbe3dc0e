//! Remote outputs (`-o s3://bucket/run/`): the run writes a local staging folder with the same
//! rules as any output folder ([`super::output_folder`]: atomic files, commit records, resume),
//! and its files are uploaded when the run ends: data first, then the run records
//! (`summary.json`, `run.json`, `README.md`, ...), then `.actprm-upload.json`, the list of what
//! this upload wrote. A reader that finds that list finds a complete output. A Hub repository
//! (`hf://datasets/ORG/NAME`) takes all of it, list and deletions included, as one commit.
//!
//! The staging folder (`<cache>/outputs/<hash of the URL>`) outlives a run that fails or is
//! interrupted, so the same command resumes from it; it is removed once the upload is complete.
//! A prefix that already holds an actprm output is refused unless `--overwrite`, which deletes
//! that output's files (only those its list names) after the new ones are up. Objects actprm did
//! not write are never replaced or deleted: an upload that would replace one is refused before
//! anything is written, and the staging folder is kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::SinkError;
use crate::location::{self, LocationError, Remote, RemoteUrl};

/// The list of files an upload wrote, at the top of the remote prefix.
const UPLOAD_LIST: &str = ".actprm-upload.json";

/// In the staging folder: the files of the earlier output a `--overwrite` run replaces.
const REPLACES: &str = ".replaces.json";

/// In the staging folder: the keys an upload has written so far, one per line.
const UPLOADED: &str = ".uploaded";

/// The files of a run that say it is complete: uploaded after every data file.
const RECORDS: &[&str] = &[
    "summary.json",
    super::commit::FINGERPRINT_FILE,
    "loop-state.json",
    "state.json",
    "README.md",
];

#[derive(Serialize, Deserialize, Default)]
struct UploadList {
    url: String,
    files: Vec<String>,
}

/// An output that lives at a remote URL, staged locally while the run writes it.
pub struct RemoteOutput {
    url: RemoteUrl,
    staging: PathBuf,
    /// The files of the earlier actprm output at this prefix, deleted after the upload
    /// (`--overwrite`).
    replaced: Vec<String>,
}

/// Why an upload did not happen, with where the output still is.
fn refused(url: &RemoteUrl, message: String) -> SinkError {
    SinkError::Remote(LocationError::Remote {
        url: url.url.clone(),
        message,
    })
}

impl RemoteOutput {
    /// `None` for a local output. For a remote one: checks the prefix can be written (see the
    /// module's rules) and returns the staging folder the run writes instead.
    pub fn stage(output: &Path, overwrite: bool) -> Result<Option<Self>, SinkError> {
        let Some(url) = location::parse(&output.to_string_lossy()) else {
            return Ok(None);
        };
        let url = url?.into_folder();
        let remote = Remote::open(&url)?;
        remote.writable()?;
        let staging = staging_dir(&url);
        let earlier = read_upload_list(&remote, &url)?;
        // what a staged run started with --overwrite replaces, kept for the run that resumes it
        let decided = staging.join(REPLACES);
        let resumed: Option<Vec<String>> = std::fs::read(&decided)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let replaced = match (earlier, resumed) {
            (Some(list), _) if overwrite => list.files,
            (Some(_), Some(files)) => files,
            (Some(list), None) => {
                return Err(refused(
                    &url,
                    format!(
                        "holds an earlier actprm output ({} files): --overwrite replaces it \
                         (only the files it lists in {UPLOAD_LIST}), or choose another prefix",
                        list.files.len()
                    ),
                ))
            }
            (None, _) => Vec::new(),
        };
        std::fs::create_dir_all(&staging).map_err(|e| SinkError::at(&staging)(e.to_string()))?;
        if !replaced.is_empty() {
            super::write_atomic(&decided, &serde_json::to_vec(&replaced).unwrap_or_default())?;
        }
        Ok(Some(Self {
            url,
            staging,
            replaced,
        }))
    }

    /// The local folder the run writes.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    pub fn url(&self) -> &str {
        &self.url.url
    }

    /// Uploads the staged output (see the module's rules) and removes the staging folder.
    /// Returns the number of files and bytes uploaded.
    pub fn upload(&self) -> Result<(usize, u64), SinkError> {
        let remote = Remote::open(&self.url)?;
        let mut files = Vec::new();
        walk(&self.staging, &self.staging, &mut files)
            .map_err(|e| SinkError::at(&self.staging)(e.to_string()))?;
        // records last, so a reader who sees them sees every data file
        files.sort_by_key(|(key, _)| (RECORDS.contains(&key.as_str()), key.clone()));
        // actprm's own objects: the earlier output's, and what an upload of this staging folder
        // that failed part way wrote
        let partial = self.staging.join(UPLOADED);
        let mut earlier: BTreeSet<String> = read_upload_list(&remote, &self.url)?
            .map(|l| l.files.into_iter().collect())
            .unwrap_or_default();
        earlier.extend(noted(&partial));
        let present = self.present()?;
        let foreign: Vec<&String> = files
            .iter()
            .map(|(key, _)| key)
            .filter(|key| present.contains_key(*key) && !earlier.contains(*key))
            .collect();
        // a user's README is theirs, as in a local folder (the card is only for this prefix)
        let foreign_card = foreign.iter().any(|k| k.as_str() == "README.md");
        let foreign: Vec<&String> = foreign.into_iter().filter(|k| *k != "README.md").collect();
        if !foreign.is_empty() {
            return Err(refused(
                &self.url,
                format!(
                    "holds {} file(s) actprm did not write that this output would replace ({}): \
                     nothing was uploaded; the output is kept in {} (choose another prefix and \
                     rerun to upload it)",
                    foreign.len(),
                    foreign
                        .iter()
                        .take(3)
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.staging.display()
                ),
            ));
        }
        files.retain(|(key, _)| !(foreign_card && key == "README.md"));
        let bytes: u64 = files
            .iter()
            .map(|(_, path)| std::fs::metadata(path).map_or(0, |m| m.len()))
            .sum();
        let object = |key: &str| format!("{}{key}", self.url.key);
        if remote.commits_whole() {
            // one commit: data, records and the list land together or not at all
            let mut listed = noted(&partial);
            listed.extend(files.iter().map(|(key, _)| key.clone()));
            let (list_file, listed) = self.write_list(listed)?;
            let mut puts: Vec<(String, PathBuf)> = files
                .iter()
                .map(|(key, path)| (object(key), path.clone()))
                .collect();
            puts.push((object(UPLOAD_LIST), list_file));
            let deletes: Vec<String> = self
                .replaced
                .iter()
                .filter(|k| !listed.contains(*k))
                .map(|k| object(k))
                .collect();
            let summary = format!("actprm: {} files", files.len());
            remote
                .commit(&puts, &deletes, &summary)
                .map_err(|e| self.kept(e))?;
        } else {
            for (key, path) in &files {
                remote
                    .upload(path, &object(key))
                    .map_err(|e| self.kept(e))?;
                // noted before the next file goes, so a rerun knows this object is its own
                note(&partial, std::slice::from_ref(key))?;
                crate::failpoint::hit("remote-upload");
            }
            // every object of this output: what this upload wrote, what an upload stopped part
            // way wrote, and what the run's Ray tasks put in place themselves (`adopt`)
            let (list_file, listed) = self.write_list(noted(&partial))?;
            remote.upload(&list_file, &object(UPLOAD_LIST))?;
            for key in self.replaced.iter().filter(|k| !listed.contains(*k)) {
                remote.delete(&object(key))?;
            }
        }
        std::fs::remove_dir_all(&self.staging)
            .map_err(|e| SinkError::at(&self.staging)(e.to_string()))?;
        self.remove_dead_task_folders();
        Ok((files.len(), bytes))
    }

    /// Writes the upload list of `files` into the staging folder.
    fn write_list(
        &self,
        files: BTreeSet<String>,
    ) -> Result<(PathBuf, BTreeSet<String>), SinkError> {
        let list = UploadList {
            url: self.url.url.clone(),
            files: files.iter().cloned().collect(),
        };
        let list_file = self.staging.join(UPLOAD_LIST);
        std::fs::write(
            &list_file,
            serde_json::to_vec_pretty(&list).unwrap_or_default(),
        )
        .map_err(|e| SinkError::at(&list_file)(e.to_string()))?;
        Ok((list_file, files))
    }
}

/// What the run's Ray tasks write into the prefix themselves (`filter --ray` with a remote
/// output: no node sees another's disk, so each task uploads the units it committed).
impl RemoteOutput {
    /// The objects under the prefix: key relative to it, and size.
    pub fn present(&self) -> Result<BTreeMap<String, u64>, SinkError> {
        let remote = Remote::open(&self.url)?;
        Ok(remote
            .list(&self.url.key)?
            .into_iter()
            .filter_map(|o| {
                let key = o.key.strip_prefix(&self.url.key)?.to_string();
                Some((key, o.size))
            })
            .collect())
    }

    /// Notes objects this run's tasks wrote as this output's own: the upload lists them and
    /// does not take them for a stranger's.
    pub fn adopt<'a>(&self, keys: impl IntoIterator<Item = &'a String>) -> Result<(), SinkError> {
        let keys: Vec<String> = keys.into_iter().cloned().collect();
        note(&self.staging.join(UPLOADED), &keys)
    }

    /// Deletes the object `key` (relative to the prefix).
    pub fn delete(&self, key: &str) -> Result<(), SinkError> {
        Ok(Remote::open(&self.url)?.delete(&format!("{}{key}", self.url.key))?)
    }

    /// Copies the object `key` (relative to the prefix) into the local file `path`, atomically.
    pub fn fetch(&self, key: &str, path: &Path) -> Result<(), SinkError> {
        let remote = Remote::open(&self.url)?;
        let Some(bytes) = read_object(&remote, &self.url, key)? else {
            return Err(refused(&self.url, format!("holds no {key}")));
        };
        super::write_atomic(path, &bytes)
    }

    /// A folder of this process's own beside the staging folder: a Ray task's units are
    /// written there, then uploaded (tasks on one machine share the cache).
    pub fn task_folder(&self) -> PathBuf {
        let mut name = self.staging.as_os_str().to_owned();
        name.push(format!(".task-{}", std::process::id()));
        PathBuf::from(name)
    }

    /// Removes the task folders of processes that are gone (a task killed with its Ray worker
    /// cannot remove its own): what they did not upload, their retries did again. Needs
    /// `/proc` to tell a live process; without it nothing is removed.
    pub fn remove_dead_task_folders(&self) {
        let (Some(parent), Some(name)) = (self.staging.parent(), self.staging.file_name()) else {
            return;
        };
        if !Path::new("/proc/self").exists() {
            return;
        }
        let prefix = format!("{}.task-", name.to_string_lossy());
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let gone = name
                .strip_prefix(&prefix)
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
            if gone {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Uploads the files of `folder` (a Ray task's units) under the prefix, each commit record
    /// (`units/`) after every data file. Run records and the task's own
    /// bookkeeping (`run.json`, `summary.json`, `ray/`) stay out: the driver writes those.
    pub fn upload_units(&self, folder: &Path) -> Result<usize, SinkError> {
        let remote = Remote::open(&self.url)?;
        let mut files = Vec::new();
        walk(folder, folder, &mut files).map_err(|e| SinkError::at(folder)(e.to_string()))?;
        files.retain(|(key, _)| !RECORDS.contains(&key.as_str()) && !key.starts_with("ray/"));
        files.sort_by_key(|(key, _)| (key.starts_with("units/"), key.clone()));
        let puts: Vec<(String, PathBuf)> = files
            .into_iter()
            .map(|(key, path)| (format!("{}{key}", self.url.key), path))
            .collect();
        if remote.commits_whole() {
            remote.commit(&puts, &[], &format!("actprm: {} unit files", puts.len()))?;
        } else {
            for (key, path) in &puts {
                remote.upload(path, key)?;
                crate::failpoint::hit("remote-upload");
            }
        }
        Ok(puts.len())
    }
}

impl RemoteOutput {
    /// An upload error, with where the output waits and how to upload it.
    fn kept(&self, e: LocationError) -> SinkError {
        refused(
            &self.url,
            format!(
                "uploading stopped: {e}; the output is kept in {}: rerun the same command to \
                 upload it (a filter resumes; score and label add --overwrite)",
                self.staging.display()
            ),
        )
    }
}

/// `<cache>/outputs/<first 16 hex digits of sha256(URL)>`: the same URL stages in the same
/// folder, so a rerun resumes.
fn staging_dir(url: &RemoteUrl) -> PathBuf {
    let digest = Sha256::digest(url.url.trim_end_matches('/').as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    location::cache_root().join("outputs").join(hex)
}

/// The keys noted in `partial`, one per line.
fn noted(partial: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(partial)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Appends `keys` to `partial`.
fn note(partial: &Path, keys: &[String]) -> Result<(), SinkError> {
    let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .map_err(|e| SinkError::at(partial)(e.to_string()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| SinkError::at(partial)(e.to_string()))
}

/// The bytes of the object `key` (relative to the prefix), if there is one.
fn read_object(remote: &Remote, url: &RemoteUrl, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
    let Some(object) = remote.head(&format!("{}{key}", url.key))? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    remote.download(&object, &mut bytes)?;
    Ok(Some(bytes))
}

fn read_upload_list(remote: &Remote, url: &RemoteUrl) -> Result<Option<UploadList>, SinkError> {
    let Some(text) = read_object(remote, url, UPLOAD_LIST)? else {
        return Ok(None);
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        refused(
            url,
            format!("{UPLOAD_LIST} is not actprm's upload list: {e}"),
        )
    })
}

/// The staged files (not hidden: locks and temporary files stay), as `(key, path)`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            let key = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((key, path));
        }
    }
    Ok(())
}
