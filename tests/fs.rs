//! The dispatcher called directly, without the kernel (as mountpoint-s3
//! tests its file-system core).

use std::ffi::OsStr;
use std::sync::Arc;

use realize::data::DataDir;
use realize::fs::waits::wait_for;
use realize::fs::{Caller, Fs};
use realize::store::history::OpKind;
use realize::store::{Ino, ROOT};

const ME: Caller = Caller { uid: 0, gid: 0 };

fn fs(dir: &std::path::Path) -> Arc<Fs> {
    let data = DataDir::open(dir, None).unwrap();
    let real = data.real();
    let (_, identity, store, lock) = data.into_parts();
    let id = identity.peer_id();
    std::mem::forget(lock); // held for the test's life
    Fs::new(store, real, id).unwrap()
}

fn write_file(fs: &Fs, parent: Ino, name: &str, content: &[u8], flags: i32) -> Ino {
    let ino = match fs.lookup(parent, OsStr::new(name)) {
        Ok(attr) => attr.ino,
        Err(_) => {
            let (attr, opened) = fs
                .create(parent, OsStr::new(name), 0o644, libc::O_RDWR, ME, false)
                .unwrap();
            fs.release(opened.fh).unwrap();
            attr.ino
        }
    };
    let opened = wait_for(|done| fs.open(ino, libc::O_RDWR | flags, false, done)).unwrap();
    let offset = if flags & libc::O_APPEND != 0 {
        fs.getattr(ino).unwrap().size
    } else {
        0
    };
    wait_for(|done| fs.write(opened.fh, offset, content, done)).unwrap();
    fs.release(opened.fh).unwrap();
    ino
}

#[test]
fn an_edit_records_the_blob_it_is_based_on() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs(dir.path());
    let area = fs
        .mkdir(ROOT, OsStr::new("area"), 0o755, 0, ME)
        .unwrap()
        .ino;
    write_file(&fs, area, "f", b"base", 0);
    fs.shutdown(); // records everything pending
    write_file(&fs, area, "f", b" more", libc::O_APPEND);
    fs.shutdown();
    write_file(&fs, area, "f", b"new", libc::O_TRUNC);
    fs.shutdown();
    let txn = fs.store().read().unwrap();
    let mut ops = Vec::new();
    fs.store()
        .history
        .for_each(&txn, |_, seq, op| {
            ops.push((seq, op));
            Ok(())
        })
        .unwrap();
    let kinds: Vec<OpKind> = ops.iter().map(|(_, op)| op.kind).collect();
    assert_eq!(kinds, [OpKind::Create, OpKind::Edit, OpKind::Overwrite]);
    assert_eq!(ops[0].1.hash, Some(realize::blob::hash_bytes(b"base")));
    assert_eq!(ops[1].1.base, Some(realize::blob::hash_bytes(b"base")));
    assert_eq!(ops[1].1.hash, Some(realize::blob::hash_bytes(b"base more")));
    assert_eq!(ops[2].1.base, None);
}

#[test]
fn a_directory_of_100k_entries_streams_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs(dir.path());
    let area = fs
        .mkdir(ROOT, OsStr::new("area"), 0o755, 0, ME)
        .unwrap()
        .ino;
    let big = fs.mkdir(area, OsStr::new("big"), 0o755, 0, ME).unwrap().ino;
    const N: usize = 100_000;
    for i in 0..N {
        fs.mkdir(big, OsStr::new(&format!("d{i:06}")), 0o755, 0, ME)
            .unwrap();
    }
    // Read in pages of 1,000 as the kernel does, removing and adding
    // entries between pages.
    let mut offset = 0;
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    loop {
        let mut page = Vec::new();
        fs.readdir(
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
            fs.rmdir(big, OsStr::new("d000005")).unwrap(); // already seen
            fs.rmdir(big, OsStr::new("d099999")).unwrap(); // not yet seen
            fs.mkdir(big, OsStr::new("late"), 0o755, 0, ME).unwrap();
        }
        pages += 1;
    }
    assert!(seen.contains("d000005"));
    assert!(!seen.contains("d099999"));
    assert!(seen.contains("late"));
    assert_eq!(seen.len(), N + 2); // ., .. and late; less d099999
    assert!(pages > 100);
}
