//! The Real behind a rooted handle, on real mounts: paths as long as the
//! kernel lets a user make through the mount, and no symlink in
//! `DATA/real` taking realize's own calls out of it.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use common::{Peer, consensus, household, wait_until};
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, mkdirat};

/// One component of 200 bytes, different per depth.
fn component(depth: usize) -> String {
    format!("{depth:03}-{}", "d".repeat(196))
}

fn dir_fd(path: &Path) -> OwnedFd {
    open(path, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap()
}

/// Walks down `depth` components from `top`, one `openat` a step, as a
/// shell that `cd`s one directory at a time does; makes them when `make`.
fn walk(top: &Path, depth: usize, make: bool) -> OwnedFd {
    let mut fd = dir_fd(top);
    for d in 0..depth {
        let name = component(d);
        if make {
            mkdirat(&fd, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
        }
        fd = openat(
            &fd,
            name.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .unwrap_or_else(|e| panic!("entering level {d}: {e}"));
    }
    fd
}

/// Like [`walk`] without making anything: `None` where a level is missing.
fn try_walk(top: &Path, depth: usize) -> Option<OwnedFd> {
    let mut fd = open(top, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).ok()?;
    for d in 0..depth {
        let name = component(d);
        fd = openat(
            &fd,
            name.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .ok()?;
    }
    Some(fd)
}

fn open_in(dir: &OwnedFd, name: &str, flags: OFlag) -> File {
    File::from(openat(dir, name, flags, Mode::from_bits_truncate(0o644)).unwrap())
}

#[test]
fn a_path_of_5000_bytes_made_in_steps_works() {
    const DEPTH: usize = 25; // 25 × 201 bytes: 5,025 bytes below the area
    let mut p = Peer::start();
    std::fs::create_dir(p.path("deep")).unwrap();
    let bottom = walk(&p.path("deep"), DEPTH, true);
    let content = b"at the bottom of a 5,000-byte path\n";
    open_in(
        &bottom,
        "file",
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_EXCL,
    )
    .write_all(content)
    .unwrap();
    let stat = nix::sys::stat::fstatat(&bottom, "file", nix::fcntl::AtFlags::empty()).unwrap();
    assert_eq!(stat.st_size as usize, content.len());
    nix::sys::stat::fchmodat(
        &bottom,
        "file",
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .unwrap();
    nix::fcntl::renameat(&bottom, "file", &bottom, "renamed").unwrap();
    let mut read = String::new();
    open_in(&bottom, "renamed", OFlag::O_RDONLY)
        .read_to_string(&mut read)
        .unwrap();
    assert_eq!(read.as_bytes(), content);
    // The bytes are in the Real, as deep.
    let real = walk(&p.real("deep"), DEPTH, false);
    let meta = nix::sys::stat::fstatat(&real, "renamed", nix::fcntl::AtFlags::empty()).unwrap();
    assert_eq!(meta.st_mode & 0o777, 0o600);
    drop((bottom, real));
    // A remount walks the deep Real (reconciliation) and shows it again.
    p.stop();
    p.mount();
    let bottom = walk(&p.path("deep"), DEPTH, false);
    let mut read = String::new();
    open_in(&bottom, "renamed", OFlag::O_RDONLY)
        .read_to_string(&mut read)
        .unwrap();
    assert_eq!(read.as_bytes(), content);
    nix::unistd::unlinkat(&bottom, "renamed", nix::unistd::UnlinkatFlags::NoRemoveDir).unwrap();
    // And back up, removing each level.
    drop(bottom);
    for d in (0..DEPTH).rev() {
        let parent = walk(&p.path("deep"), d, false);
        nix::unistd::unlinkat(
            &parent,
            component(d).as_str(),
            nix::unistd::UnlinkatFlags::RemoveDir,
        )
        .unwrap_or_else(|e| panic!("rmdir of level {d}: {e}"));
    }
    assert_eq!(std::fs::read_dir(p.real("deep")).unwrap().count(), 0);
}

#[test]
fn a_path_of_5000_bytes_reaches_another_peer_and_blocks_nothing() {
    const DEPTH: usize = 25;
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "area");
    let content = b"sent down a 5,000-byte path\n";
    let bottom = walk(&a.path("area"), DEPTH, true);
    open_in(
        &bottom,
        "file",
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_EXCL,
    )
    .write_all(content)
    .unwrap();
    drop(bottom);
    // A file beside it travels in the same rounds: the long path holds up
    // neither the page it is in nor the area.
    std::fs::write(a.path("area/beside"), b"beside").unwrap();
    wait_until("b to show both files", || {
        consensus(&a);
        b.path("area/beside").exists()
            && try_walk(&b.path("area"), DEPTH).is_some_and(|fd| {
                nix::sys::stat::fstatat(&fd, "file", nix::fcntl::AtFlags::empty()).is_ok()
            })
    });
    let mut read = Vec::new();
    open_in(
        &walk(&b.path("area"), DEPTH, false),
        "file",
        OFlag::O_RDONLY,
    )
    .read_to_end(&mut read)
    .unwrap();
    assert_eq!(
        read, content,
        "the unreal file's bytes, fetched by its long path"
    );
    assert_eq!(std::fs::read(b.path("area/beside")).unwrap(), b"beside");
}

#[test]
fn a_symlink_planted_in_the_real_leads_nowhere() {
    let p = Peer::start();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(p.path("area/dir")).unwrap();
    std::fs::write(p.path("area/dir/kept"), b"kept").unwrap();
    // Behind realize's back, the directory becomes a symlink out of the
    // Real (a race, a damaged DATA, a hostile hand).
    std::fs::rename(p.real("area/dir"), outside.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), p.real("area/dir")).unwrap();
    let errno = |r: std::io::Result<File>| r.map(|_| ()).unwrap_err().raw_os_error();
    // Creating, opening and removing through the mount's namespace, which
    // still has a directory there: refused, nothing written outside.
    assert_eq!(
        errno(File::create(p.path("area/dir/escaped"))),
        Some(libc::ELOOP)
    );
    assert_eq!(
        errno(File::open(p.path("area/dir/kept"))),
        Some(libc::ELOOP)
    );
    assert!(std::fs::create_dir(p.path("area/dir/sub")).is_err());
    assert!(std::fs::remove_file(p.path("area/dir/kept")).is_err());
    let names: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["moved"], "nothing was made outside the Real");
    assert_eq!(
        std::fs::read(outside.path().join("moved/kept")).unwrap(),
        b"kept"
    );
    // The refused open for writing left `kept` waiting for the recorder,
    // which cannot reach it: it is dropped with a line in /.ctl/errors,
    // and the files written after it are recorded all the same.
    std::fs::write(p.path("area/after"), b"after").unwrap();
    p.wait_recorded("area");
    wait_until("the recorder to give up on dir/kept", || {
        p.read(".ctl/errors").contains("record dir/kept")
    });
    let tries = p.log_text().matches("recording dir/kept").count();
    assert_eq!(tries, 1, "tried once, not in a loop:\n{}", p.log_text());
}
