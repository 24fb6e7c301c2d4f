//! The examples' `main`s, run as `main` runs them, in a child process (as
//! ouro's example tests do, `ouro/tests/example_mains/child.rs`): help,
//! bad command lines, files that cannot be read, an address in use,
//! `https_get` writing its response to a stdout whose reader is gone, and
//! `tls_echo` out of fds.
//! Each must end with the status ouro's `examples/support/cli.rs` promises
//! and say why in one line of its own words, never with a panic.

// Both examples include ouro's `examples/support/cli.rs`, as each must to
// build on its own.
#![allow(clippy::duplicate_mod)]

mod support;

#[path = "../../ouro/tests/example_mains/child.rs"]
mod child;

#[allow(dead_code)]
#[path = "../examples/https_get.rs"]
mod https_get;
#[allow(dead_code)]
#[path = "../examples/tls_echo.rs"]
mod tls_echo;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use ouro::{Ctx, Ring};
use ouro_tls::{client_config, server_config, TlsStream, Versions};
use support::certs::Pki;
use support::pair::{on_tls, Pair, Role};

use child::{Ran, Stdout};

/// The child: runs the example the parent named, then exits with its
/// status.
#[test]
#[ignore = "run in a child process by the other tests"]
fn example_main() {
    let Some(asked) = child::asked() else {
        return;
    };
    let args = asked.args.into_iter();
    let status = match asked.example.as_str() {
        "https_get" => https_get::cli::status(https_get::main_with(args)),
        "tls_echo" => tls_echo::cli::status(tls_echo::main_with(args)),
        "tls_echo with few fds" => {
            child::lower_fd_limit(FEW_FDS);
            tls_echo::logging::init();
            tls_echo::cli::status(tls_echo::main_with(args))
        }
        other => panic!("no example {other}"),
    };
    std::process::exit(status.into());
}

fn run(example: &str, args: &[&str]) -> Ran {
    child::run("example_main", example, args, Stdout::Piped)
}

#[test]
fn help_prints_the_usage_and_exits_0() {
    for example in ["https_get", "tls_echo"] {
        for flag in ["--help", "-h"] {
            run(example, &[flag])
                .assert_exit(0)
                .assert_stdout_has(&format!("usage: {example} "));
        }
    }
}

#[test]
fn bad_command_lines_name_the_problem_with_the_usage_and_exit_2() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("https_get", &["--bogus"], "unknown argument --bogus"),
        (
            "https_get",
            &["https://h/"],
            "expected a URL, an IP address and a CA file",
        ),
        (
            "https_get",
            &["http://h/", "127.0.0.1", "ca.pem"],
            "bad URL \"http://h/\": not https://",
        ),
        (
            "https_get",
            &["https://h/", "nowhere", "ca.pem"],
            "nowhere: invalid IP address syntax",
        ),
        (
            "https_get",
            &["https://a b:8443/", "127.0.0.1", "ca.pem"],
            "bad URL \"https://a b:8443/\": the host is no DNS name or IP address",
        ),
        (
            "https_get",
            &["--max-time", "0", "https://h/", "127.0.0.1", "ca.pem"],
            "--max-time 0: expected a whole number from 1 to 86400",
        ),
        (
            "tls_echo",
            &["127.0.0.1:0", "cert.pem", "key.pem", "--bogus"],
            "unknown argument --bogus",
        ),
        (
            "tls_echo",
            &["127.0.0.1:0"],
            "expected an address, a certificate file and a key file",
        ),
    ];
    for (example, args, problem) in cases {
        run(example, args)
            .assert_exit(2)
            .assert_stderr_has(&format!("error: {problem}\nusage: {example} "));
    }
}

#[test]
fn a_file_that_cannot_be_read_is_named_in_one_line_and_exits_1() {
    let missing = "/nonexistent/ouro-test.pem";
    let cases: &[(&str, &[&str])] = &[
        ("https_get", &["https://h/", "127.0.0.1", missing]),
        ("tls_echo", &["127.0.0.1:0", missing, missing]),
    ];
    for (example, args) in cases {
        let ran = run(example, args);
        ran.assert_exit(1)
            .assert_stderr_has(&format!("error: cannot read {missing}: No such file"));
        assert_eq!(ran.errors().len(), 1, "{ran}");
    }
}

#[test]
fn an_address_in_use_is_named_in_one_line_and_exits_1() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "cert.pem", &pki.localhost.cert_pem);
    let key = write(dir.path(), "key.pem", &pki.localhost.key_pem);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let ran = run("tls_echo", &[&addr, &cert, &key]);
    ran.assert_exit(1).assert_stderr_has(&format!(
        "error: cannot listen on {addr}: Address already in use"
    ));
    assert_eq!(ran.errors().len(), 1, "{ran}");
}

/// The fd limit of `tls_echo` out of fds: its ring and listener, a few
/// connections, and no more.
const FEW_FDS: u64 = 24;

/// `tls_echo` with every fd taken by idle connections: it keeps trying to
/// accept (without a busy loop: a line or two logged, not one per failed
/// accept), and once they leave, a client is served again.
#[test]
fn tls_echo_out_of_fds_logs_sparingly_and_serves_once_fds_are_back() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "cert.pem", &pki.localhost.cert_pem);
    let key = write(dir.path(), "key.pem", &pki.localhost.key_pem);
    let mut running = child::start(
        "example_main",
        "tls_echo with few fds",
        &["127.0.0.1:0", &cert, &key],
        Stdout::Piped,
    );
    let addr = listening_address(&mut running);
    let idle: Vec<TcpStream> = (0..2 * FEW_FDS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    thread::sleep(Duration::from_secs(2));
    drop(idle);
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    // A server that stopped accepting (or logs into a full pipe: nobody
    // reads the child's stderr until it ends) fails the handshake.
    let stream = TlsStream::client(
        Rc::new(TcpStream::connect(addr).unwrap()),
        client,
        "localhost",
        Ctx::new(on_tls),
    )
    .unwrap()
    .with_handshake_timeout(Duration::from_secs(10));
    let payload = b"served again".to_vec();
    let role = Role::Send {
        payload: payload.clone(),
        sent: 0,
    };
    let pair = Pair::alone(stream, role).run();
    let _ = running.child.kill();
    let ran = running.finish();
    let failed: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.contains("accept failed"))
        .collect();
    assert!(
        (1..=3).contains(&failed.len()),
        "{} lines of failed accepts, the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(pair.client.failed.is_none(), "{:?}", pair.client.failed);
    assert_eq!(pair.client.received, payload);
}

/// The address `tls_echo` says it listens on.
fn listening_address(running: &mut child::Running) -> std::net::SocketAddr {
    let mut stdout = std::io::BufReader::new(running.child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on ") {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(read > 0, "tls_echo ended before it listened");
    }
    let addr = line.trim().rsplit(' ').next().unwrap();
    addr.parse().unwrap()
}

/// `https_get ... | head -0`: the response has nowhere to go, and that is
/// no error. The reader goes once the child has connected (libtest has
/// written its own lines to the pipe by then), before it is answered.
#[test]
fn a_closed_stdout_ends_https_get_quietly_with_0() {
    let ran = fetch_into(Stdout::Closed);
    ran.assert_exit(0);
    assert!(ran.errors().is_empty(), "{ran}");
}

/// The same fetch with stdout read: the response arrives there (so the
/// closed stdout above is what made the difference).
#[test]
fn https_get_writes_the_response_to_stdout() {
    fetch_into(Stdout::Piped)
        .assert_exit(0)
        .assert_stdout_has(RESPONSE);
}

const RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/// Runs `https_get` against a server of this process; with `Closed`, the
/// child's stdout is closed once it has connected.
fn fetch_into(stdout: Stdout) -> Ran {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    let mut running = child::start(
        "example_main",
        "https_get",
        &[&url, "127.0.0.1", &ca],
        Stdout::Piped,
    );
    let reader = running.child.stdout.take();
    let Some(socket) = accept_unless_ended(&listener, &mut running.child) else {
        return running.finish();
    };
    match stdout {
        Stdout::Closed => drop(reader),
        _ => running.child.stdout = reader,
    }
    let config = server_config(
        pki.localhost.chain.clone(),
        pki.localhost.key(),
        &[b"http/1.1"],
        Versions::Both,
    )
    .unwrap();
    let stream = TlsStream::server(Rc::new(socket), config, Ctx::new(on_tls)).unwrap();
    let mut pair = Pair::alone(
        stream,
        Role::Reply {
            response: RESPONSE.as_bytes().to_vec(),
        },
    );
    let mut ring = Ring::new(16).unwrap();
    pair.start(&mut ring);
    pair.finish(ring);
    running.finish()
}

/// The child's connection, or `None` if it ended first.
fn accept_unless_ended(
    listener: &TcpListener,
    child: &mut std::process::Child,
) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match listener.accept() {
            Ok((socket, _)) => {
                socket.set_nonblocking(false).unwrap();
                return Some(socket);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child neither connected nor ended");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}
