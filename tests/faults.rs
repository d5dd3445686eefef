//! Hard faults (issue "Hostile peers and hard faults", point 7): a full
//! disk under DATA (a small tmpfs, filled by a file beside realize's)
//! during a write, a pull and a realize gives ENOSPC with nothing
//! half-applied, and everything resumes when space returns.

mod common;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use common::files::{pattern, state, write_file};
use common::{Peer, consensus, household, wait_until};

/// Fills the disk of `p`'s DATA but `leave` bytes with a file beside
/// realize's own; removing the file gives the space back.
fn fill(p: &Peer, leave: u64) -> PathBuf {
    let st = nix::sys::statvfs::statvfs(&p.data).unwrap();
    let free = st.blocks_available() * st.fragment_size();
    let filler = p.data.join("filler");
    let file = std::fs::File::create(&filler).unwrap();
    let size = free.saturating_sub(leave);
    let chunk = vec![1u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = chunk.len().min((size - at) as usize);
        if file.write_all_at(&chunk[..n], at).is_err() {
            break;
        }
        at += n as u64;
    }
    filler
}

/// A peer whose DATA is a 32 MiB disk, leaving 1 MiB free for others
/// (`cache.min_free`; the default 1G would not fit).
fn small() -> Peer {
    let p = Peer::start_small(32);
    p.write_ctl(".ctl/config", "cache.min_free 1M").unwrap();
    p
}

#[test]
fn a_write_on_a_full_disk_fails_with_enospc_and_the_next_one_works() {
    let (a, b) = (small(), Peer::start());
    household(&[&a, &b], "s");
    let filler = fill(&a, 1 << 20);
    let err = std::fs::write(a.path("s/big"), pattern(4 << 20, 1)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // The mount serves on: listed, read, removed as any file.
    assert!(a.read("s/.ctl/status").contains("big"));
    std::fs::remove_file(a.path("s/big")).unwrap();
    std::fs::remove_file(&filler).unwrap();
    let bytes = pattern(4 << 20, 2);
    write_file(&a, "s/big", &bytes);
    consensus(&a);
    assert_eq!(std::fs::read(b.path("s/big")).unwrap(), bytes);
}

#[test]
fn a_pull_on_a_full_disk_fails_whole_and_the_next_round_brings_everything() {
    let (a, b) = (small(), Peer::start());
    household(&[&a, &b], "s");
    std::fs::create_dir(b.path("s/many")).unwrap();
    for i in 0..300 {
        std::fs::write(b.path(&format!("s/many/f{i}")), format!("file {i}")).unwrap();
    }
    b.wait_recorded("s/many");
    let filler = fill(&a, 0);
    let refused = a.write_ctl(".ctl/consensus", &format!("now {}", b.id()));
    // Refused, or applied in what little room was left: never a part of a
    // page. What is listed is readable.
    let listed: Vec<_> = std::fs::read_dir(a.path("s/many"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        refused.is_err() || listed.len() == 300,
        "{} listed",
        listed.len()
    );
    std::fs::remove_file(&filler).unwrap();
    a.write_ctl(".ctl/consensus", &format!("now {}", b.id()))
        .unwrap();
    for i in (0..300).step_by(37) {
        let got = std::fs::read_to_string(a.path(&format!("s/many/f{i}"))).unwrap();
        assert_eq!(got, format!("file {i}"));
    }
    assert_eq!(std::fs::read_dir(a.path("s/many")).unwrap().count(), 300);
}

#[test]
fn a_realize_on_a_full_disk_waits_unreal_and_completes_when_space_returns() {
    let (a, b) = (small(), Peer::start());
    household(&[&a, &b], "s");
    let bytes = pattern(8 << 20, 3);
    write_file(&b, "s/film", &bytes);
    consensus(&b);
    wait_until("a to list film", || a.path("s/film").exists());
    let filler = fill(&a, 2 << 20);
    a.write_ctl("s/.ctl/mode", "real").unwrap();
    wait_until("a to find no room for film", || {
        a.read(".ctl/errors").contains("realize s/film")
    });
    let errors = a.read(".ctl/errors");
    assert!(
        errors.contains("No space left on device") || errors.contains("do not fit"),
        "{errors}"
    );
    assert_ne!(state(&a, "s", "film"), "real");
    assert!(!a.real("s/film").exists(), "a part of film is in the Real");
    std::fs::remove_file(&filler).unwrap();
    // The life thread tries again: a round, or the mode set again.
    a.write_ctl("s/.ctl/mode", "real").unwrap();
    wait_until("a to realize film", || state(&a, "s", "film") == "real");
    assert_eq!(std::fs::read(a.real("s/film")).unwrap(), bytes);
}
