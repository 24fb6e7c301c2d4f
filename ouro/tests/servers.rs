//! The server examples, driven by real clients that ouro did not write:
//! `wrk` against the HTTP server, `redis-benchmark` and `redis-cli` against
//! the RESP server, and malformed input that must not hurt other clients.
//!
//! The servers run on threads of this test process, each on its own ring.
//! The clients come from Debian (`apt-get install wrk redis-tools`, which
//! `.ci/run` does); the tests that run them are ignored by default (run
//! them with `cargo test -- --include-ignored`), and a missing client then
//! fails the test with that instruction.
//! The tests with real clients run on the default backend (`OURO_BACKEND`
//! chooses); those with malformed or hostile input run on every backend.

// Both protocol examples include `support/stream_server.rs`, as each must
// to build on its own.
#![allow(clippy::duplicate_mod)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::Duration;

use ouro::{BackendKind, Ring, RingBuilder};

#[macro_use]
#[path = "common/backends.rs"]
mod backends;

#[allow(dead_code)] // its demo clients
#[path = "../examples/echo.rs"]
mod echo;
#[path = "../examples/http_server.rs"]
mod http_server;
#[path = "../examples/resp_server.rs"]
mod resp_server;

/// One `#[test]` per backend for each test function (taking the backend).
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::on_backend, $name);)+
    };
}

backend_tests![
    http_server_rejects_garbage_and_keeps_serving,
    resp_server_rejects_garbage_and_keeps_serving,
    http_server_stops_reading_from_a_client_that_never_reads,
    http_server_joins_a_request_sent_in_pieces,
    echo_server_keeps_serving_beside_a_client_that_never_reads
];

/// Runs `test` on `kind`, or says why the host cannot.
fn on_backend(test: fn(BackendKind), kind: BackendKind) {
    if !backends::skipped(kind) {
        test(kind)
    }
}

type Serve = fn(OwnedFd, RingBuilder) -> std::io::Result<()>;

/// A server example running on its own thread, listening on a free port.
struct Server {
    thread: JoinHandle<std::io::Result<()>>,
    addr: SocketAddr,
}

impl Server {
    /// Starts `serve` on the backend `OURO_BACKEND` chooses.
    fn start(serve: Serve) -> Server {
        Server::start_on(serve, Ring::builder())
    }

    fn start_on(serve: Serve, ring: RingBuilder) -> Server {
        let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 1024).unwrap();
        let addr = ouro::net::local_addr(&listener).unwrap();
        let thread = std::thread::spawn(move || serve(listener, ring));
        Server { thread, addr }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Fails the test if the server stopped.
    fn assert_alive(&self) {
        assert!(!self.thread.is_finished(), "the server stopped");
    }
}

fn run_client(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {program} ({e}): install it with `apt-get install wrk redis-tools` (.ci/run does)")
    })
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Reads until the peer closes (or the read timeout fails the test).
fn read_to_close(mut stream: TcpStream) -> String {
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("the server closes");
    String::from_utf8_lossy(&reply).into_owned()
}

const PIPELINE_LUA: &str = r#"
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
"#;

fn assert_wrk_clean(output: &Output) -> u64 {
    let out = text(output);
    assert!(output.status.success(), "wrk failed:\n{out}");
    assert!(
        !out.contains("Socket errors"),
        "wrk saw socket errors:\n{out}"
    );
    assert!(!out.contains("Non-2xx"), "wrk saw bad statuses:\n{out}");
    let requests = out
        .lines()
        .find_map(|l| l.trim().split(" requests in ").next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{out}"));
    assert!(requests > 0, "wrk made no request:\n{out}");
    requests
}

#[test]
#[ignore = "needs wrk and redis-tools (apt-get install wrk redis-tools; .ci/run installs them)"]
fn http_server_serves_wrk_without_errors() {
    let server = Server::start(http_server::serve);
    let url = format!("http://{}/", server.addr);
    let plain = run_client("wrk", &["-t1", "-c32", "-d2s", &url]);
    assert_wrk_clean(&plain);

    let script = std::env::temp_dir().join(format!("ouro-pipeline-{}.lua", std::process::id()));
    std::fs::write(&script, PIPELINE_LUA).unwrap();
    let pipelined = run_client(
        "wrk",
        &["-t1", "-c8", "-d2s", "-s", script.to_str().unwrap(), &url],
    );
    std::fs::remove_file(&script).unwrap();
    assert_wrk_clean(&pipelined);
    server.assert_alive();
}

#[test]
fn http_server_answers_pipelined_requests_in_order() {
    let server = Server::start(http_server::serve);
    let mut stream = server.connect();
    let request = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    let last = "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    stream
        .write_all(format!("{request}{request}{last}").as_bytes())
        .unwrap();
    let reply = read_to_close(stream);
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 3, "{reply}");
    assert_eq!(reply.matches("Hello, world!").count(), 3, "{reply}");
    assert!(reply.ends_with("Hello, world!"), "{reply}");
}

fn http_server_rejects_garbage_and_keeps_serving(kind: BackendKind) {
    let server = Server::start_on(http_server::serve, Ring::builder().backend(kind));
    let mut good = server.connect();
    good.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nContent-Length: banana\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let mut bad = server.connect();
        bad.write_all(garbage).unwrap();
        let reply = read_to_close(bad);
        assert!(
            reply.starts_with("HTTP/1.1 400") || reply.starts_with("HTTP/1.1 501"),
            "{reply:?}"
        );
    }
    // The request head that never ends is cut off too.
    let mut endless = server.connect();
    let header = format!("X-Filler: {}\r\n", "a".repeat(1000));
    endless.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    while endless.write_all(header.as_bytes()).is_ok() {
        let mut probe = [0u8; 1];
        endless.set_nonblocking(true).unwrap();
        let got = endless.read(&mut probe);
        endless.set_nonblocking(false).unwrap();
        if got.is_ok() {
            break;
        }
    }
    good.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = read_to_close(good);
    assert_eq!(reply.matches("200 OK").count(), 2, "{reply}");
    server.assert_alive();
}

#[test]
#[ignore = "needs wrk and redis-tools (apt-get install wrk redis-tools; .ci/run installs them)"]
fn resp_server_serves_redis_benchmark_without_errors() {
    let server = Server::start(resp_server::serve);
    let port = server.addr.port().to_string();
    let output = run_client(
        "redis-benchmark",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "ping,set,get",
            "-n",
            "20000",
            "-c",
            "16",
            "-P",
            "8",
            "-q",
        ],
    );
    let out = text(&output);
    assert!(output.status.success(), "redis-benchmark failed:\n{out}");
    // redis-benchmark stops at the first error reply; warnings (e.g. that it
    // could not read the server's configuration) count as failures too.
    assert!(
        !out.contains("rror") && !out.contains("WARNING"),
        "redis-benchmark complained:\n{out}"
    );
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET"] {
        assert!(
            out.contains(&format!("{test}: ")) && out.contains("requests per second"),
            "no {test} result:\n{out}"
        );
    }
    server.assert_alive();
}

#[test]
#[ignore = "needs wrk and redis-tools (apt-get install wrk redis-tools; .ci/run installs them)"]
fn resp_server_answers_redis_cli() {
    let server = Server::start(resp_server::serve);
    let port = server.addr.port().to_string();
    let cli = |args: &[&str]| {
        let mut all = vec!["-h", "127.0.0.1", "-p", &port];
        all.extend_from_slice(args);
        let output = run_client("redis-cli", &all);
        assert!(
            output.status.success(),
            "redis-cli {args:?}: {}",
            text(&output)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["SET", "fruit", "mango"]), "OK");
    assert_eq!(cli(&["GET", "fruit"]), "mango");
    // A value larger than a receive buffer arrives in several.
    let big = "v".repeat(20_000);
    assert_eq!(cli(&["SET", "big", &big]), "OK");
    assert_eq!(cli(&["GET", "big"]), big);
    assert_eq!(cli(&["EXISTS", "fruit", "nothing"]), "1");
    assert_eq!(cli(&["DEL", "fruit", "nothing"]), "1");
    assert_eq!(cli(&["GET", "fruit"]), "");
    assert!(cli(&["FLY"]).contains("unknown command"));
}

fn resp_server_rejects_garbage_and_keeps_serving(kind: BackendKind) {
    let server = Server::start_on(resp_server::serve, Ring::builder().backend(kind));
    let mut good = server.connect();
    good.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nok\r\n")
        .unwrap();
    let mut reply = [0u8; 5];
    good.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
    for garbage in [&b"*2\r\n:1\r\n:2\r\n"[..], b"*1\r\n$-7\r\n", b"*x\r\n"] {
        let mut bad = server.connect();
        bad.write_all(garbage).unwrap();
        let reply = read_to_close(bad);
        assert!(
            reply.starts_with("-ERR Protocol error"),
            "{garbage:?}: {reply:?}"
        );
    }
    good.write_all(b"GET k\r\n").unwrap();
    let mut reply = [0u8; 8];
    good.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"$2\r\nok\r\n");
    server.assert_alive();
}

/// Writes `chunk` over and over until the peer stops taking it (five
/// would-block waits in a row) or 256 MiB have gone; returns the bytes sent
/// and whether the peer stopped.
fn flood(stream: &TcpStream, chunk: &[u8]) -> (usize, bool) {
    stream.set_nonblocking(true).unwrap();
    let (mut sent, mut stalls) = (0usize, 0);
    while stalls < 5 && sent < 256 << 20 {
        match (&*stream).write(chunk) {
            Ok(n) => {
                sent += n;
                stalls = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                stalls += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("flooding: {e}"),
        }
    }
    (sent, stalls == 5)
}

/// A client that pipelines requests without reading the answers: past
/// 256 KiB of unsent answers the server stops reading its requests (so
/// its memory stays bounded) and serves the others.
fn http_server_stops_reading_from_a_client_that_never_reads(kind: BackendKind) {
    let server = Server::start_on(http_server::serve, Ring::builder().backend(kind));
    let flooder = server.connect();
    let requests = "GET / HTTP/1.1\r\nHost: flood\r\n\r\n".repeat(1000);
    let (sent, stopped) = flood(&flooder, requests.as_bytes());
    assert!(
        stopped,
        "the server took {sent} bytes of requests without pause"
    );
    let mut good = server.connect();
    good.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_to_close(good).starts_with("HTTP/1.1 200 OK"));
    drop(flooder);
    let mut after = server.connect();
    after
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_to_close(after).starts_with("HTTP/1.1 200 OK"));
    server.assert_alive();
}

/// A request that arrives in pieces (each in its own receive buffer) is
/// answered once whole, and so is one larger than a receive buffer.
fn http_server_joins_a_request_sent_in_pieces(kind: BackendKind) {
    let server = Server::start_on(http_server::serve, Ring::builder().backend(kind));
    let mut stream = server.connect();
    let filler = format!("X-Filler: {}\r\n", "f".repeat(10_000));
    let request = format!("GET / HTTP/1.1\r\nHost: a\r\n{filler}\r\n");
    let last = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let whole = format!("{request}{last}");
    for piece in whole.as_bytes().chunks(7000) {
        stream.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = read_to_close(stream);
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 2, "{reply}");
}

/// Echoes `rounds` messages of `size` bytes over `stream`, checking each.
fn echo_round_trips(stream: &mut TcpStream, rounds: usize, size: usize) {
    let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut echo = vec![0; size];
    for _ in 0..rounds {
        stream.write_all(&message).unwrap();
        stream.read_exact(&mut echo).expect("the echo comes back");
        assert!(echo == message, "the echo differs");
    }
}

/// A client that sends without ever reading its echoes must not take the
/// server's receive buffers from the others: with a group of 64 buffers,
/// it may hold 16 (its receive is paused), and the others go on. A client
/// that resets its connection does not disturb them either.
fn echo_server_keeps_serving_beside_a_client_that_never_reads(kind: BackendKind) {
    fn serve(listener: OwnedFd, ring: RingBuilder) -> std::io::Result<()> {
        echo::serve(listener, ring, 64)
    }
    let server = Server::start_on(serve, Ring::builder().backend(kind));
    let mut good = server.connect();
    echo_round_trips(&mut good, 10, 1000);

    // Until the server stops taking its bytes: its receive is paused and
    // every socket buffer on the way is full.
    let flooder = server.connect();
    let (sent, stopped) = flood(&flooder, &[7u8; 64 * 1024]);
    assert!(stopped, "the server took {sent} bytes without pause");
    echo_round_trips(&mut good, 100, 5000);

    let resetter = server.connect();
    socket2::SockRef::from(&resetter)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    (&resetter).write_all(b"half a message").unwrap();
    drop(resetter);
    drop(flooder);
    echo_round_trips(&mut good, 10, 1000);
    echo_round_trips(&mut server.connect(), 10, 100_000);
    server.assert_alive();
}
