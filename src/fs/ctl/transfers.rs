//! `/.ctl/transfers`: `HASH AREA PATH DONE TOTAL BYTES_PER_S PEERID`, one
//! line per blob being fetched (read only).

use super::super::{Fs, Result};
use crate::format::{escape, format_hash};
use crate::store::Ino;

/// One line per running fetch.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let mut out = String::new();
    for (hash, t) in fs.cache.transfers() {
        let secs = t.started.elapsed().as_secs_f64().max(0.001);
        out.push_str(&format!(
            "{} {} {} {} {} {} {}\n",
            format_hash(Some(&hash)),
            escape(&t.area),
            escape(&t.path),
            t.done,
            t.total,
            (t.fetched as f64 / secs) as u64,
            t.peer.map_or("-".to_string(), |p| p.to_string()),
        ));
    }
    Ok(out)
}
