//! The dispatcher called directly, without the kernel (as mountpoint-s3
//! tests its file-system core).

use std::ffi::OsStr;
use std::sync::Arc;

use realize::data::DataDir;
use realize::store::history::OpKind;
use realize::vfs::waits::wait_for;
use realize::vfs::{Caller, Vfs};

const ME: Caller = Caller { uid: 0, gid: 0 };

fn vfs(dir: &std::path::Path) -> Arc<Vfs> {
    let data = DataDir::open(dir, None).unwrap();
    let real = data.real();
    let (_, identity, store, lock) = data.into_parts();
    let id = identity.peer_id();
    std::mem::forget(lock); // held for the test's life
    Vfs::new(store, real, id).unwrap()
}

fn write_file(vfs: &Vfs, parent: u64, name: &str, content: &[u8], flags: i32) -> u64 {
    let ino = match vfs.lookup(parent, OsStr::new(name)) {
        Ok(attr) => attr.ino,
        Err(_) => {
            let (attr, opened) = vfs
                .create(parent, OsStr::new(name), 0o644, libc::O_RDWR, ME, false)
                .unwrap();
            vfs.release(opened.fh).unwrap();
            attr.ino
        }
    };
    let opened = wait_for(|done| vfs.open(ino, libc::O_RDWR | flags, false, done)).unwrap();
    let offset = if flags & libc::O_APPEND != 0 {
        vfs.getattr(ino).unwrap().size
    } else {
        0
    };
    wait_for(|done| vfs.write(opened.fh, offset, content, done)).unwrap();
    vfs.release(opened.fh).unwrap();
    ino
}

#[test]
fn an_edit_records_the_blob_it_is_based_on() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = vfs(dir.path());
    let area = vfs.mkdir(1, OsStr::new("area"), 0o755, 0, ME).unwrap().ino;
    write_file(&vfs, area, "f", b"base", 0);
    vfs.shutdown(); // records everything pending
    write_file(&vfs, area, "f", b" more", libc::O_APPEND);
    vfs.shutdown();
    write_file(&vfs, area, "f", b"new", libc::O_TRUNC);
    vfs.shutdown();
    let txn = vfs.store().read().unwrap();
    let mut ops = Vec::new();
    vfs.store()
        .history
        .for_each(&txn, |_, seq, op| {
            ops.push((seq, op));
            Ok(())
        })
        .unwrap();
    let kinds: Vec<OpKind> = ops.iter().map(|(_, op)| op.kind).collect();
    assert_eq!(kinds, [OpKind::Create, OpKind::Edit, OpKind::Overwrite]);
    assert_eq!(ops[0].1.hash, Some(*blake3::hash(b"base").as_bytes()));
    assert_eq!(ops[1].1.base, Some(*blake3::hash(b"base").as_bytes()));
    assert_eq!(ops[1].1.hash, Some(*blake3::hash(b"base more").as_bytes()));
    assert_eq!(ops[2].1.base, None);
}

#[test]
fn a_directory_of_100k_entries_streams_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = vfs(dir.path());
    let area = vfs.mkdir(1, OsStr::new("area"), 0o755, 0, ME).unwrap().ino;
    let big = vfs
        .mkdir(area, OsStr::new("big"), 0o755, 0, ME)
        .unwrap()
        .ino;
    const N: usize = 100_000;
    for i in 0..N {
        vfs.mkdir(big, OsStr::new(&format!("d{i:06}")), 0o755, 0, ME)
            .unwrap();
    }
    // Read in pages of 1,000 as the kernel does, removing and adding
    // entries between pages.
    let mut offset = 0;
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    loop {
        let mut page = Vec::new();
        vfs.readdir(
            big,
            offset,
            |e, _| {
                page.push(e);
                page.len() < 1000
            },
            false,
        )
        .unwrap();
        if page.is_empty() {
            break;
        }
        offset = page.last().unwrap().next;
        for e in page {
            let name = String::from_utf8(e.name).unwrap();
            assert!(seen.insert(name.clone()), "{name} listed twice");
        }
        if pages == 10 {
            vfs.rmdir(big, OsStr::new("d000005")).unwrap(); // already seen
            vfs.rmdir(big, OsStr::new("d099999")).unwrap(); // not yet seen
            vfs.mkdir(big, OsStr::new("late"), 0o755, 0, ME).unwrap();
        }
        pages += 1;
    }
    assert!(seen.contains("d000005"));
    assert!(!seen.contains("d099999"));
    assert!(seen.contains("late"));
    assert_eq!(seen.len(), N + 2); // ., .. and late; less d099999
    assert!(pages > 100);
}
