//! realize: a peer-to-peer file system for a household of machines.
//!
//! Module map (DESIGN.md "Shape of the code"):
//! - [`ids`]: identifiers shared by every module (peer ids);
//! - [`data`]: the DATA directory: layout, lock, initialisation;
//! - [`net`]: identity (ED25519 keys, peer ids), TLS, the QUIC endpoint,
//!   the protocol, requests and rounds of consensus;
//! - [`store`]: LMDB databases (namespace, history, areas, config, xattrs,
//!   peers, versions and the feed, the blob cache);
//! - [`blob`]: BLAKE3 hashing of content;
//! - [`cache`]: the blob cache's files, open counts and usage;
//! - [`private`]: modes of realize's own files and directories in DATA;
//! - [`real`]: the Real, every call beneath `DATA/real` rooted there;
//! - [`fs`]: the FUSE-free dispatcher every file operation goes through,
//!   with the Real, the Unreal (blob cache and fetches), remote changes
//!   shown in the namespace, and the control tree;
//! - [`fuse`]: the thin fuser adapter over [`fs::Fs`];
//! - [`format`]: text formats of the control files;
//! - [`sync`]: the merge of versions from peers (pure, property-tested)
//!   and the versions local changes make.

#![warn(missing_docs)]

pub mod blob;
pub mod cache;
pub mod data;
pub mod format;
pub mod fs;
pub mod fuse;
pub mod ids;
pub mod net;
pub mod private;
pub mod real;
pub mod stats;
pub mod store;
pub mod sync;
