//! Writing to a Hub repository: one commit per output, through the Hub's HTTP API as
//! `huggingface_hub.create_commit` uses it.
//!
//! 1. `POST /api/{kind}/{repo}/preupload/{rev}`: for each file (path, size, sha256, a sample of
//!    its first bytes) the Hub says whether it goes through LFS (data files) or inline.
//! 2. LFS files: `POST /{repo}.git/info/lfs/objects/batch` answers, per object, where to upload
//!    it (one PUT, or parts when its header gives a `chunk_size`), and where to verify it; an
//!    object the Hub holds already gets no action.
//! 3. `POST /api/{kind}/{repo}/commit/{rev}` (NDJSON): a header, then each file (`lfsFile` by
//!    its sha256, `file` inline as base64) and each deleted file. The commit is atomic: a reader
//!    sees the whole output or none of it.
//!
//! A repository that does not exist yet is created (private) on the first write.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Hub, Target};
use crate::location::LocationError;

/// Files per preupload and LFS batch request (the Hub's own client sends at most this many).
const PER_REQUEST: usize = 256;

/// One file of a commit, hashed.
struct Staged {
    key: String,
    path: PathBuf,
    size: u64,
    sha256: String,
    sample: String,
    lfs: bool,
}

#[derive(Serialize)]
struct PreuploadFile<'a> {
    path: &'a str,
    sample: &'a str,
    size: u64,
    sha: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreuploadAnswer {
    path: String,
    upload_mode: String,
}

#[derive(Deserialize)]
struct PreuploadAnswers {
    files: Vec<PreuploadAnswer>,
}

#[derive(Deserialize)]
struct BatchAnswer {
    objects: Vec<BatchObject>,
}

#[derive(Deserialize)]
struct BatchObject {
    oid: String,
    #[serde(default)]
    actions: Option<BatchActions>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct BatchActions {
    upload: Option<Action>,
    verify: Option<Action>,
}

#[derive(Deserialize)]
struct Action {
    href: String,
    #[serde(default)]
    header: serde_json::Map<String, serde_json::Value>,
}

impl Hub {
    /// Commits `puts` (repository path, local file) and `deletes` (repository paths) to the
    /// repository's revision in one commit titled `summary`.
    pub async fn commit(
        &self,
        puts: &[(String, PathBuf)],
        deletes: &[String],
        summary: &str,
    ) -> Result<(), LocationError> {
        self.writable()?;
        let mut staged = Vec::with_capacity(puts.len());
        for (key, path) in puts {
            staged.push(self.hash(key, path)?);
        }
        if !self.preupload(&mut staged).await? {
            self.create_repository().await?;
            self.preupload(&mut staged).await?;
        }
        let lfs: Vec<&Staged> = staged.iter().filter(|s| s.lfs).collect();
        for chunk in lfs.chunks(PER_REQUEST) {
            self.upload_lfs(chunk).await?;
        }
        self.create_commit(&staged, deletes, summary).await
    }

    fn hash(&self, key: &str, path: &Path) -> Result<Staged, LocationError> {
        let local = |e: std::io::Error| LocationError::Local {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut file = std::fs::File::open(path).map_err(local)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let (mut size, mut sample) = (0u64, Vec::new());
        loop {
            let n = file.read(&mut buffer).map_err(local)?;
            if n == 0 {
                break;
            }
            if sample.len() < 512 {
                let take = (512 - sample.len()).min(n);
                sample.extend_from_slice(&buffer[..take]);
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        Ok(Staged {
            key: key.to_string(),
            path: path.to_path_buf(),
            size,
            sha256: hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            sample: base64::engine::general_purpose::STANDARD.encode(&sample),
            lfs: false,
        })
    }

    /// Asks which files go through LFS; `false` when the repository does not exist.
    async fn preupload(&self, staged: &mut [Staged]) -> Result<bool, LocationError> {
        for chunk in staged.chunks_mut(PER_REQUEST) {
            let files: Vec<PreuploadFile> = chunk
                .iter()
                .map(|s| PreuploadFile {
                    path: &s.key,
                    sample: &s.sample,
                    size: s.size,
                    sha: &s.sha256,
                })
                .collect();
            let request = self
                .request(reqwest::Method::POST, &self.api("preupload"))
                .json(&serde_json::json!({ "files": files }));
            let Some(response) = self.send(request, "preparing the upload").await? else {
                return Ok(false);
            };
            let answers: PreuploadAnswers = self.answer(response, "preparing the upload").await?;
            for answer in answers.files {
                if let Some(s) = chunk.iter_mut().find(|s| s.key == answer.path) {
                    s.lfs = answer.upload_mode == "lfs";
                }
            }
        }
        Ok(true)
    }

    async fn create_repository(&self) -> Result<(), LocationError> {
        let Target::Repository {
            endpoint,
            kind,
            repository,
            ..
        } = &self.target
        else {
            return Ok(());
        };
        let (organization, name) = repository.split_once('/').unwrap_or(("", repository));
        let body = serde_json::json!({
            "name": name,
            "organization": organization,
            "type": kind.trim_end_matches('s'),
            "private": true,
        });
        let request = self
            .request(
                reqwest::Method::POST,
                &format!("{endpoint}/api/repos/create"),
            )
            .json(&body);
        match self.send(request, "creating the repository").await? {
            Some(_) => Ok(()),
            None => Err(self.url.error(
                "no such repository, and it could not be created (does HF_TOKEN have write \
                 access to its organisation?)",
            )),
        }
    }

    /// Puts each LFS object where the Hub's batch answer says, in parts when it asks so.
    async fn upload_lfs(&self, objects: &[&Staged]) -> Result<(), LocationError> {
        let Target::Repository { revision, .. } = &self.target else {
            return Ok(());
        };
        let body = serde_json::json!({
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": objects.iter().map(|s| serde_json::json!({"oid": s.sha256, "size": s.size})).collect::<Vec<_>>(),
            "hash_algo": "sha256",
            "ref": {"name": revision},
        });
        let request = self
            .request(
                reqwest::Method::POST,
                &self.repository_url(".git/info/lfs/objects/batch"),
            )
            .header("Accept", "application/vnd.git-lfs+json")
            .header("Content-Type", "application/vnd.git-lfs+json")
            .body(body.to_string());
        let Some(response) = self.send(request, "LFS batch").await? else {
            return Err(self
                .url
                .error("LFS batch: the repository has no LFS endpoint"));
        };
        let answer: BatchAnswer = self.answer(response, "LFS batch").await?;
        for object in answer.objects {
            let Some(staged) = objects.iter().find(|s| s.sha256 == object.oid) else {
                continue;
            };
            if let Some(error) = object.error {
                return Err(self
                    .url
                    .error(format!("LFS upload of {}: {error}", staged.key)));
            }
            let Some(actions) = object.actions else {
                continue; // the Hub holds this object already
            };
            if let Some(upload) = actions.upload {
                self.put_object(staged, &upload).await?;
            }
            if let Some(verify) = actions.verify {
                let request = self
                    .with_headers(
                        self.client.request(reqwest::Method::POST, &verify.href),
                        &verify,
                    )
                    .json(&serde_json::json!({"oid": staged.sha256, "size": staged.size}));
                self.send(request, &format!("verifying {}", staged.key))
                    .await?
                    .ok_or_else(|| {
                        self.url
                            .error(format!("verifying {}: HTTP 404", staged.key))
                    })?;
            }
        }
        Ok(())
    }

    /// An action's own headers (signed URLs carry their authorisation; the Hub token is not
    /// sent to a storage host).
    fn with_headers(
        &self,
        mut request: reqwest::RequestBuilder,
        action: &Action,
    ) -> reqwest::RequestBuilder {
        for (name, value) in &action.header {
            if let Some(value) = value.as_str() {
                if name != "chunk_size" && !name.chars().all(|c| c.is_ascii_digit()) {
                    request = request.header(name, value);
                }
            }
        }
        request
    }

    async fn put_object(&self, staged: &Staged, upload: &Action) -> Result<(), LocationError> {
        let local = |e: std::io::Error| LocationError::Local {
            path: staged.path.clone(),
            message: e.to_string(),
        };
        let what = format!("uploading {}", staged.key);
        let chunk_size = upload
            .header
            .get("chunk_size")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()));
        let Some(chunk_size) = chunk_size.filter(|&c: &u64| c > 0) else {
            let bytes = std::fs::read(&staged.path).map_err(local)?;
            let request = self.with_headers(
                self.client.request(reqwest::Method::PUT, &upload.href),
                upload,
            );
            self.send(request.body(bytes), &what)
                .await?
                .ok_or_else(|| self.url.error(format!("{what}: HTTP 404")))?;
            return Ok(());
        };
        // multipart: the header names each part's URL by its number ("00001", ...)
        let mut parts: Vec<(u32, &str)> = upload
            .header
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?)))
            .collect();
        parts.sort_unstable();
        let mut file = std::fs::File::open(&staged.path).map_err(local)?;
        let mut etags = Vec::with_capacity(parts.len());
        for (number, url) in parts {
            let mut chunk = Vec::with_capacity(chunk_size as usize);
            (&mut file)
                .take(chunk_size)
                .read_to_end(&mut chunk)
                .map_err(local)?;
            let response = self
                .send(
                    self.client.request(reqwest::Method::PUT, url).body(chunk),
                    &format!("{what}, part {number}"),
                )
                .await?
                .ok_or_else(|| self.url.error(format!("{what}, part {number}: HTTP 404")))?;
            let etag = response
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            etags.push(serde_json::json!({"partNumber": number, "etag": etag}));
        }
        let request = self
            .with_headers(
                self.client.request(reqwest::Method::POST, &upload.href),
                upload,
            )
            .json(&serde_json::json!({"oid": staged.sha256, "parts": etags}));
        self.send(request, &format!("{what}: completing the parts"))
            .await?
            .ok_or_else(|| self.url.error(format!("{what}: HTTP 404")))?;
        Ok(())
    }

    async fn create_commit(
        &self,
        staged: &[Staged],
        deletes: &[String],
        summary: &str,
    ) -> Result<(), LocationError> {
        let mut lines = vec![serde_json::json!({
            "key": "header",
            "value": {"summary": summary, "description": ""},
        })];
        for s in staged {
            lines.push(if s.lfs {
                serde_json::json!({
                    "key": "lfsFile",
                    "value": {"path": s.key, "algo": "sha256", "oid": s.sha256, "size": s.size},
                })
            } else {
                let bytes = std::fs::read(&s.path).map_err(|e| LocationError::Local {
                    path: s.path.clone(),
                    message: e.to_string(),
                })?;
                serde_json::json!({
                    "key": "file",
                    "value": {
                        "path": s.key,
                        "encoding": "base64",
                        "content": base64::engine::general_purpose::STANDARD.encode(bytes),
                    },
                })
            });
        }
        for key in deletes {
            lines.push(serde_json::json!({"key": "deletedFile", "value": {"path": key}}));
        }
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let request = self
            .request(reqwest::Method::POST, &self.api("commit"))
            .header("Content-Type", "application/x-ndjson")
            .body(body);
        self.send(request, "committing").await?.ok_or_else(|| {
            self.url
                .error("committing: HTTP 404 (no such repository or revision)")
        })?;
        Ok(())
    }
}
