//! TLS for peers: TLS 1.3 only, mutual authentication with RFC 7250 raw
//! ED25519 public keys (no certificates), ALPN [`ALPN`]. A handshake
//! completes only with a key listed in [`Trust`]; a client also names the
//! peer it expects as the TLS server name (the peer id, 52 characters, fits
//! a DNS label), so it cannot be answered by another known peer.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};

use super::identity::Identity;
use crate::ids::PeerId;

/// The application protocol of realize, version 1.
pub const ALPN: &[u8] = b"realize/1";

/// DER prefix of an ED25519 SubjectPublicKeyInfo (RFC 8410 §4); the 32-byte
/// key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefix of an ED25519 PKCS#8 v1 private key (RFC 8410 §7); the 32-byte
/// seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rustls refused the key or the configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The peer id in an ED25519 SubjectPublicKeyInfo, or `None` for any other
/// key.
pub fn peer_of_spki(spki: &[u8]) -> Option<PeerId> {
    let key = spki.strip_prefix(&SPKI_PREFIX)?;
    key.try_into().ok().map(PeerId)
}

/// The peers whose keys may complete a handshake, and a count of refusals.
#[derive(Debug, Default)]
pub struct Trust {
    known: RwLock<HashSet<PeerId>>,
    refused: AtomicU64,
}

impl Trust {
    /// Lets `peer` complete handshakes.
    pub fn allow(&self, peer: PeerId) {
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer);
    }

    /// Stops `peer` from completing handshakes.
    pub fn forbid(&self, peer: PeerId) {
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&peer);
    }

    /// Whether `peer` may complete a handshake.
    pub fn allows(&self, peer: &PeerId) -> bool {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(peer)
    }

    /// Handshakes refused so far (`handshake.refused` in `/.ctl/stats`).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Checks a presented key: known, and the expected one when given.
    fn check(
        &self,
        presented: &CertificateDer<'_>,
        expected: Option<&str>,
    ) -> Result<PeerId, rustls::Error> {
        let peer = peer_of_spki(presented.as_ref());
        let ok = peer.filter(|p| self.allows(p) && expected.is_none_or(|e| e == p.to_string()));
        ok.ok_or_else(|| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let shown = peer.map_or_else(
                || "a key that is not ED25519".to_string(),
                |p| p.to_string(),
            );
            tracing::warn!("handshake refused: {shown} is not a known peer");
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })
    }
}

/// Verifies the other side's raw public key against [`Trust`], for both
/// the client and the server role.
#[derive(Debug)]
struct PinnedPeers {
    trust: Arc<Trust>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedPeers {
    fn verify13(
        &self,
        message: &[u8],
        key: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = SubjectPublicKeyInfoDer::from(key.as_ref());
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PinnedPeers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let expected = match server_name {
            ServerName::DnsName(name) => name.as_ref().to_string(),
            _ => String::new(),
        };
        self.trust.check(end_entity, Some(&expected))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        key: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, key, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for PinnedPeers {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.trust.check(end_entity, None)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        key: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, key, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// This peer's key as rustls wants it: the raw public key stands where a
/// certificate chain would.
fn certified_key(identity: &Identity) -> Result<Arc<CertifiedKey>, Error> {
    let mut pkcs8 = PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(identity.seed());
    let key = aws_lc_rs::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8))?;
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(&identity.peer_id().0);
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki)],
        key,
    )))
}

fn verifier(trust: Arc<Trust>) -> Arc<PinnedPeers> {
    Arc::new(PinnedPeers {
        trust,
        algorithms: aws_lc_rs::default_provider().signature_verification_algorithms,
    })
}

/// The configuration for accepting peers.
pub fn server_config(identity: &Identity, trust: Arc<Trust>) -> Result<ServerConfig, Error> {
    let resolver = rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified_key(identity)?);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier(trust))
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.max_fragment_size = None;
    Ok(config)
}

/// The configuration for dialling peers; connect with the expected peer's
/// id as the server name.
pub fn client_config(identity: &Identity, trust: Arc<Trust>) -> Result<ClientConfig, Error> {
    let resolver = rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified_key(identity)?);
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier(trust))
        .with_client_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConnection, ServerConnection};

    /// Runs a handshake in memory; returns the error of whichever side
    /// failed first.
    fn handshake(
        client: ClientConfig,
        server: ServerConfig,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name)?;
        let mut s = ServerConnection::new(Arc::new(server))?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                assert_eq!(s.alpn_protocol(), Some(ALPN));
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn known_keys_complete_a_mutual_handshake_and_others_are_refused() {
        let (a, b, stranger) = (
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
        );
        let (trust_a, trust_b) = (Arc::new(Trust::default()), Arc::new(Trust::default()));
        trust_a.allow(b.peer_id());
        trust_b.allow(a.peer_id());
        let b_name = b.peer_id().to_string();
        handshake(
            client_config(&a, trust_a.clone()).unwrap(),
            server_config(&b, trust_b.clone()).unwrap(),
            &b_name,
        )
        .unwrap();

        // A stranger dialling b is refused by b.
        let trust_s = Arc::new(Trust::default());
        trust_s.allow(b.peer_id());
        assert!(
            handshake(
                client_config(&stranger, trust_s).unwrap(),
                server_config(&b, trust_b.clone()).unwrap(),
                &b_name
            )
            .is_err()
        );
        assert_eq!(trust_b.refused(), 1);

        // a expecting someone else at b's address refuses b.
        let other = Identity::generate().unwrap().peer_id();
        trust_a.allow(other);
        assert!(
            handshake(
                client_config(&a, trust_a.clone()).unwrap(),
                server_config(&b, trust_b.clone()).unwrap(),
                &other.to_string()
            )
            .is_err()
        );
        assert_eq!(trust_a.refused(), 1);

        // Forgetting a peer closes the door.
        trust_b.forbid(a.peer_id());
        assert!(
            handshake(
                client_config(&a, trust_a).unwrap(),
                server_config(&b, trust_b.clone()).unwrap(),
                &b_name
            )
            .is_err()
        );
    }

    #[test]
    fn spki_round_trips_to_the_peer_id() {
        let id = Identity::generate().unwrap().peer_id();
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&id.0);
        assert_eq!(peer_of_spki(&spki), Some(id));
        assert_eq!(peer_of_spki(&spki[1..]), None);
    }
}
