//! Identifiers shared by every part of realize, with their text forms.
//!
//! - [`PeerId`]: a peer, known by its ED25519 public key (RFC 8032),
//!   written as 52 characters of lowercase RFC 4648 base32 without padding
//!   (DESIGN.md "Words").
//!
//! Blob hashes (32 bytes, 64 lowercase hex characters in text), inode
//! numbers and sequence numbers are still plain `[u8; 32]` and `u64`
//! (`crate::store::Ino`); their newtypes belong here next.

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
