//! realize: a peer-to-peer file system for a household of machines.
//!
//! Module map (DESIGN.md "Shape of the code"):
//! - [`data`]: the DATA directory: layout, lock, initialisation;
//! - [`net`]: identity (ED25519 keys, peer ids);
//! - [`store`]: LMDB databases (namespace, history, areas, config, xattrs);
//! - [`blob`]: BLAKE3 hashing of content;
//! - [`vfs`]: the FUSE-free dispatcher every file operation goes through,
//!   with the Real and the control tree;
//! - [`fuse`]: the thin fuser adapter over [`vfs::Vfs`];
//! - [`format`]: text formats of the control files;
//! - [`sync`]: the merge of versions from peers (pure, property-tested).

#![warn(missing_docs)]

pub mod blob;
pub mod data;
pub mod format;
pub mod fuse;
pub mod net;
pub mod store;
pub mod sync;
pub mod vfs;
