//! What realize keeps in DATA beside the Real is private to its user
//! (issue "Hostile peers and hard faults", point 3): directories 0700 and
//! files 0600 whatever the umask, so the bytes of a 0600 file fetched from
//! a peer are not readable by other local users; the key file is refused
//! when other users may read it. Files in the Real keep their modes.

mod common;

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use common::files::write_file;
use common::{Peer, consensus, household, realize, wait_until};

/// Every directory and file under `data` but the Real, with its mode.
fn kept_beside_the_real(data: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut dirs = vec![data.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        out.push((dir.display().to_string(), mode));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path == data.join("real") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                dirs.push(path);
            } else {
                out.push((
                    path.display().to_string(),
                    meta.permissions().mode() & 0o7777,
                ));
            }
        }
    }
    out
}

#[test]
fn data_beside_the_real_is_private_whatever_the_umask_and_real_files_keep_their_modes() {
    // Inherited by the daemons this test starts.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let (a, mut b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "s");
    // Made 0600 (later chmods are not carried: realize.7).
    let mut secret = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(a.path("s/secret"))
        .unwrap();
    secret.write_all(b"for my eyes only").unwrap();
    drop(secret);
    write_file(&a, "s/open", b"anyone may read this");
    a.wait_recorded("s");
    consensus(&a);
    wait_until("b to list both", || {
        b.path("s/secret").exists() && b.path("s/open").exists()
    });
    // Fetched into b's cache; a version kept on a (in a's cache) too.
    assert_eq!(
        std::fs::read(b.path("s/secret")).unwrap(),
        b"for my eyes only"
    );
    assert_eq!(
        std::fs::read(b.path("s/open")).unwrap(),
        b"anyone may read this"
    );
    std::fs::write(a.path("s/open"), b"edited").unwrap();
    a.wait_recorded("s");
    let cached = |p: &Peer| std::fs::read_dir(p.data.join("cache")).unwrap().count();
    assert!(cached(&b) >= 2, "b's cache holds both blobs");
    assert!(cached(&a) >= 1, "a's cache holds the version it kept");
    for p in [&a, &b] {
        for (path, mode) in kept_beside_the_real(&p.data) {
            let want = if std::fs::metadata(&path).unwrap().is_dir() {
                0o700
            } else {
                0o600
            };
            assert_eq!(mode, want, "{path} has mode {mode:04o}");
        }
    }
    // The Real keeps what its users gave.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&a.real("s/secret")), 0o600);
    assert_eq!(mode(&a.real("s/open")), 0o666);
    b.write_ctl("s/.ctl/mode", "real").unwrap();
    wait_until("b to realize both", || {
        b.real("s/secret").is_file() && b.real("s/open").is_file()
    });
    assert_eq!(mode(&b.real("s/secret")), 0o600);

    // A key file other users may read is refused, with the fix in the
    // message; the mount does not start.
    b.stop();
    let key = b.data.join("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = realize()
        .arg("mount")
        .arg(&b.mnt)
        .arg("--data")
        .arg(&b.data)
        .arg("--listen")
        .arg(&b.listen)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("mode 0644") && said.contains("chmod 600"),
        "{said}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    b.mount();
    assert_eq!(
        std::fs::read(b.path("s/secret")).unwrap(),
        b"for my eyes only"
    );
}
