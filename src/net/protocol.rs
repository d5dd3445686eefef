//! The wire format between peers: one postcard message per frame, each
//! frame a 4-byte big-endian length then the message. A length over
//! [`MAX_MESSAGE`] is refused before anything is allocated, and every
//! message is validated after decoding.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ids::{BlobHash, Seq};
use crate::store::versions::Content;
use crate::store::versions::PathRecord;

/// Protocol version spoken here; a hello with another is refused.
pub const VERSION: u16 = 2;

/// Largest frame accepted, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Longest peer name, in bytes (as the `name` setting).
pub const MAX_NAME: usize = 64;

/// Most records in one [`Message::Page`].
pub const MAX_RECORDS: usize = 4096;

/// Longest path inside an area accepted on the wire, in bytes. Paths made
/// in steps (a directory entered, then a deeper one made) may exceed
/// PATH_MAX, as on ext4; a record with a path this long still fits a
/// frame ([`MAX_MESSAGE`]).
pub const MAX_PATH: usize = 32 * 1024;

/// Longest symlink target accepted, in bytes (PATH_MAX, the kernel's
/// bound on a target).
pub const MAX_TARGET: usize = 4096;

/// Most siblings a record may carry, and most entries of a version
/// vector or holder map: far more than a household has peers. The merge
/// keeps records within it too (see [`crate::store::versions`]).
pub use crate::store::versions::MAX_FANOUT;

/// Largest byte range one [`Message::ReadBlob`] may ask for.
pub const MAX_READ: u64 = 16 << 20;

/// A message between peers. Requests go one per bidirectional stream,
/// from either side of a connection; each has one answer (or
/// [`Message::Refused`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The first message each way on a new connection.
    Hello {
        /// [`VERSION`] of the sender.
        version: u16,
        /// The sender's `name` setting.
        name: String,
        /// The areas the sender shares with the receiver, each with the
        /// sender's latest sequence number in it.
        areas: Vec<(Vec<u8>, Seq)>,
        /// Random, drawn once per process: a hello with a new one comes
        /// from a restarted peer, whose old connection is dead.
        incarnation: u64,
    },
    /// Request: the records of `area` changed after `since` in the
    /// answerer's feed (`since` 0: the full index). Asking also tells the
    /// answerer that everything up to `since` is applied here.
    Changes {
        /// The area's name.
        area: Vec<u8>,
        /// Last sequence number already applied.
        since: Seq,
    },
    /// Answer to [`Message::Changes`].
    Page {
        /// Paths and what the answerer knows of them, in feed order.
        records: Vec<(Vec<u8>, PathRecord)>,
        /// Feed sequence number of the last record (or `since`).
        last: Seq,
        /// Whether more records follow `last`.
        more: bool,
    },
    /// Request (the notification of new history): pull `area` from the
    /// asker now; answered with [`Message::Pulled`] once done.
    Pull {
        /// The area's name.
        area: Vec<u8>,
    },
    /// Answer to [`Message::Pull`].
    Pulled {
        /// Records whose versions changed at the answerer.
        applied: u64,
        /// Records left in conflict there.
        conflicts: u64,
    },
    /// Request: a byte range of a blob the answerer holds.
    ReadBlob(BlobRange),
    /// Answer to [`Message::ReadBlob`]: `len` raw bytes follow the frame.
    Blob {
        /// Bytes that follow (fewer than asked at the end of the blob).
        len: u64,
    },
    /// Answer to any request that is refused.
    Refused {
        /// Why.
        reason: String,
    },
    /// Request: a byte range of the outboard of a blob the answerer holds
    /// (its piece chaining values, 32 bytes each, [`crate::blob`]);
    /// answered with [`Message::Blob`] and the raw bytes.
    ReadOutboard(BlobRange),
    /// Request, before the asker drops its own copy: whether the answerer
    /// holds blob `hash` real at `path` of `area` and will keep it.
    Holds {
        /// The area's name.
        area: Vec<u8>,
        /// Where the answerer is said to hold the blob.
        path: Vec<u8>,
        /// The blob.
        hash: BlobHash,
    },
    /// Answer to [`Message::Holds`]; `false` also while the answerer is
    /// dropping its own copy of the blob.
    Held {
        /// Whether the answerer holds the blob and keeps it.
        held: bool,
    },
}

/// `len` bytes at `offset` of blob `hash`, seen at `path` of `area`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BlobRange {
    /// The area's name.
    pub area: Vec<u8>,
    /// Where the asker saw the blob.
    pub path: Vec<u8>,
    /// The blob.
    pub hash: BlobHash,
    /// First byte.
    pub offset: u64,
    /// Bytes wanted, at most [`MAX_READ`].
    pub len: u64,
}

/// Checks a path received from a peer (DESIGN.md "The control tree"): no
/// empty, `.`, `..` or `.ctl` component, no NUL, at most [`MAX_PATH`]
/// bytes, components of at most 255 bytes. An area name is a path of
/// one component.
pub fn valid_path(path: &[u8]) -> bool {
    path.len() <= MAX_PATH
        && !path.contains(&0)
        && path
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b".." && c != b".ctl" && c.len() <= 255)
}

fn valid_area(area: &[u8]) -> bool {
    valid_path(area) && !area.contains(&b'/')
}

fn valid_record(record: &PathRecord) -> bool {
    record.siblings.len() <= MAX_FANOUT
        && record.holders.len() <= MAX_FANOUT
        && record.siblings.iter().all(|v| {
            v.vv.len() <= MAX_FANOUT
                && match &v.content {
                    Content::Symlink(target) => {
                        // symlink(2) refuses an empty target (ENOENT).
                        !target.is_empty() && target.len() <= MAX_TARGET && !target.contains(&0)
                    }
                    _ => true,
                }
        })
}

/// A frame that could not be read or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The stream failed or ended early.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// A frame longer than [`MAX_MESSAGE`].
    #[error("frame of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLong(usize),
    /// Bytes that do not decode as a message.
    #[error("undecodable message: {0}")]
    Decode(#[from] postcard::Error),
    /// A message that decodes but breaks a rule.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl Message {
    /// Checks the rules postcard cannot express.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Message::Hello { version, .. } if *version != VERSION => Err(ProtocolError::Invalid(
                format!("protocol version {version}, this peer speaks {VERSION}"),
            )),
            Message::Hello { name, .. }
                if name.is_empty()
                    || name.len() > MAX_NAME
                    || name.contains(char::is_whitespace) =>
            {
                Err(ProtocolError::Invalid("bad peer name".into()))
            }
            Message::Hello { areas, .. }
                if areas.len() > MAX_RECORDS || !areas.iter().all(|(a, _)| valid_area(a)) =>
            {
                Err(ProtocolError::Invalid("bad areas in hello".into()))
            }
            Message::Hello { .. } => Ok(()),
            Message::Holds { area, path, .. } if !valid_area(area) || !valid_path(path) => {
                Err(ProtocolError::Invalid("bad holds request".into()))
            }
            Message::Changes { area, .. } | Message::Pull { area } if !valid_area(area) => {
                Err(ProtocolError::Invalid("bad area name".into()))
            }
            Message::ReadBlob(r) | Message::ReadOutboard(r)
                if !valid_area(&r.area) || !valid_path(&r.path) || r.len > MAX_READ =>
            {
                Err(ProtocolError::Invalid("bad blob read".into()))
            }
            Message::Page { records, .. }
                if records.len() > MAX_RECORDS
                    || !records
                        .iter()
                        .all(|(p, r)| valid_path(p) && valid_record(r)) =>
            {
                Err(ProtocolError::Invalid("bad page of records".into()))
            }
            Message::Refused { reason } if reason.len() > 1024 => {
                Err(ProtocolError::Invalid("refusal too long".into()))
            }
            _ => Ok(()),
        }
    }
}

/// Writes one frame; returns the bytes sent.
pub async fn send<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
) -> Result<usize, ProtocolError> {
    let body = postcard::to_stdvec(message)?;
    if body.len() > MAX_MESSAGE {
        return Err(ProtocolError::TooLong(body.len()));
    }
    writer.write_all(&(body.len() as u32).to_be_bytes()).await?;
    writer.write_all(&body).await?;
    writer.flush().await?;
    Ok(4 + body.len())
}

/// Reads and validates one frame; returns the message and the bytes read.
pub async fn recv<R: AsyncRead + Unpin>(reader: &mut R) -> Result<(Message, usize), ProtocolError> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(ProtocolError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    let message: Message = postcard::from_bytes(&body)?;
    message.validate()?;
    Ok((message, 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(name: &str) -> Message {
        Message::Hello {
            version: VERSION,
            name: name.into(),
            areas: vec![(b"photos".to_vec(), Seq(7))],
            incarnation: 1,
        }
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let mut buf = Vec::new();
        let sent = send(&mut buf, &hello("laptop")).await.unwrap();
        assert_eq!(sent, buf.len());
        let (message, read) = recv(&mut buf.as_slice()).await.unwrap();
        assert_eq!((message, read), (hello("laptop"), sent));
    }

    #[tokio::test]
    async fn bad_frames_are_refused_before_use() {
        let mut huge = (MAX_MESSAGE as u32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(
            recv(&mut huge.as_slice()).await,
            Err(ProtocolError::TooLong(_))
        ));
        let garbage = [0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(
            recv(&mut garbage.as_slice()).await,
            Err(ProtocolError::Decode(_))
        ));
        let mut truncated = Vec::new();
        send(&mut truncated, &hello("x")).await.unwrap();
        truncated.pop();
        assert!(matches!(
            recv(&mut truncated.as_slice()).await,
            Err(ProtocolError::Io(_))
        ));
        let mut old = Vec::new();
        send(
            &mut old,
            &Message::Hello {
                version: 0,
                name: "x".into(),
                areas: Vec::new(),
                incarnation: 1,
            },
        )
        .await
        .unwrap();
        assert!(matches!(
            recv(&mut old.as_slice()).await,
            Err(ProtocolError::Invalid(_))
        ));
        let mut spaced = Vec::new();
        send(&mut spaced, &hello("two words")).await.unwrap();
        assert!(matches!(
            recv(&mut spaced.as_slice()).await,
            Err(ProtocolError::Invalid(_))
        ));
    }

    #[test]
    fn paths_from_peers_are_checked() {
        for good in [&b"a"[..], b"a/b c/d.txt", b".hidden/x", b"x.ctl"] {
            assert!(valid_path(good), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"/a",
            b"a/",
            b"a//b",
            b"a/./b",
            b"../a",
            b"a/.ctl/mode",
            b".ctl",
            b"a\0b",
        ] {
            assert!(!valid_path(bad), "{bad:?}");
        }
        assert!(!valid_path(&vec![b'x'; 256]));
        assert!(!valid_path(&vec![b'x'; MAX_PATH + 1]));
    }

    #[test]
    fn symlink_targets_from_peers_are_checked() {
        let link = |target: &[u8]| PathRecord {
            siblings: vec![crate::store::versions::Version {
                vv: Default::default(),
                content: Content::Symlink(target.to_vec()),
                mtime: 0,
                size: 0,
                perm: 0o777,
                author: crate::ids::PeerId([7; 32]),
            }],
            ..Default::default()
        };
        assert!(valid_record(&link(b"../x")));
        assert!(valid_record(&link(&[b'x'; MAX_TARGET])));
        // symlink(2) refuses an empty target: a page must not fail there.
        assert!(!valid_record(&link(b"")));
        assert!(!valid_record(&link(b"a\0b")));
        assert!(!valid_record(&link(&[b'x'; MAX_TARGET + 1])));
    }

    async fn refused(message: &Message) -> bool {
        let mut buf = Vec::new();
        send(&mut buf, message).await.unwrap();
        matches!(
            recv(&mut buf.as_slice()).await,
            Err(ProtocolError::Invalid(_))
        )
    }

    #[tokio::test]
    async fn requests_with_bad_fields_are_refused() {
        let record = PathRecord::default();
        assert!(
            refused(&Message::Page {
                records: vec![(b"../etc".to_vec(), record.clone())],
                last: Seq(1),
                more: false
            })
            .await
        );
        assert!(
            !refused(&Message::Page {
                records: vec![(b"ok/path".to_vec(), record)],
                last: Seq(1),
                more: false
            })
            .await
        );
        assert!(
            refused(&Message::Changes {
                area: b"a/b".to_vec(),
                since: Seq::ZERO
            })
            .await
        );
        assert!(
            refused(&Message::Pull {
                area: b".ctl".to_vec()
            })
            .await
        );
        let read = |len| {
            Message::ReadBlob(BlobRange {
                area: b"a".to_vec(),
                path: b"f".to_vec(),
                hash: BlobHash([0; 32]),
                offset: 0,
                len,
            })
        };
        assert!(refused(&read(MAX_READ + 1)).await);
        assert!(!refused(&read(MAX_READ)).await);
        assert!(
            refused(&Message::Refused {
                reason: "x".repeat(2000)
            })
            .await
        );
    }
}
