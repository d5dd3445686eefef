//! The daemon's life: init, mount errors, clean stops, remounts, changes
//! made to the Real while unmounted, and kill -9 at any moment.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use common::{Peer, is_mounted, realize, wait_until};
use nix::sys::signal::Signal;

#[test]
fn init_creates_the_key_and_prints_a_stable_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = realize()
        .arg("init")
        .arg("--data")
        .arg(&data)
        .args(["--name", "desk"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap();
    assert_eq!(id.trim_end().len(), 52);
    let mode = fs::metadata(data.join("key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(data.join("db").is_dir() && data.join("real").is_dir());
    let again = realize()
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), id);
    let bad = realize()
        .arg("init")
        .arg("--data")
        .arg(&data)
        .args(["--name", "two words"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn the_default_data_directory_follows_xdg() {
    let dir = tempfile::tempdir().unwrap();
    let out = realize()
        .arg("init")
        .env("XDG_DATA_HOME", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("realize/key").exists());
    let home = tempfile::tempdir().unwrap();
    let out = realize()
        .arg("init")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(home.path().join(".local/share/realize/key").exists());
}

/// Runs `realize mount` expecting a one-line error and a failure status.
fn mount_fails(mountpoint: &Path, data: &Path) -> String {
    let out = realize()
        .arg("mount")
        .arg(mountpoint)
        .arg("--data")
        .arg(data)
        .args(["--listen", "none"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "mount of {} succeeded",
        mountpoint.display()
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn bad_mount_points_and_a_busy_data_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(mount_fails(&dir.path().join("missing"), &data).contains("No such file"));
    let full = dir.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), b"x").unwrap();
    assert!(mount_fails(&full, &data).contains("not empty"));
    fs::write(dir.path().join("file"), b"x").unwrap();
    assert!(mount_fails(&dir.path().join("file"), &data).contains("not a directory"));

    let p = Peer::start();
    assert!(mount_fails(&p.mnt, &dir.path().join("other")).contains("already mounted"));
    let free = dir.path().join("free");
    fs::create_dir(&free).unwrap();
    assert!(mount_fails(&free, &p.data).contains("in use by another running realize"));
    let init = realize()
        .arg("init")
        .arg("--data")
        .arg(&p.data)
        .output()
        .unwrap();
    assert!(!init.status.success());
}

#[test]
fn sigint_sigterm_and_umount_end_the_daemon_cleanly() {
    let mut p = Peer::start();
    fs::create_dir(p.path("a")).unwrap();
    assert!(p.stop_with(Signal::SIGINT).success(), "{}", p.log_text());
    assert!(!is_mounted(&p.mnt));
    p.mount();
    assert!(p.stop_with(Signal::SIGTERM).success());
    p.mount();
    let mut child = p.take_child();
    let umount = std::process::Command::new("umount")
        .arg(&p.mnt)
        .status()
        .unwrap();
    assert!(umount.success());
    let mut status = None;
    wait_until("realize to exit after umount", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "{}", p.log_text());
    // The log went to a file: plain text, no terminal colours.
    let log = p.log_text();
    assert!(log.contains("unmounting"), "{log}");
    assert!(!log.contains('\x1b'), "{log}");
}

#[test]
fn everything_survives_a_remount() {
    let mut p = Peer::start();
    fs::create_dir_all(p.path("keep/d")).unwrap();
    fs::write(p.path("keep/d/f"), b"persistent").unwrap();
    std::os::unix::fs::symlink("d/f", p.path("keep/l")).unwrap();
    p.write_ctl("keep/d/.ctl/mode", "unreal").unwrap();
    p.write_ctl(".ctl/config", "cache.max 3G").unwrap();
    let ino = fs::metadata(p.path("keep/d/f")).unwrap().ino();
    let dir_ino = fs::metadata(p.path("keep/d")).unwrap().ino();
    assert!(p.stop().success());
    p.mount();
    assert_eq!(fs::read(p.path("keep/d/f")).unwrap(), b"persistent");
    assert_eq!(fs::metadata(p.path("keep/d/f")).unwrap().ino(), ino);
    assert_eq!(fs::metadata(p.path("keep/d")).unwrap().ino(), dir_ino);
    assert_eq!(
        fs::read_link(p.path("keep/l")).unwrap().to_str(),
        Some("d/f")
    );
    assert_eq!(p.read("keep/d/.ctl/mode"), "unreal\n");
    assert!(p.read(".ctl/config").contains("cache.max 3G\n"));
    // The write was recorded at unmount even though it had not rested.
    let history = p.history();
    assert!(
        history.iter().any(|f| f[3] == "create" && f[4] == "d/f"),
        "{history:?}"
    );
    // New inodes never reuse old numbers.
    fs::write(p.path("keep/new"), b"n").unwrap();
    assert!(fs::metadata(p.path("keep/new")).unwrap().ino() > ino);
}

#[test]
fn changes_to_the_real_while_unmounted_are_recorded_at_the_next_mount() {
    let mut p = Peer::start();
    fs::create_dir_all(p.path("off/sub")).unwrap();
    fs::write(p.path("off/edited"), b"before").unwrap();
    fs::write(p.path("off/gone"), b"bye").unwrap();
    p.wait_recorded("off");
    assert!(p.stop().success());
    fs::write(p.real("off/edited"), b"after, longer").unwrap();
    fs::remove_file(p.real("off/gone")).unwrap();
    fs::write(p.real("off/sub/new"), b"new").unwrap();
    fs::create_dir(p.real("off/newdir")).unwrap();
    fs::create_dir(p.real("newarea")).unwrap();
    fs::write(p.real("newarea/x"), b"x").unwrap();
    p.mount();
    p.wait_recorded("off");
    p.wait_recorded("off/sub");
    p.wait_recorded("newarea");
    let ops: Vec<(String, String, String)> = p
        .history()
        .into_iter()
        .map(|f| (f[0].clone(), f[3].clone(), f[4].clone()))
        .collect();
    let has =
        |area: &str, op: &str, path: &str| ops.contains(&(area.into(), op.into(), path.into()));
    assert!(has("off", "edit", "edited"), "{ops:?}");
    assert!(has("off", "delete", "gone"), "{ops:?}");
    assert!(has("off", "create", "sub/new"), "{ops:?}");
    assert!(has("off", "mkdir", "newdir"), "{ops:?}");
    assert!(has("newarea", "create", "x"), "{ops:?}");
    assert_eq!(fs::read(p.path("off/edited")).unwrap(), b"after, longer");
    assert!(!p.path("off/gone").exists());
    assert!(
        p.read(".ctl/areas")
            .lines()
            .any(|l| l.starts_with("newarea real 1 1 "))
    );
}

/// Every file of a tree, relative path → content (`None` for directories).
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    out
}

#[test]
fn kill_9_in_the_middle_of_work_leaves_lmdb_and_the_real_consistent() {
    let mut p = Peer::start();
    fs::create_dir(p.path("k")).unwrap();
    for round in 0..3 {
        let root = p.path("k");
        let worker = std::thread::spawn(move || {
            let mut i = 0u32;
            // Runs until the mount dies under it.
            loop {
                let dir = root.join(format!("d{}", i % 7));
                let _ = fs::create_dir(&dir);
                if fs::write(
                    dir.join(format!("f{i}")),
                    vec![i as u8; (i % 5000) as usize],
                )
                .is_err()
                {
                    break;
                }
                let _ = fs::rename(dir.join(format!("f{i}")), dir.join(format!("r{i}")));
                if i.is_multiple_of(3) {
                    let _ = fs::remove_file(dir.join(format!("r{}", i / 2)));
                }
                i += 1;
                if i > 100_000 {
                    break;
                }
            }
        });
        wait_until("some work", || {
            fs::read_dir(p.path("k"))
                .map(|d| d.count() > 3)
                .unwrap_or(false)
        });
        std::thread::sleep(std::time::Duration::from_millis(100 + 50 * round));
        p.kill9();
        let _ = worker.join();
        p.mount();
        // The mount shows exactly the Real, and every file reads whole.
        let mounted = tree(&p.path("k"));
        let real = tree(&p.real("k"));
        assert_eq!(
            mounted.keys().collect::<Vec<_>>(),
            real.keys().collect::<Vec<_>>()
        );
        assert!(
            mounted == real,
            "contents differ after kill -9 (round {round})"
        );
        // Every directory's status reads, and every listed file is there.
        for (rel, content) in &mounted {
            if content.is_none() {
                let status = p.read(&format!("k/{rel}/.ctl/status"));
                assert_eq!(
                    status.lines().count(),
                    fs::read_dir(p.path(&format!("k/{rel}"))).unwrap().count()
                );
            }
        }
    }
}

#[test]
fn touching_a_file_is_not_an_edit() {
    let mut p = Peer::start();
    fs::create_dir(p.path("t")).unwrap();
    fs::write(p.path("t/f"), b"same").unwrap();
    p.wait_recorded("t");
    let before = p.history().len();
    let touch = std::process::Command::new("touch")
        .arg(p.path("t/f"))
        .status()
        .unwrap();
    assert!(touch.success());
    assert!(p.stop().success());
    p.mount();
    p.wait_recorded("t");
    assert_eq!(p.history().len(), before, "{:?}", p.history());
    // An offline change of the same size is still caught by its mtime.
    assert!(p.stop().success());
    fs::write(p.real("t/f"), b"SAME").unwrap();
    p.mount();
    p.wait_recorded("t");
    assert_eq!(p.history().last().unwrap()[3], "edit");
}
