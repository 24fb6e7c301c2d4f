//! The examples over loopback with generated certificates: `tls_echo`
//! serving ouro clients (and one that leaves mid-handshake), `https_get`
//! fetching from an ouro server, refusing an expired certificate, and
//! streaming an endless or trickling body until its time limit;
//! `tls_echo` holding back a client that does not read, and cutting one
//! that goes quiet.

// Both examples include ouro's `examples/support/cli.rs`, as each must to
// build on its own.
#![allow(clippy::duplicate_mod)]

mod support;

use std::cell::Cell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use ouro::{Ctx, Ring};
use ouro_tls::{client_config, server_config, TlsStream, Versions};
use support::certs::{Leaf, Pki};
use support::pair::{on_tls, Pair, Role};
use support::watchdog::AbortAfter;

#[allow(dead_code)] // its `main`
#[path = "../examples/tls_echo.rs"]
mod tls_echo;

#[allow(dead_code)] // its `main`
#[path = "../examples/https_get.rs"]
mod https_get;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `tls_echo` on a thread, serving `connections` connections with `pki`'s
/// localhost certificate: its address, and its thread.
fn tls_echo_server(
    pki: &Pki,
    connections: usize,
) -> (SocketAddr, thread::JoinHandle<io::Result<()>>) {
    let leaf = &pki.localhost;
    let config = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || tls_echo::serve(listener, config, Some(connections)));
    (addr, server)
}

#[test]
fn tls_echo_echoes_each_client_and_survives_one_that_leaves_mid_handshake() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let (addr, server) = tls_echo_server(&pki, 3);

    // Connects, then closes before saying anything.
    drop(std::net::TcpStream::connect(addr).unwrap());
    for len in [1, 300_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let socket = Rc::new(std::net::TcpStream::connect(addr).unwrap());
        let config = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
        let stream = TlsStream::client(socket, config, "localhost", Ctx::new(on_tls)).unwrap();
        let mut pair = Pair::alone(
            stream,
            Role::Send {
                payload: payload.clone(),
                sent: 0,
            },
        );
        let mut ring = Ring::new(16).unwrap();
        pair.start(&mut ring);
        let pair = pair.finish(ring);
        assert!(pair.client.failed.is_none(), "{:?}", pair.client.failed);
        assert!(pair.client.closed, "the server did not answer close_notify");
        assert!(pair.client.received == payload, "the echo differs");
    }
    server.join().unwrap().expect("the server failed");
}

/// An ouro server on a thread answering one request with `response`.
fn https_server(leaf: &Leaf, response: &[u8]) -> (u16, thread::JoinHandle<Vec<u8>>) {
    let config = server_config(
        leaf.chain.clone(),
        leaf.key(),
        &[b"http/1.1"],
        Versions::Both,
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let response = response.to_vec();
    let server = thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let stream = TlsStream::server(Rc::new(socket), config, Ctx::new(on_tls)).unwrap();
        let mut pair = Pair::alone(stream, Role::Reply { response });
        let mut ring = Ring::new(16).unwrap();
        pair.start(&mut ring);
        pair.finish(ring).client.received
    });
    (port, server)
}

#[test]
fn https_get_fetches_the_whole_response_and_sends_a_proper_request() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let body = "x".repeat(100_000);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (port, server) = https_server(&pki.localhost, response.as_bytes());
    let url = format!("https://localhost:{port}/some/page?q=1");
    // A time limit far past the test's own: the fetch ends with the
    // response, not with its timer.
    let ca = pki.ca_pem.as_bytes();
    let hour = Duration::from_secs(3600);
    let got = https_get::fetch(&url, LOCALHOST, ca, hour, Vec::new()).expect("the fetch");
    assert!(
        got == response.as_bytes(),
        "the response differs ({} bytes)",
        got.len()
    );
    let request = String::from_utf8(server.join().unwrap()).unwrap();
    assert!(
        request.starts_with("GET /some/page?q=1 HTTP/1.1\r\n"),
        "{request}"
    );
    let host = format!("\r\nHost: localhost:{port}\r\n");
    assert!(request.contains(&host), "{request}");
}

#[test]
fn https_get_refuses_an_expired_certificate() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let (port, server) = https_server(&pki.expired, b"HTTP/1.1 200 OK\r\n\r\n");
    let url = format!("https://localhost:{port}/");
    let ca = pki.ca_pem.as_bytes();
    let err = https_get::fetch(&url, LOCALHOST, ca, https_get::MAX_TIME, Vec::new())
        .expect_err("fetched");
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn https_get_parses_urls_and_refuses_bad_ones() {
    let url = https_get::parse_url("https://example.test:8443/a/b").unwrap();
    assert_eq!(
        (url.host, url.port, url.path),
        ("example.test", 8443, "/a/b")
    );
    let url = https_get::parse_url("https://example.test").unwrap();
    assert_eq!((url.host, url.port, url.path), ("example.test", 443, "/"));
    let url = https_get::parse_url("https://[::1]:8443/x").unwrap();
    assert_eq!(
        (url.host, url.authority, url.port),
        ("::1", "[::1]:8443", 8443)
    );
    let url = https_get::parse_url("https://[fe80::1]").unwrap();
    assert_eq!((url.host, url.port, url.path), ("fe80::1", 443, "/"));
    for bad in [
        "http://example.test/",
        "https://:80/",
        "https://h:99999/",
        "https://h/a b",
        "https://h/a\rb",
        "https://h:x/",
        "https://a b:80/",
        "https://a\nb/",
        "https://::1/",
        "https://[example.test]/",
        "https://[::1/",
        "https://[::1]x/",
    ] {
        let err = https_get::parse_url(bad).expect_err(bad);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
    }
}

/// A server that answers the request with a head, then with `chunk`
/// bytes of body every `pause`, for ever.
fn endless_https_server(leaf: &Leaf, chunk: usize, pause: Duration) -> u16 {
    let config = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let session = ouro_tls::rustls::ServerConnection::new(config).unwrap();
        let mut tls = ouro_tls::rustls::StreamOwned::new(session, socket);
        let mut request = [0u8; 4096];
        let _ = tls.read(&mut request);
        let body = vec![b'x'; chunk];
        let mut sent = tls.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
        while sent.is_ok() {
            sent = tls.write_all(&body).and_then(|()| tls.flush());
            thread::sleep(pause);
        }
    });
    port
}

/// Counts the bytes written to it, keeping none.
#[derive(Debug)]
struct Counted<'a>(&'a Cell<u64>);

impl Write for Counted<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.set(self.0.get() + bytes.len() as u64);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `https_get` against a body that never ends, sent as fast as it goes
/// and a byte at a time: the response goes out as it arrives (nothing
/// piles up in memory), and the fetch ends at its time limit.
#[test]
fn https_get_streams_a_body_that_never_ends_until_its_time_limit() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let head = b"HTTP/1.1 200 OK\r\n\r\n".len() as u64;
    for (chunk, pause, at_least) in [
        (64 * 1024, Duration::ZERO, head + 64 * 1024),
        (1, Duration::from_millis(50), head + 1),
    ] {
        let port = endless_https_server(&pki.localhost, chunk, pause);
        let url = format!("https://localhost:{port}/");
        let written = Cell::new(0);
        let limit = Duration::from_secs(1);
        let ca = pki.ca_pem.as_bytes();
        let err = https_get::fetch(&url, LOCALHOST, ca, limit, Counted(&written))
            .expect_err("an endless body ended");
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("--max-time"), "{err}");
        assert!(
            written.get() >= at_least,
            "{} bytes written before the time limit (chunks of {chunk})",
            written.get()
        );
    }
}

/// A client of `tls_echo` that sends and does not read: the server must
/// stop taking its bytes (its writes block) rather than hold the echoes,
/// and once it reads, every byte comes back.
#[test]
fn tls_echo_holds_back_a_client_that_does_not_read_and_loses_nothing() {
    let _limit = AbortAfter::new(Duration::from_secs(120));
    let pki = Pki::new();
    let (addr, server) = tls_echo_server(&pki, 1);

    let (mut tls, mut socket, held_back) = send_until_held_back(addr, &pki);
    // Now read: the server resumes, and every byte sent comes back.
    socket.set_write_timeout(None).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut echoed = 0;
    let mut plaintext = vec![0; CHUNK];
    while echoed < held_back {
        let mut progress = false;
        while tls.wants_write() {
            match tls.write_tls(&mut socket) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("writing: {e}"),
            }
        }
        match tls.read_tls(&mut socket) {
            Ok(0) => panic!("the server closed after echoing {echoed} of {held_back} bytes"),
            Ok(_) => progress = true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading: {e}"),
        }
        tls.process_new_packets().unwrap();
        loop {
            match std::io::Read::read(&mut tls.reader(), &mut plaintext) {
                Ok(n) if n > 0 => {
                    let expected = (echoed..echoed + n).map(|i| ((i % CHUNK) % 251) as u8);
                    assert!(
                        plaintext[..n].iter().copied().eq(expected),
                        "at byte {echoed}"
                    );
                    echoed += n;
                }
                Ok(_) => panic!("close_notify after {echoed} of {held_back} bytes"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("plaintext: {e}"),
            }
        }
        if !progress {
            thread::sleep(Duration::from_millis(1));
        }
    }
    tls.send_close_notify();
    socket.set_nonblocking(false).unwrap();
    while tls.wants_write() {
        tls.write_tls(&mut socket).unwrap();
    }
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut socket, &mut rest);
    server.join().unwrap().expect("the server failed");
}

/// A client of `tls_echo` that goes quiet after an echo is cut once it
/// has been idle for the server's limit (1 s here): idle clients do not
/// hold the server's fds for ever.
#[test]
fn tls_echo_cuts_a_client_that_goes_quiet() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let leaf = &pki.localhost;
    let config = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let idle = Duration::from_secs(1);
    let server =
        thread::spawn(move || tls_echo::serve_cutting_idle(listener, config, Some(1), idle));
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let mut tls = rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
    tls.writer().write_all(b"x").unwrap();
    let mut echo = [0; 1];
    while tls.reader().read_exact(&mut echo).is_err() {
        tls.complete_io(&mut socket).unwrap();
    }
    assert_eq!(&echo, b"x");
    // Quiet now: the server's cut ends the connection (the test's limit
    // ends a server that never does).
    let started = std::time::Instant::now();
    let end = loop {
        match tls.read_tls(&mut socket) {
            Ok(0) => break Ok(0),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    assert!(
        started.elapsed() >= idle / 2,
        "cut after {:?}: {end:?}",
        started.elapsed()
    );
    server.join().unwrap().expect("the server failed");
}

/// What the clients of `tls_echo` that do not read send at a time.
const CHUNK: usize = 1 << 20;

/// A TLS client of `tls_echo` at `addr` that sends 1 MiB chunks and reads
/// nothing until the server stops taking them (writes stuck for 2 s): its
/// session, its socket and the bytes sent.
fn send_until_held_back(
    addr: SocketAddr,
    pki: &Pki,
) -> (rustls::ClientConnection, std::net::TcpStream, usize) {
    // Far above what the socket buffers and the server's pause threshold
    // hold between them (a few MiB each way on loopback).
    const UNREAD_LIMIT: usize = 64 << 20;
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let mut tls = rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
    tls.set_buffer_limit(None);
    while tls.is_handshaking() {
        tls.complete_io(&mut socket).unwrap();
    }
    // Writes that make no progress for a while mean the server stopped
    // reading: what the test waits for.
    socket
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    let held_back = 'sending: loop {
        assert!(
            sent < UNREAD_LIMIT,
            "the server took {} MiB from a client that reads nothing",
            sent >> 20
        );
        std::io::Write::write_all(&mut tls.writer(), &chunk).unwrap();
        sent += CHUNK;
        while tls.wants_write() {
            match tls.write_tls(&mut socket) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break 'sending sent;
                }
                Err(e) => panic!("writing: {e}"),
            }
        }
    };
    (tls, socket, held_back)
}

/// A client that sends and never reads is cut once its echoes have gone
/// unread for 10 s (the server then ends: it served its one connection),
/// and sees its connection end.
#[test]
fn tls_echo_cuts_a_client_that_leaves_its_echoes_unread() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let (addr, server) = tls_echo_server(&pki, 1);
    let (_tls, mut socket, _) = send_until_held_back(addr, &pki);
    server.join().unwrap().expect("the server failed");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut unread = Vec::new();
    match socket.read_to_end(&mut unread) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
}
