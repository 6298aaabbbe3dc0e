//! Where data lives: a local path, or a URL of an object store (`s3://`, `gs://`, `az://`), a
//! Hugging Face repository (`hf://datasets/ORG/NAME/...`) or a web server (`http(s)://`).
//!
//! The readers and writers of actprm work on local files (row groups planned from footers,
//! files renamed into place, resumable runs), so a remote input is fetched into a local cache
//! before a run reads it (`source/remote.rs`) and a remote output is written to a local
//! staging folder and uploaded when the run ends (`sink/remote.rs`). Credentials come
//! from each service's standard environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`,
//! `HF_TOKEN`) and never appear in a message.

mod cloud;
mod hub;

use std::future::Future;
use std::path::{Path, PathBuf};

/// An object under a remote location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    /// Its key, relative to the store (bucket) or repository root.
    pub key: String,
    pub size: u64,
    /// What changes when the object does (ETag, Git object id), if the store says.
    pub version: Option<String>,
}

/// A remote location as the user wrote it, and the parts a backend needs.
#[derive(Debug, Clone)]
pub struct RemoteUrl {
    /// As written, for messages.
    pub url: String,
    pub scheme: Scheme,
    /// The bucket, container, host or repository (`datasets/ORG/NAME@REV`).
    pub authority: String,
    /// The key (path) inside it, without a leading `/`; may be empty or end with `/`.
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    S3,
    Gcs,
    Azure,
    Http,
    Hub,
}

impl Scheme {
    /// The folder of the cache this scheme's objects are kept under.
    fn cache_name(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
            Scheme::Http => "http",
            Scheme::Hub => "hf",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("{url}: {message}")]
    Remote { url: String, message: String },
    #[error("{path}: {message}")]
    Local { path: PathBuf, message: String },
}

const SCHEMES: &[(&str, Scheme)] = &[
    ("s3", Scheme::S3),
    ("s3a", Scheme::S3),
    ("gs", Scheme::Gcs),
    ("gcs", Scheme::Gcs),
    ("az", Scheme::Azure),
    ("azure", Scheme::Azure),
    ("abfs", Scheme::Azure),
    ("abfss", Scheme::Azure),
    ("http", Scheme::Http),
    ("https", Scheme::Http),
    ("hf", Scheme::Hub),
];

/// `Some` when `text` is a URL (`scheme://...`), parsed or refused; `None` for a local path.
pub fn parse(text: &str) -> Option<Result<RemoteUrl, LocationError>> {
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let err = |message: String| LocationError::Remote {
        url: text.to_string(),
        message,
    };
    let Some(&(_, kind)) = SCHEMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(scheme))
    else {
        let known: Vec<&str> = SCHEMES.iter().map(|(name, _)| *name).collect();
        return Some(Err(err(format!(
            "unsupported scheme {scheme}:// (actprm reads {}:// and local paths)",
            known.join("://, ")
        ))));
    };
    if kind == Scheme::Hub {
        return Some(hub::parse(text, rest).map_err(err));
    }
    let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Some(Err(err(format!("names no {}", noun(kind)))));
    }
    Some(Ok(RemoteUrl {
        url: text.to_string(),
        scheme: kind,
        authority: authority.to_string(),
        key: key.trim_start_matches('/').to_string(),
    }))
}

/// `true` for a URL actprm reads or writes remotely (or refuses as one).
pub fn is_remote(text: &str) -> bool {
    parse(text).is_some()
}

fn noun(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::S3 | Scheme::Gcs => "bucket",
        Scheme::Azure => "container",
        Scheme::Http => "host",
        Scheme::Hub => "repository",
    }
}

/// The folder remote inputs are fetched into and remote outputs are staged in:
/// `$ACTPRM_REMOTE_CACHE`, else `$XDG_CACHE_HOME/actprm/remote`, else `~/.cache/actprm/remote`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ACTPRM_REMOTE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".cache")
        });
    base.join("actprm/remote")
}

impl RemoteUrl {
    /// Where an object of this location's store is kept in the input cache.
    pub fn cached(&self, key: &str) -> PathBuf {
        let mut path = cache_root().join("inputs").join(self.scheme.cache_name());
        // (a Hub authority is `datasets/ORG/NAME@REV`: each part sanitised, as a key's are)
        for part in self.authority.split('/').chain(key.split('/')) {
            if part.is_empty() {
                continue;
            }
            path.push(sanitise(part));
        }
        path
    }

    /// The location as a folder: its key ends with `/` (unless it is the whole store), so
    /// `s3://b/out` and `s3://b/out/` name the same objects.
    pub fn into_folder(mut self) -> Self {
        if !self.key.is_empty() && !self.key.ends_with('/') {
            self.key.push('/');
        }
        self
    }

    /// The URL of `key` in the same store, for messages.
    pub fn url_of(&self, key: &str) -> String {
        let base = self.url.strip_suffix(&self.key).unwrap_or(&self.url);
        format!("{}/{key}", base.trim_end_matches('/'))
    }

    fn error(&self, message: impl std::fmt::Display) -> LocationError {
        LocationError::Remote {
            url: self.url.clone(),
            message: message.to_string(),
        }
    }
}

/// A path component that cannot climb out of the cache or hide from the folder walk.
fn sanitise(part: &str) -> String {
    let cleaned: String = part
        .chars()
        .map(|c| if c == '\\' || c == ':' { '_' } else { c })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => "_".into(),
        s if s.starts_with('.') => format!("_{}", &s[1..]),
        s => s.to_string(),
    }
}

/// The connection to one remote location's store.
pub enum Remote {
    Cloud(cloud::Cloud),
    Hub(hub::Hub),
}

impl Remote {
    pub fn open(url: &RemoteUrl) -> Result<Self, LocationError> {
        match url.scheme {
            Scheme::S3 | Scheme::Gcs | Scheme::Azure => Ok(Remote::Cloud(cloud::Cloud::open(url)?)),
            Scheme::Http | Scheme::Hub => Ok(Remote::Hub(hub::Hub::open(url)?)),
        }
    }

    /// The object named exactly `key`, if there is one.
    pub fn head(&self, key: &str) -> Result<Option<RemoteObject>, LocationError> {
        match self {
            Remote::Cloud(c) => block_on(c.head(key)),
            Remote::Hub(h) => block_on(h.head(key)),
        }
    }

    /// Every object under the folder `prefix` (recursively), sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<RemoteObject>, LocationError> {
        let mut found = match self {
            Remote::Cloud(c) => block_on(c.list(prefix))?,
            Remote::Hub(h) => block_on(h.list(prefix))?,
        };
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// Streams the object into `out`; returns the bytes written, which are the object's
    /// announced size (or an error saying they are not).
    pub fn download(
        &self,
        object: &RemoteObject,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, LocationError> {
        let written = match self {
            Remote::Cloud(c) => block_on(c.download(&object.key, out))?,
            Remote::Hub(h) => block_on(h.download(&object.key, out))?,
        };
        if written != object.size && object.size != 0 {
            let url = match self {
                Remote::Cloud(c) => &c.url,
                Remote::Hub(h) => &h.url,
            };
            return Err(url.error(format!(
                "{}: fetched {written} bytes, {} announced",
                object.key, object.size
            )));
        }
        Ok(written)
    }

    /// Uploads the local file `source` as `key` (one request, or a multipart upload when large;
    /// a commit of its own in a Hub repository).
    pub fn upload(&self, source: &Path, key: &str) -> Result<(), LocationError> {
        self.commit(
            &[(key.to_string(), source.to_path_buf())],
            &[],
            "actprm: upload",
        )
    }

    pub fn delete(&self, key: &str) -> Result<(), LocationError> {
        self.commit(&[], &[key.to_string()], "actprm: delete")
    }

    /// Writes `puts` (key, local file), then deletes `deletes`. In a Hub repository this is one
    /// commit, which readers see whole or not at all ([`Remote::commits_whole`]); in an object
    /// store each object is written (or deleted) on its own, in order.
    pub fn commit(
        &self,
        puts: &[(String, PathBuf)],
        deletes: &[String],
        summary: &str,
    ) -> Result<(), LocationError> {
        match self {
            Remote::Cloud(c) => {
                for (key, source) in puts {
                    block_on(c.upload(source, key))?;
                }
                for key in deletes {
                    block_on(c.delete(key))?;
                }
                Ok(())
            }
            Remote::Hub(h) => block_on(h.commit(puts, deletes, summary)),
        }
    }

    /// Whether [`Remote::commit`] lands as one whole (a Hub repository's commit).
    pub fn commits_whole(&self) -> bool {
        matches!(self, Remote::Hub(_))
    }

    /// Whether outputs can be written here.
    pub fn writable(&self) -> Result<(), LocationError> {
        match self {
            Remote::Cloud(_) => Ok(()),
            Remote::Hub(h) => h.writable(),
        }
    }
}

/// The `object_store` store of an `s3://`, `gs://` or `az://` URL's bucket (for DataFusion to
/// read `FROM 's3://...'` directly); other schemes are no object store.
pub fn object_store_for(
    text: &str,
) -> Result<std::sync::Arc<dyn object_store::ObjectStore>, LocationError> {
    let url = parse(text).ok_or_else(|| LocationError::Remote {
        url: text.to_string(),
        message: "is a local path, not a URL".into(),
    })??;
    match url.scheme {
        Scheme::S3 | Scheme::Gcs | Scheme::Azure => Ok(cloud::Cloud::open(&url)?.store()),
        Scheme::Http | Scheme::Hub => Err(url.error(
            "SQL reads s3://, gs:// and az:// URLs directly; register an hf:// or http(s):// \
             file with --table NAME=URL",
        )),
    }
}

/// Runs `future` to completion on a runtime of its own, on a thread of its own, so a caller
/// inside or outside a tokio runtime can wait on it.
fn block_on<T, F>(future: F) -> Result<T, LocationError>
where
    F: Future<Output = Result<T, LocationError>> + Send,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|runtime| runtime.block_on(future))
            })
            .join()
    })
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    .unwrap_or_else(|e| {
        Err(LocationError::Local {
            path: PathBuf::from("(remote I/O)"),
            message: format!("a tokio runtime did not start: {e}"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_store_and_key() {
        let url = parse("s3://bucket/corpus/part-0.parquet").unwrap().unwrap();
        assert_eq!(url.scheme, Scheme::S3);
        assert_eq!(url.authority, "bucket");
        assert_eq!(url.key, "corpus/part-0.parquet");
        assert_eq!(url.url_of("corpus/x"), "s3://bucket/corpus/x");
        assert!(parse("data/train.parquet").is_none());
        assert!(parse("/abs/path").is_none());
        let err = parse("ftp://host/x").unwrap().unwrap_err().to_string();
        assert!(err.contains("unsupported scheme ftp://"), "{err}");
        assert!(parse("s3://").unwrap().is_err());
    }

    #[test]
    fn cached_paths_stay_inside_the_cache() {
        let url = parse("s3://b/k").unwrap().unwrap();
        let path = url.cached("../../etc/.hidden/x");
        let root = cache_root().join("inputs/s3/b");
        let hub = parse("hf://datasets/../x/f").unwrap().unwrap();
        assert!(hub
            .cached(&hub.key)
            .starts_with(cache_root().join("inputs/hf/datasets/_")));
        assert!(path.starts_with(&root), "{}", path.display());
        assert!(!path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir)));
        assert!(path.ends_with("_/_/etc/_hidden/x"), "{}", path.display());
    }
}
