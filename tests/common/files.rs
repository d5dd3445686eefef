//! Files on a peer's mount as the tests look at them: status lines,
//! patterned contents, writes waited for until recorded.

use std::collections::BTreeMap;

use super::Peer;

/// Lines of a directory's `.ctl/status`, by name: (state, mode, holders).
pub fn status(p: &Peer, dir: &str) -> BTreeMap<String, (String, String, String)> {
    p.read(&format!("{dir}/.ctl/status"))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let holders = f.get(6).unwrap_or(&"").to_string();
            (
                f[0].to_string(),
                (f[2].to_string(), f[5].to_string(), holders),
            )
        })
        .collect()
}

pub fn state(p: &Peer, dir: &str, name: &str) -> String {
    status(p, dir)
        .remove(name)
        .unwrap_or_else(|| panic!("{name} not in {dir}"))
        .0
}

/// `len` bytes that differ from one MiB to the next.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 20) as u8 ^ seed)
        .collect()
}

/// Writes `bytes` at `path` (through the mount) and waits until recorded.
pub fn write_file(p: &Peer, rel: &str, bytes: &[u8]) {
    std::fs::write(p.path(rel), bytes).unwrap();
    let dir = std::path::Path::new(rel)
        .parent()
        .unwrap()
        .to_str()
        .unwrap();
    p.wait_recorded(dir);
}

pub fn status_hash(p: &Peer, dir: &str, name: &str) -> String {
    p.read(&format!("{dir}/.ctl/status"))
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split(' ').nth(4))
        .expect("a status line")
        .to_string()
}
