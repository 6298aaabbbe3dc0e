//! The parts every run is built from. A [`Source`] produces items, each [`Stage`] turns the items
//! of its inlet into items on its outlet, and the run's sink consumes the last outlet on the
//! caller's thread. The runner (`runner.rs`) connects them with bounded channels; a part only
//! knows its own job and its two ends.

use tokio::sync::mpsc;

use super::PipelineError;

/// Produces a run's items (reads its files). Stops early, without error, when its outlet closes.
pub trait Source: Send {
    type Out: Send;
    /// Names the stage's thread and its crash message (`the read stage crashed: ...`).
    fn name(&self) -> &'static str;
    fn run(self, output: Outlet<Self::Out>) -> Result<(), PipelineError>;
}

/// One step of the dataflow: runs until its inlet ends (the stages before it are done) or its
/// outlet closes (the stages after it stopped); its own failure fails the run.
pub trait Stage: Send {
    type In: Send;
    type Out: Send;
    /// Names the stage's thread and its crash message.
    fn name(&self) -> &'static str;
    fn run(self, input: Inlet<Self::In>, output: Outlet<Self::Out>) -> Result<(), PipelineError>;
}

/// The receiving end of a stage's input channel.
pub struct Inlet<T>(pub(super) mpsc::Receiver<T>);

/// The sending end of a stage's output channel: bounded, so a slow consumer holds its producers
/// back (backpressure, not buffering).
pub struct Outlet<T>(pub(super) mpsc::Sender<T>);

/// A bounded channel between two parts of a run.
pub(super) fn channel<T>(capacity: usize) -> (Outlet<T>, Inlet<T>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (Outlet(tx), Inlet(rx))
}

impl<T> Inlet<T> {
    /// The next item, waiting for it; `None` once every producer is done.
    pub fn recv(&mut self) -> Option<T> {
        self.0.blocking_recv()
    }

    /// The items as an async stream, for stages that wait on the network.
    pub fn into_stream(self) -> impl futures::Stream<Item = T> {
        futures::stream::unfold(self.0, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    }
}

impl<T> Iterator for Inlet<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.recv()
    }
}

impl<T> Outlet<T> {
    /// Passes `item` on, waiting for room. `false` once the consumer has gone: the caller stops
    /// quietly (the consumer's own result says why).
    #[must_use]
    pub fn send(&self, item: T) -> bool {
        self.0.blocking_send(item).is_ok()
    }

    /// [`Outlet::send`] from async code.
    #[must_use]
    pub async fn send_async(&self, item: T) -> bool {
        self.0.send(item).await.is_ok()
    }
}
