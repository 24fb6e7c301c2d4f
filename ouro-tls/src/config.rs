//! Client and server configurations on the crate's crypto provider, and
//! certificates and keys read from PEM.

use std::io;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

/// Which TLS versions a configuration offers or accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Versions {
    /// TLS 1.3 and TLS 1.2 (1.3 preferred).
    #[default]
    Both,
    /// TLS 1.2 only.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl Versions {
    fn protocols(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            Versions::Both => &BOTH,
            Versions::Tls12 => &TLS12,
            Versions::Tls13 => &TLS13,
        }
    }
}

/// The crypto provider the crate was built with: `aws-lc-rs` when that
/// feature is on (also when `ring` is on too), else `ring`.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(provider())
}

// One rule picks the provider, in the cfgs of the three `provider`s below:
// aws-lc-rs when its feature is on, whether or not `ring` is on too (as it is
// by default), else ring; neither is a single compile error.
//
// Both offer the classical groups X25519 first, then P-256 and P-384, as
// OpenSSL and Go order them. rustls lists P-384 first on ring and before
// X25519 on aws-lc-rs, and a server takes the first group of the client's
// list that it supports: P-384, whose key exchange costs several times
// X25519's (most of a whole handshake's CPU), on every TLS 1.2 session and
// wherever ML-KEM is not shared. P-256 and P-384 stay offered for peers
// without X25519.

/// aws-lc-rs's provider: X25519MLKEM768 (post-quantum, TLS 1.3 only), then
/// the classical groups X25519 first.
#[cfg(feature = "aws-lc-rs")]
fn provider() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    CryptoProvider {
        kx_groups: vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ],
        ..default_provider()
    }
}

/// ring's provider: the classical groups X25519 first. rustls deprecates
/// it for lacking post-quantum key exchange; it stays the default for its
/// short cold build.
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
#[allow(deprecated)]
fn provider() -> CryptoProvider {
    use rustls::crypto::ring::{default_provider, kx_group};
    CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    }
}

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
fn provider() -> CryptoProvider {
    compile_error!("ouro-tls needs a crypto provider: the feature `ring` (default) or `aws-lc-rs`")
}

/// A client configuration trusting exactly `roots` (the CA certificates
/// a server's chain must lead to), offering `alpn` in order of preference.
///
/// An `InvalidInput` error for a root that is not a valid CA certificate
/// or for no roots at all.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    versions: Versions,
) -> io::Result<Arc<ClientConfig>> {
    if roots.is_empty() {
        return Err(invalid_input(
            "no root certificates: every server would be refused",
        ));
    }
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|err| invalid_input(&format!("bad root certificate: {err}")))?;
    }
    client_config_with_store(store, alpn, versions)
}

/// A client configuration trusting Mozilla's root certificates (compiled
/// in from `webpki-roots`), offering `alpn` in order of preference.
#[cfg(feature = "webpki-roots")]
pub fn client_config_with_webpki_roots(
    alpn: &[&[u8]],
    versions: Versions,
) -> io::Result<Arc<ClientConfig>> {
    let store = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    client_config_with_store(store, alpn, versions)
}

/// A client configuration trusting the system's root certificates (read
/// by `rustls-native-certs` from the machine's store: on Linux the PEM
/// bundle and directory OpenSSL uses, `SSL_CERT_FILE` and `SSL_CERT_DIR`
/// first), offering `alpn` in order of preference.
///
/// The store is read on every call, on the calling thread: make the
/// configuration once and share it. A `NotFound` error when the store
/// holds no certificate the verifier accepts (no store, an empty one, or
/// only unreadable entries), saying what the reader met.
#[cfg(feature = "system-roots")]
pub fn client_config_with_system_roots(
    alpn: &[&[u8]],
    versions: Versions,
) -> io::Result<Arc<ClientConfig>> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _unparsable) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(err) => format!("no system root certificates: {err}"),
            None => "no system root certificates".to_owned(),
        };
        return Err(io::Error::new(io::ErrorKind::NotFound, why));
    }
    client_config_with_store(store, alpn, versions)
}

fn client_config_with_store(
    store: RootCertStore,
    alpn: &[&[u8]],
    versions: Versions,
) -> io::Result<Arc<ClientConfig>> {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions.protocols())
        .map_err(|err| invalid_input(&err.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A server configuration presenting `chain` (the leaf first, then the
/// intermediates) with its private `key`, accepting `alpn` (the client's
/// first offer that is in this list wins; none: ALPN is not negotiated).
///
/// An `InvalidInput` error when the key does not match the leaf or is of
/// a kind the provider does not support.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
    versions: Versions,
) -> io::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions.protocols())
        .map_err(|err| invalid_input(&err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| invalid_input(&format!("bad certificate or key: {err}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The certificates in a PEM text (`-----BEGIN CERTIFICATE-----` blocks),
/// in order. An `InvalidData` error for a malformed block or none at all.
pub fn certificates_from_pem(pem: &[u8]) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid_data(&format!("bad PEM certificate: {err}")))?;
    if certs.is_empty() {
        return Err(invalid_data("no certificate in the PEM text"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM text.
pub fn private_key_from_pem(pem: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|err| invalid_data(&format!("bad PEM private key: {err}")))
}

fn invalid_input(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why.to_owned())
}

fn invalid_data(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}
