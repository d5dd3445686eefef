//! Blobs: file content named by its BLAKE3 hash (DESIGN.md "Words"), and
//! their outboards: the BLAKE3 chaining values of the blob's pieces.
//!
//! A blob is cut into pieces of [`PIECE`] bytes (the last one shorter). A
//! piece is a whole subtree of the blob's BLAKE3 tree (its size is a power
//! of two of BLAKE3's 1 KiB chunks and it starts at a multiple of its
//! size), so its chaining value ([`blake3::hazmat`]) is computed from its
//! bytes and offset alone, and the chaining values of all pieces merge up
//! to the blob's hash. The outboard is that list, 32 bytes a piece (0.05 %
//! of the blob at 64 KiB pieces). It is trusted once it merges to the hash
//! ([`root_of`]); a piece is then verified on its own ([`Outboard::verify`]),
//! and two blobs' outboards say which pieces differ (delta edits). A blob
//! of one piece or less has an empty outboard: it is verified whole.

use std::fs::File;
use std::io::{self, Read};

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};

use crate::ids::BlobHash;

/// Piece size in bytes: the unit of verification and of delta transfer.
/// 64 KiB: BLAKE3 hashes pieces of 16 KiB to 1 MiB at the same speed on
/// this machine kind (2.7 to 3.0 GB/s, as fast as a whole-blob hash), so
/// the size is set by the rest: 64 KiB keeps the outboard of a 1 GiB blob
/// at 512 KiB while an edit moves at most 128 KiB more than it changed.
pub const PIECE: u64 = 64 << 10;

/// Chaining values in a part of an outboard: 32,768 (1 MiB of values, 2
/// GiB of blob). Outboards are kept and fetched a part at a time
/// ([`crate::store::outboards`]); a part covers a whole subtree of the
/// blob's tree, whose chaining value [`subtree_value`] computes, so the
/// parts of an outboard are checked against the blob's hash by their
/// values alone ([`root_of_parts`]).
pub const PART: u64 = 1 << 15;

/// The chaining values of a blob's pieces, in order; empty for a blob of
/// at most one piece.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outboard {
    /// One chaining value per piece.
    pub pieces: Vec<ChainingValue>,
}

/// BLAKE3 hash of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> BlobHash {
    BlobHash(*blake3::hash(bytes).as_bytes())
}

/// The chaining value of piece `index` whose bytes are `bytes` (at most
/// [`PIECE`], in a blob of more than one piece).
pub fn piece_value(index: u64, bytes: &[u8]) -> ChainingValue {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(index * PIECE);
    hasher.update(bytes);
    hasher.finalize_non_root()
}

/// Reads `file` from its current offset to its end: its hash and outboard
/// in one pass.
pub fn outboard_file(mut file: &File) -> io::Result<(BlobHash, Outboard)> {
    let mut pieces = Vec::new();
    let mut buf = vec![0; 16 * PIECE as usize];
    let mut size = 0u64;
    let mut first: Option<Vec<u8>> = None;
    loop {
        let n = read_full(&mut file, &mut buf)?;
        for piece in buf[..n].chunks(PIECE as usize) {
            if size == 0 && n <= PIECE as usize {
                first = Some(piece.to_vec()); // maybe a one-piece blob
            }
            pieces.push(piece_value(size / PIECE, piece));
            size += piece.len() as u64;
        }
        if n < buf.len() {
            break;
        }
    }
    if pieces.len() <= 1 {
        return Ok((hash_bytes(&first.unwrap_or_default()), Outboard::default()));
    }
    let outboard = Outboard { pieces };
    Ok((root_of(&outboard, size), outboard))
}

fn read_full(file: &mut &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The hash that `outboard`'s pieces merge to for a blob of `size` bytes,
/// or zeros when the outboard does not have the blob's number of pieces
/// (more than one).
pub fn root_of(outboard: &Outboard, size: u64) -> BlobHash {
    let count = size.div_ceil(PIECE);
    if count < 2 || outboard.pieces.len() as u64 != count {
        return BlobHash([0; 32]);
    }
    root_from(size, PIECE, &|i| outboard.pieces[i as usize])
}

/// The chaining value of part `part` of the outboard of a blob of `size`
/// bytes (more than one part), whose values are `values`; `None` when
/// they are not the part's number of values.
pub fn subtree_value(part: u64, values: &[ChainingValue], size: u64) -> Option<ChainingValue> {
    let span = PART * PIECE;
    let start = part.checked_mul(span).filter(|&s| s < size)?;
    let end = (start + span).min(size);
    if values.len() as u64 != (end - start).div_ceil(PIECE) {
        return None;
    }
    let first = start / PIECE;
    Some(subtree(start, end, PIECE, &|i| {
        values[(i - first) as usize]
    }))
}

/// The hash that the part values `parts` ([`subtree_value`]) merge to
/// for a blob of `size` bytes (more than one part), or zeros when they
/// are not the blob's number of parts.
pub fn root_of_parts(parts: &[ChainingValue], size: u64) -> BlobHash {
    let span = PART * PIECE;
    let count = size.div_ceil(span);
    if count < 2 || parts.len() as u64 != count {
        return BlobHash([0; 32]);
    }
    root_from(size, span, &|k| parts[k as usize])
}

/// The root of a blob of `size` bytes (more than one `leaf`) whose
/// subtrees of `leaf` bytes (a power of two, each starting at a multiple
/// of it) have the chaining values `value(index)`.
fn root_from(size: u64, leaf: u64, value: &dyn Fn(u64) -> ChainingValue) -> BlobHash {
    let split = blake3::hazmat::left_subtree_len(size);
    let (left, right) = (
        subtree(0, split, leaf, value),
        subtree(split, size, leaf, value),
    );
    BlobHash(*merge_subtrees_root(&left, &right, Mode::Hash).as_bytes())
}

/// The chaining value of the subtree covering bytes `start..end`.
fn subtree(start: u64, end: u64, leaf: u64, value: &dyn Fn(u64) -> ChainingValue) -> ChainingValue {
    if end - start <= leaf {
        return value(start / leaf);
    }
    let split = start + blake3::hazmat::left_subtree_len(end - start);
    let left = subtree(start, split, leaf, value);
    let right = subtree(split, end, leaf, value);
    merge_subtrees_non_root(&left, &right, Mode::Hash)
}

impl Outboard {
    /// Reads an outboard from its wire and database form: the chaining
    /// values one after the other. `None` when the length is not a
    /// multiple of 32.
    pub fn from_bytes(bytes: &[u8]) -> Option<Outboard> {
        if !bytes.len().is_multiple_of(32) {
            return None;
        }
        let pieces = bytes
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or([0; 32]))
            .collect();
        Some(Outboard { pieces })
    }

    /// The wire and database form: the chaining values one after the
    /// other.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.pieces.concat()
    }

    /// Whether `bytes` are piece `index` of the blob `hash` of `size`
    /// bytes that this outboard describes (trusted: see [`root_of`]).
    pub fn verify(&self, hash: &BlobHash, size: u64, index: u64, bytes: &[u8]) -> bool {
        if size <= PIECE {
            return index == 0 && bytes.len() as u64 == size && hash_bytes(bytes) == *hash;
        }
        let expected = PIECE.min(size.saturating_sub(index * PIECE));
        bytes.len() as u64 == expected
            && self
                .pieces
                .get(index as usize)
                .is_some_and(|v| *v == piece_value(index, bytes))
    }

    /// Verifies `bytes`, which start at piece `first` and cover whole
    /// pieces (the last piece of the blob may be short): the index of the
    /// first piece that does not match, if any.
    pub fn verify_span(&self, hash: &BlobHash, size: u64, first: u64, bytes: &[u8]) -> Option<u64> {
        self.verify_part(hash, size, 0, first, bytes)
    }

    /// Like [`Outboard::verify_span`] for an outboard that holds only the
    /// chaining values from piece `from` on (see
    /// [`crate::store::cache::Cache::pieces`]).
    pub fn verify_part(
        &self,
        hash: &BlobHash,
        size: u64,
        from: u64,
        first: u64,
        bytes: &[u8],
    ) -> Option<u64> {
        if size <= PIECE {
            return (!self.verify(hash, size, first, bytes)).then_some(first);
        }
        bytes
            .chunks(PIECE as usize)
            .zip(first..)
            .find(|(piece, i)| {
                let expected = PIECE.min(size.saturating_sub(i * PIECE));
                piece.len() as u64 != expected
                    || i.checked_sub(from)
                        .and_then(|k| self.pieces.get(k as usize))
                        .is_none_or(|v| *v != piece_value(*i, piece))
            })
            .map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn blob(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    fn outboard_of(bytes: &[u8]) -> (BlobHash, Outboard) {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(bytes).expect("write");
        use std::io::Seek;
        file.rewind().expect("rewind");
        outboard_file(&file).expect("outboard")
    }

    #[test]
    fn outboard_merges_to_the_blake3_hash() {
        let p = PIECE as usize;
        for size in [0, 1, p - 1, p, p + 1, 2 * p, 3 * p + 5, 16 * p + 1, 37 * p] {
            let bytes = blob(size);
            let (hash, outboard) = outboard_of(&bytes);
            assert_eq!(hash, hash_bytes(&bytes), "size {size}");
            if size > p {
                assert_eq!(outboard.pieces.len(), size.div_ceil(p));
                assert_eq!(root_of(&outboard, size as u64), hash, "size {size}");
            } else {
                assert!(outboard.pieces.is_empty());
            }
        }
    }

    #[test]
    fn pieces_verify_alone_and_a_changed_piece_fails() {
        let p = PIECE as usize;
        let mut bytes = blob(5 * p + 100);
        let size = bytes.len() as u64;
        let (hash, outboard) = outboard_of(&bytes);
        for (i, piece) in bytes.chunks(p).enumerate() {
            assert!(outboard.verify(&hash, size, i as u64, piece));
        }
        assert_eq!(outboard.verify_span(&hash, size, 1, &bytes[p..]), None);
        bytes[3 * p + 10] ^= 1;
        assert_eq!(outboard.verify_span(&hash, size, 0, &bytes), Some(3));
        // A piece in the wrong place, or cut short, fails too.
        assert!(!outboard.verify(&hash, size, 0, &bytes[p..2 * p]));
        assert!(!outboard.verify(&hash, size, 5, &bytes[5 * p..5 * p + 99]));
    }

    #[test]
    fn a_tampered_outboard_does_not_merge_to_the_hash() {
        let bytes = blob(9 * PIECE as usize);
        let (hash, mut outboard) = outboard_of(&bytes);
        outboard.pieces[4][0] ^= 1;
        assert_ne!(root_of(&outboard, bytes.len() as u64), hash);
        outboard.pieces.pop();
        assert_eq!(root_of(&outboard, bytes.len() as u64), BlobHash([0; 32]));
        let back = Outboard::from_bytes(&outboard.to_bytes()).expect("whole values");
        assert_eq!(back, outboard);
        assert!(Outboard::from_bytes(&[0; 33]).is_none());
    }

    #[test]
    fn parts_merge_to_the_hash_of_a_blob_of_several_parts() {
        // The values of pieces of a blob too large to write: a stream of
        // pieces of one repeated byte, hashed as the whole by blake3.
        let piece = vec![7u8; PIECE as usize];
        // Three parts, the last of one piece and 5 bytes.
        for size in [2 * PART * PIECE + PIECE + 5] {
            let mut hasher = blake3::Hasher::new();
            let mut values = Vec::new();
            let mut at = 0;
            while at < size {
                let len = PIECE.min(size - at) as usize;
                hasher.update(&piece[..len]);
                values.push(piece_value(at / PIECE, &piece[..len]));
                at += len as u64;
            }
            let hash = BlobHash(*hasher.finalize().as_bytes());
            let whole = Outboard { pieces: values };
            assert_eq!(root_of(&whole, size), hash, "size {size}");
            let parts: Vec<_> = whole
                .pieces
                .chunks(PART as usize)
                .enumerate()
                .map(|(k, v)| subtree_value(k as u64, v, size).expect("a part's values"))
                .collect();
            assert_eq!(root_of_parts(&parts, size), hash, "size {size}");
            let mut wrong = parts.clone();
            wrong[1][0] ^= 1;
            assert_ne!(root_of_parts(&wrong, size), hash);
            assert_eq!(root_of_parts(&parts[1..], size), BlobHash([0; 32]));
            assert!(subtree_value(0, &whole.pieces[1..PART as usize], size).is_none());
        }
    }

    #[test]
    fn small_blobs_verify_whole() {
        let bytes = blob(1000);
        let hash = hash_bytes(&bytes);
        let none = Outboard::default();
        assert!(none.verify(&hash, 1000, 0, &bytes));
        assert!(!none.verify(&hash, 1000, 0, &bytes[..999]));
    }
}
