//! `/.ctl/config`: `key value` per setting (read); `key value` (write).
//! Keys and checks are in [`crate::store::config::SETTINGS`].

use super::super::{Error, Fs, Result};
use super::usage;
use crate::store::Ino;
use crate::store::config::{Key, SETTINGS, SetError};

/// Every setting with its current value.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let txn = fs.store().read()?;
    let mut out = String::new();
    for setting in SETTINGS {
        let value = fs.store().config.get(&txn, setting.key)?;
        out.push_str(&format!("{} {value}\n", setting.text));
    }
    Ok(out)
}

/// `key value`: stores a setting. EINVAL for an unknown key or a value its
/// check refuses.
pub(super) fn write(fs: &Fs, _owner: Ino, fields: &[&str]) -> Result<()> {
    let [key, value] = fields else {
        return Err(usage("KEY VALUE"));
    };
    let key = Key::parse(key).ok_or_else(|| SetError::UnknownKey(key.to_string()));
    let key = key.map_err(|e| Error::Invalid(e.to_string()))?;
    let mut wtxn = fs.store().write()?;
    fs.store()
        .config
        .set(&mut wtxn, key, value)
        .map_err(|e| match e {
            SetError::Store(e) => Error::Store(e),
            other => Error::Invalid(other.to_string()),
        })?;
    wtxn.commit()?;
    Ok(())
}
