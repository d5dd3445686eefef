//! Networking. For now: the peer's identity (ED25519 keys and peer ids).
//! The QUIC endpoint and protocol come with the household.

pub mod identity;
pub mod tls;
