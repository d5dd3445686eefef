//! History on a real mount: every local change of an area appended with
//! the next sequence number and the BLAKE3 hash of the content.

mod common;

use std::fs::{self, File};
use std::io::Write;

use common::Peer;

fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// History lines without the time field: `AREA N OP PATH HASH [NEWPATH]`,
/// where N counts the area's ops from 0. Sequence numbers themselves grow
/// with every change of the area (each op follows the versions it made,
/// and peers' changes take numbers too), so they have gaps: checked to
/// grow, then replaced by their rank.
fn ops(p: &Peer) -> Vec<String> {
    let mut last: std::collections::HashMap<String, (u64, usize)> = Default::default();
    p.history()
        .into_iter()
        .map(|mut f| {
            assert!(f[2].ends_with('Z') && f[2].len() == 20, "time {:?}", f[2]);
            f.remove(2);
            let seq: u64 = f[1].parse().expect("a sequence number");
            let rank = match last.get(&f[0]) {
                Some(&(prev, rank)) => {
                    assert!(seq > prev, "sequence numbers must grow: {f:?}");
                    rank + 1
                }
                None => 0,
            };
            last.insert(f[0].clone(), (seq, rank));
            f[1] = rank.to_string();
            f.join(" ")
        })
        .collect()
}

#[test]
fn every_kind_of_change_is_recorded_in_order() {
    let p = Peer::start();
    fs::create_dir(p.path("h")).unwrap();
    fs::write(p.path("h/f"), b"one").unwrap();
    p.wait_recorded("h");
    let mut f = File::options().append(true).open(p.path("h/f")).unwrap();
    f.write_all(b" two").unwrap();
    drop(f);
    p.wait_recorded("h");
    fs::write(p.path("h/f"), b"fresh").unwrap(); // O_TRUNC: an overwrite
    p.wait_recorded("h");
    fs::create_dir(p.path("h/d")).unwrap();
    fs::rename(p.path("h/f"), p.path("h/d/g")).unwrap();
    fs::rename(p.path("h/d"), p.path("h/e")).unwrap();
    std::os::unix::fs::symlink("g", p.path("h/e/link")).unwrap();
    fs::remove_file(p.path("h/e/g")).unwrap();
    fs::remove_file(p.path("h/e/link")).unwrap();
    fs::remove_dir(p.path("h/e")).unwrap();
    assert_eq!(
        ops(&p),
        [
            format!("h 0 create f {}", hash(b"one")),
            format!("h 1 edit f {}", hash(b"one two")),
            format!("h 2 overwrite f {}", hash(b"fresh")),
            "h 3 mkdir d -".to_string(),
            format!("h 4 rename f {} d/g", hash(b"fresh")),
            "h 5 rename d - e".to_string(),
            format!("h 6 create e/link {}", hash(b"g")),
            format!("h 7 delete e/g {}", hash(b"fresh")),
            format!("h 8 delete e/link {}", hash(b"g")),
            "h 9 rmdir e -".to_string(),
        ]
    );
}

#[test]
fn writes_are_recorded_once_after_the_rest() {
    let p = Peer::start();
    p.write_ctl(".ctl/config", "consensus.rest 300ms").unwrap();
    fs::create_dir(p.path("r")).unwrap();
    for i in 0..5 {
        fs::write(p.path("r/f"), format!("version {i}")).unwrap();
    }
    // Still resting: nothing recorded, the file is dirty.
    assert!(ops(&p).iter().all(|l| !l.contains(" f ")));
    assert!(p.read("r/.ctl/status").contains("f file dirty"));
    p.wait_recorded("r");
    assert_eq!(ops(&p), [format!("r 0 create f {}", hash(b"version 4"))]);
    // A file created and removed before it rested leaves no trace.
    p.write_ctl(".ctl/config", "consensus.rest 1h").unwrap();
    fs::write(p.path("r/tmp"), b"scratch").unwrap();
    fs::rename(p.path("r/tmp"), p.path("r/tmp2")).unwrap();
    fs::remove_file(p.path("r/tmp2")).unwrap();
    assert_eq!(ops(&p).len(), 1);
}

#[test]
fn areas_number_their_ops_separately() {
    let p = Peer::start();
    fs::create_dir(p.path("a")).unwrap();
    fs::create_dir(p.path("b")).unwrap();
    fs::create_dir(p.path("a/x")).unwrap();
    fs::create_dir(p.path("b/y")).unwrap();
    fs::create_dir(p.path("a/z")).unwrap();
    let lines = ops(&p);
    assert_eq!(lines, ["a 0 mkdir x -", "a 1 mkdir z -", "b 0 mkdir y -"]);
    // Removing an area forgets its history.
    fs::remove_dir(p.path("b/y")).unwrap();
    fs::remove_dir(p.path("b")).unwrap();
    assert_eq!(ops(&p), ["a 0 mkdir x -", "a 1 mkdir z -"]);
    assert_eq!(p.ctl_errno(".ctl/history", "x"), libc::EACCES);
}

#[test]
fn names_with_spaces_and_newlines_stay_one_line() {
    let p = Peer::start();
    fs::create_dir(p.path("n")).unwrap();
    fs::create_dir(p.path("n/two words")).unwrap();
    fs::create_dir(p.path("n/line\nbreak")).unwrap();
    fs::create_dir(p.path("n/back\\slash")).unwrap();
    assert_eq!(
        ops(&p),
        [
            r"n 0 mkdir two\swords -",
            r"n 1 mkdir line\nbreak -",
            r"n 2 mkdir back\\slash -"
        ]
    );
}
