//! An ordered publishing window: messages are sent in order, many at a time, and
//! confirmed in order. When a confirmation fails, every message from that one on is
//! sent again in the same order (go-back-N): the broker drops the ones it already
//! stored by their dedup ids, so the log keeps each node's order and loses nothing.

use std::collections::VecDeque;
use std::sync::Arc;

use super::transport::{Outgoing, PendingAck, Transport, TransportError};

struct Entry<T> {
    msg: Outgoing,
    tag: T,
    ack: Option<PendingAck>,
}

/// The window.
pub struct Pipe<T> {
    transport: Arc<dyn Transport>,
    q: VecDeque<Entry<T>>,
}

impl<T> Pipe<T> {
    /// An empty window.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            q: VecDeque::new(),
        }
    }

    /// Messages sent and not yet confirmed.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Sends `msg` after every message before it. A send that fails is retried by
    /// [`Pipe::resend`] after [`Pipe::confirm`] reports it.
    pub async fn push(&mut self, msg: Outgoing, tag: T) {
        let ack = if self.q.iter().any(|e| e.ack.is_none()) {
            // Something before it waits to be sent again: keep the order.
            None
        } else {
            self.transport.send(&msg).await.ok()
        };
        self.q.push_back(Entry { msg, tag, ack });
    }

    /// Waits for the oldest message's confirmation: its tag and whether the broker had
    /// it already. On an error the message stays first (call [`Pipe::resend`]). Never
    /// resolves while the window is empty. Cancel-safe.
    pub async fn confirm(&mut self) -> Result<(T, bool), TransportError> {
        let Some(front) = self.q.front_mut() else {
            return std::future::pending().await;
        };
        let r = match front.ack.as_mut() {
            Some(f) => f.await,
            None => Err(TransportError::Broker("not sent".into())),
        };
        match r {
            Ok(dup) => {
                let e = self.q.pop_front().expect("front exists");
                Ok((e.tag, dup))
            }
            Err(e) => {
                front.ack = None;
                Err(e)
            }
        }
    }

    /// Sends every message in the window again, in order; returns how many went out
    /// (a failed send stops it: the rest wait for the next call).
    pub async fn resend(&mut self) -> usize {
        let mut sent = 0;
        for e in self.q.iter_mut() {
            match self.transport.send(&e.msg).await {
                Ok(a) => {
                    e.ack = Some(a);
                    sent += 1;
                }
                Err(_) => {
                    e.ack = None;
                    break;
                }
            }
        }
        // Everything after a failed send must be sent again after it.
        let mut failed = false;
        for e in self.q.iter_mut() {
            if failed {
                e.ack = None;
            }
            failed |= e.ack.is_none();
        }
        sent
    }
}
