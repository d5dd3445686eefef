//! Settings of `/.ctl/config` (DESIGN.md "Settings"). Database `config`:
//! key → value text, only for keys that were set; a key never set reads as
//! its default. [`SETTINGS`] is the one table of keys, defaults and checks;
//! code names a setting by its [`Key`], so a misspelled key does not
//! compile, and user text becomes a [`Key`] in one place ([`Key::parse`]).

use std::time::Duration;

use heed::types::Str;
use heed::{Database, RoTxn, RwTxn};

use super::Result;
use crate::format;

/// A setting's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// `name`: this peer's name as others see it.
    Name,
    /// `mode.local`: mode of an area created here.
    ModeLocal,
    /// `mode.remote`: mode of an area accepted from a peer.
    ModeRemote,
    /// `copies`: other holders a blob needs before it may leave the Real.
    Copies,
    /// `cache.max`: the cache bound, a size or a percentage of the disk.
    CacheMax,
    /// `cache.min_free`: free space the cache leaves on its disk.
    CacheMinFree,
    /// `cache.verify`: whether reads from the cache are verified.
    CacheVerify,
    /// `consensus.rest`: quiet time before a write is recorded.
    ConsensusRest,
    /// `consensus.immediate`: ops that start a round at once.
    ConsensusImmediate,
    /// `consensus.interval`: period of automatic rounds (0: never).
    ConsensusInterval,
    /// `consensus.timeout`: how long a write to `/.ctl/consensus` blocks.
    ConsensusTimeout,
    /// `net.timeout`: how long a read waits for a holder.
    NetTimeout,
    /// `versions.keep`: how long a replaced or deleted version stays
    /// restorable (0: not kept).
    VersionsKeep,
    /// `versions.max`: space kept versions may take, a size or a
    /// percentage of the disk of DATA.
    VersionsMax,
}

impl Key {
    /// The setting of this key in [`SETTINGS`].
    fn setting(self) -> &'static Setting {
        // Every key has its line: checked by a test below.
        SETTINGS
            .iter()
            .find(|s| s.key == self)
            .unwrap_or(&SETTINGS[0])
    }

    /// The key as written in `/.ctl/config`.
    pub fn text(self) -> &'static str {
        self.setting().text
    }

    /// The key written `text`, if there is one.
    pub fn parse(text: &str) -> Option<Key> {
        SETTINGS.iter().find(|s| s.text == text).map(|s| s.key)
    }
}

/// One setting: its key, its default and how a value is checked.
pub struct Setting {
    /// The key.
    pub key: Key,
    /// The key, as written in `/.ctl/config`.
    pub text: &'static str,
    /// The default value text (`name` defaults to the host name instead).
    pub default: &'static str,
    /// Checks a value; the error text goes to `/.ctl/errors`.
    pub check: fn(&str) -> std::result::Result<(), String>,
}

fn check_name(v: &str) -> std::result::Result<(), String> {
    let ok = !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic());
    ok.then_some(())
        .ok_or_else(|| "a name is 1 to 64 printable ASCII characters without spaces".into())
}

fn check_mode(v: &str) -> std::result::Result<(), String> {
    crate::store::namespace::Mode::parse(v)
        .map(|_| ())
        .ok_or_else(|| format!("bad mode {v:?}: expected real or unreal"))
}

fn check_count(v: &str) -> std::result::Result<(), String> {
    match v.parse::<u32>() {
        Ok(n) if n <= 64 => Ok(()),
        _ => Err(format!(
            "bad count {v:?}: expected a whole number from 0 to 64"
        )),
    }
}

fn check_size(v: &str) -> std::result::Result<(), String> {
    format::parse_size(v).map(|_| ()).map_err(|e| e.to_string())
}

fn check_size_or_percent(v: &str) -> std::result::Result<(), String> {
    match v.strip_suffix('%') {
        Some(p) => match p.parse::<u8>() {
            Ok(1..=100) => Ok(()),
            _ => Err(format!("bad percentage {v:?}: expected 1% to 100%")),
        },
        None => check_size(v),
    }
}

fn check_switch(v: &str) -> std::result::Result<(), String> {
    matches!(v, "on" | "off")
        .then_some(())
        .ok_or_else(|| format!("bad switch {v:?}: expected on or off"))
}

fn check_duration(v: &str) -> std::result::Result<(), String> {
    format::parse_duration(v)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Ops that may start a round at once (`consensus.immediate`).
pub const IMMEDIATE_OPS: [&str; 7] = [
    "create",
    "edit",
    "overwrite",
    "rename",
    "delete",
    "mkdir",
    "rmdir",
];

fn check_ops(v: &str) -> std::result::Result<(), String> {
    if v == "-" {
        return Ok(());
    }
    match v.split(',').find(|op| !IMMEDIATE_OPS.contains(op)) {
        None => Ok(()),
        Some(op) => Err(format!(
            "unknown op {op:?}: expected - or a comma-separated list of {}",
            IMMEDIATE_OPS.join(",")
        )),
    }
}

/// Every setting, in the order `/.ctl/config` lists them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: Key::Name,
        text: "name",
        default: "",
        check: check_name,
    },
    Setting {
        key: Key::ModeLocal,
        text: "mode.local",
        default: "real",
        check: check_mode,
    },
    Setting {
        key: Key::ModeRemote,
        text: "mode.remote",
        default: "unreal",
        check: check_mode,
    },
    Setting {
        key: Key::Copies,
        text: "copies",
        default: "1",
        check: check_count,
    },
    Setting {
        key: Key::CacheMax,
        text: "cache.max",
        default: "10%",
        check: check_size_or_percent,
    },
    Setting {
        key: Key::CacheMinFree,
        text: "cache.min_free",
        default: "1G",
        check: check_size,
    },
    Setting {
        key: Key::CacheVerify,
        text: "cache.verify",
        default: "on",
        check: check_switch,
    },
    Setting {
        key: Key::ConsensusRest,
        text: "consensus.rest",
        default: "10s",
        check: check_duration,
    },
    Setting {
        key: Key::ConsensusImmediate,
        text: "consensus.immediate",
        default: "delete,rename",
        check: check_ops,
    },
    Setting {
        key: Key::ConsensusInterval,
        text: "consensus.interval",
        default: "0",
        check: check_duration,
    },
    Setting {
        key: Key::ConsensusTimeout,
        text: "consensus.timeout",
        default: "60s",
        check: check_duration,
    },
    Setting {
        key: Key::NetTimeout,
        text: "net.timeout",
        default: "30s",
        check: check_duration,
    },
    Setting {
        key: Key::VersionsKeep,
        text: "versions.keep",
        default: "30d",
        check: check_duration,
    },
    Setting {
        key: Key::VersionsMax,
        text: "versions.max",
        default: "5%",
        check: check_size_or_percent,
    },
];

/// Why a setting could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// No such key.
    #[error("unknown setting {0:?}")]
    UnknownKey(String),
    /// The value does not pass the key's check.
    #[error("{0}")]
    BadValue(String),
    /// LMDB failed.
    #[error(transparent)]
    Store(#[from] super::Error),
}

/// The config database.
pub struct ConfigDb {
    db: Database<'static, Str, Str>,
}

impl ConfigDb {
    pub(super) fn new(db: Database<'static, Str, Str>) -> ConfigDb {
        ConfigDb { db }
    }

    /// The value of `key`: the stored one, else its default. `name`
    /// defaults to the host name.
    pub fn get(&self, txn: &RoTxn, key: Key) -> Result<String> {
        if let Some(value) = self.db.get(txn, key.text())? {
            return Ok(value.to_string());
        }
        if key == Key::Name {
            return Ok(host_name());
        }
        Ok(key.setting().default.to_string())
    }

    /// Checks and stores `value` for `key`.
    pub fn set(
        &self,
        wtxn: &mut RwTxn,
        key: Key,
        value: &str,
    ) -> std::result::Result<(), SetError> {
        (key.setting().check)(value).map_err(SetError::BadValue)?;
        self.db
            .put(wtxn, key.text(), value)
            .map_err(super::Error::from)?;
        Ok(())
    }

    /// A duration setting (checked when stored, so a bad stored value falls
    /// back to the default).
    pub fn duration(&self, txn: &RoTxn, key: Key) -> Result<Duration> {
        let value = self.get(txn, key)?;
        Ok(format::parse_duration(&value)
            .or_else(|_| format::parse_duration(key.setting().default))
            .unwrap_or_default())
    }
}

/// This machine's host name, or `realize` when it has none.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|n| n.into_string().ok())
        .filter(|n| check_name(n).is_ok())
        .unwrap_or_else(|| "realize".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_passes_its_check() {
        for s in SETTINGS.iter().filter(|s| s.key != Key::Name) {
            assert_eq!((s.check)(s.default), Ok(()), "{}", s.text);
        }
    }

    #[test]
    fn every_key_has_one_line_of_the_table() {
        let keys = [
            Key::Name,
            Key::ModeLocal,
            Key::ModeRemote,
            Key::Copies,
            Key::CacheMax,
            Key::CacheMinFree,
            Key::CacheVerify,
            Key::ConsensusRest,
            Key::ConsensusImmediate,
            Key::ConsensusInterval,
            Key::ConsensusTimeout,
            Key::NetTimeout,
            Key::VersionsKeep,
            Key::VersionsMax,
        ];
        assert_eq!(keys.len(), SETTINGS.len());
        for key in keys {
            assert_eq!(SETTINGS.iter().filter(|s| s.key == key).count(), 1);
            assert_eq!(Key::parse(key.text()), Some(key));
        }
        assert_eq!(Key::parse("net.timeuot"), None);
    }

    #[test]
    fn checks_refuse_bad_values() {
        assert!(check_mode("sometimes").is_err());
        assert!(check_count("-1").is_err());
        assert!(check_count("65").is_err());
        assert!(check_size_or_percent("0%").is_err());
        assert!(check_size_or_percent("101%").is_err());
        assert_eq!(check_size_or_percent("25%"), Ok(()));
        assert_eq!(check_size_or_percent("2G"), Ok(()));
        assert!(check_duration("10").is_err());
        assert!(check_ops("delete,frobnicate").is_err());
        assert_eq!(check_ops("-"), Ok(()));
        assert!(check_name("two words").is_err());
        assert!(check_name("").is_err());
        assert!(check_switch("yes").is_err());
        assert_eq!(check_switch("off"), Ok(()));
    }
}
