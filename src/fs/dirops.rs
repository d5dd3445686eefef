//! Operations that change the namespace: mkdir, create, symlink, unlink,
//! rmdir, rename, and the areas (top-level directories).
//!
//! Each runs inside one LMDB write transaction, which also serialises them:
//! the backing path is computed, the Real is changed, then the namespace
//! and the history op commit together. A crash between the two leaves a
//! difference that [`super::reconcile`] settles at the next mount.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::ctl::CtlNode;
use super::io::Opened;
use super::{Attr, Caller, Error, Fs, Result, check_new_name};
use crate::store::history::{Op, OpKind};
use crate::store::namespace::{Inode, Kind, Special, Timestamp};
use crate::store::{Ino, ROOT, RwTxn};

/// A removal from the Real that finds nothing to remove is fine: the
/// namespace is what the user sees.
fn gone_already_ok(result: std::io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// `renameat2` flags (linux/fs.h).
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;

impl Fs {
    /// Refuses an operation on `name` in `parent`, logging it to
    /// `/.ctl/errors` when it is the user's mistake rather than a lookup.
    fn refuse_entry(&self, parent: Ino, name: &[u8], op: &str, error: Error) -> Error {
        match error {
            Error::Perm(_)
            | Error::ReadOnly
            | Error::NameTooLong
            | Error::Invalid(_)
            | Error::CrossArea => self.refuse(&self.entry_path(parent, name), op, error),
            other => other,
        }
    }

    /// The mount path of entry `name` of `parent`, escaped and cut to 64
    /// bytes of name, for messages.
    pub fn entry_path(&self, parent: Ino, name: &[u8]) -> String {
        let mut path = self.mount_path(parent);
        if !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(&crate::format::escape(&name[..name.len().min(64)]));
        path
    }

    /// The mount path of `ino` (`/AREA/PATH`), escaped, for messages.
    pub fn mount_path(&self, ino: Ino) -> String {
        if let Some(CtlNode::Dump(node)) = CtlNode::parse(ino) {
            return self.dump_path(node);
        }
        if let Some(CtlNode::Dir { owner } | CtlNode::File { owner, .. }) = CtlNode::parse(ino) {
            let dir = if owner == ROOT {
                String::new()
            } else {
                self.mount_path(owner)
            };
            return format!("{dir}/{}", super::ctl::CTL_NAME);
        }
        let Ok(txn) = self.store.read() else {
            return "?".into();
        };
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            match self.store.namespace.get(&txn, at) {
                Ok(Some(inode)) if inode.parent != Ino::NONE => {
                    names.push(crate::format::escape(&inode.name));
                    at = inode.parent;
                }
                _ => return "?".into(),
            }
        }
        names.reverse();
        format!("/{}", names.join("/"))
    }

    /// Checks that `parent` is a directory of an area that may get a new
    /// entry `name`, which must not exist yet; returns its record.
    fn new_entry_parent(&self, wtxn: &RwTxn, parent: Ino, name: &[u8]) -> Result<Inode> {
        if let Some(node) = CtlNode::parse(parent) {
            return Err(Self::ctl_refusal(node));
        }
        check_new_name(name)?;
        if parent == ROOT {
            return Err(Error::Perm(
                "only areas (directories) live at the root".into(),
            ));
        }
        let dir = self.tree.inode(wtxn, parent)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if self.store.namespace.lookup(wtxn, parent, name)?.is_some() {
            return Err(Error::Exists("already exists".into()));
        }
        Ok(dir)
    }

    /// Creates directory `name` in `parent`; at the root, a new area.
    pub fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> Result<Attr> {
        let name = name.as_bytes();
        let perm = (mode & !umask & 0o7777) as u16;
        if parent == ROOT {
            return self
                .create_area(name, perm, caller)
                .map_err(|e| self.refuse_entry(parent, name, "mkdir", e));
        }
        let mut wtxn = self.store.write()?;
        let dir = self
            .new_entry_parent(&wtxn, parent, name)
            .map_err(|e| self.refuse_entry(parent, name, "mkdir", e))?;
        let path = self.tree.real_child(&wtxn, parent, name)?;
        self.real.mkdir(&path, perm)?;
        self.real.chmod(&path, perm)?;
        self.own(&path, caller)?;
        let mut inode = Inode::new(parent, name, Kind::Dir, perm, dir.area);
        (inode.uid, inode.gid) = (caller.uid, caller.gid);
        let ino = self.tree.insert(&mut wtxn, parent, name, &inode)?;
        let area_path = self.tree.area_path(&wtxn, ino)?;
        self.tree.record(
            &mut wtxn,
            dir.area,
            crate::sync::Tree::op(OpKind::Mkdir, area_path, None),
        )?;
        let attr = self.attr_of(&wtxn, ino, &inode)?;
        wtxn.commit()?;
        Ok(attr)
    }

    /// Creates and opens regular file `name` in `parent` with permission
    /// bits `mode` (the umask already applied) and open `flags`.
    /// Its create op is recorded once it is closed and has rested.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
        passthrough: bool,
    ) -> Result<(Attr, Opened)> {
        let name = name.as_bytes();
        let perm = (mode & 0o7777) as u16;
        let mut wtxn = self.store.write()?;
        let dir = self
            .new_entry_parent(&wtxn, parent, name)
            .map_err(|e| self.refuse_entry(parent, name, "create", e))?;
        let path = self.tree.real_child(&wtxn, parent, name)?;
        let file = self
            .real
            .open_file(&path, crate::real::Open::create_new(u32::from(perm)))?;
        self.own(&path, caller)?;
        let mut inode = Inode::new(parent, name, Kind::File, perm, dir.area);
        (inode.uid, inode.gid) = (caller.uid, caller.gid);
        let ino = self.tree.insert(&mut wtxn, parent, name, &inode)?;
        let attr = self.attr_of(&wtxn, ino, &inode)?;
        wtxn.commit()?;
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        self.tree.recorder.touched(ino, false);
        if writable {
            self.tree.recorder.opened_for_write(ino);
        }
        let file = if passthrough || writable {
            file
        } else {
            self.real.open_file(&path, crate::real::Open::read())?
        };
        Ok((attr, self.open_real(ino, file, writable, passthrough)))
    }

    /// Makes FIFO, socket or device node `name` in `parent` (`mode`: its
    /// `S_IFMT` and permission bits, the umask applied; `rdev`: its device
    /// number). It lives in the Real of this peer only: nothing is
    /// recorded, and `status` calls it `local`. A regular file (mknod
    /// with S_IFREG) is made as by `create`, recorded once it has rested.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> Result<Attr> {
        if mode & libc::S_IFMT == libc::S_IFREG || mode & libc::S_IFMT == 0 {
            let (attr, opened) = self.create(parent, name, mode, libc::O_RDONLY, caller, false)?;
            self.release(opened.fh)?;
            return Ok(attr);
        }
        let name = name.as_bytes();
        let Some(special) = Special::from_mode(mode, rdev) else {
            let e = Error::Invalid("mknod makes FIFOs, sockets, devices and files".into());
            return Err(self.refuse_entry(parent, name, "mknod", e));
        };
        let perm = (mode & 0o7777) as u16;
        let mut wtxn = self.store.write()?;
        let dir = self
            .new_entry_parent(&wtxn, parent, name)
            .map_err(|e| self.refuse_entry(parent, name, "mknod", e))?;
        let path = self.tree.real_child(&wtxn, parent, name)?;
        self.real
            .mknod(&path, special.format() | u32::from(perm), rdev)?;
        self.real.chmod(&path, perm)?;
        self.own(&path, caller)?;
        let mut inode = Inode::new(parent, name, Kind::Special(special), perm, dir.area);
        (inode.uid, inode.gid) = (caller.uid, caller.gid);
        let ino = self.tree.insert(&mut wtxn, parent, name, &inode)?;
        let attr = self.attr_of(&wtxn, ino, &inode)?;
        wtxn.commit()?;
        Ok(attr)
    }

    /// Gives `path` in the Real to `caller` when realize runs as root
    /// (ownership is this machine's, never sent to peers; otherwise it is
    /// kept in the namespace only).
    pub(super) fn own(&self, path: &crate::real::RealPath, caller: Caller) -> Result<()> {
        if nix::unistd::geteuid().is_root() {
            self.real.chown(path, Some(caller.uid), Some(caller.gid))?;
        }
        Ok(())
    }

    /// Creates symlink `name` → `target` in `parent`, recorded at once as a
    /// create whose hash is that of the target text.
    pub fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &[u8],
        caller: Caller,
    ) -> Result<Attr> {
        let name = name.as_bytes();
        let mut wtxn = self.store.write()?;
        let dir = self
            .new_entry_parent(&wtxn, parent, name)
            .map_err(|e| self.refuse_entry(parent, name, "symlink", e))?;
        let path = self.tree.real_child(&wtxn, parent, name)?;
        self.real.symlink(target, &path)?;
        self.own(&path, caller)?;
        let mut inode = Inode::new(parent, name, Kind::Symlink, 0o777, dir.area);
        (inode.uid, inode.gid) = (caller.uid, caller.gid);
        inode.target = target.to_vec();
        inode.size = target.len() as u64;
        inode.hash = Some(crate::blob::hash_bytes(target));
        let ino = self.tree.insert(&mut wtxn, parent, name, &inode)?;
        let area_path = self.tree.area_path(&wtxn, ino)?;
        self.tree.record(
            &mut wtxn,
            dir.area,
            crate::sync::Tree::op(OpKind::Create, area_path, inode.hash),
        )?;
        let attr = self.attr_of(&wtxn, ino, &inode)?;
        wtxn.commit()?;
        Ok(attr)
    }

    /// The existing entry `name` of `parent` that `op` (unlink, rmdir) is
    /// about to remove; the control tree is refused with EPERM.
    fn entry_to_remove(
        &self,
        txn: &RwTxn,
        parent: Ino,
        name: &[u8],
        op: &str,
    ) -> Result<(Ino, Inode)> {
        if let Some(node) = CtlNode::parse(parent) {
            return Err(self.refuse_entry(parent, name, op, Self::ctl_refusal(node)));
        }
        if name == super::ctl::CTL_NAME.as_bytes() {
            let e = Error::Perm("the control tree cannot be changed".into());
            return Err(self.refuse_entry(parent, name, op, e));
        }
        let ino = self
            .store
            .namespace
            .lookup(txn, parent, name)?
            .ok_or_else(Error::not_found)?;
        Ok((ino, self.tree.inode(txn, ino)?))
    }

    /// Removes file or symlink `name` from `parent`. An open file stays
    /// readable through its handles. A file never recorded leaves no op.
    pub fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let name = name.as_bytes();
        let mut wtxn = self.store.write()?;
        let (ino, inode) = self.entry_to_remove(&wtxn, parent, name, "unlink")?;
        if inode.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        let area_path = self.tree.area_path(&wtxn, ino)?;
        let path = self.tree.real_path(&wtxn, ino)?;
        // A recorded file's bytes stay restorable: moved, not removed.
        let kept = self.tree.stash_replaced(&wtxn, ino, &path)?;
        if kept.is_none() {
            gone_already_ok(self.real.remove_file(&path))?;
        }
        self.store.namespace.unlink(&mut wtxn, parent, name)?;
        self.tree.touch_dir(&mut wtxn, parent)?;
        let (area, hash) = (inode.area, inode.hash);
        // Never recorded, but over what peers see (renamed there): their
        // version goes too.
        let shown = hash.is_none() && self.tree.shown_to_peers(&wtxn, area, &area_path)?;
        self.tree.drop_inode(&mut wtxn, ino, inode)?;
        self.tree.left_empty(&wtxn, parent)?;
        if hash.is_some() || shown {
            self.tree.record(
                &mut wtxn,
                area,
                crate::sync::Tree::op(OpKind::Delete, area_path, hash),
            )?;
        }
        wtxn.commit()?;
        if let Some((file, hash)) = kept {
            self.tree.stash_to_cache(&file, hash)?;
        }
        Ok(())
    }

    /// Removes empty directory `name` from `parent`; at the root, an area.
    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let name = name.as_bytes();
        let mut wtxn = self.store.write()?;
        let (ino, inode) = self.entry_to_remove(&wtxn, parent, name, "rmdir")?;
        if parent == ROOT {
            drop(wtxn);
            return self.remove_area(name);
        }
        if inode.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if !self.store.namespace.is_empty(&wtxn, ino)? {
            return Err(Error::NotEmpty);
        }
        let area_path = self.tree.area_path(&wtxn, ino)?;
        self.real.remove_dir(&self.tree.real_path(&wtxn, ino)?)?;
        self.store.namespace.unlink(&mut wtxn, parent, name)?;
        self.tree.touch_dir(&mut wtxn, parent)?;
        let area = inode.area;
        self.tree.drop_inode(&mut wtxn, ino, inode)?;
        self.tree.left_empty(&wtxn, parent)?;
        self.tree.record(
            &mut wtxn,
            area,
            crate::sync::Tree::op(OpKind::Rmdir, area_path, None),
        )?;
        wtxn.commit()?;
        Ok(())
    }

    /// Renames `name` in `parent` to `newname` in `newparent`, within one
    /// area. `flags`: RENAME_NOREPLACE is honoured; RENAME_EXCHANGE is
    /// refused with EINVAL. A recorded entry gets one rename op.
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        let (name, newname) = (name.as_bytes(), newname.as_bytes());
        self.rename_checked(parent, name, newparent, newname, flags)
            .map_err(|e| self.refuse_entry(newparent, newname, "rename", e))
    }

    fn rename_checked(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        flags: u32,
    ) -> Result<()> {
        if flags & RENAME_EXCHANGE != 0 {
            return Err(Error::Invalid("RENAME_EXCHANGE is not supported".into()));
        }
        if let Some(node) = CtlNode::parse(parent).or(CtlNode::parse(newparent)) {
            return Err(Self::ctl_refusal(node));
        }
        if name == super::ctl::CTL_NAME.as_bytes() {
            return Err(Error::Perm("the control tree cannot be changed".into()));
        }
        check_new_name(newname)?;
        if parent == ROOT || newparent == ROOT {
            return Err(Error::Perm(
                "areas cannot be renamed, and files cannot move to the root".into(),
            ));
        }
        let mut wtxn = self.store.write()?;
        let ns = &self.store.namespace;
        let ino = ns
            .lookup(&wtxn, parent, name)?
            .ok_or_else(Error::not_found)?;
        let mut inode = self.tree.inode(&wtxn, ino)?;
        let newdir = self.tree.inode(&wtxn, newparent)?;
        if newdir.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if newdir.area != inode.area {
            return Err(Error::CrossArea);
        }
        let target = ns.lookup(&wtxn, newparent, newname)?;
        if target == Some(ino) {
            return Ok(());
        }
        let target = match target {
            Some(_) if flags & RENAME_NOREPLACE != 0 => {
                return Err(Error::Exists("target exists".into()));
            }
            Some(t) => {
                let t_inode = self.tree.inode(&wtxn, t)?;
                match (inode.kind == Kind::Dir, t_inode.kind == Kind::Dir) {
                    (true, false) => return Err(Error::NotDir),
                    (false, true) => return Err(Error::IsDir),
                    (true, true) if !ns.is_empty(&wtxn, t)? => return Err(Error::NotEmpty),
                    _ => Some((t, t_inode)),
                }
            }
            None => None,
        };
        let old_path = self.tree.area_path(&wtxn, ino)?;
        let from = self.tree.real_child(&wtxn, parent, name)?;
        let to = self.tree.real_child(&wtxn, newparent, newname)?;
        // The bytes of a recorded file renamed over stay restorable.
        let kept = match &target {
            Some((t, t_inode)) if t_inode.kind == Kind::File => {
                self.tree.stash_replaced(&wtxn, *t, &to)?
            }
            _ => None,
        };
        if inode.unreal {
            // No bytes in the Real; a stale file in the way must go.
            gone_already_ok(self.real.remove_file(&to))?;
        } else {
            self.real.rename(&from, &to, false)?;
        }
        // A special file is never recorded: what peers see at the path it
        // replaces is deleted.
        let special = matches!(inode.kind, Kind::Special(_));
        let replaced = match &target {
            Some((t, t_inode)) if special => {
                let new_path = self.tree.area_path(&wtxn, *t)?;
                (t_inode.hash.is_some()
                    || self.tree.shown_to_peers(&wtxn, inode.area, &new_path)?)
                .then_some((new_path, t_inode.hash))
            }
            _ => None,
        };
        if let Some((t, t_inode)) = target {
            ns.unlink(&mut wtxn, newparent, newname)?;
            self.tree.drop_inode(&mut wtxn, t, t_inode)?;
        }
        ns.unlink(&mut wtxn, parent, name)?;
        inode.parent = newparent;
        inode.name = newname.to_vec();
        inode.ctime = Timestamp::now();
        ns.put(&mut wtxn, ino, &inode)?;
        ns.link(&mut wtxn, newparent, newname, ino)?;
        self.tree.touch_dir(&mut wtxn, parent)?;
        self.tree.touch_dir(&mut wtxn, newparent)?;
        self.tree.left_empty(&wtxn, parent)?;
        // A file never recorded moves what peers see at its old path too
        // (it was renamed over a recorded one).
        if inode.kind == Kind::Dir
            || inode.hash.is_some()
            || self.tree.shown_to_peers(&wtxn, inode.area, &old_path)?
        {
            let new_path = self.tree.area_path(&wtxn, ino)?;
            let op = Op {
                new_path: Some(new_path),
                ..crate::sync::Tree::op(OpKind::Rename, old_path, inode.hash)
            };
            self.tree.record(&mut wtxn, inode.area, op)?;
        }
        if let Some((path, hash)) = replaced {
            let op = crate::sync::Tree::op(OpKind::Delete, path, hash);
            self.tree.record(&mut wtxn, inode.area, op)?;
        }
        wtxn.commit()?;
        if let Some((file, hash)) = kept {
            self.tree.stash_to_cache(&file, hash)?;
        }
        Ok(())
    }

    /// Creates area `name`: a directory at the root, in mode
    /// `config mode.local`, with `DATA/real/NAME` behind it.
    pub fn create_area(&self, name: &[u8], perm: u16, caller: Caller) -> Result<Attr> {
        check_new_name(name)?;
        let ino = self
            .tree
            .make_area(name, perm, (caller.uid, caller.gid), None)?;
        let txn = self.store.read()?;
        let inode = self.tree.inode(&txn, ino)?;
        self.attr_of(&txn, ino, &inode)
    }

    /// Removes area `name`, which must be empty (ENOTEMPTY otherwise), with
    /// its history.
    pub fn remove_area(&self, name: &[u8]) -> Result<()> {
        let mut wtxn = self.store.write()?;
        let ino = self
            .store
            .namespace
            .lookup(&wtxn, ROOT, name)?
            .ok_or_else(|| Error::NotFound(format!("no area {}", crate::format::escape(name))))?;
        if !self.store.namespace.is_empty(&wtxn, ino)? {
            return Err(Error::NotEmpty);
        }
        gone_already_ok(self.real.remove_dir(&self.tree.real_path(&wtxn, ino)?))?;
        self.store.namespace.unlink(&mut wtxn, ROOT, name)?;
        self.store.namespace.remove(&mut wtxn, ino)?;
        self.store.xattrs.remove_all(&mut wtxn, ino)?;
        self.store.areas.remove(&mut wtxn, ino)?;
        self.store.history.remove_area(&mut wtxn, ino)?;
        self.store.versions.remove_area(&mut wtxn, ino)?;
        self.tree.touch_dir(&mut wtxn, ROOT)?;
        wtxn.commit()?;
        Ok(())
    }
}
