//! Test harness: a realize peer on a real FUSE mount, run as a child
//! process of the test, stopped by PID and unmounted in `Drop`.

#![allow(dead_code)]

pub mod files;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a mount may take to appear or a peer to stop.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds or `DEADLINE` passes (then panics with
/// `what`).
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_until_within(what, DEADLINE, condition)
}

/// Polls `condition` until it holds or `limit` passes: for background
/// work that may wait for its next retry (the life thread tries files
/// held off again every 30 s, at a lower priority than requests).
pub fn wait_until_within(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `path` is a mount point (per /proc/self/mounts).
pub fn is_mounted(path: &Path) -> bool {
    let target = path.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(target.as_str()))
}

/// The realize binary under test.
pub fn realize() -> Command {
    Command::new(env!("CARGO_BIN_EXE_realize"))
}

/// One peer: a data directory and a mount point in a temporary directory.
pub struct Peer {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub mnt: PathBuf,
    pub passthrough: bool,
    /// `--listen` argument: `127.0.0.1:PORT`, or `none` for a deaf peer.
    pub listen: String,
    /// Whether `data` is a tmpfs of its own (unmounted on drop).
    small: bool,
    /// More arguments of `realize mount`.
    pub args: Vec<String>,
    child: Option<Child>,
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

impl Peer {
    /// A new peer, mounted with passthrough (when the kernel has it) and
    /// `consensus.rest` of 50ms so writes are recorded quickly.
    pub fn start() -> Peer {
        Peer::start_with(true)
    }

    /// A new peer, with or without passthrough, listening on a free
    /// loopback port.
    pub fn start_with(passthrough: bool) -> Peer {
        Peer::start_listening(passthrough, format!("127.0.0.1:{}", free_port()))
    }

    /// A new deaf peer: it listens nowhere and only dials out.
    pub fn start_deaf() -> Peer {
        Peer::start_listening(true, "none".into())
    }

    /// A new peer with the given `--listen`.
    pub fn start_listening(passthrough: bool, listen: String) -> Peer {
        Peer::start_on(passthrough, listen, None, |_| {})
    }

    /// A new peer mounted with `--allow-other`: other local users may
    /// enter.
    pub fn start_allowing_others() -> Peer {
        let mut p = Peer::start();
        p.stop();
        p.args.push("--allow-other".into());
        p.mount();
        p
    }

    /// A new peer whose DATA is a tmpfs of `mib` MiB: a disk that fills.
    pub fn start_small(mib: u64) -> Peer {
        Peer::start_on(
            true,
            format!("127.0.0.1:{}", free_port()),
            Some(mib),
            |_| {},
        )
    }

    /// A peer whose DATA directory `prepare` is given (not made yet)
    /// before the daemon first starts: to put part of DATA on a file
    /// system of the test's own.
    pub fn start_prepared(prepare: impl FnOnce(&Path)) -> Peer {
        Peer::start_on(true, format!("127.0.0.1:{}", free_port()), None, prepare)
    }

    fn start_on(
        passthrough: bool,
        listen: String,
        tmpfs_mib: Option<u64>,
        prepare: impl FnOnce(&Path),
    ) -> Peer {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        if let Some(mib) = tmpfs_mib {
            std::fs::create_dir(&data).expect("data");
            nix::mount::mount(
                Some("tmpfs"),
                &data,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(format!("size={mib}m,mode=0700").as_str()),
            )
            .expect("mount a tmpfs");
        }
        prepare(&data);
        let mut peer = Peer {
            dir,
            data,
            mnt,
            passthrough,
            listen,
            small: tmpfs_mib.is_some(),
            args: Vec::new(),
            child: None,
        };
        peer.mount();
        peer.write_ctl(".ctl/config", "consensus.rest 50ms")
            .expect("set consensus.rest");
        peer
    }

    /// The log file of the daemon.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("realize.log")
    }

    /// Starts the daemon and waits for the mount.
    pub fn mount(&mut self) {
        assert!(self.child.is_none(), "already mounted");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("log file");
        let mut cmd = realize();
        cmd.arg("mount")
            .arg(&self.mnt)
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(&self.listen)
            .env(
                "RUST_LOG",
                std::env::var("REALIZE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if !self.passthrough {
            cmd.arg("--no-passthrough");
        }
        cmd.args(&self.args);
        let mut child = cmd.spawn().expect("spawn realize");
        let start = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("realize exited with {status}: {}", self.log_text());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "mount did not appear: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Hands the daemon process over to the caller, who must reap it.
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("running")
    }

    /// Sends `signal` and waits for the daemon to exit and the mount to go.
    pub fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = kill(Pid::from_raw(child.id() as i32), signal);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                wait_until("the mount to go", || {
                    !is_mounted(&self.mnt) || signal == Signal::SIGKILL
                });
                if is_mounted(&self.mnt) {
                    lazy_unmount(&self.mnt);
                }
                return status;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                lazy_unmount(&self.mnt);
                panic!("realize did not stop on {signal:?}: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the daemon with SIGTERM.
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(Signal::SIGTERM)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the daemon with SIGKILL and clears the dead mount.
    pub fn kill9(&mut self) {
        self.stop_with(Signal::SIGKILL);
        lazy_unmount(&self.mnt);
        wait_until("the dead mount to go", || !is_mounted(&self.mnt));
    }

    /// This peer's id, from `/.ctl/id`.
    pub fn id(&self) -> String {
        self.read(".ctl/id")
            .split(' ')
            .next()
            .expect("id")
            .to_string()
    }

    /// The state of `other` in `/.ctl/peers` (`connected`, …).
    pub fn state_of(&self, other: &str) -> Option<String> {
        self.read(".ctl/peers")
            .lines()
            .find(|l| l.starts_with(other))
            .and_then(|l| l.split(' ').nth(3))
            .map(str::to_string)
    }

    /// The counter `name` of `/.ctl/stats`.
    pub fn stat(&self, name: &str) -> u64 {
        self.read(".ctl/stats")
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no counter {name}"))
            .parse()
            .expect("a number")
    }

    /// A path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// A path inside the Real (DATA/real).
    pub fn real(&self, rel: &str) -> PathBuf {
        self.data.join("real").join(rel)
    }

    /// Reads a control file (or any file) of the mount as text.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Writes one command to a control file with one write(2), as
    /// `echo CMD > FILE` does; returns the errno on failure.
    pub fn write_ctl(&self, rel: &str, command: &str) -> std::io::Result<()> {
        let mut file = File::options()
            .write(true)
            .truncate(true)
            .open(self.path(rel))?;
        let line = format!("{command}\n");
        let n = file.write(line.as_bytes())?;
        assert_eq!(n, line.len(), "short write to {rel}");
        Ok(())
    }

    /// The errno of a failed control command (panics if it succeeded).
    pub fn ctl_errno(&self, rel: &str, command: &str) -> i32 {
        match self.write_ctl(rel, command) {
            Ok(()) => panic!("{rel} accepted {command:?}"),
            Err(e) => e.raw_os_error().expect("errno"),
        }
    }

    /// Lines of `/.ctl/history`, split into fields.
    pub fn history(&self) -> Vec<Vec<String>> {
        self.read(".ctl/history")
            .lines()
            .map(|l| l.split(' ').map(str::to_string).collect())
            .collect()
    }

    /// Waits until no file of `area`'s directory `dir` is dirty.
    pub fn wait_recorded(&self, dir: &str) {
        let status = format!("{dir}/.ctl/status");
        wait_until(&format!("{dir} to be recorded"), || {
            !self
                .read(&status)
                .lines()
                .any(|l| l.split(' ').nth(2) == Some("dirty"))
        });
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < DEADLINE {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mounted(&self.mnt) {
            lazy_unmount(&self.mnt);
        }
        if self.small {
            lazy_unmount(&self.data);
        }
    }
}

/// Makes `a` and `b` know each other (with addresses where they listen).
pub fn introduce(a: &Peer, b: &Peer) {
    let addr = |p: &Peer| {
        if p.listen == "none" {
            "-".to_string()
        } else {
            p.listen.clone()
        }
    };
    a.write_ctl(".ctl/peers", &format!("add {} {} b", b.id(), addr(b)))
        .unwrap();
    b.write_ctl(".ctl/peers", &format!("add {} {} a", a.id(), addr(a)))
        .unwrap();
}

/// Peers that know each other, with `area` made on the first and shared
/// between every pair.
pub fn household(peers: &[&Peer], area: &str) {
    std::fs::create_dir(peers[0].path(area)).unwrap();
    for (i, a) in peers.iter().enumerate() {
        for b in &peers[i + 1..] {
            introduce(a, b);
            a.write_ctl(".ctl/areas", &format!("share {area} {}", b.id()))
                .unwrap();
            b.write_ctl(".ctl/areas", &format!("share {area} {}", a.id()))
                .unwrap();
        }
    }
}

/// Runs `echo now > /.ctl/consensus` on `peer`, retrying while its peers
/// are still connecting (EHOSTUNREACH), until the deadline.
pub fn consensus(peer: &Peer) {
    let start = Instant::now();
    loop {
        match peer.write_ctl(".ctl/consensus", "now") {
            Ok(()) => return,
            Err(e) if start.elapsed() < DEADLINE => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!(
                "consensus: {e}
{}",
                peer.read(".ctl/errors")
            ),
        }
    }
}

/// Detaches a mount that its daemon left behind.
pub fn lazy_unmount(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
}
