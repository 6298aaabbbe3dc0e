//! Hugging Face repositories (`hf://datasets/ORG/NAME[@REV]/PATH`, `hf://ORG/NAME/...` for a
//! model) through the Hub's HTTP API, and single files on a web server (`http(s)://`, read-only).
//! Writes to a repository are commits (`commit.rs`). `HF_ENDPOINT` points at another Hub (a
//! mirror), `HF_TOKEN` authenticates.

mod commit;

use serde::Deserialize;

use super::{LocationError, RemoteObject, RemoteUrl, Scheme};

/// Parses what follows `hf://`: `[datasets/|spaces/|models/]ORG/NAME[@REV][/PATH]`. The revision
/// may be percent-encoded (`@refs%2Fconvert%2Fparquet`, the Hub's Parquet export); `@~parquet`
/// is short for it.
pub fn parse(text: &str, rest: &str) -> Result<RemoteUrl, String> {
    let mut parts = rest.split('/');
    let mut first = parts.next().unwrap_or_default();
    let kind = match first {
        "datasets" | "spaces" | "models" => {
            let kind = first;
            first = parts.next().unwrap_or_default();
            kind
        }
        _ => "models",
    };
    let org = first;
    let name_rev = parts.next().unwrap_or_default();
    if org.is_empty() || name_rev.is_empty() {
        return Err(
            "names no repository: write hf://datasets/ORG/NAME/PATH (or hf://ORG/NAME/PATH for a \
             model)"
                .into(),
        );
    }
    let (name, revision) = match name_rev.split_once('@') {
        Some((name, rev)) if !rev.is_empty() => (name, rev.to_string()),
        Some(_) => return Err("an empty revision after @".into()),
        None => (name_rev, "main".to_string()),
    };
    let revision = if revision == "~parquet" {
        "refs/convert/parquet".to_string()
    } else {
        percent_decode(&revision)
    };
    let key: Vec<&str> = parts.collect();
    Ok(RemoteUrl {
        url: text.to_string(),
        scheme: Scheme::Hub,
        authority: format!("{kind}/{org}/{name}@{}", revision.replace('/', "%2F")),
        key: key.join("/"),
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode_revision(revision: &str) -> String {
    revision.replace('/', "%2F")
}

pub struct Hub {
    pub(super) url: RemoteUrl,
    client: reqwest::Client,
    target: Target,
}

enum Target {
    /// A Hub repository.
    Repository {
        endpoint: String,
        /// `datasets`, `models` or `spaces`.
        kind: String,
        /// `ORG/NAME`.
        repository: String,
        revision: String,
        token: Option<String>,
    },
    /// A web server: one file per URL.
    Web { base: String },
}

/// One entry of the Hub's tree listing.
#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    lfs: Option<LfsPointer>,
}

#[derive(Deserialize)]
struct LfsPointer {
    oid: String,
    size: u64,
}

impl Hub {
    pub fn open(url: &RemoteUrl) -> Result<Self, LocationError> {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(20))
            .user_agent(concat!("actprm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| url.error(e))?;
        let target = match url.scheme {
            Scheme::Hub => {
                let (kind, rest) = url.authority.split_once('/').unwrap_or(("models", ""));
                let (repository, revision) = rest.rsplit_once('@').unwrap_or((rest, "main"));
                let token = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|t| !t.is_empty()));
                Target::Repository {
                    endpoint: std::env::var("HF_ENDPOINT")
                        .ok()
                        .filter(|e| !e.is_empty())
                        .unwrap_or_else(|| "https://huggingface.co".into())
                        .trim_end_matches('/')
                        .to_string(),
                    kind: kind.to_string(),
                    repository: repository.to_string(),
                    revision: percent_decode(revision),
                    token,
                }
            }
            _ => Target::Web {
                base: url
                    .url
                    .strip_suffix(&url.key)
                    .unwrap_or(&url.url)
                    .to_string(),
            },
        };
        Ok(Self {
            url: url.clone(),
            client,
            target,
        })
    }

    /// A Hub repository takes commits with a token; a web server is read-only.
    pub fn writable(&self) -> Result<(), LocationError> {
        match &self.target {
            Target::Repository { token: Some(_), .. } => Ok(()),
            Target::Repository { token: None, .. } => Err(self
                .url
                .error("writing to the Hub needs a token with write access in HF_TOKEN")),
            Target::Web { .. } => Err(self.url.error(
                "is read-only for actprm: write outputs to a local folder, hf://, s3://, gs:// \
                 or az://",
            )),
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, url);
        match &self.target {
            Target::Repository {
                token: Some(token), ..
            } => request.bearer_auth(token),
            _ => request,
        }
    }

    /// A request's response, or a message that says what failed (never the token).
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Option<reqwest::Response>, LocationError> {
        let response = request.send().await.map_err(|e| {
            self.url.error(format!(
                "{what}: {} (is the Hub reachable from here? set HF_ENDPOINT for a mirror)",
                without_url(&e)
            ))
        })?;
        match response.status() {
            s if s.is_success() => Ok(Some(response)),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                Err(self.url.error(format!(
                    "{what}: HTTP {} (a private or gated repository needs HF_TOKEN)",
                    response.status()
                )))
            }
            s => Err(self.url.error(format!("{what}: HTTP {s}"))),
        }
    }

    /// The JSON body of a Hub API answer to `what`, or an error saying it is not one.
    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> Result<T, LocationError> {
        response.json().await.map_err(|e| {
            self.url
                .error(format!("{what}: not the Hub's answer: {}", without_url(&e)))
        })
    }

    fn file_url(&self, key: &str) -> String {
        match &self.target {
            Target::Repository { revision, .. } => self.repository_url(&format!(
                "/resolve/{}/{key}",
                percent_encode_revision(revision)
            )),
            Target::Web { base } => format!("{}/{key}", base.trim_end_matches('/')),
        }
    }

    /// A URL of the repository itself, `{endpoint}/[{kind}/]{repository}{rest}` (a model's has
    /// no kind): its files, its LFS endpoint.
    fn repository_url(&self, rest: &str) -> String {
        let Target::Repository {
            endpoint,
            kind,
            repository,
            ..
        } = &self.target
        else {
            return String::new();
        };
        let kind = if kind == "models" {
            String::new()
        } else {
            format!("{kind}/")
        };
        format!("{endpoint}/{kind}{repository}{rest}")
    }

    /// The Hub's API on this repository: `{endpoint}/api/{kind}/{repository}/{route}/{revision}`.
    fn api(&self, route: &str) -> String {
        let Target::Repository {
            endpoint,
            kind,
            repository,
            revision,
            ..
        } = &self.target
        else {
            return String::new();
        };
        format!(
            "{endpoint}/api/{kind}/{repository}/{route}/{}",
            percent_encode_revision(revision)
        )
    }

    pub async fn head(&self, key: &str) -> Result<Option<RemoteObject>, LocationError> {
        if key.is_empty() || key.ends_with('/') {
            return Ok(None);
        }
        match &self.target {
            Target::Repository { .. } => {
                let parent = key.rsplit_once('/').map_or("", |(p, _)| p);
                let entries = self.tree(parent, false).await?;
                Ok(entries.into_iter().find(|o| o.key == key))
            }
            Target::Web { .. } => {
                let url = self.file_url(key);
                let Some(response) = self
                    .send(self.request(reqwest::Method::HEAD, &url), "HEAD")
                    .await?
                else {
                    return Ok(None);
                };
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                Ok(Some(RemoteObject {
                    key: key.to_string(),
                    size: header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    version: header("etag").or_else(|| header("last-modified")),
                }))
            }
        }
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<RemoteObject>, LocationError> {
        match &self.target {
            Target::Repository { .. } => self.tree(prefix.trim_end_matches('/'), true).await,
            Target::Web { .. } => Err(self.url.error(
                "an http(s) URL names one file: a folder or a glob needs a store that lists its \
                 files (s3://, gs://, az://, hf://)",
            )),
        }
    }

    /// The files under `folder` (every level with `recursive`), following the Hub's pages.
    async fn tree(
        &self,
        folder: &str,
        recursive: bool,
    ) -> Result<Vec<RemoteObject>, LocationError> {
        if !matches!(self.target, Target::Repository { .. }) {
            return Ok(vec![]);
        }
        let mut next = Some(format!(
            "{}/{folder}{}",
            self.api("tree"),
            if recursive { "?recursive=true" } else { "" }
        ));
        let mut found = Vec::new();
        while let Some(url) = next.take() {
            let Some(response) = self
                .send(self.request(reqwest::Method::GET, &url), "listing")
                .await?
            else {
                return Ok(found);
            };
            next = next_page(response.headers());
            let entries: Vec<TreeEntry> = self.answer(response, "listing").await?;
            found.extend(entries.into_iter().filter(|e| e.kind == "file").map(|e| {
                let (size, version) = match e.lfs {
                    Some(lfs) => (lfs.size, Some(lfs.oid)),
                    None => (e.size, e.oid),
                };
                RemoteObject {
                    key: e.path,
                    size,
                    version,
                }
            }));
        }
        Ok(found)
    }

    pub async fn download(
        &self,
        key: &str,
        file: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, LocationError> {
        let url = self.file_url(key);
        let Some(mut response) = self
            .send(self.request(reqwest::Method::GET, &url), key)
            .await?
        else {
            return Err(self.url.error(format!("{key}: no such file")));
        };
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.url.error(format!("{key}: {}", without_url(&e))))?
        {
            file.write_all(&chunk)
                .map_err(|e| self.url.error(format!("writing {key} to the cache: {e}")))?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }
}

/// The `Link: <URL>; rel="next"` of a paged Hub answer.
fn next_page(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// A reqwest error without the URL it carries (which may hold a signed query).
fn without_url(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), "the URL");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_name_kind_repository_revision_and_path() {
        let url = parse(
            "hf://datasets/o/n/data/x.parquet",
            "datasets/o/n/data/x.parquet",
        )
        .unwrap();
        assert_eq!(url.authority, "datasets/o/n@main");
        assert_eq!(url.key, "data/x.parquet");
        let url = parse("", "datasets/o/n@~parquet/default/train").unwrap();
        assert_eq!(url.authority, "datasets/o/n@refs%2Fconvert%2Fparquet");
        assert_eq!(url.key, "default/train");
        let url = parse("", "Qwen/Qwen2.5-Math-PRM-7B").unwrap();
        assert_eq!(url.authority, "models/Qwen/Qwen2.5-Math-PRM-7B@main");
        assert_eq!(url.key, "");
        assert!(parse("", "datasets/only-org").is_err());
    }

    #[test]
    fn pages_follow_the_link_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            "<https://h/api/x?cursor=2>; rel=\"next\"".parse().unwrap(),
        );
        assert_eq!(
            next_page(&headers).as_deref(),
            Some("https://h/api/x?cursor=2")
        );
    }
}
