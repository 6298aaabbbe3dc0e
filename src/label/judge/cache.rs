//! The persistent answer cache: every answer the judge was paid for, keyed by (model, prompt,
//! sampling parameters, sample number), so a rerun or a resumed run never pays for it again.
//!
//! One append-only JSON Lines file, each entry written with a single `write` and `fdatasync`ed
//! before the answer is used: after a crash every complete line is valid, and a torn last line is
//! cut off when the cache is next opened. Only offsets stay in memory. A lock file keeps two runs
//! from appending to the same cache at once. Neither the API key nor the URL is stored.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::JudgeError;

pub const ANSWERS_FILE: &str = "answers.jsonl";
const LOCK_FILE: &str = "cache.lock";

/// What is remembered of one paid answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub content: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    model: String,
    sample: u32,
    #[serde(flatten)]
    answer: CachedAnswer,
}

fn poisoned<T>(_: T) -> JudgeError {
    JudgeError::Cache("cache lock poisoned".into())
}

/// The cache key: SHA-256 over everything that changes the answer (never the key or the URL).
pub fn cache_key(
    model: &str,
    prompt: &str,
    temperature: f32,
    top_p: f32,
    max_tokens: u32,
    sample: u32,
) -> String {
    let canonical = serde_json::json!({
        "model": model, "prompt": prompt, "temperature": temperature, "top_p": top_p,
        "max_tokens": max_tokens, "sample": sample,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct AnswerCache {
    path: PathBuf,
    file: File,
    state: Mutex<State>,
    /// Bytes known to be on disk; one `fdatasync` covers every line appended before it started
    /// (group commit), so concurrent answers do not queue for one sync each.
    synced: Mutex<u64>,
    /// Held for the cache's lifetime; the advisory lock goes with it.
    _lock: File,
}

struct State {
    index: HashMap<String, (u64, usize)>,
    end: u64,
}

/// What opening found: entries usable, lines skipped as corrupt, bytes of a torn tail cut off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheOpenReport {
    pub entries: usize,
    pub corrupt_lines: usize,
    pub torn_bytes: u64,
}

impl AnswerCache {
    pub fn open(dir: &Path) -> Result<(Self, CacheOpenReport), JudgeError> {
        let err = |what: &str, e: std::io::Error| {
            JudgeError::Cache(format!("{what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| err("creating", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| err("locking", e))?;
        lock.try_lock().map_err(|_| {
            JudgeError::Cache(format!("cache {} is in use by another run", dir.display()))
        })?;
        let path = dir.join(ANSWERS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| err("opening", e))?;
        let mut report = CacheOpenReport::default();
        let mut index = HashMap::new();
        let mut offset = 0u64;
        let mut reader = BufReader::new(&file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| err("reading", e))?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                report.torn_bytes = n as u64;
                break;
            }
            match serde_json::from_slice::<Entry>(&line) {
                Ok(entry) => {
                    index.insert(entry.key, (offset, n));
                }
                Err(_) => report.corrupt_lines += 1,
            }
            offset += n as u64;
        }
        if report.torn_bytes > 0 {
            // a crash mid-append: drop the partial line so the next append starts on a fresh one
            file.set_len(offset).map_err(|e| err("truncating", e))?;
            file.sync_data().map_err(|e| err("syncing", e))?;
        }
        report.entries = index.len();
        Ok((
            Self {
                path,
                file,
                state: Mutex::new(State { index, end: offset }),
                synced: Mutex::new(offset),
                _lock: lock,
            },
            report,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.index.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored answer, if any. A line that no longer reads back is treated as a miss.
    pub fn get(&self, key: &str) -> Option<CachedAnswer> {
        let (offset, len) = *self.state.lock().ok()?.index.get(key)?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset).ok()?;
        let entry: Entry = serde_json::from_slice(&buf).ok()?;
        (entry.key == key).then_some(entry.answer)
    }

    /// Appends and syncs one entry; returns only once it is durable.
    pub fn put(
        &self,
        key: &str,
        model: &str,
        sample: u32,
        answer: &CachedAnswer,
    ) -> Result<(), JudgeError> {
        let entry = Entry {
            key: key.to_string(),
            model: model.to_string(),
            sample,
            answer: answer.clone(),
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| JudgeError::Cache(e.to_string()))?;
        line.push(b'\n');
        let err = |e: std::io::Error| {
            JudgeError::Cache(format!("appending to {}: {e}", self.path.display()))
        };
        let mine = {
            let mut state = self.state.lock().map_err(poisoned)?;
            (&self.file).write_all(&line).map_err(err)?;
            let offset = state.end;
            state.end += line.len() as u64;
            // another reader of this key waits on the caller's per-key lock until we return
            state.index.insert(key.to_string(), (offset, line.len()));
            state.end
        };
        let mut synced = self.synced.lock().map_err(poisoned)?;
        if *synced < mine {
            let upto = self.state.lock().map_err(poisoned)?.end;
            self.file.sync_data().map_err(err)?;
            *synced = upto;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(s: &str) -> CachedAnswer {
        CachedAnswer {
            content: s.into(),
            finish_reason: Some("stop".into()),
            prompt_tokens: 10,
            completion_tokens: 5,
        }
    }

    #[test]
    fn entries_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (cache, report) = AnswerCache::open(dir.path()).unwrap();
            assert_eq!(report.entries, 0);
            cache.put("k1", "m", 0, &answer("one")).unwrap();
            cache.put("k2", "m", 1, &answer("two\nlines")).unwrap();
            assert_eq!(cache.get("k1"), Some(answer("one")));
        }
        // simulate a crash in the middle of a third append
        let path = dir.path().join(ANSWERS_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"key\":\"k3\",\"mod").unwrap();
        drop(f);
        let (cache, report) = AnswerCache::open(dir.path()).unwrap();
        assert_eq!(report.entries, 2);
        assert!(report.torn_bytes > 0);
        assert_eq!(cache.get("k2"), Some(answer("two\nlines")));
        assert_eq!(cache.get("k3"), None);
        cache.put("k3", "m", 0, &answer("three")).unwrap();
        drop(cache);
        let (cache, report) = AnswerCache::open(dir.path()).unwrap();
        assert_eq!(
            (report.entries, report.corrupt_lines, report.torn_bytes),
            (3, 0, 0)
        );
        assert_eq!(cache.get("k3"), Some(answer("three")));
    }

    #[test]
    fn a_second_run_cannot_share_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (_cache, _) = AnswerCache::open(dir.path()).unwrap();
        assert!(AnswerCache::open(dir.path()).is_err());
    }

    #[test]
    fn keys_depend_on_every_sampling_parameter() {
        let k = cache_key("m", "p", 0.5, 1.0, 100, 0);
        assert_eq!(k, cache_key("m", "p", 0.5, 1.0, 100, 0));
        for other in [
            cache_key("m2", "p", 0.5, 1.0, 100, 0),
            cache_key("m", "p2", 0.5, 1.0, 100, 0),
            cache_key("m", "p", 0.6, 1.0, 100, 0),
            cache_key("m", "p", 0.5, 0.9, 100, 0),
            cache_key("m", "p", 0.5, 1.0, 101, 0),
            cache_key("m", "p", 0.5, 1.0, 100, 1),
        ] {
            assert_ne!(k, other);
        }
    }
}
