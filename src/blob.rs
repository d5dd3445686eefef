//! Blobs: file content named by its BLAKE3 hash (DESIGN.md "Words").
//! For now, hashing of files in the Real; the blob cache comes with the
//! Unreal.

use std::fs::File;
use std::io;

/// BLAKE3 hash (32 bytes) of the whole content of `file`, read from its
/// current offset in 1 MiB chunks.
pub fn hash_file(file: &File) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    io::copy(&mut reader, &mut hasher)?;
    Ok(*hasher.finalize().as_bytes())
}

/// BLAKE3 hash of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}
