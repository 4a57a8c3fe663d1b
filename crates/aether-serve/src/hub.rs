//! Fan-out of live updates to WebSocket clients: one bounded broadcast ring. Sending
//! never blocks (the shards publish from their hot loop); a client that falls more
//! than the ring behind loses the oldest messages, is told how many, and is counted.

use std::sync::Arc;

use tokio::sync::broadcast;

/// The broadcast ring of serialised JSON updates.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<str>>,
}

impl Hub {
    /// A ring of `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Publishes the message `make` builds, only if a client listens (no JSON is built
    /// for nobody).
    pub fn publish_with(&self, make: impl FnOnce() -> String) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::from(make()));
        }
    }

    /// A new client's receiver.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// Clients listening.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }
}
