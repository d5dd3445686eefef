//! The control tree on a real mount: every file read, every command and
//! every error DESIGN.md names, each failure logged in `/.ctl/errors`.

mod common;

use std::fs;

use common::Peer;

fn fields(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}

#[test]
fn root_ctl_is_listed_and_area_ctl_is_found_by_lookup_only() {
    let p = Peer::start();
    let root: Vec<String> = fs::read_dir(&p.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(root.contains(&".ctl".to_string()));
    let mut ctl: Vec<String> = fs::read_dir(p.path(".ctl"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    ctl.sort();
    assert_eq!(
        ctl,
        [
            "areas",
            "cache",
            "config",
            "conflicts",
            "consensus",
            "dump",
            "errors",
            "health",
            "history",
            "id",
            "peers",
            "stats",
            "transfers"
        ]
    );
    fs::create_dir_all(p.path("a/sub")).unwrap();
    assert_eq!(
        fs::read_dir(p.path("a")).unwrap().count(),
        1,
        "only sub is listed"
    );
    let mut files: Vec<String> = fs::read_dir(p.path("a/sub/.ctl"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["ctl", "mode", "status", "versions"]);
    // Control files report size 0, like /proc, and read in full anyway.
    assert_eq!(fs::metadata(p.path(".ctl/config")).unwrap().len(), 0);
    assert!(p.read(".ctl/config").lines().count() >= 11);
}

#[test]
fn id_shows_the_peer_id_and_name() {
    let p = Peer::start();
    let id = p.read(".ctl/id");
    let f = fields(id.trim_end());
    assert_eq!(f.len(), 2, "{id}");
    assert_eq!(f[0].len(), 52);
    assert!(
        f[0].bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    );
    p.write_ctl(".ctl/config", "name laptop").unwrap();
    assert_eq!(p.read(".ctl/id"), format!("{} laptop\n", f[0]));
    assert_eq!(p.ctl_errno(".ctl/id", "x"), libc::EACCES);
}

#[test]
fn areas_commands_and_their_errors() {
    let p = Peer::start();
    p.write_ctl(".ctl/areas", "create photos").unwrap();
    assert!(p.path("photos").is_dir());
    assert!(p.real("photos").is_dir());
    p.write_ctl(".ctl/areas", r"create my\sdocs").unwrap();
    assert!(p.path("my docs").is_dir());
    fs::write(p.path("photos/a.jpg"), vec![1u8; 1000]).unwrap();
    fs::write(p.path("photos/b.jpg"), vec![2u8; 24]).unwrap();
    p.wait_recorded("photos");
    let areas = p.read(".ctl/areas");
    assert!(
        areas.lines().any(|l| l == "photos real 2 1024 -"),
        "{areas}"
    );
    assert!(
        areas.lines().any(|l| l == r"my\sdocs real 0 0 -"),
        "{areas}"
    );

    assert_eq!(p.ctl_errno(".ctl/areas", "create photos"), libc::EEXIST);
    assert_eq!(p.ctl_errno(".ctl/areas", "remove photos"), libc::EBUSY);
    assert_eq!(p.ctl_errno(".ctl/areas", "remove nothing"), libc::ENOENT);
    assert_eq!(
        p.ctl_errno(".ctl/areas", "share nothing aaaa"),
        libc::EINVAL
    );
    assert_eq!(
        p.ctl_errno(".ctl/areas", "share photos not-a-peer"),
        libc::EINVAL
    );
    let stranger = "a".repeat(52);
    assert_eq!(
        p.ctl_errno(".ctl/areas", &format!("share photos {stranger}")),
        libc::ENOENT
    );
    assert_eq!(
        p.ctl_errno(".ctl/areas", &format!("unshare photos {stranger}")),
        libc::ENOENT
    );
    assert_eq!(p.ctl_errno(".ctl/areas", "create"), libc::EINVAL);
    assert_eq!(p.ctl_errno(".ctl/areas", "create a b"), libc::EINVAL);
    assert_eq!(p.ctl_errno(".ctl/areas", "destroy photos"), libc::EINVAL);
    assert_eq!(p.ctl_errno(".ctl/areas", r"create bad\q"), libc::EINVAL);
    assert_eq!(p.ctl_errno(".ctl/areas", "create .ctl"), libc::EPERM);
    assert_eq!(
        p.ctl_errno(".ctl/areas", &format!("create {}", "n".repeat(256))),
        libc::ENAMETOOLONG
    );

    p.write_ctl(".ctl/areas", r"remove my\sdocs").unwrap();
    assert!(!p.path("my docs").exists());
    assert!(!p.real("my docs").exists());
    let errors = p.read(".ctl/errors");
    assert_eq!(errors.lines().count(), 13, "{errors}");
    assert!(
        errors.lines().any(|l| l
            .ends_with("/.ctl/areas remove photos: the area is not empty: remove its files first")),
        "{errors}"
    );
    assert!(
        errors.contains(&format!("unknown peer {stranger}")),
        "{errors}"
    );
}

#[test]
fn malformed_commands_are_einval_and_logged() {
    let p = Peer::start();
    // (An empty write(2) never reaches the file system.)
    for bad in ["\n", "create  a", "create a\ncreate b", " create a"] {
        let mut f = fs::File::options()
            .write(true)
            .open(p.path(".ctl/areas"))
            .unwrap();
        let err = std::io::Write::write(&mut f, bad.as_bytes())
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{bad:?}");
    }
    let mut f = fs::File::options()
        .write(true)
        .open(p.path(".ctl/config"))
        .unwrap();
    let err = std::io::Write::write(&mut f, &[0xff, 0xfe, b'\n']).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    let errors = p.read(".ctl/errors");
    assert_eq!(errors.lines().count(), 5, "{errors}");
    assert!(errors.lines().all(|l| l.contains(" /.ctl/")), "{errors}");
    assert!(
        errors.contains(r"create a\ncreate b:"),
        "newlines are escaped: {errors}"
    );
    // Through the shell, as a user would.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo frobnicate > {}",
            p.path(".ctl/areas").display()
        ))
        .status()
        .unwrap();
    assert!(!status.success());
    assert!(
        p.read(".ctl/errors")
            .contains("frobnicate: unknown command")
    );
}

#[test]
fn read_only_and_write_only_files_refuse_with_eacces() {
    let p = Peer::start();
    fs::create_dir(p.path("a")).unwrap();
    for file in [
        ".ctl/id",
        ".ctl/history",
        ".ctl/stats",
        ".ctl/errors",
        "a/.ctl/status",
    ] {
        assert_eq!(p.ctl_errno(file, "x"), libc::EACCES, "{file}");
    }
    let err = fs::File::open(p.path("a/.ctl/ctl")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    let errors = p.read(".ctl/errors");
    assert_eq!(errors.lines().count(), 6, "{errors}");
    assert!(
        errors.contains("/a/.ctl/ctl open for reading: write-only control file"),
        "{errors}"
    );
    // The tree cannot be changed.
    assert!(fs::remove_file(p.path(".ctl/id")).is_err());
    assert!(fs::write(p.path(".ctl/new"), b"x").is_err());
}

#[test]
fn config_lists_every_setting_and_checks_values() {
    let p = Peer::start();
    let config = p.read(".ctl/config");
    let keys: Vec<&str> = config.lines().map(|l| fields(l)[0]).collect();
    assert_eq!(
        keys,
        [
            "name",
            "mode.local",
            "mode.remote",
            "copies",
            "cache.max",
            "cache.min_free",
            "cache.verify",
            "consensus.rest",
            "consensus.immediate",
            "consensus.interval",
            "consensus.timeout",
            "net.timeout",
            "versions.keep",
            "versions.max"
        ]
    );
    for default in [
        "mode.local real",
        "mode.remote unreal",
        "copies 1",
        "cache.max 10%",
        "cache.min_free 1G",
        "versions.keep 30d",
        "versions.max 5%",
        "cache.verify on",
        "consensus.immediate delete,rename",
        "consensus.interval 0",
        "consensus.timeout 60s",
        "net.timeout 30s",
    ] {
        assert!(
            config.lines().any(|l| l == default),
            "{default} in {config}"
        );
    }
    assert!(
        config.lines().any(|l| l == "consensus.rest 50ms"),
        "{config}"
    );
    p.write_ctl(".ctl/config", "cache.max 2G").unwrap();
    p.write_ctl(".ctl/config", "copies 2").unwrap();
    p.write_ctl(".ctl/config", "consensus.immediate -").unwrap();
    for (bad, errno) in [
        ("cache.max lots", libc::EINVAL),
        ("cache.max 0%", libc::EINVAL),
        ("copies -1", libc::EINVAL),
        ("net.timeout 30", libc::EINVAL),
        ("mode.local sometimes", libc::EINVAL),
        ("consensus.immediate delete,explode", libc::EINVAL),
        ("colour blue", libc::EINVAL),
        ("name", libc::EINVAL),
        ("name two words", libc::EINVAL),
    ] {
        assert_eq!(p.ctl_errno(".ctl/config", bad), errno, "{bad}");
    }
    let config = p.read(".ctl/config");
    assert!(
        config.contains("cache.max 2G\n")
            && config.contains("copies 2\n")
            && config.contains("consensus.immediate -\n")
    );
    assert_eq!(p.read(".ctl/errors").lines().count(), 9);
}

#[test]
fn stats_count_requests() {
    let p = Peer::start();
    for name in [
        "fuse.ops",
        "net.rx_bytes",
        "net.tx_bytes",
        "fetch.blobs",
        "fetch.bytes",
        "verify.failures",
        "handshake.refused",
        "consensus.rounds",
        "conflicts",
    ] {
        p.stat(name);
    }
    let before = p.stat("fuse.ops");
    fs::create_dir(p.path("s")).unwrap();
    for i in 0..10 {
        fs::write(p.path(&format!("s/{i}")), b"x").unwrap();
    }
    assert!(p.stat("fuse.ops") >= before + 30);
    assert_eq!(p.stat("net.rx_bytes"), 0);
}

#[test]
fn errors_keep_the_last_hundred() {
    let p = Peer::start();
    for i in 0..105 {
        assert_eq!(
            p.ctl_errno(".ctl/config", &format!("bogus{i} 1")),
            libc::EINVAL
        );
    }
    let errors = p.read(".ctl/errors");
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 100);
    assert!(
        lines[0].contains("bogus5 1: unknown setting"),
        "{}",
        lines[0]
    );
    assert!(lines[99].contains("bogus104 1"));
    let time = fields(lines[0])[0];
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
}

#[test]
fn modes_are_stored_and_inherited() {
    let p = Peer::start();
    fs::create_dir_all(p.path("m/a/b")).unwrap();
    fs::write(p.path("m/a/b/f"), b"f").unwrap();
    assert_eq!(p.read("m/.ctl/mode"), "real\n");
    assert_eq!(p.read("m/a/b/.ctl/mode"), "real\n");
    p.write_ctl("m/a/.ctl/mode", "unreal").unwrap();
    assert_eq!(p.read("m/a/.ctl/mode"), "unreal\n");
    assert_eq!(p.read("m/a/b/.ctl/mode"), "unreal\n");
    assert_eq!(p.read("m/.ctl/mode"), "real\n");
    let status = p.read("m/a/.ctl/status");
    assert_eq!(fields(status.lines().next().unwrap())[5], "unreal");
    let status = p.read("m/.ctl/status");
    assert_eq!(
        fields(status.lines().next().unwrap())[5],
        "unreal*",
        "{status}"
    );
    p.write_ctl("m/a/b/.ctl/ctl", "real f").unwrap();
    let status = p.read("m/a/b/.ctl/status");
    assert_eq!(fields(status.lines().next().unwrap())[5], "real*");
    p.write_ctl("m/a/b/.ctl/ctl", "inherit f").unwrap();
    let status = p.read("m/a/b/.ctl/status");
    assert_eq!(fields(status.lines().next().unwrap())[5], "unreal");
    p.write_ctl("m/a/.ctl/mode", "inherit").unwrap();
    assert_eq!(p.read("m/a/b/.ctl/mode"), "real\n");
    // Through the shell.
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("echo unreal > {}", p.path("m/.ctl/mode").display()))
        .status()
        .unwrap();
    assert!(ok.success());
    assert_eq!(p.read("m/a/b/.ctl/mode"), "unreal\n");
    assert_eq!(p.ctl_errno("m/.ctl/mode", "sometimes"), libc::EINVAL);
    assert_eq!(p.ctl_errno("m/.ctl/mode", "real now"), libc::EINVAL);
    assert!(
        p.read(".ctl/errors")
            .contains("/m/.ctl/mode sometimes: bad mode")
    );
    // mode.local decides new areas.
    p.write_ctl(".ctl/config", "mode.local unreal").unwrap();
    fs::create_dir(p.path("n")).unwrap();
    assert_eq!(p.read("n/.ctl/mode"), "unreal\n");
}

#[test]
fn dir_ctl_commands_and_errors() {
    let p = Peer::start();
    fs::create_dir_all(p.path("c/d")).unwrap();
    fs::write(p.path("c/with space"), b"x").unwrap();
    p.write_ctl("c/.ctl/ctl", r"unreal with\sspace").unwrap();
    p.write_ctl("c/.ctl/ctl", "real d").unwrap();
    p.write_ctl("c/.ctl/ctl", r"fetch with\sspace").unwrap();
    assert_eq!(p.ctl_errno("c/.ctl/ctl", r"evict with\sspace"), libc::EBUSY);
    assert_eq!(p.ctl_errno("c/.ctl/ctl", "evict d"), libc::EINVAL);
    assert_eq!(p.ctl_errno("c/.ctl/ctl", "real missing"), libc::ENOENT);
    assert_eq!(p.ctl_errno("c/.ctl/ctl", "explode d"), libc::EINVAL);
    assert_eq!(p.ctl_errno("c/.ctl/ctl", "real"), libc::EINVAL);
    assert_eq!(p.ctl_errno("c/.ctl/ctl", "real a b"), libc::EINVAL);
    let status = p.read("c/.ctl/status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(r"with\sspace file ") && fields(l)[5] == "unreal*"),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("d dir real - - real* -")),
        "{status}"
    );
    assert_eq!(p.read(".ctl/errors").lines().count(), 6);
}

#[test]
fn status_shows_dirty_then_real_with_hash_and_holder() {
    let p = Peer::start();
    p.write_ctl(".ctl/config", "name here").unwrap();
    p.write_ctl(".ctl/config", "consensus.rest 1h").unwrap();
    fs::create_dir(p.path("st")).unwrap();
    fs::write(p.path("st/f"), b"hello").unwrap();
    std::os::unix::fs::symlink("f", p.path("st/l")).unwrap();
    let status = p.read("st/.ctl/status");
    assert!(
        status.lines().any(|l| l == "f file dirty 5 - real -"),
        "{status}"
    );
    p.write_ctl(".ctl/config", "consensus.rest 10ms").unwrap();
    // A shorter rest takes effect for files already waiting.
    p.wait_recorded("st");
    let hash = blake3::hash(b"hello").to_hex();
    let status = p.read("st/.ctl/status");
    assert!(
        status
            .lines()
            .any(|l| l == format!("f file real 5 {hash} real here")),
        "{status}"
    );
    let link_hash = blake3::hash(b"f").to_hex();
    assert!(
        status
            .lines()
            .any(|l| l == format!("l link real 1 {link_hash} real here")),
        "{status}"
    );
}
