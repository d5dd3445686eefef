//! Sync: what consensus does with the versions it exchanges. For now the
//! pure merge ([`merge`]); consensus rounds come next.

pub mod merge;
