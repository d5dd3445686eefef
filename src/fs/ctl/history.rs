//! `/.ctl/history`: pending ops, `AREA SEQ TIME OP PATH HASH [NEWPATH]`,
//! by area then sequence number. Until the household exists no peer
//! acknowledges anything, so every op stays listed.

use super::super::{Fs, Result};
use crate::format::{escape, format_hash, format_time};
use crate::store::Ino;

/// Every op of every area.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let store = fs.store();
    let txn = store.read()?;
    let mut out = String::new();
    let mut area_name = (Ino::NONE, String::new());
    store.history.for_each(&txn, |area, seq, op| {
        if area_name.0 != area {
            let name = store.namespace.get(&txn, area)?.map(|i| escape(&i.name));
            area_name = (area, name.unwrap_or_else(|| "?".into()));
        }
        out.push_str(&format!(
            "{} {seq} {} {} {} {}",
            area_name.1,
            format_time(op.time.into()),
            op.kind.as_str(),
            escape(&op.path),
            format_hash(op.hash.as_ref()),
        ));
        if let Some(new_path) = &op.new_path {
            out.push(' ');
            out.push_str(&escape(new_path));
        }
        out.push('\n');
        Ok(())
    })?;
    Ok(out)
}
