//! Identity: this peer's ED25519 key pair and the peer id derived from it.
//!
//! A peer id is the 32-byte ED25519 public key (RFC 8032) written as 52
//! characters of lowercase RFC 4648 base32 without padding (DESIGN.md
//! "Words"). The private key is kept as its 32-byte seed in `DATA/key`,
//! mode 0600.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::ids::PeerId;
use ed25519_dalek::SigningKey;

/// Errors of key handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The key file is not 32 bytes.
    #[error("key file {0} is damaged: expected a 32-byte ED25519 seed")]
    Damaged(String),
    /// The system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// The key file may be read or written by other users (its mode, in
    /// octal, has group or other bits).
    #[error("key file {path} has mode {mode:04o}: other users may read it; run chmod 600 {path}")]
    Exposed {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// This peer's key pair.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A new random key pair.
    pub fn generate() -> Result<Identity, Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Random(e.to_string()))?;
        Ok(Identity {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Loads the seed from `path`; refuses a file whose mode lets group
    /// or other users in ([`Error::Exposed`]), as ssh does.
    pub fn load(path: &Path) -> Result<Identity, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::Exposed {
                path: path.display().to_string(),
                mode,
            });
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(io)?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Damaged(path.display().to_string()))?;
        Ok(Identity {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the seed to a new file at `path` with mode 0600; fails if the
    /// file exists.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(self.key.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The 32-byte ED25519 seed (the private key), for TLS.
    pub fn seed(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The peer id (public key).
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.key.verifying_key().to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_are_52_lowercase_base32_characters_and_parse_back() {
        let id = Identity::generate().unwrap().peer_id();
        let text = id.to_string();
        assert_eq!(text.len(), 52);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        );
        assert_eq!(text.parse::<PeerId>(), Ok(id));
        assert!(text.to_ascii_uppercase().parse::<PeerId>().is_err());
        assert!(text[..51].parse::<PeerId>().is_err());
        assert!(format!("{}1", &text[..51]).parse::<PeerId>().is_err());
    }

    #[test]
    fn keys_survive_save_and_load_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let id = Identity::generate().unwrap();
        id.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Identity::load(&path).unwrap().peer_id(), id.peer_id());
        assert!(
            id.save(&path).is_err(),
            "an existing key is never overwritten"
        );
    }

    #[test]
    fn a_key_file_other_users_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        Identity::generate().unwrap().save(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match Identity::load(&path) {
                Err(Error::Exposed { mode: m, .. }) => assert_eq!(m, mode),
                other => panic!("mode {mode:o}: {:?}", other.map(|i| i.peer_id())),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Identity::load(&path).is_ok());
    }
}
