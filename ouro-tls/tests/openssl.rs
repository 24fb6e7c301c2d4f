//! ouro's TLS client against `openssl s_server`, and `openssl s_client`
//! against ouro's TLS server, on TLS 1.2 and 1.3 each way; the client
//! refusing s_server's bad certificates (unknown CA, another name, expired,
//! a CA as the leaf) with an alert s_server hears, and reporting s_server's
//! close without `close_notify` as a truncation. Ignored by default: they
//! need the `openssl` program (`.ci/run` installs it).

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use ouro::{Ctx, Ring};
use ouro_tls::{client_config, server_config, TlsStream, TlsVersion, Versions};
use support::certs::{Leaf, Pki};
use support::pair::{on_tls, Pair, Role};
use support::watchdog::AbortAfter;

/// A child process killed when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The PEM files of `pki`'s CA and of `leaf`, in a temporary folder.
fn write_pem_files(pki: &Pki, leaf: &Leaf, dir: &Path) {
    fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    fs::write(dir.join("cert.pem"), &leaf.cert_pem).unwrap();
    fs::write(dir.join("key.pem"), &leaf.key_pem).unwrap();
}

/// The port `s_server` listens on, from the `ACCEPT host:port` line it
/// prints once listening. It picks the port itself (`-accept 127.0.0.1:0`):
/// a port chosen beforehand and released could be taken by another test in
/// between. The rest of its output is drained so that it never blocks.
fn listening_port(server: &mut Child) -> u16 {
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let port = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let address = line.strip_prefix("ACCEPT ")?;
            address.rsplit_once(':')?.1.parse().ok()
        })
        .expect("s_server never printed its ACCEPT line");
    thread::spawn(move || lines.for_each(drop));
    port
}

fn version_flag(version: TlsVersion) -> &'static str {
    match version {
        TlsVersion::Tls12 => "-tls1_2",
        TlsVersion::Tls13 => "-tls1_3",
    }
}

/// `openssl s_server` for one connection on TLS `version`, serving the
/// certificate in `dir` (see `write_pem_files`), with `args` added (not
/// `-quiet`: its `ACCEPT` line gives the port); its standard error is
/// piped. Returns it with the port it listens on.
fn s_server(version: TlsVersion, dir: &Path, args: &[&str], stdin: Stdio) -> (Peer, u16) {
    let mut child = Command::new("openssl")
        .args(["s_server", "-naccept", "1", version_flag(version)])
        .args(args)
        .args(["-accept", "127.0.0.1:0"])
        .arg("-cert")
        .arg(dir.join("cert.pem"))
        .arg("-key")
        .arg(dir.join("key.pem"))
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_server (apt-get install openssl)");
    let port = listening_port(&mut child);
    (Peer(child), port)
}

/// An ouro client trusting `pki`'s CA, connected to `port`, playing
/// `role` until its stream ends.
fn run_ouro_client(pki: &Pki, port: u16, role: Role) -> Pair {
    let socket = Rc::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let config = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let stream = TlsStream::client(socket, config, "localhost", Ctx::new(on_tls))
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(20));
    let mut pair = Pair::alone(stream, role);
    let mut ring = Ring::new(16).unwrap();
    pair.start(&mut ring);
    pair.finish(ring)
}

fn get_request() -> Role {
    Role::Request {
        request: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        sent: 0,
    }
}

fn ouro_client_against_s_server(version: TlsVersion) {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write_pem_files(&pki, &pki.localhost, dir.path());
    let (_server, port) = s_server(version, dir.path(), &["-www"], Stdio::null());
    let pair = run_ouro_client(&pki, port, get_request());
    let client = &pair.client;
    assert!(client.failed.is_none(), "failed: {:?}", client.failed);
    assert!(client.closed, "s_server's close_notify never arrived");
    assert_eq!(client.handshake.as_ref().unwrap().version, version);
    let page = String::from_utf8_lossy(&client.received);
    assert!(page.starts_with("HTTP/1.0 200 ok"), "{page}");
}

#[test]
#[ignore = "needs openssl"]
fn ouro_client_fetches_from_openssl_s_server_over_tls12() {
    ouro_client_against_s_server(TlsVersion::Tls12);
}

#[test]
#[ignore = "needs openssl"]
fn ouro_client_fetches_from_openssl_s_server_over_tls13() {
    ouro_client_against_s_server(TlsVersion::Tls13);
}

/// `s_client` sends a line, waits for its echo, then closes its input,
/// which makes it send `close_notify` and exit.
fn s_client_against_ouro_server(version: TlsVersion) {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write_pem_files(&pki, &pki.localhost, dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Peer(
        Command::new("openssl")
            .args([
                "s_client",
                "-brief",
                "-verify_return_error",
                "-servername",
                "localhost",
            ])
            .arg(version_flag(version))
            .args(["-connect", &format!("127.0.0.1:{port}")])
            .arg("-CAfile")
            .arg(dir.path().join("ca.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client (apt-get install openssl)"),
    );
    let mut input = child.0.stdin.take().unwrap();
    let output = BufReader::new(child.0.stdout.take().unwrap());
    let talker = thread::spawn(move || {
        input.write_all(b"hello from s_client\n").unwrap();
        let echoed = output.lines().next().expect("an echo").unwrap();
        drop(input);
        echoed
    });
    let (socket, _) = listener.accept().unwrap();
    let leaf = &pki.localhost;
    let config = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    let stream = TlsStream::server(Rc::new(socket), config, Ctx::new(on_tls)).unwrap();
    let mut pair = Pair::alone(stream, Role::Echo);
    let mut ring = Ring::new(16).unwrap();
    pair.start(&mut ring);
    let pair = pair.finish(ring);
    assert_eq!(talker.join().unwrap(), "hello from s_client");
    let server = &pair.client;
    assert!(server.failed.is_none(), "failed: {:?}", server.failed);
    assert!(server.closed, "s_client's close_notify never arrived");
    assert_eq!(server.handshake.as_ref().unwrap().version, version);
    assert_eq!(server.received, b"hello from s_client\n");
    assert!(child.0.wait().unwrap().success());
}

#[test]
#[ignore = "needs openssl"]
fn openssl_s_client_talks_to_ouro_server_over_tls12() {
    s_client_against_ouro_server(TlsVersion::Tls12);
}

#[test]
#[ignore = "needs openssl"]
fn openssl_s_client_talks_to_ouro_server_over_tls13() {
    s_client_against_ouro_server(TlsVersion::Tls13);
}

/// On TLS 1.2 and 1.3: s_server presents the certificate `leaf_of` picks;
/// the client fails with an error naming `cause`, before any plaintext,
/// and its alert reaches s_server, which prints it.
fn ouro_client_refuses_s_server_with(leaf_of: fn(&Pki) -> &Leaf, cause: &str) {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let dir = tempfile::tempdir().unwrap();
        write_pem_files(&pki, leaf_of(&pki), dir.path());
        // Not quiet: s_server prints the alert it gets.
        let (mut server, port) = s_server(version, dir.path(), &["-www"], Stdio::null());
        let pair = run_ouro_client(&pki, port, get_request());
        let failure = pair.client.failure();
        assert!(
            failure.contains(cause),
            "{version:?}: the client's error {failure:?} does not name {cause:?}"
        );
        assert!(pair.client.handshake.is_none(), "the handshake finished");
        assert!(pair.client.received.is_empty());
        let mut heard = String::new();
        let mut stderr = server.0.stderr.take().unwrap();
        stderr.read_to_string(&mut heard).unwrap();
        assert!(
            heard.contains("alert"),
            "{version:?}: s_server heard no alert: {heard}"
        );
    }
}

#[test]
#[ignore = "needs openssl"]
fn ouro_client_refuses_openssl_s_server_signed_by_an_unknown_ca() {
    ouro_client_refuses_s_server_with(|pki| &pki.unknown_ca_leaf, "UnknownIssuer");
}

#[test]
#[ignore = "needs openssl"]
fn ouro_client_refuses_openssl_s_server_certificate_for_another_name() {
    ouro_client_refuses_s_server_with(|pki| &pki.other_name, "not valid for name \"localhost\"");
}

#[test]
#[ignore = "needs openssl"]
fn ouro_client_refuses_openssl_s_server_expired_certificate() {
    ouro_client_refuses_s_server_with(|pki| &pki.expired, "expired");
}

#[test]
#[ignore = "needs openssl"]
fn ouro_client_refuses_openssl_s_server_ca_certificate_used_as_the_leaf() {
    ouro_client_refuses_s_server_with(|pki| &pki.ca_as_leaf, "CaUsedAsEndEntity");
}

/// On TLS 1.2 and 1.3: s_server (not quiet) sends its standard input, and
/// at its end shuts the socket down without `close_notify`. The client gets
/// the bytes, then a truncation error, never a clean close.
#[test]
#[ignore = "needs openssl"]
fn openssl_s_server_closing_without_close_notify_is_a_truncation() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let dir = tempfile::tempdir().unwrap();
        write_pem_files(&pki, &pki.localhost, dir.path());
        // Non-blocking, so that after its handshake s_server goes back to
        // watching its input instead of waiting in a read for the client.
        let (mut server, port) = s_server(version, dir.path(), &["-nbio"], Stdio::piped());
        let mut input = server.0.stdin.take().unwrap();
        input.write_all(b"cut short\n").unwrap();
        drop(input);
        let listen_only = Role::Request {
            request: Vec::new(),
            sent: 0,
        };
        let pair = run_ouro_client(&pki, port, listen_only);
        let client = &pair.client;
        let err = client.failed.as_ref().expect("the client saw no failure");
        assert!(
            ouro_tls::is_truncated(err),
            "{version:?}: not a truncation: {err}"
        );
        assert!(err.to_string().contains("close_notify"), "{err}");
        assert!(!client.closed);
        assert_eq!(client.handshake.as_ref().unwrap().version, version);
        assert_eq!(client.received, b"cut short\n");
    }
}
