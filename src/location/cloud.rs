//! S3 (and S3-compatible servers: MinIO, R2, moto), Google Cloud Storage and Azure Blob Storage,
//! through the `object_store` crate DataFusion already builds, configured from the standard
//! environment variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`, ...).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};

use super::{LocationError, RemoteObject, RemoteUrl, Scheme};

/// Files up to this size are uploaded in one request; larger ones in parts of this size.
const PART_BYTES: usize = 16 << 20;

pub struct Cloud {
    pub(super) url: RemoteUrl,
    store: Arc<dyn ObjectStore>,
}

impl Cloud {
    pub fn open(url: &RemoteUrl) -> Result<Self, LocationError> {
        // a store that does not answer fails in seconds, not after the default three minutes
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..Default::default()
        };
        let root = format!("{}://{}", scheme_text(&url.url), url.authority);
        let store: Result<Arc<dyn ObjectStore>, object_store::Error> = match url.scheme {
            Scheme::S3 => object_store::aws::AmazonS3Builder::from_env()
                .with_url(root)
                .with_allow_http(
                    endpoint_is_http("AWS_ENDPOINT_URL") || endpoint_is_http("AWS_ENDPOINT"),
                )
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as _),
            Scheme::Gcs => object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(root)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as _),
            Scheme::Azure => object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(root)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as _),
            Scheme::Http | Scheme::Hub => unreachable!("opened by location::hub"),
        };
        Ok(Self {
            url: url.clone(),
            store: store.map_err(|e| url.error(e))?,
        })
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub async fn head(&self, key: &str) -> Result<Option<RemoteObject>, LocationError> {
        if key.is_empty() || key.ends_with('/') {
            return Ok(None);
        }
        match self.store.head(&Key::from(key)).await {
            Ok(meta) => Ok(Some(object(meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.url.error(e)),
        }
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<RemoteObject>, LocationError> {
        let prefix = prefix.trim_end_matches('/');
        let prefix = (!prefix.is_empty()).then(|| Key::from(prefix));
        let mut listing = self.store.list(prefix.as_ref());
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            found.push(object(meta.map_err(|e| self.url.error(e))?));
        }
        Ok(found)
    }

    pub async fn download(
        &self,
        key: &str,
        file: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, LocationError> {
        let got = self
            .store
            .get(&Key::from(key))
            .await
            .map_err(|e| self.url.error(e))?;
        let mut stream = got.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.url.error(e))?;
            file.write_all(&chunk)
                .map_err(|e| self.url.error(format!("writing {key} to the cache: {e}")))?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    pub async fn upload(&self, source: &Path, key: &str) -> Result<(), LocationError> {
        let local = |e: std::io::Error| LocationError::Local {
            path: source.to_path_buf(),
            message: e.to_string(),
        };
        let mut file = std::fs::File::open(source).map_err(local)?;
        let size = file.metadata().map_err(local)?.len();
        let key = Key::from(key);
        if size <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).map_err(local)?;
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| self.url.error(e))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| self.url.error(e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buffer = vec![0u8; PART_BYTES];
        loop {
            let n = file.read(&mut buffer).map_err(local)?;
            if n == 0 {
                break;
            }
            // at most two parts in flight: memory stays bounded whatever the file's size
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| self.url.error(e))?;
            writer.write(&buffer[..n]);
        }
        writer.finish().await.map_err(|e| self.url.error(e))?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), LocationError> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.url.error(e)),
        }
    }
}

fn object(meta: object_store::ObjectMeta) -> RemoteObject {
    RemoteObject {
        key: meta.location.to_string(),
        size: meta.size,
        version: meta.e_tag.or(meta.version),
    }
}

/// The scheme as written (`s3a`, `abfss`), which the builders read settings from.
fn scheme_text(url: &str) -> &str {
    url.split_once("://").map_or("s3", |(scheme, _)| scheme)
}

/// An S3-compatible server on plain HTTP (MinIO or moto on loopback) is allowed when the
/// endpoint the user set says `http://`.
fn endpoint_is_http(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|v| v.starts_with("http://"))
}
