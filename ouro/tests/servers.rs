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
#[path = "common/mod.rs"]
mod common;

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
        $(per_backend!(crate::common::backends::unless_skipped, $name);)+
    };
}

#[path = "servers/resp_hostile.rs"]
mod resp_hostile;
// What the stream servers hold under greedy clients.
#[path = "servers/limits.rs"]
mod limits;
// Requests that arrive in pieces, and what parsing them costs.
#[path = "servers/pieces.rs"]
mod pieces;
// SIGTERM and SIGINT: the servers close their connections and exit 0.
#[path = "servers/shutdown.rs"]
mod shutdown;

backend_tests![
    http_server_rejects_garbage_and_keeps_serving,
    resp_server_rejects_garbage_and_keeps_serving,
    http_server_stops_reading_from_a_client_that_never_reads,
    http_server_joins_a_request_sent_in_pieces,
    echo_server_keeps_serving_beside_a_client_that_never_reads,
    echo_server_keeps_buffers_for_others_beside_many_clients_that_never_read,
    echo_server_wakes_starved_connections_when_failed_sends_free_buffers,
    echo_server_out_of_fds_logs_rarely_and_names_the_limit
];

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
        Server::start_with(listener, move |listener| serve(listener, ring))
    }

    /// Starts `serve` on `listener`.
    fn start_with<F>(listener: OwnedFd, serve: F) -> Server
    where
        F: FnOnce(OwnedFd) -> std::io::Result<()> + Send + 'static,
    {
        let addr = ouro::net::local_addr(&listener).unwrap();
        let thread = std::thread::spawn(move || serve(listener));
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

/// `Connection` is a list of options: `close` anywhere in it closes the
/// connection after the answer (a request behind it is not answered).
#[test]
fn http_server_closes_on_close_anywhere_in_the_connection_header() {
    let server = Server::start(http_server::serve);
    for options in ["keep-alive, close", "Upgrade,CLOSE"] {
        let mut stream = server.connect();
        let request = format!("GET / HTTP/1.1\r\nConnection: {options}\r\n\r\n");
        let next = "GET / HTTP/1.1\r\n\r\n";
        stream
            .write_all(format!("{request}{next}").as_bytes())
            .unwrap();
        let reply = read_to_close(stream);
        assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 1, "{reply}");
        assert!(reply.contains("Connection: close\r\n"), "{reply}");
    }
    server.assert_alive();
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
/// its receive is paused once it holds its share, what it queued is copied
/// out of the group, and the others go on. A client
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

/// An echo server on a group of `BUFFERS` receive buffers.
fn echo_with_buffers<const BUFFERS: u16>(
    listener: OwnedFd,
    ring: RingBuilder,
) -> std::io::Result<()> {
    echo::serve(listener, ring, BUFFERS)
}

/// Connects `count` clients that each send until the server stops taking
/// their bytes, never reading an echo.
fn flooders(server: &Server, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let flooder = server.connect();
            let (sent, stopped) = flood(&flooder, &[7u8; 64 * 1024]);
            assert!(stopped, "the server took {sent} bytes without pause");
            flooder
        })
        .collect()
}

/// Closes each stream with a reset (`SO_LINGER` 0), as a crashed peer does.
fn reset(streams: Vec<TcpStream>) {
    for stream in streams {
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
}

/// Sixteen clients that send without reading their echoes, on a group of
/// 64 buffers, leave buffers for the others: a client that reads its echoes
/// gets them beside every one of them, and so does a newcomer.
fn echo_server_keeps_buffers_for_others_beside_many_clients_that_never_read(kind: BackendKind) {
    let server = Server::start_on(echo_with_buffers::<64>, Ring::builder().backend(kind));
    let mut good = server.connect();
    let mut flooding = Vec::new();
    for _ in 0..16 {
        flooding.extend(flooders(&server, 1));
        echo_round_trips(&mut good, 5, 5000);
    }
    echo_round_trips(&mut server.connect(), 5, 100_000);
    reset(flooding);
    echo_round_trips(&mut good, 10, 5000);
    server.assert_alive();
}

/// More non-reading clients than buffers: every buffer is held by an echo
/// the server cannot deliver, and clients that send meanwhile find none
/// (their receive ends with `ENOBUFS`). When the non-readers reset, their
/// sends fail — no send succeeds — and the buffers that frees must wake
/// every starved connection, which then gets its echo.
fn echo_server_wakes_starved_connections_when_failed_sends_free_buffers(kind: BackendKind) {
    let server = Server::start_on(echo_with_buffers::<4>, Ring::builder().backend(kind));
    let flooding = flooders(&server, 12);
    let message = b"are you there?";
    let mut waiting: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();
    for stream in &mut waiting {
        stream.write_all(message).unwrap();
    }
    // Not needed for the test to pass: it gives the server time to find no
    // buffer for them before the resets free some, which is the case the
    // test is about (without it, a fast reset may free buffers first).
    std::thread::sleep(Duration::from_millis(200));
    reset(flooding);
    for stream in &mut waiting {
        let mut echo = [0u8; 14];
        stream.read_exact(&mut echo).expect("the echo comes back");
        assert_eq!(&echo, message);
        echo_round_trips(stream, 10, 5000);
    }
    echo_round_trips(&mut server.connect(), 10, 5000);
    server.assert_alive();
}

/// Set in the child process that `echo_server_out_of_fds_logs_rarely_and_
/// names_the_limit` runs with a lowered fd limit.
const FD_LIMIT_CHILD: &str = "OURO_TEST_FD_LIMIT_CHILD";

/// An echo server that runs out of fds — its fixed file table of 4 slots
/// fills, then the process reaches its fd limit, with connections still
/// waiting — retries its accept every few milliseconds; it logs the first
/// failure of each cause, naming the limit (the table on io_uring, then
/// `RLIMIT_NOFILE`), and not one line per retry. Run in a child process,
/// as the lowered limit holds for the whole process.
fn echo_server_out_of_fds_logs_rarely_and_names_the_limit(kind: BackendKind) {
    let backend = match kind {
        BackendKind::Uring => "uring",
        _ => "poll",
    };
    if std::env::var_os(FD_LIMIT_CHILD).is_some() {
        return serve_echo_out_of_fds(kind);
    }
    let name = format!("echo_server_out_of_fds_logs_rarely_and_names_the_limit::{backend}");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([&name, "--exact", "--nocapture", "--test-threads=1"])
        .env(FD_LIMIT_CHILD, "1")
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "the child failed:\n{out}");
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("accept failed"))
        .collect();
    assert!(
        !lines.is_empty() && lines.len() <= 3,
        "expected one line per cause:\n{out}"
    );
    assert!(
        lines.iter().any(|l| l.contains("RLIMIT_NOFILE")),
        "the process limit is not named:\n{out}"
    );
    if kind == BackendKind::Uring {
        assert!(
            lines.iter().any(|l| l.contains("fixed file table is full")),
            "the full table is not named:\n{out}"
        );
    }
}

/// The child: 40 connections wait for an echo server whose process may
/// open only a few more fds, and which runs for a second and a half.
fn serve_echo_out_of_fds(kind: BackendKind) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 64).unwrap();
    let addr = ouro::net::local_addr(&listener).unwrap();
    let _clients: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open + 16,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both are valid rlimits for the calls to read and fill.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let limit = libc::rlimit {
            rlim_max: old.rlim_max,
            ..limit
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let ring = Ring::builder().backend(kind).fixed_files(4);
    let server = std::thread::spawn(move || echo::serve(listener, ring, 64));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!server.is_finished(), "{:?}", server.join());
}

/// Failed accepts are logged once per cause, then summed up at most once
/// per period, whatever their rate: 1,200 failures over 12 s make three
/// lines, a new cause one more, and the rest is summed up on the next
/// success after the period.
#[test]
fn accept_failures_are_logged_once_per_cause_then_summed_up() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut errors = echo::accept_errors::AcceptErrors::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let process_limit = std::io::Error::from_raw_os_error(libc::EMFILE);
        for i in 0..1200 {
            errors.failed(&process_limit, at(i * 10));
        }
        errors.failed(&std::io::Error::from_raw_os_error(libc::ENFILE), at(12_000));
        errors.accepted(at(14_000));
        errors.accepted(at(15_000));
        errors.accepted(at(16_000));
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5, "{log}");
    assert!(lines[0].contains("Too many open files") && lines[0].contains("RLIMIT_NOFILE"));
    assert!(lines[1].contains("accept failed 499 more times in the last 5 s"));
    assert!(lines[2].contains("accept failed 500 more times in the last 5 s"));
    assert!(lines[3].contains("fs.file-max"), "{log}");
    assert!(lines[4].contains("accept failed 200 more times"), "{log}");
}
