//! Hot refresh: new heads published by a trainer (in process, or as a model directory on disk)
//! reach the scoring stage, which swaps them in between batches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::model::manifest::model_version;
use crate::model::LoadedModel;

/// A complete heads graph and its version.
#[derive(Debug, Clone)]
pub struct HeadsUpdate {
    pub bytes: Arc<Vec<u8>>,
    pub version: String,
}

pub type HeadsSender = watch::Sender<Option<HeadsUpdate>>;
pub type HeadsReceiver = watch::Receiver<Option<HeadsUpdate>>;

pub fn channel() -> (HeadsSender, HeadsReceiver) {
    watch::channel(None)
}

/// Polls a model directory and publishes its heads whenever they change. Exports are renamed into
/// place whole, so a poll sees the old or the new model, never a mix.
pub struct ModelWatcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ModelWatcher {
    pub fn spawn(
        dir: PathBuf,
        sender: HeadsSender,
        initial_version: String,
        every: Duration,
    ) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut current = initial_version;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(model) = LoadedModel::from_dir(&dir) {
                    let version = model_version(&model.manifest.name, &model.heads_bytes);
                    if version != current {
                        current = version.clone();
                        let _ = sender.send(Some(HeadsUpdate {
                            bytes: Arc::new(model.heads_bytes),
                            version,
                        }));
                    }
                }
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ModelWatcher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
