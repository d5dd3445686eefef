//! Waiting on peers (DESIGN.md "Waiting on peers") on real mounts: a
//! stopped holder freezes nothing, reads give up at `net.timeout`, a ^C'd
//! read returns by its deadline, and a silent peer is shown offline.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Peer, consensus, household, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Stops a peer's process as a suspended laptop would (its connections
/// stay open, nothing answers) and lets it go again when dropped, so a
/// failing test leaves no stopped process behind.
struct Stopped(Pid);

impl Stopped {
    fn stop(peer: &Peer) -> Stopped {
        let pid = Pid::from_raw(peer.pid() as i32);
        kill(pid, Signal::SIGSTOP).unwrap();
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// `len` bytes that differ from file to file.
fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).wrapping_add(seed) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// How long `f` takes.
fn timed(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

#[test]
fn a_stopped_holder_freezes_nothing_else() {
    const READS: usize = 64;
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "w");
    let files: Vec<Vec<u8>> = (0..READS + 8).map(|i| bytes(300 << 10, i as u32)).collect();
    for (i, content) in files.iter().enumerate() {
        std::fs::write(a.path(&format!("w/f{i:02}")), content).unwrap();
    }
    a.wait_recorded("w");
    consensus(&a);
    std::fs::write(b.path("w/mine"), b"real on b").unwrap();
    let stopped = Stopped::stop(&a);
    // Reads of unreal files whose only holder is stopped: each waits.
    let readers: Vec<_> = (0..READS)
        .map(|i| {
            let path = b.path(&format!("w/f{i:02}"));
            std::thread::spawn(move || std::fs::read(path))
        })
        .collect();
    wait_until("every read to wait on the stopped holder", || {
        b.stat("fuse.waiting") >= READS as u64
    });
    // Everything else answers as if nothing waited.
    let mut took = Vec::new();
    for i in 0..20 {
        took.push(timed(|| {
            assert!(std::fs::read_dir(b.path("w")).unwrap().count() >= READS);
        }));
        took.push(timed(|| {
            // Names never looked up reach the daemon (no negative entry).
            let missing = b.path(&format!("w/missing-{i}"));
            assert!(std::fs::symlink_metadata(missing).is_err());
        }));
        took.push(timed(|| {
            let unread = b.path(&format!("w/f{:02}", READS + i % 8));
            assert_eq!(std::fs::metadata(unread).unwrap().len(), 300 << 10);
        }));
        took.push(timed(|| {
            assert_eq!(std::fs::read(b.path("w/mine")).unwrap(), b"real on b");
        }));
        for ctl in [
            ".ctl/peers",
            ".ctl/stats",
            ".ctl/transfers",
            "w/.ctl/status",
        ] {
            took.push(timed(|| {
                std::fs::read(b.path(ctl)).unwrap();
            }));
        }
        took.push(timed(|| {
            b.write_ctl(".ctl/config", "consensus.rest 1s").unwrap();
        }));
    }
    assert!(
        b.stat("fuse.waiting") >= READS as u64,
        "the reads were still waiting while the rest was timed"
    );
    took.sort();
    let (median, max) = (took[took.len() / 2], took[took.len() - 1]);
    assert!(
        median < Duration::from_millis(100) && max < Duration::from_secs(1),
        "with {READS} reads waiting: median {median:?}, max {max:?}"
    );
    // The holder comes back before net.timeout: every read gets its bytes.
    drop(stopped);
    for (i, reader) in readers.into_iter().enumerate() {
        let read = reader.join().unwrap();
        assert_eq!(read.unwrap(), files[i], "f{i:02}");
    }
    assert_eq!(b.stat("fuse.waiting"), 0);
}

#[test]
fn a_read_nobody_answers_fails_at_net_timeout_and_the_peer_goes_offline() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "t");
    let content = bytes(3 << 20, 7);
    std::fs::write(a.path("t/big"), &content).unwrap();
    a.wait_recorded("t");
    consensus(&a);
    b.write_ctl(".ctl/config", "net.timeout 3s").unwrap();
    let id = a.id();
    let stopped = Stopped::stop(&a);
    let started = Instant::now();
    let read = std::fs::read(b.path("t/big"));
    let took = started.elapsed();
    assert_eq!(
        read.unwrap_err().raw_os_error(),
        Some(libc::EHOSTUNREACH),
        "a read nobody answers"
    );
    // The connection stays up for the QUIC idle timeout (10 s): the
    // deadline, not the link going down, ended the read.
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "failed after {took:?}, net.timeout is 3s"
    );
    // A peer that stops answering is shown offline within the idle
    // timeout (10 s) once the read gave up.
    wait_until("a to be shown offline", || {
        b.state_of(&id).as_deref() == Some("offline")
    });
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "offline after {:?}",
        started.elapsed()
    );
    // And stays offline while it is dialled again in the background (each
    // dial waits net.timeout for a stopped process).
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        let state = b.state_of(&id);
        assert_eq!(state.as_deref(), Some("offline"), "while a is away");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stopped);
    // Back again: the read succeeds.
    wait_until("a to reconnect", || {
        b.state_of(&id).as_deref() == Some("connected")
    });
    assert_eq!(std::fs::read(b.path("t/big")).unwrap(), content);
}

#[test]
fn an_interrupted_read_returns_by_its_deadline() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "i");
    std::fs::write(a.path("i/big"), bytes(24 << 20, 3)).unwrap();
    a.wait_recorded("i");
    consensus(&a);
    b.write_ctl(".ctl/config", "net.timeout 3s").unwrap();
    let _stopped = Stopped::stop(&a);
    // O_DIRECT: the read is a request of the process itself, which the
    // kernel waits out once the daemon has it (fuser answers interrupts
    // with ENOSYS), so only the daemon's answer ends it.
    let mut cat = std::process::Command::new("dd")
        .arg(format!("if={}", b.path("i/big").display()))
        .args(["of=/dev/null", "bs=1M", "iflag=direct"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the read to wait", || b.stat("fuse.waiting") >= 1);
    let started = Instant::now();
    kill(Pid::from_raw(cat.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = cat.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = cat.kill();
            let _ = cat.wait();
            panic!("dd still waits 10 s after ^C (net.timeout is 3s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    eprintln!("dd ended {took:?} after ^C");
    assert!(took < Duration::from_secs(4), "dd ended {took:?} after ^C");
    wait_until("nothing to wait any more", || b.stat("fuse.waiting") == 0);
}
