//! The dump (DESIGN.md `/.ctl/dump`, after Plan 9's dump file system):
//! each area as it was at the end of a day (UTC), built from the
//! namespace and the kept versions ([`super::kept`]); FUSE-free, so the
//! control tree only names and serves what this computes.
//!
//! A file shows on a day when a version of it was current at the day's
//! end: a kept version written before then and replaced after, else the
//! current version when it was written before then (by modification
//! time: a file copied in later with an older time shows too). Days are
//! those on which a kept version was replaced, and the day before each
//! (the state just before the change), up to today.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::{Result, Tree};
use crate::ids::BlobHash;
use crate::store::Ino;
use crate::store::namespace::{Kind, Timestamp};

/// A day of the calendar (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    /// The year, 1970 to 9999.
    pub year: u16,
    /// The month, 1 to 12.
    pub month: u8,
    /// The day of the month, 1 to 31.
    pub day: u8,
}

const DAY: Duration = Duration::from_secs(86_400);

impl Day {
    /// The day (UTC) of `time`; `None` before 1970 or after 9999.
    pub fn of(time: SystemTime) -> Option<Day> {
        // RFC 3339 text starts YYYY-MM-DD.
        let text = humantime::format_rfc3339_seconds(time).to_string();
        Some(Day {
            year: text.get(0..4)?.parse().ok()?,
            month: text.get(5..7)?.parse().ok()?,
            day: text.get(8..10)?.parse().ok()?,
        })
    }

    /// The day `MMDD` of `year` as the dump names it; `None` when there is
    /// no such day.
    pub fn parse(year: u16, mmdd: &str) -> Option<Day> {
        if mmdd.len() != 4 || !mmdd.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let day = Day {
            year,
            month: mmdd.get(0..2)?.parse().ok()?,
            day: mmdd.get(2..4)?.parse().ok()?,
        };
        // A real date: it survives a round trip through the calendar.
        (Day::of(day.start()?) == Some(day)).then_some(day)
    }

    /// `MMDD`, the name of the day's directory.
    pub fn mmdd(&self) -> String {
        format!("{:02}{:02}", self.month, self.day)
    }

    /// Midnight (UTC) at its start.
    fn start(&self) -> Option<SystemTime> {
        let text = format!(
            "{:04}-{:02}-{:02}T00:00:00Z",
            self.year, self.month, self.day
        );
        humantime::parse_rfc3339(&text).ok()
    }

    /// The end of the day: midnight (UTC) after it.
    pub fn end(&self) -> SystemTime {
        self.start().map_or(SystemTime::UNIX_EPOCH, |s| s + DAY)
    }
}

/// What an entry of the dump shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shown {
    /// A directory.
    Dir,
    /// A file: its blob, size in bytes and modification time; `ino` when
    /// it is the version the namespace shows now.
    File {
        /// Its blob.
        hash: BlobHash,
        /// Its size in bytes.
        size: u64,
        /// Its modification time.
        mtime: Timestamp,
        /// The inode showing it now, if any.
        ino: Option<Ino>,
    },
}

impl Tree {
    /// The days the dump lists, oldest first.
    pub fn dump_days(&self) -> Result<Vec<Day>> {
        let txn = self.store.read()?;
        let today = Day::of(SystemTime::now());
        let mut days = Vec::new();
        for kept in self.store.kept.all(&txn)? {
            let until: SystemTime = kept.until.into();
            days.extend(Day::of(until));
            days.extend(until.checked_sub(DAY).and_then(Day::of));
        }
        days.retain(|d| Some(*d) <= today);
        days.sort();
        days.dedup();
        Ok(days)
    }

    /// The entries of directory `dir` (a path in `area`, `""` for its top)
    /// as they were at the end of `day`, by name.
    pub fn dump_children(
        &self,
        day: Day,
        area: Ino,
        dir: &[u8],
    ) -> Result<BTreeMap<Vec<u8>, Shown>> {
        let end = Timestamp::from(day.end());
        let before = |t: &Timestamp| (t.secs, t.nanos) < (end.secs, end.nanos);
        let txn = self.store.read()?;
        let mut out = BTreeMap::new();
        let now = match dir.is_empty() {
            true => Some(area),
            false => self.ino_at(&txn, area, dir)?,
        };
        if let Some(now) = now.filter(|&i| self.inode(&txn, i).is_ok_and(|i| i.kind == Kind::Dir)) {
            self.store.namespace.children(&txn, now, 0, |_, entry| {
                if let Some(inode) = self.store.namespace.get(&txn, entry.ino)? {
                    match (inode.kind, inode.hash) {
                        (Kind::Dir, _) => {
                            out.insert(entry.name, Shown::Dir);
                        }
                        (Kind::File, Some(hash))
                            if before(&inode.mtime) && !self.recorder.is_pending(entry.ino) =>
                        {
                            let shown = Shown::File {
                                hash,
                                size: inode.size,
                                mtime: inode.mtime,
                                ino: Some(entry.ino),
                            };
                            out.insert(entry.name, shown);
                        }
                        _ => {}
                    }
                }
                Ok(true)
            })?;
        }
        // A kept version current at the day's end wins: what shows now
        // replaced it later. Of several, the one replaced first.
        let mut kept_at_end: BTreeMap<Vec<u8>, (Timestamp, Shown)> = BTreeMap::new();
        for kept in self.store.kept.in_area(&txn, area)? {
            let Some(rest) = below(dir, &kept.path) else {
                continue;
            };
            let alive = before(&Timestamp {
                secs: kept.mtime,
                nanos: 0,
            }) && !before(&kept.until);
            if !alive {
                continue;
            }
            match rest.iter().position(|&b| b == b'/') {
                Some(i) => {
                    out.entry(rest[..i].to_vec()).or_insert(Shown::Dir);
                }
                None => {
                    let first = kept_at_end.get(rest).is_none_or(|(until, _)| {
                        (kept.until.secs, kept.until.nanos) < (until.secs, until.nanos)
                    });
                    if first {
                        let shown = Shown::File {
                            hash: kept.hash,
                            size: kept.size,
                            mtime: Timestamp {
                                secs: kept.mtime,
                                nanos: 0,
                            },
                            ino: None,
                        };
                        kept_at_end.insert(rest.to_vec(), (kept.until, shown));
                    }
                }
            }
        }
        for (name, (_, shown)) in kept_at_end {
            if out.get(&name) != Some(&Shown::Dir) {
                out.insert(name, shown);
            }
        }
        Ok(out)
    }

    /// What `path` of `area` showed at the end of `day` (the top of the
    /// area, `""`, is a directory).
    pub fn dump_entry(&self, day: Day, area: Ino, path: &[u8]) -> Result<Option<Shown>> {
        if path.is_empty() {
            return Ok(Some(Shown::Dir));
        }
        let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        Ok(self.dump_children(day, area, dir)?.remove(name))
    }
}

/// `path` relative to directory `dir` when it lies below it.
fn below<'a>(dir: &[u8], path: &'a [u8]) -> Option<&'a [u8]> {
    if dir.is_empty() {
        return Some(path);
    }
    path.strip_prefix(dir)?.strip_prefix(b"/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_and_end_at_midnight() {
        let day = Day::parse(2026, "1130").expect("a day");
        assert_eq!(day.mmdd(), "1130");
        assert_eq!(Day::of(day.end()), Day::parse(2026, "1201"));
        assert_eq!(Day::parse(2026, "0230"), None);
        assert_eq!(Day::parse(2026, "1301"), None);
        assert_eq!(Day::parse(2026, "11300"), None);
        assert_eq!(Day::parse(2024, "0229").map(|d| d.day), Some(29));
    }

    #[test]
    fn below_takes_only_what_is_inside() {
        assert_eq!(below(b"", b"a/b"), Some(&b"a/b"[..]));
        assert_eq!(below(b"a", b"a/b"), Some(&b"b"[..]));
        assert_eq!(below(b"a", b"ab/c"), None);
        assert_eq!(below(b"a", b"a"), None);
    }
}
