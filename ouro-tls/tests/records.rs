//! Records from a hostile peer: what the records before a bad one carried
//! was authenticated, and reaches the user before the error.

mod support;

use std::io::Write;
use std::time::Duration;

use ouro_tls::rustls::pki_types::ServerName;
use ouro_tls::rustls::ClientConnection;
use ouro_tls::{client_config, server_config, Versions};
use support::certs::Pki;
use support::watchdog::AbortAfter;

#[test]
fn plaintext_before_a_bad_record_in_the_same_receive_comes_before_the_error() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let leaf = &pki.localhost;
    let server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let pair = support::pair::server_against(server, move |mut socket| {
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(client, name).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut socket).unwrap();
        }
        let mut records = Vec::new();
        conn.writer().write_all(b"WORLD").unwrap();
        conn.write_tls(&mut records).unwrap();
        let good = records.len();
        conn.writer().write_all(b"EVIL").unwrap();
        conn.write_tls(&mut records).unwrap();
        // The second record's authentication tag no longer matches.
        *records.last_mut().unwrap() ^= 1;
        assert!(records.len() > good);
        // One write: both records come in one receive.
        socket.write_all(&records).unwrap();
        // The server answers with an alert, then ends.
        while conn
            .complete_io(&mut socket)
            .is_ok_and(|(read, _)| read > 0)
        {}
    });
    let server = pair.client;
    assert_eq!(server.received, b"WORLD");
    let err = server.failed.expect("the bad record fails the session");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}
