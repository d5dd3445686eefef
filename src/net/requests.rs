//! Requests between peers, one per bidirectional stream (see
//! [`super::protocol::Message`]): asking, answering, and fetching byte
//! ranges of blobs. LMDB and file work runs on the blocking pool, never on
//! a runtime thread. The rounds built on them are in [`super::rounds`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use s2n_quic::stream::BidirectionalStream;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::endpoint::Manager;
use super::protocol::{self, Message};
use crate::ids::{PeerId, Seq};

/// Why a request or a round failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// No connection to the peer, or it broke.
    #[error("{0}")]
    Unreachable(String),
    /// No answer within `net.timeout`.
    #[error("no answer within net.timeout")]
    TimedOut,
    /// The peer refused the request, or answered nonsense.
    #[error("{0}")]
    Refused(String),
    /// This side failed (database, file system).
    #[error("{0}")]
    Local(String),
}

pub(super) fn local<E: std::fmt::Display>(e: E) -> RequestError {
    RequestError::Local(e.to_string())
}

/// MiB of blob answers one connection may have read and not yet sent, at
/// once: with [`protocol::MAX_READ`] of 16 MiB, four reads in flight. More
/// wait for earlier ones to be written.
pub(super) const ANSWER_BUDGET_MIB: u32 = 64;

/// The budget of a new connection's answers (see [`ANSWER_BUDGET_MIB`]).
pub(super) fn answer_budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(ANSWER_BUDGET_MIB as usize))
}

/// Runs `work` on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RequestError> + Send + 'static,
) -> Result<T, RequestError> {
    tokio::task::spawn_blocking(work).await.map_err(local)?
}

impl Manager {
    /// Opens a stream to `peer`, sends `request` and reads its answer,
    /// within `net.timeout`. A request whose link closed because another
    /// link to the peer replaced it (both sides dialled at once, or the
    /// peer restarted) is asked once more on the new link: every request
    /// may be asked twice.
    pub(super) async fn ask(
        &self,
        peer: PeerId,
        request: &Message,
    ) -> Result<(Message, BidirectionalStream), RequestError> {
        let (handle, token) = self
            .link(peer)
            .ok_or_else(|| RequestError::Unreachable(format!("{peer} is not connected")))?;
        match self.ask_on(handle, peer, request).await {
            Err(RequestError::Unreachable(e)) => match self.link(peer) {
                Some((handle, now)) if now != token => {
                    tracing::debug!("{peer}: link replaced during a request ({e}); asked again");
                    self.ask_on(handle, peer, request).await
                }
                _ => Err(RequestError::Unreachable(e)),
            },
            result => result,
        }
    }

    async fn ask_on(
        &self,
        handle: s2n_quic::connection::Handle,
        peer: PeerId,
        request: &Message,
    ) -> Result<(Message, BidirectionalStream), RequestError> {
        let timeout = self.net_timeout();
        let exchange = async {
            let mut handle = handle;
            let mut stream = handle
                .open_bidirectional_stream()
                .await
                .map_err(|e| RequestError::Unreachable(e.to_string()))?;
            let n = protocol::send(&mut stream, request)
                .await
                .map_err(|e| RequestError::Unreachable(e.to_string()))?;
            self.household()
                .tx_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            let (answer, n) = protocol::recv(&mut stream)
                .await
                .map_err(|e| RequestError::Unreachable(format!("answer from {peer}: {e}")))?;
            self.household()
                .rx_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            match answer {
                Message::Refused { reason } => Err(RequestError::Refused(reason)),
                answer => Ok((answer, stream)),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RequestError::TimedOut)?
    }

    /// Answers one request stream from `peer`. The request must arrive,
    /// and the answer be written, within `net.timeout` each (a stream
    /// never read or never written is closed); blob answers share the
    /// connection's `budget` of bytes in flight.
    pub(super) async fn answer(
        self: Arc<Self>,
        peer: PeerId,
        mut stream: BidirectionalStream,
        budget: Arc<Semaphore>,
    ) {
        let timeout = self.net_timeout();
        let request = match tokio::time::timeout(timeout, protocol::recv(&mut stream)).await {
            Ok(Ok((request, n))) => {
                self.household()
                    .rx_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
                request
            }
            Ok(Err(e)) => {
                tracing::warn!("request from {peer}: {e}");
                let _ = tokio::time::timeout(timeout, self.reply(&mut stream, &refused(e))).await;
                return;
            }
            Err(_) => {
                tracing::warn!("request from {peer}: none within net.timeout; stream closed");
                let _ = stream.close().await;
                return;
            }
        };
        tracing::debug!("request from {peer}: {request:?}");
        let answer = match request {
            Message::Changes { area, since } => self.changes(peer, area, since).await,
            Message::Pull { area } => self
                .pull(peer, area)
                .await
                .map(|(applied, conflicts)| Message::Pulled { applied, conflicts }),
            Message::Holds { area, path, hash } => self.holds(peer, area, path, hash).await,
            Message::ReadBlob(ref range) | Message::ReadOutboard(ref range) => {
                // Held until the bytes are written: at most the budget is
                // in memory per connection. The semaphore is never closed.
                let mib = range
                    .len
                    .div_ceil(1 << 20)
                    .clamp(1, ANSWER_BUDGET_MIB.into());
                let Ok(_permit) = budget.acquire_many(mib as u32).await else {
                    return;
                };
                let outboard = matches!(request, Message::ReadOutboard(_));
                match self.read_blob(peer, range.clone(), outboard).await {
                    Ok(bytes) => {
                        let header = Message::Blob {
                            len: bytes.len() as u64,
                        };
                        let send = async {
                            self.reply(&mut stream, &header).await.is_ok()
                                && stream.write_all(&bytes).await.is_ok()
                        };
                        match tokio::time::timeout(timeout, send).await {
                            Ok(true) => {
                                self.household()
                                    .tx_bytes
                                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                                let _ = stream.close().await;
                            }
                            Ok(false) => {}
                            Err(_) => tracing::warn!(
                                "answer to {peer}: not taken within net.timeout; stream closed"
                            ),
                        }
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            other => Err(RequestError::Refused(format!(
                "{} is not a request",
                format!("{other:?}").split([' ', '{']).next().unwrap_or("?")
            ))),
        };
        let answer = answer.unwrap_or_else(|e| {
            tracing::info!("refused a request from {peer}: {e}");
            refused(e)
        });
        if tokio::time::timeout(timeout, self.reply(&mut stream, &answer))
            .await
            .is_err()
        {
            tracing::warn!("answer to {peer}: not taken within net.timeout; stream closed");
        }
        let _ = stream.close().await;
    }

    pub(super) async fn reply(
        &self,
        stream: &mut BidirectionalStream,
        message: &Message,
    ) -> Result<(), ()> {
        match protocol::send(stream, message).await {
            Ok(n) => {
                self.household()
                    .tx_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => Err(()),
        }
    }

    /// Answers [`Message::Changes`]: a page of the feed after `since`
    /// (see [`super::core::Core::changes`]).
    async fn changes(
        &self,
        peer: PeerId,
        area: Vec<u8>,
        since: Seq,
    ) -> Result<Message, RequestError> {
        let core = Arc::clone(&self.core);
        let page = blocking(move || core.changes(peer, &area, since)).await?;
        Ok(Message::Page {
            records: page.records,
            last: page.last,
            more: page.more,
        })
    }
}

/// A refusal carrying `e`'s text, cut to at most 1000 bytes at a
/// character boundary (the protocol refuses reasons over 1024).
pub(super) fn refused<E: std::fmt::Display>(e: E) -> Message {
    let mut reason = e.to_string();
    reason.truncate(reason.floor_char_boundary(1000));
    Message::Refused { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_refusal_is_cut_at_a_character_boundary() {
        // 999 bytes, then a two-byte character across byte 1000.
        let text = format!("{}é and more", "x".repeat(999));
        let Message::Refused { reason } = refused(text) else {
            panic!("not a refusal");
        };
        assert_eq!(reason, "x".repeat(999));
        assert!(Message::Refused { reason }.validate().is_ok());
    }
}
