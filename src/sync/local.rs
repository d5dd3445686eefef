//! Local changes as versions: each op of the history (DESIGN.md "Sync")
//! becomes, in the same LMDB transaction, a version that dominates what
//! this peer knew of the path, and a holding of its blob.

use crate::ids::PeerId;
use crate::store::history::{Op, OpKind};
use crate::store::versions::{Holding, PathRecord};
use crate::store::{Ino, Result, RwTxn, Store};
use crate::sync::merge::{Content, Version, add_sibling, local_version};

/// What a local op leaves at its path (found in the namespace after the
/// op): content, mtime in seconds, size in bytes.
pub struct Left {
    /// The content.
    pub content: Content,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Size of a file's blob in bytes.
    pub size: u64,
    /// Permission bits (07777).
    pub perm: u16,
}

impl Left {
    /// What `version` left: its content, time, size and permission bits,
    /// to record again as this peer's (a conflict copy, a resolution).
    pub fn of<A: Ord>(version: &Version<A>) -> Left {
        Left {
            content: version.content.clone(),
            mtime: version.mtime,
            size: version.size,
            perm: version.perm,
        }
    }

    /// A deletion at `mtime` (seconds since the epoch).
    pub fn gone(mtime: i64) -> Left {
        Left {
            content: Content::Deleted,
            mtime,
            size: 0,
            perm: 0,
        }
    }
}

/// Writes the versions made by `op` of `area` by peer `me`. `left` is
/// what the op left at `op.path` (ignored for rename and removals). Each
/// path changed takes the area's next sequence number, which is both its
/// place in the feed and the version's counter for `me`.
pub fn note(
    store: &Store,
    wtxn: &mut RwTxn,
    me: PeerId,
    area: Ino,
    op: &Op,
    left: Option<Left>,
) -> Result<()> {
    match op.kind {
        OpKind::Create | OpKind::Edit | OpKind::Overwrite | OpKind::Mkdir => {
            if let Some(left) = left {
                put_local(store, wtxn, me, area, &op.path, left, true)?;
            }
        }
        OpKind::Delete | OpKind::Rmdir => {
            let gone = Left::gone(op.time.secs);
            put_local(store, wtxn, me, area, &op.path, gone, false)?;
        }
        OpKind::Rename => {
            let Some(new_path) = &op.new_path else {
                return Ok(());
            };
            // The entry itself, then everything below it, moves.
            let mut moved = Vec::new();
            if let Some(record) = store.versions.get(wtxn, area, &op.path)? {
                moved.push((op.path.clone(), record));
            }
            moved.extend(store.versions.below(wtxn, area, &op.path)?);
            for (old, record) in moved {
                let Some(winner) = record.siblings.first() else {
                    continue;
                };
                if winner.content == Content::Deleted {
                    continue;
                }
                let mut new = new_path.clone();
                new.extend_from_slice(&old[op.path.len()..]);
                let left = Left::of(winner);
                let held = match &winner.content {
                    Content::File(hash) => record
                        .holders
                        .get(&me)
                        .is_some_and(|h| h.hash == Some(*hash)),
                    _ => false,
                };
                put_local(store, wtxn, me, area, &new, left, held)?;
                let gone = Left::gone(op.time.secs);
                put_local(store, wtxn, me, area, &old, gone, false)?;
            }
        }
    }
    Ok(())
}

/// Adds this peer's version `left` at `path`, which dominates every
/// version known there, and notes whether this peer holds its blob.
pub fn put_local(
    store: &Store,
    wtxn: &mut RwTxn,
    me: PeerId,
    area: Ino,
    path: &[u8],
    left: Left,
    held: bool,
) -> Result<()> {
    let seq = store.areas.next_seq(wtxn, area)?;
    let mut record: PathRecord = store.versions.get(wtxn, area, path)?.unwrap_or_default();
    let hash = match &left.content {
        Content::File(hash) if held => Some(*hash),
        _ => None,
    };
    let stamp = (left.mtime, left.size, left.perm);
    let version = local_version(&record.siblings, left.content, stamp, me, seq.0);
    add_sibling(&mut record.siblings, version);
    record.holders.insert(me, Holding { clock: seq.0, hash });
    store.versions.put(wtxn, area, path, record, seq)
}
