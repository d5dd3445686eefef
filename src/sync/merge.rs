//! The merge (DESIGN.md "Sync"), pure: version vectors per path, the set
//! of concurrent versions kept at each path, and the tree a user sees.
//!
//! Each path keeps its *siblings*: the versions no other known version
//! dominates (a multi-value register). Adding a version drops the ones it
//! dominates and is ignored when one dominates it, so the siblings after
//! any set of versions are the maximal elements of that set, whatever the
//! order of arrival: every peer that has seen the same versions holds the
//! same siblings. The visible tree is a function of the siblings, so it
//! converges too:
//! - one sibling: it is the entry (a deletion shows nothing);
//! - several (a conflict): the winner is shown at the path, chosen the same
//!   way everywhere (a directory beats a file, a file beats a deletion, so
//!   an edit beats a concurrent delete; then the later mtime, then the
//!   greater author); every other file is shown at
//!   `NAME.conflict-AUTHOR8-YYYYMMDD-HHMMSS.EXT`, so nothing is lost;
//! - a directory with a visible entry below it is shown even if it was
//!   removed concurrently.
//!
//! A local change at a path makes a version whose vector joins those of
//! all its siblings and counts the author's new operation: it dominates
//! them, which is how writing a path resolves its conflict. A rename is a
//! deletion at the old path and a version with the same blob at the new
//! one, so a peer holding the blob downloads nothing.

use crate::ids::BlobHash;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

pub use crate::store::versions::{Content, MAX_FANOUT, Version, VersionVector};

/// Who made a version: a peer, named in conflict copies by 8 characters.
pub trait Author: Ord + Copy + Debug {
    /// The 8 characters that name the author in a conflict copy.
    fn tag(&self) -> String;
}

impl Author for crate::ids::PeerId {
    fn tag(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// The same vector.
    Equal,
    /// The first saw everything the second saw, and more.
    Dominates,
    /// The second saw everything the first saw, and more.
    DominatedBy,
    /// Each saw something the other did not.
    Concurrent,
}

impl<A: Ord> Default for VersionVector<A> {
    fn default() -> Self {
        VersionVector(BTreeMap::new())
    }
}

impl<A: Author> VersionVector<A> {
    /// The counter of `author`.
    pub fn get(&self, author: &A) -> u64 {
        self.0.get(author).copied().unwrap_or(0)
    }

    /// How many peers it counts.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it counts no peer.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pointwise maximum of both.
    pub fn join(&self, other: &Self) -> Self {
        let mut out = self.clone();
        for (a, &n) in &other.0 {
            let slot = out.0.entry(*a).or_insert(0);
            *slot = (*slot).max(n);
        }
        out
    }

    /// This vector with `author`'s counter set to `seq` (its new op).
    pub fn with(mut self, author: A, seq: u64) -> Self {
        self.0.insert(author, seq);
        self
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &Self) -> Causality {
        let authors: BTreeSet<&A> = self.0.keys().chain(other.0.keys()).collect();
        let (mut more, mut less) = (false, false);
        for a in authors {
            let (x, y) = (self.get(a), other.get(a));
            more |= x > y;
            less |= x < y;
        }
        match (more, less) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Dominates,
            (false, true) => Causality::DominatedBy,
            (true, true) => Causality::Concurrent,
        }
    }
}

impl Content {
    /// Precedence in a conflict: a directory, then a file, then nothing.
    fn rank(&self) -> u8 {
        match self {
            Content::Deleted => 0,
            Content::File(_) | Content::Symlink(_) => 1,
            Content::Dir => 2,
        }
    }
}

impl<A: Author> Version<A> {
    /// The order of precedence in a conflict (greatest wins).
    fn precedence(&self) -> (u8, i64, A, &Content) {
        (self.content.rank(), self.mtime, self.author, &self.content)
    }
}

/// The versions of every path: what a peer knows of an area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree<A: Ord> {
    siblings: BTreeMap<String, Vec<Version<A>>>,
}

impl<A: Ord> Default for Tree<A> {
    fn default() -> Self {
        Tree {
            siblings: BTreeMap::new(),
        }
    }
}

/// What the user sees at a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shown {
    /// A file with this blob.
    File(BlobHash),
    /// A directory.
    Dir,
}

impl<A: Author> Tree<A> {
    /// The versions kept at `path` (empty when unknown).
    pub fn siblings(&self, path: &str) -> &[Version<A>] {
        self.siblings.get(path).map_or(&[], Vec::as_slice)
    }

    /// Adds a version of `path` known from anywhere; returns false when a
    /// known version dominates or equals it (nothing changes).
    pub fn add(&mut self, path: &str, version: Version<A>) -> bool {
        add_sibling(self.siblings.entry(path.to_string()).or_default(), version)
    }

    /// The version a local change of `path` to `content` makes: it
    /// dominates every sibling. `seq` is the author's next op number.
    pub fn local(
        &self,
        path: &str,
        content: Content,
        mtime: i64,
        author: A,
        seq: u64,
    ) -> Version<A> {
        local_version(self.siblings(path), content, (mtime, 0, 0o644), author, seq)
    }

    /// Every version this tree holds, by path (what a peer sends in a
    /// full index).
    pub fn versions(&self) -> impl Iterator<Item = (&str, &Version<A>)> {
        self.siblings
            .iter()
            .flat_map(|(p, vs)| vs.iter().map(move |v| (p.as_str(), v)))
    }

    /// The tree the user sees: path → entry, with conflict copies.
    pub fn view(&self) -> BTreeMap<String, Shown> {
        let mut view = BTreeMap::new();
        for (path, siblings) in &self.siblings {
            let Some(winner) = siblings.first() else {
                continue;
            };
            match winner.content {
                Content::Dir => {
                    view.insert(path.clone(), Shown::Dir);
                }
                Content::File(hash) => {
                    view.insert(path.clone(), Shown::File(hash));
                }
                Content::Symlink(_) | Content::Deleted => {}
            }
            for loser in losers(siblings) {
                if let Content::File(hash) = loser.content {
                    view.insert(copy_name(path, loser), Shown::File(hash));
                }
            }
        }
        // A directory with something visible below it stays, even when it
        // was removed (or never seen) here; a file in the way of such a
        // directory moves to a conflict copy.
        let paths: Vec<String> = view.keys().cloned().collect();
        for path in paths {
            let mut at = path.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                if let Some(Shown::File(hash)) = view.get(parent).cloned() {
                    let owner = self
                        .siblings(parent)
                        .iter()
                        .find(|v| v.content == Content::File(hash));
                    if let Some(owner) = owner {
                        view.insert(copy_name(parent, owner), Shown::File(hash));
                    }
                }
                view.insert(parent.to_string(), Shown::Dir);
                at = parent;
            }
        }
        view
    }
}

/// The version a local change to `content` makes at a path whose known
/// versions are `siblings`: its vector joins theirs and counts the
/// author's op number `seq`, so it dominates them all. `stamp` is (mtime
/// in seconds, size in bytes, permission bits).
pub fn local_version<A: Author>(
    siblings: &[Version<A>],
    content: Content,
    stamp: (i64, u64, u16),
    author: A,
    seq: u64,
) -> Version<A> {
    let (mtime, size, perm) = stamp;
    let vv = siblings
        .iter()
        .fold(VersionVector::default(), |vv, s| vv.join(&s.vv));
    Version {
        vv: vv.with(author, seq),
        content,
        mtime,
        size,
        perm,
        author,
    }
}

/// Adds `version` to `siblings` (kept in order of precedence, the winner
/// first); returns false when a known version dominates or equals it. At
/// most [`MAX_FANOUT`] siblings stay (only a peer making concurrent
/// versions up on purpose gets there): the lowest in precedence go. A
/// version that would bring the authors the siblings' vectors name to
/// [`MAX_FANOUT`] is refused (false): a local version joins them all and
/// adds its own, and must stay within what peers accept.
pub fn add_sibling<A: Author>(siblings: &mut Vec<Version<A>>, version: Version<A>) -> bool {
    let known = siblings.iter().any(|s| {
        matches!(
            s.vv.compare(&version.vv),
            Causality::Dominates | Causality::Equal
        )
    });
    if known {
        return false;
    }
    let authors: std::collections::BTreeSet<&A> = siblings
        .iter()
        .filter(|s| s.vv.compare(&version.vv) != Causality::DominatedBy)
        .chain(std::iter::once(&version))
        .flat_map(|s| s.vv.0.keys())
        .collect();
    if authors.len() >= MAX_FANOUT {
        return false;
    }
    siblings.retain(|s| s.vv.compare(&version.vv) != Causality::DominatedBy);
    siblings.push(version);
    siblings.sort_by(|a, b| b.precedence().cmp(&a.precedence()));
    siblings.truncate(MAX_FANOUT);
    true
}

/// The siblings shown as conflict copies: every file or symlink but the
/// winner whose content differs from the winner's (two peers writing the
/// same bytes concurrently do not conflict).
pub fn losers<A: Author>(siblings: &[Version<A>]) -> impl Iterator<Item = &Version<A>> {
    let winner = siblings.first().map(|w| &w.content);
    siblings.iter().skip(1).filter(move |v| {
        matches!(v.content, Content::File(_) | Content::Symlink(_)) && Some(&v.content) != winner
    })
}

/// `NAME.conflict-AUTHOR8-YYYYMMDD-HHMMSS.EXT` for a losing version of
/// `path` (DESIGN.md "Sync"); the time is the version's mtime in UTC,
/// clamped to the years 1970 to 9999. Paths are bytes: a name need not be
/// UTF-8. The copy's name is at most [`NAME_MAX`] bytes: a long stem is
/// shortened (at a character boundary when it is UTF-8).
pub fn conflict_path<A: Author>(path: &[u8], version: &Version<A>) -> Vec<u8> {
    numbered_conflict_path(path, version, 1)
}

/// The longest name of a directory entry, in bytes (Linux's NAME_MAX).
pub const NAME_MAX: usize = 255;

/// The last second of year 9999 (UTC), the latest time a conflict name
/// shows.
const LAST_STAMP: i64 = 253_402_300_799;

/// An extension longer than this is taken as part of the stem.
const MAX_EXT: usize = 32;

/// [`conflict_path`] with `-N` after the time when `n` is 2 or more: the
/// name of a copy when an earlier copy of another version by the same
/// author in the same second already has the plain name.
pub fn numbered_conflict_path<A: Author>(path: &[u8], version: &Version<A>, n: u32) -> Vec<u8> {
    let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (Some(&path[..i]), &path[i + 1..]),
        None => (None, path),
    };
    let (stem, ext) = match name.iter().rposition(|&b| b == b'.') {
        Some(i) if i > 0 && name.len() - i <= MAX_EXT => name.split_at(i),
        _ => (name, &[][..]),
    };
    let secs = version.mtime.clamp(0, LAST_STAMP) as u64;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let stamp: String = humantime::format_rfc3339_seconds(time)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect::<String>()
        .replace('T', "-");
    let number = if n >= 2 {
        format!("-{n}")
    } else {
        String::new()
    };
    let mark = format!(".conflict-{}-{stamp}{number}", version.author.tag());
    let room = NAME_MAX.saturating_sub(mark.len() + ext.len());
    let stem = &stem[..char_floor(stem, room)];
    let mut out = Vec::with_capacity(path.len() + mark.len());
    if let Some(dir) = dir {
        out.extend_from_slice(dir);
        out.push(b'/');
    }
    out.extend_from_slice(stem);
    out.extend_from_slice(mark.as_bytes());
    out.extend_from_slice(ext);
    out
}

/// [`conflict_path`] of a model path (always UTF-8 here).
fn copy_name<A: Author>(path: &str, version: &Version<A>) -> String {
    String::from_utf8_lossy(&conflict_path(path.as_bytes(), version)).into_owned()
}

/// The largest length at most `max` that cuts `bytes` at a character
/// boundary when they are UTF-8 (anywhere otherwise).
fn char_floor(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.floor_char_boundary(max),
        Err(_) => max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct P(u8);

    impl Author for P {
        fn tag(&self) -> String {
            format!("peer{:04}", self.0)
        }
    }

    const PATHS: [&str; 7] = ["a", "b.txt", "d", "d/x", "d/y.jpg", "d/e", "d/e/z"];

    #[derive(Debug, Clone)]
    enum Action {
        Write(usize, usize, u8),
        Delete(usize, usize),
        Mkdir(usize, usize),
        Rename(usize, usize, usize),
        Sync(usize, usize),
    }

    fn action() -> impl Strategy<Value = Action> {
        let peer = 0..3usize;
        let path = 0..PATHS.len();
        prop_oneof![
            3 => (peer.clone(), path.clone(), any::<u8>()).prop_map(|(p, i, b)| Action::Write(p, i, b)),
            1 => (peer.clone(), path.clone()).prop_map(|(p, i)| Action::Delete(p, i)),
            1 => (peer.clone(), path.clone()).prop_map(|(p, i)| Action::Mkdir(p, i)),
            1 => (peer.clone(), path.clone(), path.clone()).prop_map(|(p, i, j)| Action::Rename(p, i, j)),
            2 => (peer.clone(), peer).prop_map(|(a, b)| Action::Sync(a, b)),
        ]
    }

    /// Three peers and every version they ever made.
    struct Sim {
        trees: Vec<Tree<P>>,
        seqs: [u64; 3],
        made: Vec<(String, Version<P>)>,
        clock: i64,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                trees: vec![Tree::default(); 3],
                seqs: [0; 3],
                made: Vec::new(),
                clock: 1_700_000_000,
            }
        }

        fn change(&mut self, peer: usize, path: &str, content: Content) {
            self.seqs[peer] += 1;
            // Coarse clock: equal mtimes happen, so the author breaks ties.
            self.clock += 1;
            let mtime = self.clock / 3;
            let v = self.trees[peer].local(path, content, mtime, P(peer as u8), self.seqs[peer]);
            assert!(
                self.trees[peer].add(path, v.clone()),
                "a local change is always new"
            );
            self.made.push((path.to_string(), v));
        }

        /// Makes the parents of `path` directories, as `mkdir -p` would.
        fn parents(&mut self, peer: usize, path: &str) -> bool {
            let mut parents = Vec::new();
            let mut at = path;
            while let Some((parent, _)) = at.rsplit_once('/') {
                parents.push(parent);
                at = parent;
            }
            for parent in parents.into_iter().rev() {
                match self.trees[peer].view().get(parent) {
                    Some(Shown::Dir) => {}
                    Some(Shown::File(_)) => return false,
                    None => self.change(peer, parent, Content::Dir),
                }
            }
            true
        }

        fn run(&mut self, action: &Action) {
            match *action {
                Action::Write(p, i, byte) => {
                    let path = PATHS[i];
                    if self.trees[p].view().get(path) != Some(&Shown::Dir) && self.parents(p, path)
                    {
                        self.change(p, path, Content::File(BlobHash([byte; 32])));
                    }
                }
                Action::Delete(p, i) => {
                    let path = PATHS[i];
                    let view = self.trees[p].view();
                    let busy = view.keys().any(|k| k.starts_with(&format!("{path}/")));
                    if view.contains_key(path) && !busy {
                        self.change(p, path, Content::Deleted);
                    }
                }
                Action::Mkdir(p, i) => {
                    let path = PATHS[i];
                    if !self.trees[p].view().contains_key(path) && self.parents(p, path) {
                        self.change(p, path, Content::Dir);
                    }
                }
                Action::Rename(p, i, j) => {
                    let (from, to) = (PATHS[i], PATHS[j]);
                    let view = self.trees[p].view();
                    if let (Some(Shown::File(hash)), None) = (view.get(from), view.get(to))
                        && self.parents(p, to)
                    {
                        let hash = *hash;
                        self.change(p, from, Content::Deleted);
                        self.change(p, to, Content::File(hash));
                    }
                }
                Action::Sync(from, to) => self.sync(from, to),
            }
        }

        fn sync(&mut self, from: usize, to: usize) {
            let versions: Vec<(String, Version<P>)> = self.trees[from]
                .versions()
                .map(|(p, v)| (p.to_string(), v.clone()))
                .collect();
            for (path, v) in versions {
                self.trees[to].add(&path, v);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn three_peers_converge_and_lose_nothing(
            script in prop::collection::vec(action(), 1..80),
            order in Just([(0usize, 1usize), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2)]).prop_shuffle(),
        ) {
            let mut sim = Sim::new();
            for action in &script {
                sim.run(action);
            }
            // Exchange everything, pairs in a random order, twice round.
            for _ in 0..2 {
                for &(a, b) in &order {
                    sim.sync(a, b);
                }
            }
            let view = sim.trees[0].view();
            for peer in 1..3 {
                prop_assert_eq!(&sim.trees[peer], &sim.trees[0]);
                prop_assert_eq!(&sim.trees[peer].view(), &view);
            }
            // Nothing lost: every file version either is still a sibling,
            // and then visible, or a version made by a peer that saw it
            // replaced it.
            let shown: BTreeSet<&Shown> = view.values().collect();
            for (path, v) in &sim.made {
                let Content::File(hash) = v.content else { continue };
                let kept = sim.trees[0].siblings(path).contains(v);
                if kept {
                    prop_assert!(shown.contains(&Shown::File(hash)), "{path} {v:?} vanished");
                } else {
                    let superseded = sim.trees[0].siblings(path).iter()
                        .any(|s| s.vv.compare(&v.vv) == Causality::Dominates);
                    prop_assert!(superseded, "{path} {v:?} dropped without a successor");
                }
            }
            // The view is a tree: every parent is a directory.
            for path in view.keys() {
                if let Some((parent, _)) = path.rsplit_once('/') {
                    prop_assert_eq!(view.get(parent), Some(&Shown::Dir), "parent of {}", path);
                }
            }
        }

        #[test]
        fn any_delivery_order_gives_the_same_siblings(
            script in prop::collection::vec(action(), 1..60),
            seed in any::<u64>(),
        ) {
            let mut sim = Sim::new();
            for action in &script {
                if !matches!(action, Action::Sync(..)) {
                    sim.run(action);
                }
            }
            // Deliver every version ever made, one by one, in two orders.
            let mut forward = Tree::default();
            for (path, v) in &sim.made {
                forward.add(path, v.clone());
            }
            let mut shuffled = sim.made.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut other = Tree::default();
            for (path, v) in &shuffled {
                other.add(path, v.clone());
            }
            prop_assert_eq!(forward.view(), other.view());
            prop_assert_eq!(forward, other);
        }
    }

    #[test]
    fn an_edit_beats_a_concurrent_delete_and_a_write_resolves_a_conflict() {
        let mut tree: Tree<P> = Tree::default();
        let base = tree.local("f.txt", Content::File(BlobHash([1; 32])), 100, P(1), 1);
        tree.add("f.txt", base.clone());
        let mut seen = Tree::default();
        seen.add("f.txt", base);
        let edit = seen.local("f.txt", Content::File(BlobHash([2; 32])), 200, P(2), 1);
        let delete = seen.local("f.txt", Content::Deleted, 300, P(3), 1);
        tree.add("f.txt", delete);
        tree.add("f.txt", edit);
        assert_eq!(
            tree.view().get("f.txt"),
            Some(&Shown::File(BlobHash([2; 32])))
        );
        // Two concurrent edits: the later mtime wins, the other is a copy.
        let other = seen.local("f.txt", Content::File(BlobHash([3; 32])), 150, P(4), 1);
        tree.add("f.txt", other.clone());
        let view = tree.view();
        assert_eq!(view.get("f.txt"), Some(&Shown::File(BlobHash([2; 32]))));
        let copy = copy_name("f.txt", &other);
        assert_eq!(copy, "f.conflict-peer0004-19700101-000230.txt");
        assert_eq!(view.get(&copy), Some(&Shown::File(BlobHash([3; 32]))));
        // Writing the path again dominates every sibling: resolved.
        let fixed = tree.local("f.txt", Content::File(BlobHash([9; 32])), 400, P(1), 2);
        tree.add("f.txt", fixed);
        assert_eq!(tree.siblings("f.txt").len(), 1);
        assert_eq!(tree.view().len(), 1);
    }

    #[test]
    fn conflict_names_keep_the_extension_and_the_directory() {
        let v = Version {
            vv: VersionVector::default(),
            content: Content::Deleted,
            mtime: 1_790_000_000,
            size: 0,
            perm: 0,
            author: P(7),
        };
        assert_eq!(
            conflict_path(b"photos/beach.jpg", &v),
            b"photos/beach.conflict-peer0007-20260921-141320.jpg"
        );
        assert_eq!(
            conflict_path(b"README", &v),
            b"README.conflict-peer0007-20260921-141320"
        );
        assert_eq!(
            conflict_path(b".profile", &v),
            b".profile.conflict-peer0007-20260921-141320"
        );
    }

    #[test]
    fn conflict_names_fit_a_directory_entry_whatever_the_name_or_time() {
        let mut v = Version {
            vv: VersionVector::default(),
            content: Content::Deleted,
            mtime: i64::MAX,
            size: 0,
            perm: 0,
            author: P(7),
        };
        // A time past year 9999 shows as its last second.
        assert_eq!(
            conflict_path(b"a", &v),
            b"a.conflict-peer0007-99991231-235959"
        );
        v.mtime = i64::MIN;
        assert_eq!(
            conflict_path(b"a", &v),
            b"a.conflict-peer0007-19700101-000000"
        );
        // A long name is shortened to fit NAME_MAX, at a character
        // boundary, keeping its extension.
        let long = format!("d/{}.txt", "é".repeat(127));
        let copy = conflict_path(long.as_bytes(), &v);
        let name = &copy[2..];
        assert!(name.len() <= NAME_MAX, "{} bytes", name.len());
        let name = std::str::from_utf8(name).expect("still UTF-8");
        assert!(
            name.starts_with("éé") && name.ends_with("-000000.txt"),
            "{name}"
        );
        // A long "extension" is part of the stem.
        let dotted = format!("x.{}", "y".repeat(250));
        let copy = conflict_path(dotted.as_bytes(), &v);
        assert!(copy.len() <= NAME_MAX);
        assert!(copy.starts_with(b"x.yyy") && copy.ends_with(b"-000000"));
        // Names that are not UTF-8 keep their bytes.
        let copy = conflict_path(b"dir\xff/f\xfe.txt", &v);
        assert_eq!(copy, b"dir\xff/f\xfe.conflict-peer0007-19700101-000000.txt");
        let copy = numbered_conflict_path(&[0xff; 255], &v, 12);
        assert_eq!(copy.len(), NAME_MAX);
        assert!(copy.ends_with(b"-000000-12"));
    }

    #[test]
    fn a_path_keeps_at_most_max_fanout_siblings() {
        // 100 concurrent versions of two authors, as only a peer making
        // them up sends: {P0: i, P1: 101 - i}.
        let mut siblings = Vec::new();
        for i in 1..=100u64 {
            let v = Version {
                vv: VersionVector::default().with(P(0), i).with(P(1), 101 - i),
                content: Content::File(BlobHash([i as u8; 32])),
                mtime: i as i64,
                size: 1,
                perm: 0o644,
                author: P((i % 2) as u8),
            };
            assert!(add_sibling(&mut siblings, v));
            assert!(siblings.len() <= MAX_FANOUT);
        }
        // The latest (the winner) and the next in precedence stay.
        assert_eq!(siblings[0].mtime, 100);
        assert_eq!(
            siblings.last().map(|v| v.mtime),
            Some(100 - MAX_FANOUT as i64 + 1)
        );
    }

    #[test]
    fn a_local_version_never_names_more_than_max_fanout_authors() {
        // Concurrent versions naming new authors each, page after page.
        let mut siblings = Vec::new();
        let mut refused = 0;
        for i in 0..40u8 {
            let v = Version {
                vv: VersionVector::default()
                    .with(P(2 * i), 1)
                    .with(P(2 * i + 1), 1),
                content: Content::File(BlobHash([i; 32])),
                mtime: i64::from(i),
                size: 1,
                perm: 0o644,
                author: P(2 * i),
            };
            if !add_sibling(&mut siblings, v) {
                refused += 1;
            }
        }
        assert!(refused > 0);
        let mine = local_version(&siblings, Content::Deleted, (0, 0, 0), P(255), 1);
        assert!(mine.vv.len() <= MAX_FANOUT, "{} authors", mine.vv.len());
    }
}
