//! Identifiers shared by every part of realize, with their text forms.
//!
//! - [`PeerId`]: a peer, known by its ED25519 public key (RFC 8032),
//!   written as 52 characters of lowercase RFC 4648 base32 without padding
//!   (DESIGN.md "Words").
//!
//! - [`BlobHash`]: a blob, known by the BLAKE3 hash of its bytes,
//!   written as 64 lowercase hex characters.
//!
//! - [`Ino`]: an inode number, as FUSE and LMDB know it.
//! - [`Seq`]: a position in an area's history (its feed).
//!
//! Each serializes as its inner value (postcard writes a newtype as its
//! field), so records and frames keep their encoding.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;

/// A peer's public identity: its ED25519 public key.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PeerId(pub [u8; 32]);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// Why a peer id did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad peer id {0:?}: expected 52 lowercase base32 characters")]
pub struct BadPeerId(pub String);

impl FromStr for PeerId {
    type Err = BadPeerId;
    fn from_str(text: &str) -> Result<PeerId, BadPeerId> {
        let bad = || BadPeerId(text.to_string());
        if text.len() != 52 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let bytes = BASE32_NOPAD
            .decode(text.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        // Reject non-canonical encodings (trailing bits set).
        let id = PeerId(key);
        if id.to_string() != text {
            return Err(bad());
        }
        Ok(id)
    }
}

/// A blob's BLAKE3 hash (for blobs of more than one 64 KiB piece, the root
/// of its outboard: [`crate::blob`]). Text form: 64 lowercase hex digits.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    /// The 32 bytes, as LMDB keys and the wire take them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 32 bytes as a slice.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(blake3::Hash::from_bytes(self.0).to_hex().as_str())
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({self})")
    }
}

/// Why a blob hash did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad hash {0:?}: expected 64 lowercase hex digits")]
pub struct BadBlobHash(pub String);

impl FromStr for BlobHash {
    type Err = BadBlobHash;
    fn from_str(text: &str) -> Result<BlobHash, BadBlobHash> {
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(BadBlobHash(text.to_string()));
        }
        blake3::Hash::from_hex(text)
            .map(|h| BlobHash(*h.as_bytes()))
            .map_err(|_| BadBlobHash(text.to_string()))
    }
}

/// An inode number: the mount's root is 1 (FUSE_ROOT_ID, `store::ROOT`);
/// the others are allocated from a persistent counter and never reused.
/// 0 is no inode (the parent of an orphan: unlinked while open).
#[derive(
    Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Ino(pub u64);

impl Ino {
    /// No inode: the parent of an orphan, the area of the root.
    pub const NONE: Ino = Ino(0);
}

impl fmt::Display for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ino({})", self.0)
    }
}

impl From<Ino> for u64 {
    fn from(ino: Ino) -> u64 {
        ino.0
    }
}

/// A sequence number of an area's history: ops are numbered from 1 in
/// the order they were recorded, and a peer asks for the feed "since" the
/// last number it applied (0: from the start). The number an op took is
/// also the counter its author puts in the version vector and holder
/// clock of what the op made ([`crate::sync::local`]), where it is a
/// plain `u64` among other peers' counters.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// Before the first op: a peer that asks since `ZERO` gets all.
    pub const ZERO: Seq = Seq(0);

    /// The number after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}

impl From<Seq> for u64 {
    fn from(seq: Seq) -> u64 {
        seq.0
    }
}
