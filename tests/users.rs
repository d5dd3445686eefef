//! Other local users (issue "POSIX conformance", point 1): with
//! `--allow-other` they may enter and the kernel checks permissions
//! against the owners and modes realize keeps per file on this machine
//! (applied to the Real, since the tests run as root); without it only the
//! mounting user enters.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::Peer;

/// The unprivileged user the steps run as.
const NOBODY: u32 = 65534;

/// Runs `script` with `sh -c` as user and group `NOBODY` in directory
/// `dir`; its exit status and what it printed.
fn as_nobody(dir: &std::path::Path, script: &str) -> (bool, String) {
    // setpriv (util-linux) drops the supplementary groups too.
    let out = Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg("sh")
        .arg("-c")
        .arg(script)
        .current_dir("/")
        .env("D", dir)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[test]
fn other_users_enter_with_allow_other_and_the_kernel_checks_their_rights() {
    let p = Peer::start_allowing_others();
    std::fs::create_dir(p.path("shared")).unwrap();
    std::fs::set_permissions(
        p.path("shared"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(p.path("shared/roots"), b"root's").unwrap();
    std::fs::set_permissions(
        p.path("shared/roots"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (ok, said) = as_nobody(
        &p.path("shared"),
        r#"echo mine > "$D/mine" && cat "$D/mine" && ls "$D""#,
    );
    assert!(ok, "{said}");
    assert!(said.contains("mine") && said.contains("roots"), "{said}");
    // Owned by who made it, here and in the Real.
    let meta = std::fs::metadata(p.path("shared/mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
    let real = std::fs::metadata(p.real("shared/mine")).unwrap();
    assert_eq!((real.uid(), real.gid()), (NOBODY, NOBODY));
    // The kernel refuses what the modes refuse.
    let (ok, said) = as_nobody(&p.path("shared"), r#"cat "$D/roots""#);
    assert!(!ok && said.contains("Permission denied"), "{said}");
    // Only root gives a file away; chown changes the Real too.
    let (ok, _) = as_nobody(&p.path("shared"), r#"chown 0 "$D/mine""#);
    assert!(!ok);
    std::os::unix::fs::chown(p.path("shared/mine"), Some(1000), Some(1000)).unwrap();
    let meta = std::fs::metadata(p.path("shared/mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    let real = std::fs::metadata(p.real("shared/mine")).unwrap();
    assert_eq!((real.uid(), real.gid()), (1000, 1000));
}

#[test]
fn without_allow_other_other_users_cannot_enter() {
    let p = Peer::start();
    std::fs::create_dir(p.path("shared")).unwrap();
    let (ok, said) = as_nobody(&p.path("shared"), r#"ls "$D""#);
    assert!(!ok && said.contains("Permission denied"), "{said}");
}

/// A peer's file and directory belong here to the owner of the directory
/// they arrive in, in the mount and, once real, in the Real.
#[test]
fn what_a_peer_sends_belongs_to_the_owner_of_its_directory_here() {
    let (a, b) = (Peer::start_allowing_others(), Peer::start());
    common::household(&[&a, &b], "t");
    std::fs::create_dir(a.path("t/nobodys")).unwrap();
    std::os::unix::fs::chown(a.path("t/nobodys"), Some(NOBODY), Some(NOBODY)).unwrap();
    a.write_ctl("t/.ctl/mode", "real").unwrap();
    common::consensus(&a);
    common::wait_until("nobodys on b", || b.path("t/nobodys").is_dir());
    std::fs::create_dir(b.path("t/nobodys/sub")).unwrap();
    std::fs::write(b.path("t/nobodys/sub/f"), b"from b").unwrap();
    b.wait_recorded("t/nobodys/sub");
    common::consensus(&b);
    common::wait_until("f real on a", || a.real("t/nobodys/sub/f").is_file());
    for rel in ["t/nobodys/sub", "t/nobodys/sub/f"] {
        let meta = std::fs::metadata(a.path(rel)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY), "{rel}");
        let real = std::fs::metadata(a.real(rel)).unwrap();
        assert_eq!(
            (real.uid(), real.gid()),
            (NOBODY, NOBODY),
            "{rel} in the Real"
        );
    }
    let (ok, said) = as_nobody(
        &a.path("t/nobodys/sub"),
        r#"echo mine >> "$D/f" && cat "$D/f""#,
    );
    assert!(ok && said.contains("from bmine"), "{said}");
}
