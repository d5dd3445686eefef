//! Sync: the pure merge of versions ([`merge`]) and the versions local
//! changes make ([`local`]). Rounds of consensus run in
//! [`crate::net::requests`]; remote versions reach the namespace through
//! [`crate::fs::Fs::apply_remote`].

pub mod local;
pub mod merge;
