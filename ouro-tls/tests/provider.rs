//! The crypto provider the features select, and the key exchange a client
//! and a server made by `client_config` and `server_config` agree on. With
//! `aws-lc-rs` (which wins when `ring` is on too): X25519MLKEM768 over TLS
//! 1.3, X25519 over TLS 1.2 (which has no ML-KEM). With `ring` alone: X25519
//! over both. `.ci/run` runs this file once per provider, on both backends.

mod support;

use std::time::Duration;

use ouro_tls::rustls::NamedGroup;
use ouro_tls::{client_config, server_config, KeyExchange, TlsVersion, Versions};
use support::certs::Pki;
use support::pair::{Pair, Role};
use support::watchdog::AbortAfter;

/// What a default client and server agree on over TLS 1.3: the provider's
/// first group.
#[cfg(feature = "aws-lc-rs")]
const TLS13_DEFAULT: KeyExchange = KeyExchange::X25519MlKem768;
#[cfg(not(feature = "aws-lc-rs"))]
const TLS13_DEFAULT: KeyExchange = KeyExchange::X25519;

/// Runs a handshake between default configurations offering `versions`
/// and checks what both sides report.
fn agreed(versions: Versions, version: TlsVersion, group: KeyExchange) {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let leaf = &pki.localhost;
    let client = client_config(std::slice::from_ref(&pki.ca), &[], versions).unwrap();
    let server = server_config(leaf.chain.clone(), leaf.key(), &[], versions).unwrap();
    let role = Role::Send {
        payload: b"hello".to_vec(),
        sent: 0,
    };
    let pair = Pair::new(client, role, server, Role::Echo).run();
    assert!(pair.client.failed.is_none(), "{:?}", pair.client.failed);
    for side in [&pair.client, &pair.server] {
        let handshake = side.handshake.as_ref().expect("handshake done");
        assert_eq!(handshake.version, version, "{versions:?}");
        assert_eq!(handshake.key_exchange, Some(group), "{versions:?}");
    }
    assert_eq!(pair.client.received, b"hello");
}

#[test]
fn default_configurations_agree_on_the_providers_first_group_over_tls13() {
    agreed(Versions::Tls13, TlsVersion::Tls13, TLS13_DEFAULT);
    agreed(Versions::Both, TlsVersion::Tls13, TLS13_DEFAULT);
}

/// TLS 1.2 has no ML-KEM: the first classical group, X25519, on either
/// provider (not P-384, whose key exchange costs several times more).
#[test]
fn default_configurations_agree_on_x25519_over_tls12() {
    agreed(Versions::Tls12, TlsVersion::Tls12, KeyExchange::X25519);
}

#[test]
fn the_provider_offers_x25519_first_among_classical_groups() {
    let groups: Vec<NamedGroup> = ouro_tls::crypto_provider()
        .kx_groups
        .iter()
        .map(|group| group.name())
        .collect();
    let classical = [
        NamedGroup::X25519,
        NamedGroup::secp256r1,
        NamedGroup::secp384r1,
    ];
    #[cfg(feature = "aws-lc-rs")]
    let expected = [&[NamedGroup::X25519MLKEM768][..], &classical].concat();
    #[cfg(not(feature = "aws-lc-rs"))]
    let expected = classical.to_vec();
    assert_eq!(groups, expected);
}
