//! The examples' `main`s, each run as `main` runs it, in a child process
//! (`example_mains/child.rs`): `--help`, bad command lines, an address in
//! use, a stdout that is closed or full, more clients than the process
//! has fds for. Each must end with the status `examples/support/cli.rs`
//! promises (0 for help and a closed stdout, 2 for a bad command line, 1
//! for a failure) and say why in one line of its own words: never a
//! panic, an abort or a Rust debug struct.

#![cfg(target_os = "linux")]
// The examples include the same support files, as each must to build on
// its own.
#![allow(clippy::duplicate_mod)]

use std::net::{TcpListener, UdpSocket};

#[path = "example_mains/child.rs"]
mod child;
#[path = "example_mains/outsiders.rs"]
mod outsiders;
#[path = "example_mains/stdout.rs"]
mod stdout;

#[allow(dead_code)]
#[path = "../examples/accept_and_dispatch.rs"]
mod accept_and_dispatch;
#[allow(dead_code)]
#[path = "../examples/echo.rs"]
mod echo;
#[allow(dead_code, unused_imports)]
#[path = "../examples/file_server.rs"]
mod file_server;
#[allow(dead_code)]
#[path = "../examples/http_server.rs"]
mod http_server;
#[allow(dead_code)]
#[path = "../examples/multiwriter.rs"]
mod multiwriter;
#[allow(dead_code)]
#[path = "../examples/resp_server.rs"]
mod resp_server;
#[allow(dead_code)]
#[path = "../examples/udp_echo.rs"]
mod udp_echo;

use child::{Ran, Stdout};

/// Every example with a command line.
const EXAMPLES: &[&str] = &[
    "accept_and_dispatch",
    "echo",
    "file_server",
    "http_server",
    "multiwriter",
    "resp_server",
    "udp_echo",
];

/// The child: runs the example the parent named, then exits with its
/// status.
#[test]
#[ignore = "run in a child process by the other tests"]
fn example_main() {
    let Some(asked) = child::asked() else {
        return;
    };
    stdout::redirect(asked.stdout);
    let status = run_main(&asked.example, asked.args.into_iter());
    std::process::exit(status.into());
}

/// What `main` does in the example called `name`, on `args`.
fn run_main(name: &str, args: std::vec::IntoIter<String>) -> u8 {
    match name {
        "accept_and_dispatch" => {
            accept_and_dispatch::cli::status(accept_and_dispatch::main_with(args))
        }
        "echo" => echo::cli::status(echo::main_with(args)),
        "file_server" => file_server::cli::status(file_server::main_with(args)),
        "http_server" => http_server::stream_server::cli::status(http_server::main_with(args)),
        "multiwriter" => multiwriter::cli::status(multiwriter::main_with(args)),
        "resp_server" => resp_server::stream_server::cli::status(resp_server::main_with(args)),
        "udp_echo" => udp_echo::cli::status(udp_echo::main_with(args)),
        "echo over the fd limit" => echo_over_the_fd_limit(),
        "accept_and_dispatch with 400 fds" => {
            child::lower_fd_limit(400);
            accept_and_dispatch::cli::status(accept_and_dispatch::main_with(args))
        }
        "echo with few fds" => {
            child::lower_fd_limit(FEW_FDS);
            echo::cli::status(echo::main_with(args))
        }
        other => panic!("no example {other}"),
    }
}

fn run(example: &str, args: &[&str]) -> Ran {
    child::run("example_main", example, args, Stdout::Piped)
}

#[test]
fn help_prints_the_usage_on_stdout_and_exits_0() {
    for example in EXAMPLES {
        for flag in ["--help", "-h"] {
            run(example, &[flag])
                .assert_exit(0)
                .assert_stdout_has(&format!("usage: {example}"));
        }
    }
}

#[test]
fn an_unknown_argument_is_named_with_the_usage_and_exits_2() {
    for example in EXAMPLES {
        run(example, &["--bogus"])
            .assert_exit(2)
            .assert_stderr_has("error: unknown argument --bogus\n")
            .assert_stderr_has(&format!("usage: {example}"));
    }
}

#[test]
fn a_missing_value_or_a_number_out_of_range_is_named_and_exits_2() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("echo", &["--clients"], "--clients needs a value"),
        (
            "echo",
            &["--size", "99999999999"],
            "--size 99999999999: expected a whole number from 1 to ",
        ),
        (
            "echo",
            &["--clients", "0"],
            "--clients 0: expected a whole number from 1 to ",
        ),
        (
            "echo",
            &["--rounds", "-1"],
            "--rounds -1: expected a whole number from 1 to ",
        ),
        (
            "echo",
            &["--buffers", "3"],
            "--buffers 3: a power of two up to 32768",
        ),
        (
            "echo",
            &["--clients", "4000", "--size", "1048576"],
            "--clients 4000 with --size 1048576: more than the 1073741824 bytes",
        ),
        (
            "echo",
            &["--serve", "nowhere"],
            "--serve nowhere: invalid socket address syntax",
        ),
        (
            "echo",
            &["--backend", "nope"],
            "--backend nope: expected uring or poll",
        ),
        (
            "accept_and_dispatch",
            &["--workers", "abc"],
            "--workers abc: expected a whole number from 1 to ",
        ),
        (
            "accept_and_dispatch",
            &["--workers", "0"],
            "--workers 0: expected a whole number from 1 to ",
        ),
        (
            "accept_and_dispatch",
            &["--size", "99999999999"],
            "--size 99999999999: expected",
        ),
        (
            "accept_and_dispatch",
            &["--rounds"],
            "--rounds needs a value",
        ),
        ("udp_echo", &["--backend"], "--backend needs a value"),
        (
            "udp_echo",
            &["127.0.0.1:0", "--backend", "nope"],
            "--backend nope: expected uring or poll",
        ),
        (
            "udp_echo",
            &["127.0.0.1:0", "127.0.0.1:1"],
            "unexpected argument 127.0.0.1:1",
        ),
        ("file_server", &[], "no root directory given"),
        (
            "file_server",
            &["/", "--backend"],
            "--backend needs a value",
        ),
        (
            "file_server",
            &["/", "nowhere"],
            "nowhere: invalid socket address syntax",
        ),
        (
            "http_server",
            &["nowhere"],
            "nowhere: invalid socket address syntax",
        ),
        (
            "resp_server",
            &["127.0.0.1:0", "more"],
            "unexpected argument more",
        ),
        ("multiwriter", &["more"], "unexpected argument more"),
    ];
    for (example, args, problem) in cases {
        let ran = run(example, args);
        ran.assert_exit(2)
            .assert_stderr_has(&format!("error: {problem}"))
            .assert_stderr_has(&format!("usage: {example}"));
        assert_eq!(ran.errors().len(), 1, "{ran}");
    }
}

/// The demos refuse, up front, more clients than the process has fds for
/// (the limit is at most 65536 fds, two per client).
#[test]
fn more_clients_than_the_fd_limit_allows_are_refused_up_front() {
    for example in ["echo", "accept_and_dispatch"] {
        let ran = run(example, &["--clients", "100000"]);
        ran.assert_exit(2);
        if example == "echo" {
            ran.assert_stderr_has("--clients 100000: each client takes two fds")
                .assert_stderr_has("(`ulimit -n`), 2 of them for its 1 ring(s): at most ");
        }
    }
}

/// The worker rings' fds count too: 128 workers take 258 of 400 fds, so
/// 100 clients (200 fds) do not fit, and are refused up front rather than
/// failing mid-run.
#[test]
fn the_dispatch_demo_counts_its_worker_rings_fds() {
    let args = ["--workers", "128", "--clients", "100", "--rounds", "1"];
    run("accept_and_dispatch with 400 fds", &args)
        .assert_exit(2)
        .assert_stderr_has("258 of them for its 129 ring(s): at most 39 clients");
}

/// Other local processes connect to the dispatch demo's loopback port
/// while it runs: some reset, the others send without reading and stay
/// open. Its 1000 clients overflow the listener's backlog (128), so many
/// wait to be accepted behind the others. The demo still ends once its own
/// clients are done, closing the others' connections, and exits 0. (It
/// once counted accepts up to its clients: the others took their places,
/// and it closed its own or waited for the others to close, for ever.)
#[test]
fn other_connections_to_the_dispatch_demo_do_not_keep_it_from_ending() {
    const OTHERS: usize = 150;
    // Each client takes two fds; room for the others' and the rings' too.
    let limit = outsiders::raise_fd_limit(4096);
    let clients = 1000.min(limit.saturating_sub(OTHERS as u64 + 200) / 2);
    let clients = clients.to_string();
    let args = ["--clients", &clients, "--rounds", "300", "--size", "1024"];
    let running = child::start("example_main", "accept_and_dispatch", &args, Stdout::Piped);
    let pid = running.child.id();
    let others = std::thread::spawn(move || {
        let port = outsiders::listening_port(pid).expect("the demo listens");
        outsiders::misbehave(([127, 0, 0, 1], port).into(), OTHERS)
    });
    let ran = running.finish();
    let held = others.join().expect("the other connections");
    ran.assert_exit(0)
        .assert_stdout_has(&format!("{clients} clients x 300 rounds x 1024 B echoed"));
    assert!(!held.is_empty(), "no other connection was made: {ran}");
}

/// `--serve` runs no clients: a low fd limit is the connections' to deal
/// with, not a reason to refuse (here the address in use stops it).
#[test]
fn echo_serving_alone_is_not_refused_for_its_clients_fds() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    run("echo with few fds", &["--serve", &addr])
        .assert_exit(1)
        .assert_stderr_has(&format!("cannot listen on {addr}"));
}

#[test]
fn an_address_in_use_is_named_in_one_line_and_exits_1() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tcp, udp) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let (tcp_addr, udp_addr) = (tcp.to_string(), udp.to_string());
    let root = tempfile::tempdir().unwrap();
    let root = root.path().to_str().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        ("http_server", &[&tcp_addr], &tcp_addr),
        ("resp_server", &[&tcp_addr], &tcp_addr),
        ("echo", &["--serve", &tcp_addr], &tcp_addr),
        ("file_server", &[root, &tcp_addr], &tcp_addr),
        ("udp_echo", &[&udp_addr], &udp_addr),
    ];
    for (example, args, addr) in cases {
        let ran = run(example, args);
        ran.assert_exit(1).assert_stderr_has(&format!(
            "error: cannot listen on {addr}: Address already in use"
        ));
        assert_eq!(ran.errors().len(), 1, "{ran}");
        assert!(!ran.stdout.contains("listening on"), "{ran}");
    }
}

/// Short runs of every example that writes to stdout.
fn writers(root: &str) -> Vec<(&'static str, Vec<&str>)> {
    vec![
        ("echo", vec!["--clients", "2", "--rounds", "2"]),
        ("echo", vec!["--serve", "127.0.0.1:0"]),
        (
            "accept_and_dispatch",
            vec!["--clients", "2", "--rounds", "2"],
        ),
        ("multiwriter", vec![]),
        ("http_server", vec!["127.0.0.1:0"]),
        ("resp_server", vec!["127.0.0.1:0"]),
        ("udp_echo", vec!["127.0.0.1:0"]),
        ("file_server", vec![root, "127.0.0.1:0"]),
        ("http_server", vec!["--help"]),
    ]
}

/// A reader of stdout that went away (`| head`) ends each example at its
/// first write, quietly, with 0 — the servers too, which would otherwise
/// serve on.
#[test]
fn a_closed_stdout_ends_each_example_quietly_with_0() {
    let root = tempfile::tempdir().unwrap();
    for (example, args) in writers(root.path().to_str().unwrap()) {
        let ran = child::run("example_main", example, &args, Stdout::Closed);
        ran.assert_exit(0);
        assert!(ran.errors().is_empty(), "{ran}");
    }
}

/// A stdout that cannot take the output (a full disk) is a failure that
/// says so, and ends each example, the servers too.
#[test]
fn a_full_stdout_is_one_error_line_and_exits_1() {
    let root = tempfile::tempdir().unwrap();
    for (example, args) in writers(root.path().to_str().unwrap()) {
        let ran = child::run("example_main", example, &args, Stdout::Full);
        ran.assert_exit(1)
            .assert_stderr_has("No space left on device");
        assert_eq!(ran.errors().len(), 1, "{ran}");
        if example != "multiwriter" {
            ran.assert_stderr_has("error: cannot write to stdout: ");
        }
    }
}

/// The fd limit the demo below runs under, and its clients: each takes two
/// fds, so most of them cannot get one.
const LOW_FD_LIMIT: u64 = 128;
const CLIENTS_OVER_THE_LIMIT: usize = 300;

/// Fewer fds than the echo demo's default clients need (64 take 128 fds).
const FEW_FDS: u64 = 64;

/// In the child: the echo demo with more clients than its fds allow (the
/// command line would refuse them up front, so `run` is called with them).
fn echo_over_the_fd_limit() -> u8 {
    child::lower_fd_limit(LOW_FD_LIMIT);
    // Logging as `main` logs (`support/logging.rs`): what a flood of
    // failures would flood.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let options = echo::Options {
        serve: None,
        clients: CLIENTS_OVER_THE_LIMIT,
        rounds: 1,
        size: 1,
        backend: None,
        buffers: 64,
    };
    echo::cli::status(echo::run(&options).map(drop))
}

/// Clients that fail by the hundred end the demo with one line that counts
/// them and names the first failure, not a log line per client.
#[test]
fn clients_failing_by_the_hundred_are_counted_in_one_line() {
    let ran = run("echo over the fd limit", &[]);
    ran.assert_exit(1);
    let logged = ran.stderr.lines().filter(|l| l.contains("ERROR")).count();
    assert_eq!(logged, 0, "a log line per failed client: {ran}");
    let errors = ran.errors();
    assert_eq!(errors.len(), 1, "{ran}");
    let error = errors[0];
    assert!(
        error.contains(&format!(
            " of {CLIENTS_OVER_THE_LIMIT} clients failed; the first: client "
        )),
        "{ran}"
    );
}
