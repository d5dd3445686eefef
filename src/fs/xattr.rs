//! Extended attributes. `user.*` attributes are stored in LMDB (values up
//! to 64 KiB); `user.realize.mode` (read and write), `user.realize.state`,
//! `user.realize.hash` and `user.realize.holders` (read-only) mirror
//! `DIR/.ctl/status` and `mode` (DESIGN.md). Other namespaces are not
//! supported.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::ctl::CtlNode;
use super::{Error, Fs, Result};
use crate::ids::Ino;
use crate::store::xattrs::MAX_VALUE;

const REALIZE: &[u8] = b"user.realize.";
const REALIZE_NAMES: [&str; 4] = ["mode", "state", "hash", "holders"];
/// `setxattr` flags (linux/xattr.h).
const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;

/// Checks `ino` and `name` for an attribute call: namespace inodes and
/// `user.` names only.
fn check(ino: Ino, name: &[u8]) -> Result<()> {
    if CtlNode::parse(ino).is_some() {
        return Err(Error::Unsupported(
            "control files have no attributes".into(),
        ));
    }
    if name.len() > 255 {
        return Err(Error::Range);
    }
    if !name.starts_with(b"user.") {
        return Err(Error::Unsupported(
            "only user.* attributes are supported".into(),
        ));
    }
    Ok(())
}

impl Fs {
    /// The value of attribute `name` of `ino`.
    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let name = name.as_bytes();
        if let Err(e) = check(ino, name) {
            // Lookups of security.* and system.* are routine: "none here".
            return Err(
                if matches!(e, Error::Unsupported(_)) && CtlNode::parse(ino).is_none() {
                    Error::NoData
                } else {
                    e
                },
            );
        }
        let txn = self.store.read()?;
        let Some(field) = name.strip_prefix(REALIZE) else {
            return self.store.xattrs.get(&txn, ino, name)?.ok_or(Error::NoData);
        };
        let inode = self.tree.inode(&txn, ino)?;
        let status = self.entry_status(&txn, ino, &inode)?;
        match field {
            b"mode" => Ok(self
                .tree
                .effective_mode(&txn, ino)?
                .0
                .as_str()
                .as_bytes()
                .to_vec()),
            b"state" => Ok(status.state.as_bytes().to_vec()),
            b"hash" => status
                .hash
                .map(|h| crate::format::format_hash(Some(&h)).into_bytes())
                .ok_or(Error::NoData),
            b"holders" => Ok(status.holders.into_bytes()),
            _ => Err(Error::NoData),
        }
    }

    /// Sets attribute `name` of `ino` (`flags`: XATTR_CREATE, XATTR_REPLACE).
    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        let name = name.as_bytes();
        check(ino, name)?;
        if value.len() > MAX_VALUE {
            return Err(Error::TooBig);
        }
        if let Some(field) = name.strip_prefix(REALIZE) {
            let path = self.mount_path(ino);
            let command = format!("setxattr {}", String::from_utf8_lossy(name));
            if field != b"mode" {
                let e = Error::Perm("read-only attribute".into());
                return Err(self.refuse(&path, &command, e));
            }
            let word = std::str::from_utf8(value)
                .unwrap_or("?")
                .trim_end_matches('\n');
            let mode =
                super::ctl::parse_mode_word(word).map_err(|e| self.refuse(&path, &command, e))?;
            return Ok(self.tree.set_mode(ino, mode)?);
        }
        let mut wtxn = self.store.write()?;
        self.tree.inode(&wtxn, ino)?;
        let exists = self.store.xattrs.get(&wtxn, ino, name)?.is_some();
        if flags & XATTR_CREATE != 0 && exists {
            return Err(Error::Exists("attribute exists".into()));
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(Error::NoData);
        }
        self.store.xattrs.put(&mut wtxn, ino, name, value)?;
        wtxn.commit()?;
        Ok(())
    }

    /// The attribute names of `ino`, each followed by a NUL.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        if CtlNode::parse(ino).is_some() {
            return Ok(Vec::new());
        }
        let txn = self.store.read()?;
        let inode = self.tree.inode(&txn, ino)?;
        let mut out = Vec::new();
        for field in REALIZE_NAMES {
            if field == "hash" && inode.hash.is_none() {
                continue;
            }
            out.extend_from_slice(REALIZE);
            out.extend_from_slice(field.as_bytes());
            out.push(0);
        }
        for name in self.store.xattrs.names(&txn, ino)? {
            out.extend_from_slice(&name);
            out.push(0);
        }
        Ok(out)
    }

    /// Removes attribute `name` of `ino`.
    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let name = name.as_bytes();
        check(ino, name).map_err(|e| {
            if matches!(e, Error::Unsupported(_)) {
                Error::NoData
            } else {
                e
            }
        })?;
        if name.starts_with(REALIZE) {
            if name == b"user.realize.mode" {
                return Ok(self.tree.set_mode(ino, None)?);
            }
            return Err(Error::Perm("read-only attribute".into()));
        }
        let mut wtxn = self.store.write()?;
        if !self.store.xattrs.remove(&mut wtxn, ino, name)? {
            return Err(Error::NoData);
        }
        wtxn.commit()?;
        Ok(())
    }
}
