//! The store `client_config_with_system_roots` reads is the machine's
//! own: with `SSL_CERT_FILE` naming a file that holds only a CA the test
//! makes, a server signed by that CA is accepted and one signed by
//! another CA refused. One test alone in its binary, as it sets the
//! environment. Runs on the backend `Ring::new` picks.

mod support;

use std::time::Duration;

use ouro_tls::{client_config_with_system_roots, server_config, Versions};
use support::certs::{Leaf, Pki};
use support::pair::{Pair, Role};
use support::watchdog::AbortAfter;

fn echo(leaf: &Leaf) -> Pair {
    let client = client_config_with_system_roots(&[], Versions::Both).expect("the store");
    let server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    let payload = b"secret".to_vec();
    Pair::new(client, Role::Send { payload, sent: 0 }, server, Role::Echo).run()
}

#[test]
fn the_store_named_by_ssl_cert_file_is_the_one_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let bundle = dir.path().join("roots.pem");
    std::fs::write(&bundle, &pki.ca_pem).unwrap();
    // Before any thread of this test binary's own reads the environment.
    std::env::set_var("SSL_CERT_FILE", &bundle);
    std::env::set_var("SSL_CERT_DIR", dir.path().join("none"));
    let _limit = AbortAfter::new(Duration::from_secs(60));

    let trusted = echo(&pki.localhost);
    assert!(
        trusted.client.failed.is_none(),
        "{:?}",
        trusted.client.failed
    );
    assert_eq!(trusted.server.received, b"secret");

    let stranger = echo(&pki.unknown_ca_leaf);
    let failure = stranger.client.failure();
    assert!(failure.contains("UnknownIssuer"), "{failure}");

    std::fs::write(&bundle, "").unwrap();
    let err = client_config_with_system_roots(&[], Versions::Both).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
}
