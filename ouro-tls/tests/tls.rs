//! TLS client and server, both ouro, over loopback: data intact on TLS 1.2
//! and 1.3 (also through records and receives cut small), ALPN, refused
//! certificates, truncation, the handshake deadline, cancellation and early
//! data refused, and a server's 0.5-RTT plaintext counted once in `queued`.
//! Runs on the backend `Ring::new` picks
//! (`OURO_BACKEND=poll` for the readiness backend).

mod support;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ouro::{Completion, Ctx, Ring, RunMode};
use ouro_tls::rustls::crypto::CryptoProvider;
use ouro_tls::rustls::pki_types::ServerName;
use ouro_tls::rustls::{ClientConnection, NamedGroup};
use ouro_tls::{
    client_config, server_config, KeyExchange, ServerConfig, TlsEvent, TlsStream, TlsVersion,
    Versions,
};
use support::certs::{Leaf, Pki};
use support::pair::{Pair, Role};
use support::watchdog::AbortAfter;

fn limit() -> AbortAfter {
    AbortAfter::new(Duration::from_secs(60))
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn echo_pair(pki: &Pki, leaf: &Leaf, versions: Versions, payload: Vec<u8>) -> Pair {
    let client = client_config(std::slice::from_ref(&pki.ca), &[], versions).unwrap();
    let server = server_config(leaf.chain.clone(), leaf.key(), &[], versions).unwrap();
    Pair::new(client, Role::Send { payload, sent: 0 }, server, Role::Echo).run()
}

fn echo_arrives_intact(versions: Versions, expected: TlsVersion) {
    let _limit = limit();
    let pki = Pki::new();
    let sent = payload(1 << 20);
    let pair = echo_pair(&pki, &pki.localhost, versions, sent.clone());
    for side in [&pair.client, &pair.server] {
        assert!(side.failed.is_none(), "failed: {:?}", side.failed);
        assert_eq!(side.handshake.as_ref().unwrap().version, expected);
        assert!(side.closed, "no close_notify seen");
    }
    assert!(
        pair.server.received == sent,
        "the server got {} bytes, not the payload",
        pair.server.received.len()
    );
    assert!(
        pair.client.received == sent,
        "the client got {} bytes back, not the payload",
        pair.client.received.len()
    );
}

#[test]
fn echo_of_one_mebibyte_arrives_intact_over_tls13() {
    echo_arrives_intact(Versions::Tls13, TlsVersion::Tls13);
}

#[test]
fn echo_of_one_mebibyte_arrives_intact_over_tls12() {
    echo_arrives_intact(Versions::Tls12, TlsVersion::Tls12);
}

#[test]
fn both_versions_offered_negotiate_tls13() {
    let _limit = limit();
    let pki = Pki::new();
    let pair = echo_pair(&pki, &pki.localhost, Versions::Both, b"hello".to_vec());
    assert_eq!(pair.client.handshake.unwrap().version, TlsVersion::Tls13);
    assert_eq!(pair.client.received, b"hello");
}

/// A server offering P-384 alone: the client's X25519 key share does not
/// fit, the server asks again (a HelloRetryRequest) and P-384 is agreed.
#[test]
fn a_server_with_p384_only_is_met_with_p384() {
    let _limit = limit();
    let pki = Pki::new();
    let provider = ouro_tls::crypto_provider();
    let p384_only = CryptoProvider {
        kx_groups: provider
            .kx_groups
            .iter()
            .copied()
            .filter(|group| group.name() == NamedGroup::secp384r1)
            .collect(),
        ..(*provider).clone()
    };
    assert_eq!(p384_only.kx_groups.len(), 1, "the provider has P-384");
    let server = ServerConfig::builder_with_provider(Arc::new(p384_only))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.localhost.chain.clone(), pki.localhost.key())
        .unwrap();
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Tls13).unwrap();
    let payload = b"after a retry".to_vec();
    let role = Role::Send { payload, sent: 0 };
    let pair = Pair::new(client, role, Arc::new(server), Role::Echo).run();
    assert!(pair.client.failed.is_none(), "{:?}", pair.client.failed);
    for side in [&pair.client, &pair.server] {
        let handshake = side.handshake.as_ref().expect("handshake done");
        assert_eq!(handshake.key_exchange, Some(KeyExchange::Secp384r1));
    }
    assert_eq!(pair.client.received, b"after a retry");
}

#[test]
fn alpn_protocol_is_negotiated_and_reported_to_both_sides() {
    let _limit = limit();
    let pki = Pki::new();
    let client = client_config(
        std::slice::from_ref(&pki.ca),
        &[b"h2", b"http/1.1"],
        Versions::Both,
    )
    .unwrap();
    let leaf = &pki.localhost;
    let server = server_config(
        leaf.chain.clone(),
        leaf.key(),
        &[b"http/1.1", b"x"],
        Versions::Both,
    )
    .unwrap();
    let payload = b"ping".to_vec();
    let pair = Pair::new(client, Role::Send { payload, sent: 0 }, server, Role::Echo).run();
    for side in [&pair.client, &pair.server] {
        let handshake = side.handshake.as_ref().expect("a handshake");
        assert_eq!(handshake.alpn.as_deref(), Some(&b"http/1.1"[..]));
    }
}

fn refused(leaf_of: fn(&Pki) -> &Leaf, cause: &str) {
    let _limit = limit();
    let pki = Pki::new();
    let pair = echo_pair(&pki, leaf_of(&pki), Versions::Both, b"secret".to_vec());
    let failure = pair.client.failure();
    assert!(
        failure.contains(cause),
        "the client's error {failure:?} does not name {cause:?}"
    );
    assert!(pair.client.handshake.is_none(), "the handshake finished");
    // The client's alert tells the server why, and nothing was sent.
    assert!(
        pair.server.failure().contains("alert"),
        "server: {}",
        pair.server.failure()
    );
    assert!(pair.server.received.is_empty());
}

#[test]
fn client_refuses_a_server_signed_by_an_unknown_ca() {
    refused(|pki| &pki.unknown_ca_leaf, "UnknownIssuer");
}

#[test]
fn client_refuses_a_certificate_for_another_name() {
    refused(|pki| &pki.other_name, "not valid for name \"localhost\"");
}

#[test]
fn client_refuses_an_expired_certificate() {
    refused(|pki| &pki.expired, "expired");
}

#[test]
fn client_refuses_a_ca_certificate_used_as_the_leaf() {
    refused(|pki| &pki.ca_as_leaf, "CaUsedAsEndEntity");
}

#[test]
fn server_closing_without_close_notify_is_reported_as_truncation() {
    let _limit = limit();
    let pki = Pki::new();
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let leaf = &pki.localhost;
    let server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    let cut = Role::Cut {
        payload: b"half of it".to_vec(),
    };
    let pair = Pair::new(client, Role::Echo, server, cut).run();
    let err = pair
        .client
        .failed
        .as_ref()
        .expect("the client saw no failure");
    assert!(ouro_tls::is_truncated(err), "not a truncation: {err}");
    assert!(err.to_string().contains("close_notify"), "{err}");
    assert!(!pair.client.closed);
    assert_eq!(pair.client.received, b"half of it");
}

/// A client whose server accepts the connection and never says a word.
/// The peer's socket comes back for the test to hold until the end.
fn client_to_silent_peer(role: Role, timeout: Option<Duration>) -> (Pair, Ring<Pair>, TcpStream) {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = Rc::new(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    let (silent, _) = listener.accept().unwrap();
    let config = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let mut stream =
        TlsStream::client(socket, config, "localhost", Ctx::new(support::pair::on_tls)).unwrap();
    if let Some(timeout) = timeout {
        stream = stream.with_handshake_timeout(timeout);
    }
    let mut pair = Pair::alone(stream, role);
    let mut ring = Ring::new(16).unwrap();
    pair.start(&mut ring);
    (pair, ring, silent)
}

#[test]
fn handshake_deadline_fires_against_a_peer_that_never_answers() {
    let _limit = limit();
    let (pair, ring, _peer) = client_to_silent_peer(Role::Echo, Some(Duration::from_millis(50)));
    let pair = pair.finish(ring);
    let err = pair.client.failed.expect("no failure");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(pair.client.handshake.is_none());
}

/// A second `start` does nothing: one deadline runs, and the stream is
/// idle (and dropped by the harness) only once its last task has ended,
/// so no completion comes for a dropped stream.
#[test]
fn a_stream_started_twice_starts_once() {
    let _limit = limit();
    let (mut pair, mut ring, _peer) =
        client_to_silent_peer(Role::Echo, Some(Duration::from_millis(50)));
    pair.client.stream.as_mut().unwrap().start(&mut ring);
    let pair = pair.finish(ring);
    let err = pair.client.failed.expect("no failure");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

/// A stream cancelled before it started has ended: a later `start` sends
/// nothing and arms nothing (it sent the client's hello and armed the
/// handshake deadline of a stream that had failed).
#[test]
fn a_stream_cancelled_before_it_started_starts_no_more() {
    fn ignore(_: &mut (), _: &mut Ring<()>, _: Completion) -> io::Result<()> {
        Ok(())
    }
    let _limit = limit();
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = Rc::new(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    let (mut peer, _) = listener.accept().unwrap();
    let config = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let mut ring: Ring<()> = Ring::new(16).unwrap();
    let mut stream = TlsStream::client(socket, config, "localhost", Ctx::new(ignore))
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(30));
    stream.cancel(&mut ring);
    stream.start(&mut ring);
    ring.run(&mut (), RunMode::NoWait).unwrap();
    assert!(stream.is_ended());
    assert!(stream.is_idle(), "nothing in flight");
    assert_eq!(ring.live_tasks(), 0);
    match stream.next_event() {
        Some(TlsEvent::Failed(err)) => assert!(ouro::is_canceled(&err), "{err}"),
        other => panic!("{other:?}"),
    }
    assert!(stream.next_event().is_none());
    peer.set_nonblocking(true).unwrap();
    let sent = peer.read(&mut [0; 512]);
    assert!(
        sent.as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock),
        "the peer got {sent:?}"
    );
}

#[test]
fn cancel_in_the_middle_of_the_handshake_reports_the_cancellation() {
    let _limit = limit();
    // The client cancels at its first event: its hello has been sent and
    // the answer will never come.
    let (pair, ring, _peer) =
        client_to_silent_peer(Role::CancelEarly, Some(Duration::from_secs(30)));
    let pair = pair.finish(ring);
    let err = pair.client.failed.expect("no failure");
    assert!(ouro::is_canceled(&err), "not a cancellation: {err}");
    assert!(pair.client.handshake.is_none());
}

/// A cancel made from another task's callback while echoes keep coming:
/// the receive in flight may complete with data before the cancel reaches
/// it (the kernel's completion is already in, or comes first), and the
/// cancel must still end the stream.
#[test]
fn a_cancel_made_while_data_keeps_coming_ends_the_stream() {
    fn cancel_client(pair: &mut Pair, ring: &mut Ring<Pair>, _: Completion) -> io::Result<()> {
        let stream = pair
            .client
            .stream
            .as_mut()
            .expect("the transfer ended first");
        stream.cancel(ring);
        Ok(())
    }
    let _limit = limit();
    let pki = Pki::new();
    let leaf = &pki.localhost;
    for _ in 0..5 {
        let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
        let server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
        let role = Role::Send {
            // Far more than 100 ms carries; made at once (not byte by byte
            // as `payload` makes it, slow in a debug build).
            payload: vec![7; 256 << 20],
            sent: 0,
        };
        let mut pair = Pair::new(client, role, server, Role::Echo);
        let mut ring = Ring::new(64).unwrap();
        pair.start(&mut ring);
        ring.timer(Duration::from_millis(100), Ctx::new(cancel_client));
        let pair = pair.finish(ring);
        let err = pair.client.failed.expect("the stream was not cancelled");
        assert!(ouro::is_canceled(&err), "not a cancellation: {err}");
    }
}

#[test]
fn cancel_before_the_first_turn_ends_the_stream_without_a_deadline() {
    let _limit = limit();
    let (mut pair, mut ring, _peer) = client_to_silent_peer(Role::Echo, None);
    pair.client.stream.as_mut().unwrap().cancel(&mut ring);
    let pair = pair.finish(ring);
    assert!(ouro::is_canceled(pair.client.failed.as_ref().unwrap()));
}

/// With receiving paused there is no receive to carry the cancellation:
/// the stream fails at once, and resuming receives nothing more.
#[test]
fn cancel_with_receiving_paused_fails_the_stream_and_resuming_receives_nothing() {
    let _limit = limit();
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = Rc::new(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    let (_silent, _) = listener.accept().unwrap();
    let config = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let on_tls = Ctx::new(support::pair::on_tls);
    let mut stream = TlsStream::client(socket, config, "localhost", on_tls).unwrap();
    // Paused from the start: the hello goes out, and no receive is armed.
    stream.pause_receiving();
    let mut pair = Pair::alone(stream, Role::Echo);
    let mut ring = Ring::new(16).unwrap();
    pair.start(&mut ring);
    let stream = pair.client.stream.as_mut().unwrap();
    stream.cancel(&mut ring);
    assert!(
        stream.is_ended(),
        "cancelled with nothing in flight to say so"
    );
    stream.resume_receiving(&mut ring);
    let pair = pair.finish(ring);
    assert!(ouro::is_canceled(pair.client.failed.as_ref().unwrap()));
}

#[test]
fn a_server_name_that_is_no_name_is_refused() {
    let pki = Pki::new();
    let config = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let (socket, _peer) = support::pair::tcp_pair();
    let err = TlsStream::<Pair, _>::client(
        socket,
        config,
        "not a name!",
        Ctx::new(support::pair::on_tls),
    )
    .err()
    .expect("accepted a bad name");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn configs_refuse_no_roots_and_a_key_for_another_certificate() {
    let pki = Pki::new();
    assert!(client_config(&[], &[], Versions::Both).is_err());
    let wrong_key = pki.other_name.key();
    let err =
        server_config(pki.localhost.chain.clone(), wrong_key, &[], Versions::Both).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
}

/// A server stream alone on a ring; the client's end is the test's.
fn lone_server(pki: &Pki, timeout: Option<Duration>) -> (Pair, Ring<Pair>, TcpStream) {
    let (client, server) = support::pair::tcp_pair();
    let leaf = &pki.localhost;
    let config = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    let mut stream = TlsStream::server(server, config, Ctx::new(support::pair::on_tls)).unwrap();
    if let Some(timeout) = timeout {
        stream = stream.with_handshake_timeout(timeout);
    }
    let mut pair = Pair::alone(stream, Role::Echo);
    let mut ring = Ring::new(16).unwrap();
    pair.start(&mut ring);
    let client = Rc::try_unwrap(client).expect("the only owner");
    (pair, ring, client)
}

#[test]
fn a_server_sent_plain_http_fails_with_invalid_data_and_answers_with_an_alert() {
    let _limit = limit();
    let pki = Pki::new();
    let (pair, ring, mut client) = lone_server(&pki, None);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let pair = pair.finish(ring);
    let err = pair.client.failed.expect("no failure");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "not an alert record: {answer:?}"
    );
}

#[test]
fn a_server_whose_client_never_says_hello_fails_at_the_handshake_deadline() {
    let _limit = limit();
    let pki = Pki::new();
    let (pair, ring, _client) = lone_server(&pki, Some(Duration::from_millis(50)));
    let pair = pair.finish(ring);
    let err = pair.client.failed.expect("no failure");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

#[test]
fn a_client_cut_off_mid_hello_is_a_truncation_during_the_handshake() {
    let _limit = limit();
    let pki = Pki::new();
    let (pair, ring, mut client) = lone_server(&pki, None);
    // The first bytes of a ClientHello record, then the end.
    client
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let pair = pair.finish(ring);
    let err = pair.client.failed.expect("no failure");
    assert!(ouro_tls::is_truncated(&err), "{err}");
    assert!(
        err.to_string().contains("during the TLS handshake"),
        "{err}"
    );
}

#[test]
fn echo_arrives_intact_through_one_byte_receive_buffers() {
    let _limit = limit();
    let pki = Pki::new();
    let leaf = &pki.localhost;
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    let sent = payload(40_000);
    let send = Role::Send {
        payload: sent.clone(),
        sent: 0,
    };
    let pair = Pair::new(client, send, server, Role::Echo)
        .receive_capacity(1)
        .run();
    assert!(pair.client.failed.is_none(), "{:?}", pair.client.failed);
    assert!(pair.client.received == sent, "the echo differs");
    assert!(pair.client.closed && pair.server.closed);
}

/// Records of at most 64 bytes of plaintext cut the handshake messages and
/// the session tickets across records, and receive buffers of 1 byte at
/// first (they grow) cut records across receives: each side keeps what it
/// has of a message and takes the rest from the next receive.
fn echo_arrives_intact_through_64_byte_records(versions: Versions) {
    let _limit = limit();
    let pki = Pki::new();
    let leaf = &pki.localhost;
    let mut client = client_config(std::slice::from_ref(&pki.ca), &[], versions).unwrap();
    let mut server = server_config(leaf.chain.clone(), leaf.key(), &[], versions).unwrap();
    Arc::make_mut(&mut client).max_fragment_size = Some(64);
    Arc::make_mut(&mut server).max_fragment_size = Some(64);
    let sent = payload(100_000);
    let send = Role::Send {
        payload: sent.clone(),
        sent: 0,
    };
    let pair = Pair::new(client, send, server, Role::Echo)
        .receive_capacity(1)
        .run();
    assert!(pair.client.failed.is_none(), "{:?}", pair.client.failed);
    assert!(pair.server.failed.is_none(), "{:?}", pair.server.failed);
    assert!(pair.client.received == sent, "the echo differs");
    assert!(pair.client.closed && pair.server.closed);
}

#[test]
fn echo_arrives_intact_through_64_byte_records_over_tls13() {
    echo_arrives_intact_through_64_byte_records(Versions::Tls13);
}

#[test]
fn echo_arrives_intact_through_64_byte_records_over_tls12() {
    echo_arrives_intact_through_64_byte_records(Versions::Tls12);
}

#[test]
fn a_server_fails_the_session_when_early_data_comes() {
    let _limit = limit();
    let pki = Pki::new();
    let leaf = &pki.localhost;
    let mut server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Tls13).unwrap();
    Arc::make_mut(&mut server).max_early_data_size = 1024;
    let mut client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Tls13).unwrap();
    Arc::make_mut(&mut client).enable_early_data = true;
    let name = ServerName::try_from("localhost").unwrap();
    // A first session, for the tickets (sent before the echo comes back).
    let (first_client, first_name) = (client.clone(), name.clone());
    let first = support::pair::server_against(server.clone(), move |mut socket| {
        let mut conn = ClientConnection::new(first_client, first_name).unwrap();
        conn.writer().write_all(b"ping").unwrap();
        let mut echo = [0; 4];
        while conn.reader().read_exact(&mut echo).is_err() {
            conn.complete_io(&mut socket).unwrap();
        }
        conn.send_close_notify();
        conn.complete_io(&mut socket).unwrap();
    });
    assert!(first.client.failed.is_none(), "{:?}", first.client.failed);
    // A resumed session whose client sends early data.
    let resumed = support::pair::server_against(server, move |mut socket| {
        let mut conn = ClientConnection::new(client, name).unwrap();
        let mut early = conn.early_data().expect("a ticket allowing early data");
        early.write_all(b"early").unwrap();
        // The server fails the session: an alert or the end comes back.
        while conn
            .complete_io(&mut socket)
            .is_ok_and(|(read, _)| read > 0)
        {}
    });
    let err = resumed.client.failed.expect("no failure");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("early (0-RTT) data"), "{err}");
}

#[test]
fn plaintext_written_before_the_handshake_is_sent_after_it() {
    let _limit = limit();
    let pki = Pki::new();
    let leaf = &pki.localhost;
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Tls12).unwrap();
    let server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Tls12).unwrap();
    let early = b"said before the handshake".to_vec();
    // Already "sent": the role writes nothing more after the handshake.
    let send = Role::Send {
        payload: early.clone(),
        sent: early.len(),
    };
    let mut pair = Pair::new(client, send, server, Role::Echo);
    let mut ring = Ring::new(16).unwrap();
    let queued = pair
        .client
        .stream
        .as_mut()
        .unwrap()
        .write(&mut ring, &early)
        .unwrap();
    // The plaintext, waiting for the handshake's keys, and at most the
    // ClientHello besides: each byte counted once.
    assert!(
        queued >= early.len() && queued < early.len() + 512,
        "{queued} bytes queued"
    );
    pair.start(&mut ring);
    let pair = pair.finish(ring);
    assert_eq!(pair.server.received, early);
    assert_eq!(pair.client.received, early);
}

/// Plaintext written before a handshake that then fails is never sent:
/// `queued` says so (0), so a writer waiting for it to drain is not left
/// waiting.
#[test]
fn nothing_stays_queued_once_the_handshake_failed() {
    let _limit = limit();
    let pki = Pki::new();
    let leaf = &pki.unknown_ca_leaf;
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Tls13).unwrap();
    let server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Tls13).unwrap();
    let early = b"never to be sent".to_vec();
    let send = Role::Send {
        payload: early.clone(),
        sent: early.len(),
    };
    let mut pair = Pair::new(client, send, server, Role::Echo);
    let mut ring = Ring::new(16).unwrap();
    let stream = pair.client.stream.as_mut().unwrap();
    assert!(stream.write(&mut ring, &early).unwrap() >= early.len());
    pair.start(&mut ring);
    let pair = pair.finish(ring);
    assert!(pair.client.failure().contains("UnknownIssuer"));
    assert_eq!(pair.client.queued_at_drop, Some(0));
    assert!(pair.server.received.is_empty());
}

#[test]
fn half_rtt_plaintext_a_server_wrote_counts_once_in_queued() {
    let _limit = limit();
    let pki = Pki::new();
    let leaf = &pki.localhost;
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Tls13).unwrap();
    let mut server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Tls13).unwrap();
    // The server seals what it wrote right after its flight (0.5-RTT),
    // before the client's Finished ends the handshake.
    Arc::make_mut(&mut server).send_half_rtt_data = true;
    let half_rtt = payload(1000);
    let send = Role::Send {
        payload: half_rtt.clone(),
        sent: half_rtt.len(),
    };
    let mut pair = Pair::new(client, Role::Echo, server, send);
    let mut ring = Ring::new(16).unwrap();
    let server_stream = pair.server.stream.as_mut().unwrap();
    let queued = server_stream.write(&mut ring, &half_rtt).unwrap();
    assert_eq!(queued, half_rtt.len(), "plaintext waiting for its keys");
    pair.start(&mut ring);
    let pair = pair.finish(ring);
    // The send of the flight and the 0.5-RTT records left nothing behind.
    let written = &pair.server.written_while_handshaking;
    assert!(
        !written.is_empty() && written.iter().all(|&queued| queued == 0),
        "queued during the handshake: {written:?}"
    );
    assert_eq!(pair.server.received, half_rtt);
    assert_eq!(pair.client.received, half_rtt);
}
