//! The tokio runtime a run drives its stages (or the judge's requests, or a SQL session) on: one
//! builder, so every run starts it the same way. Heavy work runs on blocking threads, so a small
//! worker pool is enough where a size is given.

use tokio::runtime::{Builder, Runtime};

/// A multi-threaded runtime with I/O and timers; `workers` threads (`None`: one per core), named
/// `name` in thread listings.
pub fn start(name: &str, workers: Option<usize>) -> std::io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.thread_name(name).enable_all().build()
}
