//! The machine's certificate store (feature `system-roots`): it is read,
//! and a client trusting it refuses a server presenting a self-signed
//! certificate the test makes. Ignored by default: they need the store
//! (`ca-certificates`, which `.ci/run` installs). Runs on the backend
//! `Ring::new` picks (`OURO_BACKEND=poll` for the readiness one).

mod support;

use std::time::Duration;

use ouro_tls::{client_config_with_system_roots, server_config, CertificateDer, Versions};
use support::pair::{Pair, Role};
use support::watchdog::AbortAfter;

#[test]
#[ignore = "needs ca-certificates"]
fn the_system_store_is_read_into_a_client_configuration() {
    let config = client_config_with_system_roots(&[b"h2", b"http/1.1"], Versions::Tls13)
        .expect("the system store");
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
#[ignore = "needs ca-certificates"]
fn a_client_trusting_the_system_store_refuses_a_self_signed_certificate() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let client = client_config_with_system_roots(&[], Versions::Both).expect("the system store");
    let self_signed = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let chain = vec![CertificateDer::from(self_signed.cert.der().to_vec())];
    let key = self_signed.signing_key.serialize_der().try_into().unwrap();
    let server = server_config(chain, key, &[], Versions::Both).unwrap();
    let payload = b"secret".to_vec();
    let pair = Pair::new(client, Role::Send { payload, sent: 0 }, server, Role::Echo).run();
    let failure = pair.client.failure();
    assert!(failure.contains("UnknownIssuer"), "{failure}");
    assert!(pair.client.handshake.is_none(), "the handshake finished");
    assert!(pair.server.received.is_empty());
}
