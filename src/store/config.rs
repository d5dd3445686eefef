//! Settings of `/.ctl/config` (DESIGN.md "Settings"). Database `config`:
//! key → value text, only for keys that were set; a key never set reads as
//! its default. [`SETTINGS`] is the one table of keys, defaults and checks.

use std::time::Duration;

use heed::types::Str;
use heed::{Database, RoTxn, RwTxn};

use super::Result;
use crate::format;

/// One setting: its key, its default and how a value is checked.
pub struct Setting {
    /// The key, as written in `/.ctl/config`.
    pub key: &'static str,
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
        key: "name",
        default: "",
        check: check_name,
    },
    Setting {
        key: "mode.local",
        default: "real",
        check: check_mode,
    },
    Setting {
        key: "mode.remote",
        default: "unreal",
        check: check_mode,
    },
    Setting {
        key: "copies",
        default: "1",
        check: check_count,
    },
    Setting {
        key: "cache.max",
        default: "10%",
        check: check_size_or_percent,
    },
    Setting {
        key: "cache.min_free",
        default: "1G",
        check: check_size,
    },
    Setting {
        key: "cache.verify",
        default: "on",
        check: check_switch,
    },
    Setting {
        key: "consensus.rest",
        default: "10s",
        check: check_duration,
    },
    Setting {
        key: "consensus.immediate",
        default: "delete,rename",
        check: check_ops,
    },
    Setting {
        key: "consensus.interval",
        default: "0",
        check: check_duration,
    },
    Setting {
        key: "consensus.timeout",
        default: "60s",
        check: check_duration,
    },
    Setting {
        key: "net.timeout",
        default: "30s",
        check: check_duration,
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
    /// defaults to the host name. Unknown keys read as empty.
    pub fn get(&self, txn: &RoTxn, key: &str) -> Result<String> {
        if let Some(value) = self.db.get(txn, key)? {
            return Ok(value.to_string());
        }
        if key == "name" {
            return Ok(host_name());
        }
        Ok(SETTINGS
            .iter()
            .find(|s| s.key == key)
            .map(|s| s.default.to_string())
            .unwrap_or_default())
    }

    /// Checks and stores `value` for `key`.
    pub fn set(
        &self,
        wtxn: &mut RwTxn,
        key: &str,
        value: &str,
    ) -> std::result::Result<(), SetError> {
        let setting = SETTINGS
            .iter()
            .find(|s| s.key == key)
            .ok_or_else(|| SetError::UnknownKey(key.to_string()))?;
        (setting.check)(value).map_err(SetError::BadValue)?;
        self.db.put(wtxn, key, value).map_err(super::Error::from)?;
        Ok(())
    }

    /// A duration setting (checked when stored, so a bad stored value falls
    /// back to the default).
    pub fn duration(&self, txn: &RoTxn, key: &str) -> Result<Duration> {
        let value = self.get(txn, key)?;
        Ok(format::parse_duration(&value).unwrap_or_else(|_| {
            SETTINGS
                .iter()
                .find(|s| s.key == key)
                .and_then(|s| format::parse_duration(s.default).ok())
                .unwrap_or_default()
        }))
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
        for s in SETTINGS.iter().filter(|s| s.key != "name") {
            assert_eq!((s.check)(s.default), Ok(()), "{}", s.key);
        }
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
