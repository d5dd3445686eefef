//! POSIX file operations on a real mount, as a user's tools do them; each
//! test runs with FUSE passthrough and with the userspace path.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

use common::Peer;

/// Runs a test body once with passthrough and once without.
macro_rules! both_paths {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn passthrough() {
                ($body)(Peer::start_with(true));
            }
            #[test]
            fn userspace() {
                ($body)(Peer::start_with(false));
            }
        }
    };
}

fn errno<T: std::fmt::Debug>(result: std::io::Result<T>) -> i32 {
    result
        .expect_err("expected a failure")
        .raw_os_error()
        .expect("errno")
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

both_paths!(trees_build_and_list, |p: Peer| {
    fs::create_dir(p.path("docs")).unwrap();
    fs::create_dir_all(p.path("docs/a/b/c")).unwrap();
    for i in 0..20 {
        fs::write(p.path(&format!("docs/a/b/f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let names: BTreeSet<String> = fs::read_dir(p.path("docs/a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 21);
    assert!(names.contains("c") && names.contains("f19.txt"));
    assert_eq!(
        fs::read_to_string(p.path("docs/a/b/f7.txt")).unwrap(),
        "file 7\n"
    );
    assert_eq!(
        fs::read_to_string(p.real("docs/a/b/f7.txt")).unwrap(),
        "file 7\n"
    );
    assert!(fs::metadata(p.path("docs/a/b/c")).unwrap().is_dir());
    // `find` sees the same tree as the Real.
    let find = |root: &std::path::Path| {
        let out = std::process::Command::new("find")
            .arg(".")
            .current_dir(root)
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(find(&p.path("docs")), find(&p.real("docs")));
});

both_paths!(write_append_truncate_overwrite, |p: Peer| {
    fs::create_dir(p.path("w")).unwrap();
    let path = p.path("w/log");
    fs::write(&path, b"one\n").unwrap();
    let mut f = File::options().append(true).open(&path).unwrap();
    f.write_all(b"two\n").unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    let f = File::options().write(true).open(&path).unwrap();
    f.set_len(3).unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(&path).unwrap(), "one");
    fs::write(&path, b"replaced").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "replaced");
    assert_eq!(fs::metadata(&path).unwrap().len(), 8);
    // Random access writes and reads of a larger file.
    let big = noise(3 << 20, 7);
    fs::write(p.path("w/big"), &big).unwrap();
    let mut f = File::options()
        .read(true)
        .write(true)
        .open(p.path("w/big"))
        .unwrap();
    f.seek(SeekFrom::Start(1_000_000)).unwrap();
    f.write_all(b"PATCH").unwrap();
    f.seek(SeekFrom::Start(999_998)).unwrap();
    let mut buf = [0u8; 9];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[2..7], b"PATCH");
    drop(f);
    let mut expected = big;
    expected[1_000_000..1_000_005].copy_from_slice(b"PATCH");
    assert!(fs::read(p.path("w/big")).unwrap() == expected);
    assert!(fs::read(p.real("w/big")).unwrap() == expected);
    // truncate(1) with no open handle, extend, and O_TRUNC.
    std::process::Command::new("truncate")
        .args(["-s", "10"])
        .arg(p.path("w/log"))
        .status()
        .unwrap();
    assert_eq!(fs::read(p.path("w/log")).unwrap(), b"replaced\0\0");
});

both_paths!(renames_move_files_and_directories, |p: Peer| {
    fs::create_dir_all(p.path("r/a/deep")).unwrap();
    fs::create_dir_all(p.path("r/b")).unwrap();
    fs::write(p.path("r/a/deep/f"), b"content").unwrap();
    fs::write(p.path("r/a/g"), b"g").unwrap();
    fs::rename(p.path("r/a/g"), p.path("r/b/g2")).unwrap();
    assert_eq!(fs::read(p.path("r/b/g2")).unwrap(), b"g");
    assert!(!p.path("r/a/g").exists());
    fs::rename(p.path("r/a"), p.path("r/b/moved")).unwrap();
    assert_eq!(fs::read(p.path("r/b/moved/deep/f")).unwrap(), b"content");
    assert_eq!(fs::read(p.real("r/b/moved/deep/f")).unwrap(), b"content");
    assert!(!p.path("r/a").exists());
    // Replace an existing file; a directory over a non-empty one fails.
    fs::write(p.path("r/b/x"), b"x").unwrap();
    fs::rename(p.path("r/b/g2"), p.path("r/b/x")).unwrap();
    assert_eq!(fs::read(p.path("r/b/x")).unwrap(), b"g");
    fs::create_dir(p.path("r/empty")).unwrap();
    assert_eq!(
        errno(fs::rename(p.path("r/empty"), p.path("r/b/moved"))),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno(fs::rename(p.path("r/b/x"), p.path("r/empty"))),
        libc::EISDIR
    );
    // renameat2 flags.
    let noreplace = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &p.path("r/b/x"),
        nix::fcntl::AT_FDCWD,
        &p.path("r/b/moved/deep/f"),
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    );
    assert_eq!(noreplace, Err(nix::errno::Errno::EEXIST));
    let exchange = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &p.path("r/b/x"),
        nix::fcntl::AT_FDCWD,
        &p.path("r/b/moved/deep/f"),
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    );
    assert_eq!(exchange, Err(nix::errno::Errno::EINVAL));
    // Between areas: EXDEV, so mv copies; an area cannot be renamed.
    fs::create_dir(p.path("other")).unwrap();
    assert_eq!(
        errno(fs::rename(p.path("r/b/x"), p.path("other/x"))),
        libc::EXDEV
    );
    let mv = std::process::Command::new("mv")
        .arg(p.path("r/b/x"))
        .arg(p.path("other/x"))
        .status()
        .unwrap();
    assert!(mv.success());
    assert_eq!(fs::read(p.path("other/x")).unwrap(), b"g");
    assert_eq!(
        errno(fs::rename(p.path("other"), p.path("renamed"))),
        libc::EPERM
    );
});

both_paths!(unlinked_open_files_stay_usable, |p: Peer| {
    fs::create_dir(p.path("u")).unwrap();
    fs::write(p.path("u/f"), b"still here").unwrap();
    let mut f = File::options()
        .read(true)
        .write(true)
        .open(p.path("u/f"))
        .unwrap();
    assert_eq!(f.metadata().unwrap().nlink(), 1);
    fs::remove_file(p.path("u/f")).unwrap();
    assert!(!p.path("u/f").exists());
    assert!(!p.real("u/f").exists());
    // No name left: fstat says so.
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    assert_eq!(text, "still here");
    f.write_all(b" and more").unwrap();
    assert_eq!(f.metadata().unwrap().len(), 19);
    drop(f);
    assert_eq!(fs::read_dir(p.path("u")).unwrap().count(), 0);
    // The name can be reused at once.
    fs::write(p.path("u/f"), b"new").unwrap();
    assert_eq!(fs::read(p.path("u/f")).unwrap(), b"new");
});

both_paths!(symlinks_modes_times_and_statfs, |p: Peer| {
    fs::create_dir(p.path("s")).unwrap();
    fs::write(p.path("s/target"), b"t").unwrap();
    std::os::unix::fs::symlink("target", p.path("s/link")).unwrap();
    assert_eq!(
        fs::read_link(p.path("s/link")).unwrap().to_str(),
        Some("target")
    );
    assert_eq!(fs::read(p.path("s/link")).unwrap(), b"t");
    assert!(
        fs::symlink_metadata(p.path("s/link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    fs::set_permissions(p.path("s/target"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        fs::metadata(p.path("s/target"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(p.real("s/target"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    File::options()
        .write(true)
        .open(p.path("s/target"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    assert_eq!(
        fs::metadata(p.path("s/target")).unwrap().mtime(),
        1_000_000_000
    );
    // A symlink's own times (AT_SYMLINK_NOFOLLOW): atime and mtime apart.
    let spec = |secs| nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &p.path("s/link"),
        &spec(1_100_000_000),
        &spec(1_200_000_000),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    let link = fs::symlink_metadata(p.path("s/link")).unwrap();
    assert_eq!((link.atime(), link.mtime()), (1_100_000_000, 1_200_000_000));
    assert_eq!(
        fs::metadata(p.path("s/target")).unwrap().mtime(),
        1_000_000_000
    );
    let st = nix::sys::statvfs::statvfs(&p.mnt).unwrap();
    let real = nix::sys::statvfs::statvfs(&p.data).unwrap();
    assert_eq!(st.blocks(), real.blocks());
    assert_eq!(st.name_max(), 255);
});

both_paths!(extended_attributes, |p: Peer| {
    fs::create_dir(p.path("x")).unwrap();
    fs::write(p.path("x/f"), b"abc").unwrap();
    let f = p.path("x/f");
    let set = |name: &str, value: &[u8], flags: i32| {
        let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid C strings and buffer.
        let r = unsafe {
            libc::setxattr(
                c.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let get = |name: &str| -> std::io::Result<Vec<u8>> {
        let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        let mut buf = vec![0u8; 4096];
        // SAFETY: valid C strings and buffer.
        let r =
            unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        buf.truncate(r as usize);
        Ok(buf)
    };
    set("user.colour", b"blue", 0).unwrap();
    assert_eq!(get("user.colour").unwrap(), b"blue");
    assert_eq!(
        errno(set("user.colour", b"red", libc::XATTR_CREATE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(set("user.other", b"red", libc::XATTR_REPLACE)),
        libc::ENODATA
    );
    assert_eq!(errno(get("user.missing")), libc::ENODATA);
    assert_eq!(errno(set("trusted.x", b"1", 0)), libc::EOPNOTSUPP);
    assert_eq!(errno(set("user.big", &vec![0u8; 70_000], 0)), libc::E2BIG);
    assert_eq!(get("user.realize.mode").unwrap(), b"real");
    p.wait_recorded("x");
    assert_eq!(get("user.realize.state").unwrap(), b"real");
    assert_eq!(
        get("user.realize.hash").unwrap(),
        blake3::hash(b"abc").to_hex().as_bytes()
    );
    set("user.realize.mode", b"unreal", 0).unwrap();
    assert_eq!(get("user.realize.mode").unwrap(), b"unreal");
    assert_eq!(
        errno(set("user.realize.mode", b"sometimes", 0)),
        libc::EINVAL
    );
    assert_eq!(errno(set("user.realize.hash", b"0", 0)), libc::EPERM);
    let out = std::process::Command::new("getfattr")
        .arg("-d")
        .arg(&f)
        .output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("user.colour=\"blue\""), "{text}");
    }
    let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new("user.colour").unwrap();
    // SAFETY: valid C strings.
    assert_eq!(unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) }, 0);
    assert_eq!(errno(get("user.colour")), libc::ENODATA);
});

both_paths!(
    refused_operations_get_their_errno_and_a_log_line,
    |p: Peer| {
        assert_eq!(errno(File::create(p.path("at-root"))), libc::EPERM);
        assert_eq!(errno(fs::create_dir(p.path(".ctl/x"))), libc::EPERM);
        fs::create_dir(p.path("area")).unwrap();
        // `.ctl` always exists (found by lookup), so the kernel answers EEXIST
        // to mkdir; moving something onto it is refused with EPERM.
        assert_eq!(errno(fs::create_dir(p.path("area/.ctl"))), libc::EEXIST);
        fs::write(p.path("area/tmp"), b"t").unwrap();
        assert_eq!(
            errno(fs::rename(p.path("area/tmp"), p.path("area/.ctl"))),
            libc::EISDIR
        );
        fs::create_dir(p.path("area/tmpdir")).unwrap();
        assert_eq!(
            errno(fs::rename(p.path("area/tmpdir"), p.path("area/.ctl"))),
            libc::EPERM
        );
        fs::write(p.path("area/f"), b"f").unwrap();
        assert_eq!(
            errno(fs::hard_link(p.path("area/f"), p.path("area/h"))),
            libc::EPERM
        );
        assert_eq!(
            errno(
                // Only areas live at the root (a FIFO in an area is fine).
                nix::unistd::mkfifo(&p.path("fifo"), nix::sys::stat::Mode::S_IRWXU)
                    .map_err(std::io::Error::from)
            ),
            libc::EPERM
        );
        let long = "n".repeat(256);
        assert_eq!(
            errno(File::create(p.path(&format!("area/{long}")))),
            libc::ENAMETOOLONG
        );
        assert_eq!(errno(fs::create_dir(p.path(&long))), libc::ENAMETOOLONG);
        fs::create_dir(p.path("area/d")).unwrap();
        fs::write(p.path("area/d/f"), b"f").unwrap();
        assert_eq!(errno(fs::remove_dir(p.path("area/d"))), libc::ENOTEMPTY);
        assert_eq!(errno(fs::remove_dir(p.path("area"))), libc::ENOTEMPTY);
        let errors = p.read(".ctl/errors");
        for needle in [
            "/at-root create",
            "/area/h link",
            "/fifo mknod",
            "/area/.ctl rename",
            "name longer than 255 bytes",
        ] {
            assert!(
                errors.contains(needle),
                "{needle:?} not in {errors}\n{}",
                p.log_text()
            );
        }
        // The mount keeps serving.
        assert_eq!(fs::read(p.path("area/f")).unwrap(), b"f");
    }
);

both_paths!(
    readdir_offsets_survive_changes_during_a_listing,
    |p: Peer| {
        fs::create_dir(p.path("big")).unwrap();
        for i in 0..3000 {
            File::create(p.path(&format!("big/f{i:05}"))).unwrap();
        }
        let dir = nix::dir::Dir::open(
            &p.path("big"),
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let mut seen = Vec::new();
        let mut iter = dir.into_iter();
        for entry in iter.by_ref().take(1000) {
            seen.push(entry.unwrap().file_name().to_str().unwrap().to_string());
        }
        // Remove 500 not yet seen and 500 already seen; add 100 new ones.
        let unseen: Vec<String> = (0..3000)
            .map(|i| format!("f{i:05}"))
            .filter(|n| !seen.contains(n))
            .collect();
        for name in unseen
            .iter()
            .take(500)
            .chain(seen.iter().filter(|n| n.starts_with('f')).take(500))
        {
            fs::remove_file(p.path(&format!("big/{name}"))).unwrap();
        }
        for i in 0..100 {
            File::create(p.path(&format!("big/new{i}"))).unwrap();
        }
        for entry in iter {
            seen.push(entry.unwrap().file_name().to_str().unwrap().to_string());
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "an entry was listed twice");
        for name in unseen.iter().skip(500) {
            assert!(unique.contains(name), "{name} was skipped");
        }
        // Entries removed after the listing began may or may not show (POSIX
        // leaves it open: the C library buffers a batch); new ones likewise.
    }
);

#[test]
fn passthrough_keeps_reads_out_of_userspace() {
    let read_through = |passthrough: bool| -> u64 {
        let p = Peer::start_with(passthrough);
        fs::create_dir(p.path("pt")).unwrap();
        let data = noise(16 << 20, 3);
        fs::write(p.path("pt/f"), &data).unwrap();
        let mut f = File::open(p.path("pt/f")).unwrap();
        // Drop the page cache of the file so the read really happens.
        nix::fcntl::posix_fadvise(
            &f,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .unwrap();
        let before = p.stat("fuse.ops");
        let mut back = Vec::new();
        f.read_to_end(&mut back).unwrap();
        assert!(back == data);
        p.stat("fuse.ops") - before
    };
    let with = read_through(true);
    let without = read_through(false);
    assert!(
        without >= 100,
        "userspace reads of 16 MiB took only {without} requests"
    );
    // The reads of `stats` itself count a few requests.
    assert!(
        with < 16,
        "passthrough reads reached userspace {with} times"
    );
}

both_paths!(
    fallocate_does_what_the_file_system_under_data_does,
    |p: Peer| {
        use nix::fcntl::{FallocateFlags as F, fallocate};
        fs::create_dir(p.path("fa")).unwrap();
        // The same calls on a file of the mount and on a plain file of the
        // file system under DATA: the same outcome, the same bytes.
        let native = p.dir.path().join("native");
        let mounted = p.path("fa/f");
        let open = |path: &std::path::Path| {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .unwrap()
        };
        let (n, m) = (open(&native), open(&mounted));
        let start: Vec<u8> = (0..(256u32 << 10)).map(|i| (i % 251) as u8).collect();
        for f in [&n, &m] {
            f.write_all_at(&start, 0).unwrap();
        }
        let calls = [
            (F::empty(), 0, 1 << 20),
            (F::FALLOC_FL_KEEP_SIZE, 0, 2 << 20),
            (F::FALLOC_FL_PUNCH_HOLE | F::FALLOC_FL_KEEP_SIZE, 4096, 8192),
            (F::FALLOC_FL_ZERO_RANGE, 20_000, 5000),
            (F::FALLOC_FL_PUNCH_HOLE, 0, 4096), // without KEEP_SIZE: EOPNOTSUPP
        ];
        for (flags, offset, len) in calls {
            let want = fallocate(&n, flags, offset, len);
            let got = fallocate(&m, flags, offset, len);
            assert_eq!(got, want, "{flags:?} {offset} {len}");
        }
        // The kernel's FUSE passes on only KEEP_SIZE, PUNCH_HOLE and
        // ZERO_RANGE: it answers the others itself (realize.7 "Conformance").
        for flags in [F::FALLOC_FL_COLLAPSE_RANGE, F::FALLOC_FL_INSERT_RANGE] {
            let got = fallocate(&m, flags, 0, 4096);
            assert_eq!(got, Err(nix::errno::Errno::EOPNOTSUPP), "{flags:?}");
        }
        drop((n, m));
        assert_eq!(fs::read(&mounted).unwrap(), fs::read(&native).unwrap());
        p.wait_recorded("fa");
        // What was recorded is what is there.
        let status = p.read("fa/.ctl/status");
        let hash = blake3::hash(&fs::read(&native).unwrap())
            .to_hex()
            .to_string();
        assert!(status.contains(&hash), "{status}");
    }
);

#[test]
fn a_directory_links_itself_and_each_subdirectory() {
    let mut p = Peer::start();
    let nlink = |p: &Peer, rel: &str| fs::metadata(p.path(rel)).unwrap().nlink();
    // The root: `.`, `..`, `.ctl`, and the areas.
    let root = nlink(&p, "");
    fs::create_dir(p.path("t")).unwrap();
    assert_eq!(nlink(&p, ""), root + 1);
    assert_eq!(nlink(&p, "t"), 2);
    fs::create_dir_all(p.path("t/a/b")).unwrap();
    fs::create_dir(p.path("t/a/c")).unwrap();
    fs::write(p.path("t/a/f"), b"a file is no link").unwrap();
    std::os::unix::fs::symlink("b", p.path("t/a/l")).unwrap();
    assert_eq!(nlink(&p, "t/a"), 4);
    assert_eq!(nlink(&p, "t"), 3);
    fs::remove_dir(p.path("t/a/c")).unwrap();
    assert_eq!(nlink(&p, "t/a"), 3);
    fs::rename(p.path("t/a/b"), p.path("t/b")).unwrap();
    assert_eq!((nlink(&p, "t/a"), nlink(&p, "t")), (2, 4));
    // Renamed over an empty directory: one fewer.
    fs::create_dir(p.path("t/e")).unwrap();
    assert_eq!(nlink(&p, "t"), 5);
    fs::rename(p.path("t/b"), p.path("t/e")).unwrap();
    assert_eq!(nlink(&p, "t"), 4);
    fs::create_dir(p.path("t/a/d")).unwrap();
    p.stop();
    // Made outside the mount: counted by the reconciliation.
    fs::create_dir(p.real("t/a/e")).unwrap();
    fs::remove_dir(p.real("t/a/d")).unwrap();
    p.mount();
    assert_eq!((nlink(&p, "t"), nlink(&p, "t/a")), (4, 3));
    // What find relies on to skip leaves: every subdirectory is found.
    let found = std::process::Command::new("find")
        .arg(p.path("t"))
        .args(["-type", "d"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 4);
}
