//! The one runner behind every dataflow (`score`, `filter`, `active`, `label`, pipeline files):
//! each source and stage on its own named thread, bounded channels between them, the sink on the
//! caller's thread (so it may borrow the caller's state), and one tokio runtime, started only if
//! a stage waits on the network.
//!
//! Failures: every part's result is collected; a stage that panicked fails the run with its name.
//! The earliest failing part wins, because a reader that died early looks like a short input to
//! every part after it.

use std::any::Any;
use std::thread::{Scope, ScopedJoinHandle};

use tokio::runtime::{Handle, Runtime};

use super::stage::{channel, Inlet, Source, Stage};
use super::PipelineError;

/// A run being assembled; see [`run`].
pub struct Run<'scope, 'env: 'scope> {
    scope: &'scope Scope<'scope, 'env>,
    name: &'static str,
    parts: Vec<(&'static str, Part<'scope>)>,
    runtime: Option<Runtime>,
}

/// A started part, or the reason its thread could not start.
type Part<'scope> = std::io::Result<ScopedJoinHandle<'scope, Result<(), PipelineError>>>;

/// Builds and runs one dataflow. `build` starts the sources and stages with [`Run::source`] and
/// [`Run::stage`], then consumes the last inlet itself (the sink) and returns its result. The
/// run's result is the first failing source or stage's error, else `build`'s.
pub fn run<'env, R, F>(name: &'static str, build: F) -> Result<R, PipelineError>
where
    F: for<'scope> FnOnce(&mut Run<'scope, 'env>) -> Result<R, PipelineError>,
{
    std::thread::scope(|scope| {
        let mut run = Run {
            scope,
            name,
            parts: Vec::new(),
            runtime: None,
        };
        // the sink's inlet is dropped when `build` returns, which stops every part still sending
        let sink = build(&mut run);
        let mut first_failure = None;
        for (stage, handle) in run.parts.drain(..) {
            let result = match handle {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| Err(crashed(stage, panic))),
                Err(e) => Err(PipelineError::Crashed {
                    stage: stage.to_string(),
                    message: format!("its thread did not start: {e}"),
                }),
            };
            if let Err(e) = result {
                first_failure.get_or_insert(e);
            }
        }
        match first_failure {
            Some(e) => Err(e),
            None => sink,
        }
    })
}

impl<'scope, 'env> Run<'scope, 'env> {
    /// Starts `source` on its own thread; its items arrive on the returned inlet, at most
    /// `capacity` waiting.
    pub fn source<S>(&mut self, source: S, capacity: usize) -> Inlet<S::Out>
    where
        S: Source + 'scope,
        S::Out: 'scope,
    {
        let (tx, rx) = channel(capacity);
        let name = source.name();
        self.spawn(name, move || source.run(tx));
        rx
    }

    /// Starts `stage` on its own thread, reading `input`; its items arrive on the returned inlet.
    pub fn stage<S>(&mut self, input: Inlet<S::In>, stage: S, capacity: usize) -> Inlet<S::Out>
    where
        S: Stage + 'scope,
        S::In: 'scope,
        S::Out: 'scope,
    {
        let (tx, rx) = channel(capacity);
        let name = stage.name();
        self.spawn(name, move || stage.run(input, tx));
        rx
    }

    /// The run's tokio runtime (started on first use), for stages that wait on the network.
    pub fn runtime(&mut self) -> Result<Handle, PipelineError> {
        if self.runtime.is_none() {
            let runtime = crate::runtime::start(&format!("actprm-{}", self.name), Some(2))
                .map_err(|source| PipelineError::Runtime { source })?;
            self.runtime = Some(runtime);
        }
        Ok(self
            .runtime
            .as_ref()
            .expect("started above")
            .handle()
            .clone())
    }

    fn spawn<F>(&mut self, stage: &'static str, work: F)
    where
        F: FnOnce() -> Result<(), PipelineError> + Send + 'scope,
    {
        // a part whose thread does not start fails the run when the parts are joined
        let part = std::thread::Builder::new()
            .name(format!("actprm-{stage}"))
            .spawn_scoped(self.scope, work);
        self.parts.push((stage, part));
    }
}

fn crashed(stage: &str, panic: Box<dyn Any + Send>) -> PipelineError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    PipelineError::Crashed {
        stage: stage.to_string(),
        message,
    }
}

/// The run accounted for every row the file footers announced (`expected`), or it fails: a part
/// that stopped early must never pass for a short input.
pub fn check_accounted(expected: u64, accounted: u64) -> Result<(), PipelineError> {
    if expected == accounted {
        Ok(())
    } else {
        Err(PipelineError::ShortRun {
            expected,
            accounted,
        })
    }
}
