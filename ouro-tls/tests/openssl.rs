//! ouro's TLS client against `openssl s_server`, and `openssl s_client`
//! against ouro's TLS server, on TLS 1.2 and 1.3 each way. Ignored by
//! default: they need the `openssl` program (`.ci/run` installs it).

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use ouro::{Ctx, Ring};
use ouro_tls::{client_config, server_config, TlsStream, TlsVersion, Versions};
use support::certs::Pki;
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

/// The PEM files of `pki`'s CA and `localhost` leaf, in a temporary folder.
fn write_pem_files(pki: &Pki, dir: &Path) {
    fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    fs::write(dir.join("cert.pem"), &pki.localhost.cert_pem).unwrap();
    fs::write(dir.join("key.pem"), &pki.localhost.key_pem).unwrap();
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

fn ouro_client_against_s_server(version: TlsVersion) {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write_pem_files(&pki, dir.path());
    let mut server = Peer(
        Command::new("openssl")
            .args(["s_server", "-naccept", "1", "-www", version_flag(version)])
            .args(["-accept", "127.0.0.1:0"])
            .arg("-cert")
            .arg(dir.path().join("cert.pem"))
            .arg("-key")
            .arg(dir.path().join("key.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl s_server (apt-get install openssl)"),
    );
    let port = listening_port(&mut server.0);
    let socket = Rc::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let config = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let stream = TlsStream::client(socket, config, "localhost", Ctx::new(on_tls)).unwrap();
    let request = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    let mut pair = Pair::alone(stream, Role::Request { request, sent: 0 });
    let mut ring = Ring::new(16).unwrap();
    pair.start(&mut ring);
    let pair = pair.finish(ring);
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
    write_pem_files(&pki, dir.path());
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
