//! The static file server example (`examples/file_server.rs`), driven over
//! loopback TCP on every backend: files arrive whole over a kept-alive
//! connection, paths that climb out of the root and other bad requests are
//! refused, a client that never reads holds neither the server nor its
//! memory and is cut off, requests that trickle in are cut at their
//! deadline, a server out of fds answers 503 rather than a 200 without its
//! body, a file truncated while it is sent ends its connection early, and
//! SIGTERM ends the server cleanly.
//!
//! The server runs on a thread of this test process, on its own ring, and
//! serves a temporary directory; to get a signal it runs as the `main` of
//! a child process (this test binary again).

// The example includes `support/logging.rs` and `support/accept_errors.rs`.
#![allow(clippy::duplicate_mod)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ouro::{BackendKind, Ring};

#[macro_use]
#[path = "common/backends.rs"]
mod backends;
#[path = "common/fds.rs"]
mod fds;

#[allow(dead_code)] // its `main` and command-line parsing
#[path = "../examples/file_server.rs"]
mod file_server;

per_backend!(
    crate::on_backend,
    a_kept_alive_connection_gets_every_file_whole
);
per_backend!(crate::on_backend, bad_paths_methods_and_heads_are_refused);
per_backend!(
    crate::on_backend,
    a_trailing_slash_names_a_directory_and_close_anywhere_closes
);
per_backend!(
    crate::on_backend,
    a_file_cut_short_while_sent_ends_its_connection_early
);
per_backend!(
    crate::on_backend,
    a_client_that_never_reads_holds_neither_others_nor_memory
);
per_backend!(
    crate::on_backend,
    requests_and_endings_that_trickle_in_are_cut_at_their_deadline
);
per_backend!(
    crate::on_backend,
    answers_without_a_body_left_unread_close_their_connection
);
per_backend!(
    crate::apart_from_others,
    out_of_fds_a_file_gets_503_not_a_200_without_its_body
);
per_backend!(
    crate::on_backend,
    sigterm_closes_every_connection_and_exits_0
);

/// Runs `test` on `kind`, or says why the host cannot.
fn on_backend(test: fn(BackendKind), kind: BackendKind) {
    let _beside = fds::beside_other_tests();
    if !backends::skipped(kind) {
        test(kind)
    }
}

/// Runs `test` on `kind` while no other test runs (it limits the process's
/// fds), or says why the host cannot.
fn apart_from_others(test: fn(BackendKind), kind: BackendKind) {
    let _apart = fds::apart_from_other_tests();
    if !backends::skipped(kind) {
        test(kind)
    }
}

/// How long a client waits for any answer: generous, the machines are
/// shared; only a hang should reach it.
const PATIENCE: Duration = Duration::from_secs(10);

/// Byte `i` of the test files: a pattern whose period (251) is no divisor
/// of any chunk size, so a lost, doubled or misplaced chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The file server on its own thread, serving `root` on `kind`.
struct Server {
    thread: JoinHandle<std::io::Result<()>>,
    addr: SocketAddr,
}

impl Server {
    fn start(kind: BackendKind, root: &Path) -> Server {
        let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 128).unwrap();
        let addr = ouro::net::local_addr(&listener).unwrap();
        let (ring, root) = (Ring::builder().backend(kind), root.to_path_buf());
        let thread = std::thread::spawn(move || file_server::serve(listener, ring, root));
        Server { thread, addr }
    }

    fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    fn assert_alive(&self) {
        assert!(!self.thread.is_finished(), "the server stopped");
    }
}

/// One connection, answers read in order.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

/// An answer: status code, whether the server keeps the connection, body.
#[derive(Debug)]
struct Answer {
    code: u16,
    keep_alive: bool,
    body: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the server");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, request: &str) {
        self.writer.write_all(request.as_bytes()).unwrap();
    }

    fn get(&mut self, path: &str) -> Answer {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
        self.answer()
    }

    /// Reads one answer: its head line by line, then `Content-Length`
    /// bytes of body.
    fn answer(&mut self) -> Answer {
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        let code = status
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status:?}"));
        let (mut len, mut keep_alive) = (None, false);
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(": ").expect("a header");
            match name.to_ascii_lowercase().as_str() {
                "content-length" => len = Some(value.parse::<usize>().unwrap()),
                "connection" => keep_alive = value == "keep-alive",
                _ => {}
            }
        }
        let mut body = vec![0; len.expect("Content-Length")];
        self.reader.read_exact(&mut body).unwrap();
        Answer {
            code,
            keep_alive,
            body,
        }
    }

    /// Whether the server ended the connection cleanly, sending nothing
    /// more: end of stream, not a reset (which could have destroyed the
    /// answer before it was read).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(self.reader.read_to_end(&mut rest), Ok(0))
    }
}

fn a_kept_alive_connection_gets_every_file_whole(kind: BackendKind) {
    let root = tempfile::tempdir().unwrap();
    let big = pattern(6 * 1024 * 1024 + 7);
    std::fs::write(root.path().join("big.bin"), &big).unwrap();
    std::fs::create_dir(root.path().join("docs")).unwrap();
    std::fs::write(root.path().join("docs/a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.path().join("empty"), b"").unwrap();
    let server = Server::start(kind, root.path());
    let mut client = server.connect();
    for path in [
        "/docs/a.txt",
        "/big.bin",
        "/empty",
        "/./docs//a.txt",
        "/big.bin",
    ] {
        let answer = client.get(path);
        assert_eq!((answer.code, answer.keep_alive), (200, true), "{path}");
        let expected = match path {
            "/big.bin" => &big[..],
            "/empty" => b"",
            _ => b"alpha\n",
        };
        assert!(
            answer.body == expected,
            "{path}: {} bytes",
            answer.body.len()
        );
    }
    // Two requests at once: answered in order; the last asks to close.
    client.send("GET /docs/a.txt HTTP/1.1\r\n\r\nGET /empty HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(client.answer().body, b"alpha\n");
    let last = client.answer();
    assert_eq!((last.code, last.keep_alive), (200, false));
    assert!(client.closed());
    server.assert_alive();
}

/// The root is a directory inside the temporary one, beside a file the
/// server must never give out.
fn bad_paths_methods_and_heads_are_refused(kind: BackendKind) {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("secret"), b"secret").unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::write(root.join("file"), b"file").unwrap();
    let fifo =
        std::ffi::CString::new(root.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path we pass.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
    let server = Server::start(kind, &root);
    let mut client = server.connect();
    for (path, code) in [
        ("/../secret", 403),
        ("/dir/../../secret", 403),
        ("/%2e%2e/secret", 404),
        ("/missing", 404),
        ("/file/below", 404),
        ("/dir", 404),
        // Opened without waiting for a writer, then refused.
        ("/fifo", 404),
        // Not a file at all: cannot be opened (ENXIO).
        ("/socket", 404),
    ] {
        let answer = client.get(path);
        assert_eq!((answer.code, answer.keep_alive), (code, true), "{path}");
        assert!(answer.body.is_empty());
    }
    assert_eq!(client.get("/file").body, b"file", "still kept alive");
    let body = "b".repeat(50_000);
    let post = format!("POST /file HTTP/1.1\r\nContent-Length: 50000\r\n\r\n{body}");
    let get_with_body = format!("GET /file HTTP/1.1\r\nContent-Length: 50000\r\n\r\n{body}");
    // The server answers before the body is read, and ends the connection
    // without a reset, which could destroy the answer.
    for (request, code) in [
        (post.as_str(), 405),
        (get_with_body.as_str(), 400),
        ("POST /file HTTP/1.1\r\n\r\n", 405),
        ("GET /../secret HTTP/1.0\r\n\r\n", 403),
        ("GET file HTTP/1.1\r\n\r\n", 400),
        ("\x01\x02 nonsense\r\n\r\n", 400),
    ] {
        let mut client = server.connect();
        client.send(request);
        let answer = client.answer();
        assert_eq!(
            (answer.code, answer.keep_alive),
            (code, false),
            "{request:?}"
        );
        assert!(client.closed(), "{request:?}");
    }
    let mut endless = server.connect();
    let header = format!("X-Pad: {}\r\n", "p".repeat(1000));
    endless.send(&format!("GET /file HTTP/1.1\r\n{}", header.repeat(10)));
    assert_eq!(endless.answer().code, 431);
    assert!(endless.closed());
    server.assert_alive();
}

/// A path that ends in `/` names a directory, also after a file's name
/// (as the kernel's `ENOTDIR` says); doubled slashes inside a path merge.
/// A `Connection` header is a list of options: `close` anywhere in it
/// closes.
fn a_trailing_slash_names_a_directory_and_close_anywhere_closes(kind: BackendKind) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("dir")).unwrap();
    std::fs::write(root.path().join("dir/file"), b"file").unwrap();
    let server = Server::start(kind, root.path());
    let mut client = server.connect();
    for (path, code) in [
        ("/dir/file/", 404),
        ("/dir/file//", 404),
        ("/dir/file/.", 404),
        ("/dir/file/?q=1", 404),
        ("/dir/", 404),
        ("/", 404),
        ("/dir//file", 200),
        ("//dir/./file", 200),
    ] {
        let answer = client.get(path);
        assert_eq!((answer.code, answer.keep_alive), (code, true), "{path}");
    }
    for options in ["keep-alive, close", "Upgrade,CLOSE"] {
        let mut client = server.connect();
        client.send(&format!(
            "GET /dir/file HTTP/1.1\r\nConnection: {options}\r\n\r\n"
        ));
        let answer = client.answer();
        assert_eq!((answer.code, answer.keep_alive), (200, false), "{options}");
        assert!(client.closed(), "{options}");
    }
    server.assert_alive();
}

/// A file truncated while its body is being sent: the head promised its
/// old length, so the server ends the connection early, and the client
/// reads a shorter body, then the end (not a hang, nor a reset).
fn a_file_cut_short_while_sent_ends_its_connection_early(kind: BackendKind) {
    const LONG: u64 = 256 * 1024 * 1024;
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("shrinks");
    // Sparse: costs no disk, reads as zeros.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(LONG).unwrap();
    let server = Server::start(kind, root.path());
    let mut client = server.connect();
    client.send("GET /shrinks HTTP/1.1\r\n\r\n");
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        client.reader.read_line(&mut head).unwrap();
    }
    assert!(
        head.contains(&format!("Content-Length: {LONG}\r\n")),
        "{head}"
    );
    file.set_len(1024 * 1024).unwrap();
    let mut body = Vec::new();
    client.reader.read_to_end(&mut body).expect("the end");
    assert!((body.len() as u64) < LONG, "{} bytes", body.len());
    server.assert_alive();
}

/// The process's resident memory, in bytes.
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// A client asks for 256 MiB and never reads: the server keeps serving a
/// good client, promptly, and holds no copy of the big file (a server
/// that buffered what the stalled client does not take would grow by
/// up to the whole file).
fn a_client_that_never_reads_holds_neither_others_nor_memory(kind: BackendKind) {
    const HUGE: u64 = 256 * 1024 * 1024;
    let root = tempfile::tempdir().unwrap();
    // Sparse: costs no disk, reads as zeros.
    std::fs::File::create(root.path().join("huge"))
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    let good = pattern(2 * 1024 * 1024);
    std::fs::write(root.path().join("good"), &good).unwrap();
    let server = Server::start(kind, root.path());
    let before = resident_bytes();
    let mut stalled = server.connect();
    stalled.send("GET /huge HTTP/1.1\r\n\r\n");
    // Its head has come: the server is sending the body, which stalls.
    let mut status = String::new();
    stalled.reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let started = Instant::now();
    for _ in 0..3 {
        let mut client = server.connect();
        let answer = client.get("/good");
        assert_eq!(answer.code, 200);
        assert!(answer.body == good, "{} bytes", answer.body.len());
    }
    assert!(
        started.elapsed() < PATIENCE,
        "the good client waited {:?}",
        started.elapsed()
    );
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 32 * 1024 * 1024,
        "resident memory grew by {grown} bytes"
    );
    server.assert_alive();
    // Once no byte of its body has moved for the server's `BODY_STALL`
    // (10 s), the stalled client is cut off: what it reads then is what
    // the socket buffers held, and the end. (Had the transfer gone on, its
    // reading would move the body again, up to all of it.)
    std::thread::sleep(STALL_CUT_BY);
    let mut got = 0u64;
    let mut buf = vec![0; 256 * 1024];
    loop {
        match stalled.reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the stalled connection was not closed: {e} after {got} bytes"),
        }
        assert!(got < HUGE / 4, "the stalled body went on: {got} bytes");
    }
    server.assert_alive();
}

/// How long after a body stops moving the test expects its connection
/// closed: the server's 10 s, with room for a busy machine.
const STALL_CUT_BY: Duration = Duration::from_secs(14);

/// Pipelined requests for a missing file, whose answers are never read:
/// each answer is a head without a body, so no body stalls; once the
/// client's buffers are full, the next head cannot go out. The connection
/// is closed once a head has waited the server's 10 s. (It was held for
/// ever: a few such clients took every fd of a server that had few, and
/// every other client got errors.)
fn answers_without_a_body_left_unread_close_their_connection(kind: BackendKind) {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(kind, root.path());
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stream = TcpStream::from(socket);
    stream.set_nonblocking(true).unwrap();
    let requests = "GET /missing HTTP/1.1\r\nHost: test\r\n\r\n".repeat(1000);
    // Until the server stops taking requests: its answers are stuck.
    let mut blocked_since = None;
    let filled = Instant::now();
    while blocked_since.is_none_or(|since: Instant| since.elapsed() < Duration::from_secs(1)) {
        assert!(filled.elapsed() < PATIENCE, "the server took every request");
        match stream.write(requests.as_bytes()) {
            Ok(_) => blocked_since = None,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                blocked_since.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the connection ended while filling: {e}"),
        }
    }
    let stuck = Instant::now();
    // Closed with requests unread: a reset, seen without reading.
    while stream.take_error().unwrap().is_none() {
        assert!(
            stuck.elapsed() < STALL_CUT_BY,
            "the connection is still open after {:?}",
            stuck.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.connect().get("/missing").code, 404);
    server.assert_alive();
}

/// How long after it began the test expects a request that trickles in
/// cut: the server's 10 s, with room for a busy machine and the 2 s
/// between two bytes.
const TRICKLE_CUT_BY: Duration = Duration::from_secs(20);

/// One client sends a request a byte every 2 s, each byte well within the
/// server's 10 s: the request is cut once 10 s have passed since the
/// connection began, not when a byte is 10 s late (that would hold the
/// connection for ever). Another, after asking the server to close,
/// goes on sending the same way: the server reads what comes after its
/// last answer for 10 s in all, not 10 s after each byte.
fn requests_and_endings_that_trickle_in_are_cut_at_their_deadline(kind: BackendKind) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), b"f").unwrap();
    let server = Server::start(kind, root.path());
    let mut slow = server.connect().writer;
    let mut ending = server.connect();
    ending.send("GET /f HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(ending.answer().code, 200);
    let mut ending = ending.writer;
    let started = Instant::now();
    // Whole after 64 s.
    let request = b"GET /f HTTP/1.1\r\nHost: trickle\r\n\r\n";
    let (mut slow_cut, mut ending_cut) = (None, None);
    for &byte in request.iter().cycle() {
        if slow_cut.is_some() && ending_cut.is_some() || started.elapsed() > TRICKLE_CUT_BY {
            break;
        }
        if slow_cut.is_none() && cut(&mut slow, byte, false) {
            slow_cut = Some(started.elapsed());
        }
        if ending_cut.is_none() && cut(&mut ending, byte, true) {
            ending_cut = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    for (name, cut) in [("the request", slow_cut), ("the ending", ending_cut)] {
        let cut = cut.unwrap_or_else(|| panic!("{name} was not cut in {TRICKLE_CUT_BY:?}"));
        // Not before its deadline: cut for being late, not for a byte.
        assert!(cut >= Duration::from_secs(8), "{name} cut after {cut:?}");
    }
    server.assert_alive();
}

/// Whether the server has closed `stream`, which then sends `byte`:
/// the end of the stream (unless the server shut its sending side down
/// already, `ended`), a reset, or a failed send.
fn cut(stream: &mut TcpStream, byte: u8, ended: bool) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) if !ended => return true,
            Ok(0) => break,
            // An answer (the request was whole): not cut.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return true,
        }
    }
    stream.write_all(&[byte]).is_err()
}

/// The lowest fd number not open, above `from`.
fn free_fd_from(from: i32) -> i32 {
    (from..).find(|&fd| fds::identity(fd).is_none()).unwrap()
}

/// With only one fd left to the process, the server can open the file
/// asked for but make no pipe for its body: it must answer 503 and close,
/// not send a `200 OK` and `Content-Length` and then end the connection
/// without the body. With fds again, the same file comes whole.
fn out_of_fds_a_file_gets_503_not_a_200_without_its_body(kind: BackendKind) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("file"), b"the body").unwrap();
    let server = Server::start(kind, root.path());
    let mut client = server.connect();
    // Accepted, and waiting for the next request (a body that came would
    // leave its pipe for the next).
    assert_eq!(client.get("/missing").code, 404);
    // None left: the file itself cannot be opened.
    let answer = last_answer_with_fd_limit(&mut client, free_fd_from(0));
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    let mut client = server.connect();
    assert_eq!(client.get("/missing").code, 404);
    let one_left = free_fd_from(free_fd_from(0) + 1);
    let answer = last_answer_with_fd_limit(&mut client, one_left);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(answer.contains("Content-Length: 0\r\n"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\n"), "{answer:?}");
    let answer = server.connect().get("/file");
    assert_eq!((answer.code, &answer.body[..]), (200, &b"the body"[..]));
    server.assert_alive();
}

/// What `client` reads, to the end, after asking for `/file` while the
/// process may open no fd numbered `limit` or above.
fn last_answer_with_fd_limit(client: &mut Client, limit: i32) -> String {
    let answer = fds::with_fd_limit(limit as libc::rlim_t, || {
        client.send("GET /file HTTP/1.1\r\nHost: test\r\n\r\n");
        let mut answer = Vec::new();
        client.reader.read_to_end(&mut answer).map(|_| answer)
    });
    String::from_utf8_lossy(&answer.expect("the answer, then the end")).to_string()
}

/// Set in the child process: the root the file server serves.
const SIGNAL_CHILD: &str = "OURO_TEST_FILE_SERVER_ROOT";

/// The server, run as `main` runs it in a child process, serves a client
/// on a kept-alive connection and gets `SIGTERM`: it closes the
/// connection, says why and exits 0 (the signal's default action would
/// end it at once, with no status 0).
fn sigterm_closes_every_connection_and_exits_0(kind: BackendKind) {
    let backend = match kind {
        BackendKind::Uring => "uring",
        _ => "poll",
    };
    if let Some(root) = std::env::var_os(SIGNAL_CHILD) {
        let args = [root.into_string().unwrap(), "127.0.0.1:0".into()];
        let args = args.into_iter().chain(["--backend".into(), backend.into()]);
        return file_server::main_with(args).expect("the server's main");
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("file"), b"the body").unwrap();
    let test = format!("sigterm_closes_every_connection_and_exits_0::{backend}");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([&test, "--exact", "--nocapture"])
        .env(SIGNAL_CHILD, root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    let addr = loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("the server ended before it listened: {out}");
        }
        out.push_str(&line);
        if let Some((_, rest)) = line.split_once("listening on ") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let mut client = Client::connect(addr);
    assert_eq!(client.get("/file").body, b"the body");
    let idle = Client::connect(addr).writer;
    // SAFETY: kill has no memory effects; the child is ours and running.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    for mut stream in [client.writer, idle] {
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the connection stayed open: {e}"),
        }
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the server did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    stdout.read_to_string(&mut out).unwrap();
    let mut stderr = child.stderr.take().unwrap();
    stderr.read_to_string(&mut out).unwrap();
    assert!(status.success(), "{status:?}:\n{out}");
    assert!(out.contains("stopping on SIGTERM"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}
