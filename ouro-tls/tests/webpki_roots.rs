//! Mozilla's root certificates compiled in (feature `webpki-roots`): a
//! client trusting them offers what it was given and refuses a server
//! presenting a self-signed certificate the test makes. Runs on the
//! backend `Ring::new` picks (`OURO_BACKEND=poll` for the readiness one).

mod support;

use std::time::Duration;

use ouro_tls::{client_config_with_webpki_roots, Versions};
use support::pair::assert_refuses_a_self_signed_server;
use support::watchdog::AbortAfter;

#[test]
fn the_compiled_in_roots_make_a_client_configuration() {
    let config = client_config_with_webpki_roots(&[b"h2", b"http/1.1"], Versions::Tls13)
        .expect("Mozilla's roots");
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn a_client_trusting_the_compiled_in_roots_refuses_a_self_signed_certificate() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let client = client_config_with_webpki_roots(&[], Versions::Both).expect("Mozilla's roots");
    assert_refuses_a_self_signed_server(client);
}
