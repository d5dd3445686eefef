//! FIFOs, sockets and device nodes (issue "POSIX conformance", point 2):
//! made in an area like on a local disk, they live in the Real of this
//! peer only, are never recorded or sent, show as `local` in `status`, and
//! stay through a remount. A peer's file at the same path moves one aside;
//! one renamed over a recorded file deletes that file at the peers.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::{Peer, consensus, household, wait_until};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

/// The `status` line of `name` in directory `dir`, split into fields.
fn status_line(p: &Peer, dir: &str, name: &str) -> Vec<String> {
    let status = p.read(&format!("{dir}/.ctl/status"));
    status
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f[0] == name)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// Whether the history of `p` mentions `name`.
fn in_history(p: &Peer, name: &str) -> bool {
    p.history().iter().flatten().any(|f| f.contains(name))
}

#[test]
fn fifos_sockets_and_devices_are_made_used_and_kept_on_this_peer_only() {
    let (mut a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "t");
    nix::unistd::mkfifo(&a.path("t/pipe"), Mode::from_bits_truncate(0o640)).unwrap();
    mknod(
        &a.path("t/null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    let listener = std::os::unix::net::UnixListener::bind(a.path("t/sock")).unwrap();
    std::fs::write(a.path("t/plain"), b"plain").unwrap();

    let mnt = a.path("t");
    let meta = |name: &str| std::fs::symlink_metadata(mnt.join(name)).unwrap();
    assert!(meta("pipe").file_type().is_fifo());
    assert_eq!(meta("pipe").mode() & 0o7777, 0o640);
    assert!(meta("null").file_type().is_char_device());
    assert_eq!(meta("null").rdev(), makedev(1, 3));
    assert!(meta("sock").file_type().is_socket());
    // In the Real as they are in the mount.
    assert!(
        std::fs::symlink_metadata(a.real("t/pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        std::fs::symlink_metadata(a.real("t/null")).unwrap().rdev(),
        makedev(1, 3)
    );

    // They work: the kernel opens them, never realize.
    let writer = {
        let path = a.path("t/pipe");
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            w.write_all(b"through the pipe").unwrap();
        })
    };
    let mut got = String::new();
    std::fs::File::open(a.path("t/pipe"))
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    writer.join().unwrap();
    assert_eq!(got, "through the pipe");
    let client = std::thread::spawn({
        let path = a.path("t/sock");
        move || {
            let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
            s.write_all(b"over the socket").unwrap();
        }
    });
    let (mut conn, _) = listener.accept().unwrap();
    let mut said = String::new();
    conn.read_to_string(&mut said).unwrap();
    client.join().unwrap();
    assert_eq!(said, "over the socket");

    for (name, kind) in [("pipe", "fifo"), ("null", "char"), ("sock", "socket")] {
        let line = status_line(&a, "t", name);
        assert_eq!(
            (line[1].as_str(), line[2].as_str()),
            (kind, "local"),
            "{line:?}"
        );
    }
    a.wait_recorded("t");
    consensus(&a);
    wait_until("plain on b", || b.path("t/plain").exists());
    for name in ["pipe", "null", "sock"] {
        assert!(!in_history(&a, name), "{name} recorded: {:?}", a.history());
        assert!(std::fs::symlink_metadata(b.path(&format!("t/{name}"))).is_err());
    }

    // A remount finds them in the Real, still local and unrecorded.
    drop((listener, conn));
    a.stop();
    a.mount();
    assert!(meta("pipe").file_type().is_fifo());
    assert_eq!(meta("null").rdev(), makedev(1, 3));
    assert_eq!(status_line(&a, "t", "sock")[2], "local");
    assert!(!in_history(&a, "pipe"), "{:?}", a.history());
    std::fs::remove_file(a.path("t/pipe")).unwrap();
    assert!(std::fs::symlink_metadata(a.real("t/pipe")).is_err());
    assert!(!in_history(&a, "pipe"), "{:?}", a.history());
}

#[test]
fn a_special_file_gives_way_to_a_peers_file_and_deletes_what_it_replaces() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "t");
    std::fs::write(a.path("t/x"), b"x of a").unwrap();
    a.wait_recorded("t");
    consensus(&a);
    wait_until("x on b", || b.path("t/x").exists());

    // Renamed over a recorded file: the file is deleted for the peers too.
    nix::unistd::mkfifo(&a.path("t/p"), Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::rename(a.path("t/p"), a.path("t/x")).unwrap();
    assert!(
        std::fs::symlink_metadata(a.path("t/x"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    consensus(&a);
    wait_until("x gone from b", || {
        std::fs::symlink_metadata(b.path("t/x")).is_err()
    });
    assert_eq!(status_line(&a, "t", "x")[2], "local");

    // A peer's file arrives where a FIFO is: the FIFO moves aside, still
    // a FIFO, still local.
    nix::unistd::mkfifo(&a.path("t/y"), Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::write(b.path("t/y"), b"y of b").unwrap();
    b.wait_recorded("t");
    consensus(&b);
    wait_until("y of b on a", || {
        std::fs::symlink_metadata(a.path("t/y")).is_ok_and(|m| m.is_file())
    });
    assert_eq!(a.read("t/y"), "y of b");
    let aside: Vec<String> = std::fs::read_dir(a.path("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("y.conflict-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let moved = a.path(&format!("t/{}", aside[0]));
    assert!(
        std::fs::symlink_metadata(&moved)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(status_line(&a, "t", &aside[0])[2], "local");
    assert!(!in_history(&a, &aside[0]), "{:?}", a.history());
    consensus(&a);
    assert!(std::fs::symlink_metadata(b.path(&format!("t/{}", aside[0]))).is_err());
}
