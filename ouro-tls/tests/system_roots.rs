//! The machine's certificate store (feature `system-roots`): it is read,
//! and a client trusting it refuses a server presenting a self-signed
//! certificate the test makes. Ignored by default: they need the store
//! (`ca-certificates`, which `.ci/run` installs). Runs on the backend
//! `Ring::new` picks (`OURO_BACKEND=poll` for the readiness one).

mod support;

use std::time::Duration;

use ouro_tls::{client_config_with_system_roots, Versions};
use support::pair::assert_refuses_a_self_signed_server;
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
    assert_refuses_a_self_signed_server(client);
}
