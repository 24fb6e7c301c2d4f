//! The example servers' graceful shutdown (`examples/support/shutdown.rs`):
//! each runs as its own `main` in a child process (this test binary again,
//! told which server to be), serves one client, and gets `SIGTERM` or
//! `SIGINT`; it must close the client's connection, say why, and exit 0
//! without a panic.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ouro::BackendKind;

use super::{echo, http_server, resp_server};

backend_tests![
    echo_server_exits_0_on_sigterm_closing_its_connections,
    http_server_exits_0_on_sigterm_closing_its_connections,
    resp_server_exits_0_on_sigint_closing_its_connections,
];

/// Set in the child: the server it runs.
const SHUTDOWN_CHILD: &str = "OURO_TEST_SHUTDOWN_CHILD";

/// How long a server may take to exit after the signal: generous, as the
/// exit must come, not come fast.
const EXIT_WITHIN: Duration = Duration::from_secs(20);

fn echo_server_exits_0_on_sigterm_closing_its_connections(kind: BackendKind) {
    let name = "echo_server_exits_0_on_sigterm_closing_its_connections";
    stops_on_signal(kind, name, "echo", libc::SIGTERM, b"ping", b"ping");
}

fn http_server_exits_0_on_sigterm_closing_its_connections(kind: BackendKind) {
    let name = "http_server_exits_0_on_sigterm_closing_its_connections";
    let request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    stops_on_signal(kind, name, "http", libc::SIGTERM, request, b"HTTP/1.1 200");
}

fn resp_server_exits_0_on_sigint_closing_its_connections(kind: BackendKind) {
    let name = "resp_server_exits_0_on_sigint_closing_its_connections";
    let request = b"*1\r\n$4\r\nPING\r\n";
    stops_on_signal(kind, name, "resp", libc::SIGINT, request, b"+PONG\r\n");
}

/// In the child, runs `server`'s `main` until it returns. In the parent,
/// starts the child on `kind`, sends `request` and expects `reply` to
/// begin with `reply`, sends `signal`, and checks the shutdown.
fn stops_on_signal(
    kind: BackendKind,
    test: &str,
    server: &str,
    signal: i32,
    request: &[u8],
    reply: &[u8],
) {
    if let Some(server) = std::env::var_os(SHUTDOWN_CHILD) {
        return run_server(server.to_str().unwrap()).expect("the server's main");
    }
    let backend = match kind {
        BackendKind::Uring => "uring",
        _ => "poll",
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("shutdown::{test}::{backend}"),
            "--exact",
            "--nocapture",
        ])
        .env(SHUTDOWN_CHILD, server)
        .env("OURO_BACKEND", backend)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let addr = listening_addr(&mut stdout);

    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(request).unwrap();
    let mut got = vec![0; reply.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, reply);

    // SAFETY: kill has no memory effects; the child is ours and running.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    assert_closed(client);
    let status = wait_bounded(&mut child);
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{status:?}:\n{out}");
    let name = signal_hook::low_level::signal_name(signal).unwrap();
    assert!(out.contains(&format!("stopping on {name}")), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

fn run_server(server: &str) -> std::io::Result<()> {
    let addr = "127.0.0.1:0".to_string();
    match server {
        "echo" => echo::main_with(["--serve".to_string(), addr].into_iter()),
        "http" => http_server::main_with(std::iter::once(addr)),
        "resp" => resp_server::main_with(std::iter::once(addr)),
        other => panic!("no server {other}"),
    }
}

/// The address in the server's `... on ADDR (BACKEND)` line.
fn listening_addr(stdout: &mut impl BufRead) -> SocketAddr {
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some((_, rest)) = line.split_once("ing on ") {
            let addr = rest.split_whitespace().next().unwrap();
            return addr.parse().unwrap();
        }
    }
    panic!("the server ended before it listened");
}

/// The server closed the connection: end of stream, or a reset.
fn assert_closed(mut client: TcpStream) {
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection stayed open: {e}"),
    }
}

fn wait_bounded(child: &mut Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > EXIT_WITHIN {
            let _ = child.kill();
            panic!("the server did not exit within {EXIT_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
