//! Requests for blob bytes: byte ranges of blobs and of their outboards
//! ([`Message::ReadBlob`], [`Message::ReadOutboard`]), asked of several
//! holders, and the check a peer makes before it drops a copy
//! ([`Message::Holds`]). What is sent is read and checked by the file
//! system core through [`super::core::Core::read_blob`]; what arrives is
//! verified there too, piece by piece.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::endpoint::Manager;
use super::protocol::{BlobRange, Message};
use super::requests::{RequestError, blocking};
use super::{Fetch, FetchOutcome};
use crate::ids::{BlobHash, PeerId};

/// How long a fetch waits for a holder before it asks the next one as
/// well: a holder that is slow or silent costs a read this much, not
/// `net.timeout`.
pub const HEDGE: Duration = Duration::from_secs(2);

impl Manager {
    /// Reads a byte range from the fetch's holders: the first connected
    /// one is asked, the next one too when it fails or has not answered
    /// within [`HEDGE`]; the first answer wins. The callback also learns
    /// which holders failed or were passed over.
    pub(super) async fn fetch_from_holders(self: Arc<Self>, fetch: Fetch) {
        let Fetch {
            holders,
            range,
            outboard,
            done,
        } = fetch;
        let mut waiting: Vec<PeerId> = holders
            .into_iter()
            .filter(|p| self.link_handle(*p).is_some())
            .rev()
            .collect();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ask = |peer: PeerId| {
            let (me, tx, range) = (Arc::clone(&self), tx.clone(), range.clone());
            tokio::spawn(async move {
                let _ = tx.send((peer, me.fetch(peer, range, outboard).await));
            });
        };
        let mut asked = Vec::new();
        let mut last = RequestError::Unreachable("no holder is connected".into());
        let mut running = 0;
        if let Some(peer) = waiting.pop() {
            ask(peer);
            asked.push(peer);
            running += 1;
        }
        while running > 0 {
            tokio::select! {
                Some((peer, result)) = rx.recv() => {
                    running -= 1;
                    match result {
                        Ok(bytes) => {
                            asked.retain(|p| *p != peer);
                            return done(FetchOutcome { result: Ok((peer, bytes)), passed_over: asked });
                        }
                        Err(e) => last = e,
                    }
                }
                _ = tokio::time::sleep(HEDGE), if !waiting.is_empty() => {}
            }
            // A failure, or a holder slower than HEDGE: ask the next.
            if let Some(peer) = waiting.pop() {
                ask(peer);
                asked.push(peer);
                running += 1;
            }
        }
        done(FetchOutcome {
            result: Err(last),
            passed_over: asked,
        })
    }

    /// Answers [`Message::ReadBlob`] (or [`Message::ReadOutboard`] when
    /// `outboard`) with bytes of a blob `peer` may read (see
    /// [`super::core::Core::read_blob`]).
    pub(super) async fn read_blob(
        &self,
        peer: PeerId,
        range: BlobRange,
        outboard: bool,
    ) -> Result<Vec<u8>, RequestError> {
        let core = Arc::clone(&self.core);
        blocking(move || core.read_blob(peer, &range, outboard)).await
    }

    /// Answers [`Message::Holds`] (see [`super::core::Core::holds`]).
    pub(super) async fn holds(
        &self,
        peer: PeerId,
        area: Vec<u8>,
        path: Vec<u8>,
        hash: BlobHash,
    ) -> Result<Message, RequestError> {
        let core = Arc::clone(&self.core);
        let held = blocking(move || core.holds(peer, &area, &path, hash)).await?;
        Ok(Message::Held { held })
    }

    /// Reads `range` of a blob (or of its outboard) from `peer`.
    pub(super) async fn fetch(
        &self,
        peer: PeerId,
        range: BlobRange,
        outboard: bool,
    ) -> Result<Vec<u8>, RequestError> {
        let (offset, len) = (range.offset, range.len);
        let request = if outboard {
            Message::ReadOutboard(range)
        } else {
            Message::ReadBlob(range)
        };
        let started = Instant::now();
        tracing::debug!("fetch {len} bytes at {offset} from {peer}");
        let (answer, mut stream) = self.ask(peer, &request).await?;
        let Message::Blob { len: sent } = answer else {
            return Err(RequestError::Refused(format!("{answer:?} for a blob read")));
        };
        if sent > len {
            return Err(RequestError::Refused(format!(
                "{sent} bytes for {len} asked"
            )));
        }
        let mut bytes = vec![0; sent as usize];
        let left = self.net_timeout().saturating_sub(started.elapsed());
        tokio::time::timeout(
            left.max(Duration::from_secs(1)),
            stream.read_exact(&mut bytes),
        )
        .await
        .map_err(|_| RequestError::TimedOut)?
        .map_err(|e| RequestError::Unreachable(format!("blob from {peer}: {e}")))?;
        self.household().rx_bytes.fetch_add(sent, Ordering::Relaxed);
        tracing::debug!("fetch at {offset}: done after {:?}", started.elapsed());
        Ok(bytes)
    }
}
