//! A static HTTP/1.1 file server on ouro: `GET` of the regular files under
//! a root directory, bodies sent with `SendFile` (file → pipe → socket,
//! never through user space). Linux only (`SendFile` is built on splice).
//!
//! ```text
//! cargo run --example file_server -- ./public 127.0.0.1:8000
//! cargo run --example file_server -- ./public --backend poll
//! curl -v http://127.0.0.1:8000/index.html
//! ```
//!
//! It prints `listening on ADDR (BACKEND)` once it accepts connections
//! (port 0 picks a free port). The ring runs on the backend
//! `Ring::builder()` picks (io_uring where it works, else the readiness
//! backend, or the one `OURO_BACKEND` names); `--backend uring|poll`
//! overrides both. Logging as in the other examples (`RUST_LOG`).
//!
//! The protocol, one request at a time per connection (requests sent
//! ahead wait in the connection's input, which holds at most one head):
//! - `GET /path` answers the file under the root with `Content-Length`;
//!   `Connection: close` (or HTTP/1.0 without keep-alive) closes after the
//!   answer, else the connection is kept for the next request;
//! - a path with a `..` segment gets `403` (the file system is not asked),
//!   a missing file or anything that is not a regular file `404`, a file
//!   the server may not read `403`; nothing is percent-decoded, so an
//!   encoded `..` names a file of that name (absent: `404`). Symbolic
//!   links under the root are followed: the root is trusted;
//! - other methods get `405`, malformed requests or requests with a body
//!   `400`, a head over `MAX_HEAD` bytes `431`, each then closing;
//! - a connection ends after its last answer with its sending side shut
//!   down, and what the client still sends is read and dropped until it
//!   closes: closing with a request unread would reset the connection,
//!   which can destroy the answer before the client reads it;
//! - a connection whose next request has not arrived whole within
//!   `REQUEST_TIMEOUT` is closed.
//!
//! A client that stops reading holds its transfer (one pipe, at most 64 KiB
//! of the file in the kernel) and nothing else: the other connections go
//! on.

#[cfg(target_os = "linux")]
#[path = "support/accept_errors.rs"]
mod accept_errors;
#[cfg(target_os = "linux")]
#[path = "support/logging.rs"]
mod logging;

#[cfg(target_os = "linux")]
pub use server::{main_with, serve};

#[allow(dead_code)] // the tests use `serve`
#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    main_with(std::env::args().skip(1))
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("file_server runs on Linux only: its bodies go through SendFile, built on splice");
    std::process::exit(1);
}

/// The server (Linux only, as `SendFile` is).
#[cfg(target_os = "linux")]
mod server {
    use std::fs::File;
    use std::io::{self, Write};
    use std::net::SocketAddr;
    use std::os::fd::OwnedFd;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;
    use std::time::Duration;

    use ouro::fs::OpenOptions;
    use ouro::{
        BackendKind, Completion, ConnTable, Ctx, Outcome, Ring, RingBuilder, RingFd, RunMode,
        SendFile, Sent, WriteQueue,
    };

    use super::accept_errors::AcceptErrors;
    use super::logging;

    /// The largest request head accepted.
    const MAX_HEAD: usize = 8 * 1024;
    /// The most a connection that is being ended may still send.
    const MAX_LINGER: usize = 64 * 1024;
    /// How long the next request may take to arrive whole.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// After a failed accept (out of fds, say), accept again after this.
    const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

    ouro::messages! {
        enum Msg { Accepted, AcceptAgain, Received, Sent, Opened, Body }
    }

    struct Server {
        root: PathBuf,
        /// Shared with the accept task, which keeps it open while it runs.
        listener: Rc<OwnedFd>,
        /// Keyed by the `Ctx` key of the connection's tasks.
        conns: ConnTable<Conn>,
        bodies: SendFile<Server>,
        accept_errors: AcceptErrors,
    }

    struct Conn {
        fd: RingFd,
        /// What has arrived of the next requests (empty while a receive has it).
        input: Vec<u8>,
        receiving: bool,
        /// Answer heads (and error answers), in order.
        writes: WriteQueue<Server>,
        answer: Answer,
        keep_alive: bool,
        /// Being closed: its fd is closed; the entry goes once what it waits
        /// for (an open, a transfer) has come back.
        closing: bool,
        /// Answered for the last time, its sending side shut down: what
        /// still arrives is read and dropped (this many bytes so far) until
        /// the client closes.
        lingering: Option<usize>,
    }

    /// Where the connection's answer is.
    enum Answer {
        /// None in progress: the next request may be read.
        Idle,
        /// The file is being opened.
        Opening,
        /// A status without a file is being written.
        Status,
        /// The head is being written; then the body goes.
        Head { file: RingFd, len: u64 },
        /// The body is being sent from `file`.
        Body { file: RingFd },
    }

    /// What the start of a connection's input makes of it.
    enum Parsed {
        /// Not whole yet.
        Partial,
        /// A request of `len` bytes.
        Get {
            len: usize,
            path: String,
            keep_alive: bool,
        },
        /// An answer to give, then close.
        Refused(u16, &'static str),
    }

    fn ctx(msg: Msg, key: u64) -> Ctx<Server> {
        Ctx::new(Server::on_completion).msg(msg).key(key)
    }

    impl Server {
        fn on_completion(&mut self, ring: &mut Ring<Self>, c: Completion) -> io::Result<()> {
            let (key, last) = (c.key(), c.is_final());
            let msg = c.message::<Msg>()?;
            if msg == Msg::Body {
                if let Some(sent) = self.bodies.on_completion(ring, c)? {
                    self.body_sent(ring, sent);
                }
                return Ok(());
            }
            if msg == Msg::Sent {
                return self.head_sent(ring, key, c);
            }
            match (msg, c.outcome) {
                (Msg::Accepted, Outcome::AcceptDirect(result)) => self.accepted(ring, result, last),
                (Msg::AcceptAgain, Outcome::Timer(_)) => self.accept(ring),
                (Msg::Received, Outcome::Recv(result, buf)) => {
                    let buf = buf.downcast::<Vec<u8>>().unwrap_or_default();
                    self.received(ring, key, result, buf)
                }
                (Msg::Opened, Outcome::Open(result)) => self.opened(ring, key, result),
                (msg, outcome) => {
                    return Err(io::Error::other(format!(
                        "unexpected {msg:?} with {outcome:?}"
                    )))
                }
            }
            Ok(())
        }

        fn accept(&mut self, ring: &mut Ring<Self>) {
            ring.accept_multishot_direct(&self.listener, ctx(Msg::Accepted, 0));
        }

        fn accepted(&mut self, ring: &mut Ring<Self>, result: io::Result<RingFd>, last: bool) {
            match result {
                Ok(fd) => {
                    self.accept_errors.accepted(ring.now());
                    let key = self.conns.insert_with(|key| Conn {
                        fd,
                        input: Vec::new(),
                        receiving: false,
                        writes: WriteQueue::new(fd, ctx(Msg::Sent, key)),
                        answer: Answer::Idle,
                        keep_alive: true,
                        closing: false,
                        lingering: None,
                    });
                    self.next_request(ring, key);
                    if last {
                        // A kernel without multishot accept.
                        self.accept(ring);
                    }
                }
                Err(e) => {
                    // Accepting again at once would fail again, in a busy loop.
                    self.accept_errors.failed(&e, ring.now());
                    if last {
                        ring.timer(ACCEPT_PAUSE, ctx(Msg::AcceptAgain, 0));
                    }
                }
            }
        }

        /// Answers the request at the start of the input, or reads more of it.
        fn next_request(&mut self, ring: &mut Ring<Self>, key: u64) {
            let conn = &mut self.conns[key];
            match parse(&conn.input) {
                Parsed::Partial if conn.input.len() >= MAX_HEAD => {
                    self.status(ring, key, 431, "Request Header Fields Too Large", false)
                }
                Parsed::Partial => self.receive(ring, key),
                Parsed::Refused(code, reason) => self.status(ring, key, code, reason, false),
                Parsed::Get {
                    len,
                    path,
                    keep_alive,
                } => {
                    conn.input.drain(..len);
                    conn.keep_alive = keep_alive;
                    self.get(ring, key, &path);
                }
            }
        }

        fn receive(&mut self, ring: &mut Ring<Self>, key: u64) {
            let conn = &mut self.conns[key];
            if conn.receiving {
                return;
            }
            conn.receiving = true;
            let mut buf = std::mem::take(&mut conn.input);
            buf.reserve(MAX_HEAD - buf.len());
            let task = ring.recv(conn.fd, buf, ctx(Msg::Received, key));
            // Just scheduled, so live: this cannot fail.
            let _ = ring.set_timeout(task, REQUEST_TIMEOUT);
        }

        fn received(
            &mut self,
            ring: &mut Ring<Self>,
            key: u64,
            result: io::Result<usize>,
            buf: Vec<u8>,
        ) {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            conn.receiving = false;
            conn.input = buf;
            if let Some(dropped) = &mut conn.lingering {
                *dropped += conn.input.len();
                conn.input.clear();
                return match result {
                    Ok(n) if n > 0 && *dropped <= MAX_LINGER => self.receive(ring, key),
                    _ => self.close(ring, key),
                };
            }
            match result {
                Ok(n) if n > 0 && !conn.closing => self.next_request(ring, key),
                // The peer is done, reset, or too slow (`ETIME`).
                Ok(_) => self.close(ring, key),
                Err(e) => {
                    tracing::debug!("connection {key}: receive failed: {e}");
                    self.close(ring, key)
                }
            }
        }

        fn get(&mut self, ring: &mut Ring<Self>, key: u64, path: &str) {
            let Some(path) = resolve(&self.root, path) else {
                return self.status(ring, key, 403, "Forbidden", true);
            };
            tracing::debug!("connection {key}: GET {}", path.display());
            self.conns[key].answer = Answer::Opening;
            // Non-blocking: an open that the kernel must retry blocking
            // (io_uring does when the path is not cached) would otherwise
            // wait for a FIFO's writer (it is then refused as not a regular
            // file); a regular file ignores the flag.
            let options = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK);
            ring.open(path, &options, ctx(Msg::Opened, key));
        }

        fn opened(&mut self, ring: &mut Ring<Self>, key: u64, result: io::Result<OwnedFd>) {
            let conn = &mut self.conns[key];
            conn.answer = Answer::Idle;
            if conn.closing {
                // The file, if any, closes as it drops.
                return self.close(ring, key);
            }
            let file = match result.map(File::from) {
                Ok(file) => file,
                Err(e) => {
                    let (code, reason) = match e.raw_os_error() {
                        Some(libc::EACCES | libc::EPERM) => (403, "Forbidden"),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG) => {
                            (404, "Not Found")
                        }
                        _ => (500, "Internal Server Error"),
                    };
                    return self.status(ring, key, code, reason, code != 500);
                }
            };
            // The size of the file that was opened (a path's could change
            // between a stat and the open); fstat does not wait for a device.
            let len = match file.metadata() {
                Ok(meta) if meta.is_file() => meta.len(),
                Ok(_) => return self.status(ring, key, 404, "Not Found", true),
                Err(_) => return self.status(ring, key, 500, "Internal Server Error", false),
            };
            let file = ring.register_fd(file.into());
            let head = head(200, "OK", len, conn.keep_alive);
            conn.answer = Answer::Head { file, len };
            if conn.writes.push(ring, head).is_err() {
                self.close(ring, key);
            }
        }

        /// Answers with a status and no file; closes after it unless
        /// `keep_alive` (and the request asked to keep the connection).
        fn status(
            &mut self,
            ring: &mut Ring<Self>,
            key: u64,
            code: u16,
            reason: &str,
            keep_alive: bool,
        ) {
            let conn = &mut self.conns[key];
            conn.keep_alive &= keep_alive;
            conn.answer = Answer::Status;
            let head = head(code, reason, 0, conn.keep_alive);
            if conn.writes.push(ring, head).is_err() {
                self.close(ring, key);
            }
        }

        fn head_sent(&mut self, ring: &mut Ring<Self>, key: u64, c: Completion) -> io::Result<()> {
            let Some(conn) = self.conns.get_mut(key) else {
                return Ok(()); // closed since
            };
            let progress = match conn.writes.on_sent(ring, c) {
                Ok(progress) => progress,
                Err(e) => {
                    tracing::debug!("connection {key}: send failed: {e}");
                    self.close(ring, key);
                    return Ok(());
                }
            };
            if progress.queued > 0 || conn.closing {
                return Ok(());
            }
            match conn.answer {
                Answer::Head { file, len } => {
                    let started = self.bodies.start(ring, file, 0, len, conn.fd, key);
                    if let Err(e) = started {
                        tracing::warn!("connection {key}: cannot send a file: {e}");
                        ring.close(file, Ctx::none());
                        conn.answer = Answer::Idle;
                        self.close(ring, key);
                        return Ok(());
                    }
                    conn.answer = Answer::Body { file };
                }
                Answer::Status => self.answered(ring, key),
                Answer::Idle | Answer::Opening | Answer::Body { .. } => {}
            }
            Ok(())
        }

        fn body_sent(&mut self, ring: &mut Ring<Self>, sent: Sent) {
            let key = sent.key;
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if let Answer::Body { file } = conn.answer {
                ring.close(file, Ctx::none());
            }
            conn.answer = Answer::Idle;
            match sent.result {
                Ok(()) => self.answered(ring, key),
                Err(e) => {
                    tracing::debug!(
                        "connection {key}: body failed after {} bytes: {e}",
                        sent.sent
                    );
                    self.close(ring, key)
                }
            }
        }

        /// The answer is out: on to the next request, or close.
        fn answered(&mut self, ring: &mut Ring<Self>, key: u64) {
            let conn = &mut self.conns[key];
            conn.answer = Answer::Idle;
            if conn.keep_alive && !conn.closing {
                self.next_request(ring, key);
            } else {
                self.linger(ring, key);
            }
        }

        /// Ends the connection after its last answer: shuts its sending side
        /// down (the client reads the end after the answer), then reads what
        /// the client still sends until it closes (or `MAX_LINGER` bytes, or
        /// `REQUEST_TIMEOUT`). Closing at once, with a request unread, would
        /// reset the connection, and a reset may destroy the answer before
        /// the client has read it.
        fn linger(&mut self, ring: &mut Ring<Self>, key: u64) {
            let conn = &mut self.conns[key];
            if conn.closing {
                return self.close(ring, key);
            }
            conn.lingering = Some(0);
            conn.input.clear();
            ring.shutdown(conn.fd, std::net::Shutdown::Write, Ctx::none());
            self.receive(ring, key);
        }

        /// Closes the connection's fd (which cancels its tasks) and forgets it
        /// once nothing it started is out: an open or a transfer comes back
        /// first, to close its file.
        fn close(&mut self, ring: &mut Ring<Self>, key: u64) {
            let conn = &mut self.conns[key];
            if !conn.closing {
                conn.closing = true;
                ring.close(conn.fd, Ctx::none());
            }
            match conn.answer {
                Answer::Opening | Answer::Body { .. } => {}
                Answer::Head { file, .. } => {
                    ring.close(file, Ctx::none());
                    self.conns.remove(key);
                }
                Answer::Idle | Answer::Status => {
                    self.conns.remove(key);
                }
            }
        }
    }

    /// The file `path` (a request target) names under `root`; `None` if it
    /// climbs out with a `..` segment. Empty and `.` segments name nothing.
    fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let mut resolved = root.to_path_buf();
        for segment in path.split('/') {
            match segment {
                "" | "." => {}
                ".." => return None,
                _ => resolved.push(segment),
            }
        }
        Some(resolved)
    }

    /// Parses the request head at the start of `input`.
    fn parse(input: &[u8]) -> Parsed {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let len = match request.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) => {
                return Parsed::Refused(431, "Request Header Fields Too Large")
            }
            Err(_) => return Parsed::Refused(400, "Bad Request"),
        };
        let (Some(method), Some(path)) = (request.method, request.path) else {
            return Parsed::Refused(400, "Bad Request");
        };
        if method != "GET" {
            return Parsed::Refused(405, "Method Not Allowed");
        }
        if !path.starts_with('/') {
            return Parsed::Refused(400, "Bad Request");
        }
        let mut keep_alive = request.version == Some(1);
        for header in request.headers.iter() {
            let (name, value) = (header.name, header.value);
            if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || (name.eq_ignore_ascii_case("content-length") && value.trim_ascii() != b"0")
            {
                // A body the server would have to skip: not worth it for GET.
                return Parsed::Refused(400, "Bad Request");
            }
        }
        Parsed::Get {
            len,
            path: path.to_string(),
            keep_alive,
        }
    }

    /// An answer's head, for a body of `len` bytes.
    fn head(code: u16, reason: &str, len: u64, keep_alive: bool) -> Vec<u8> {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let allow = if code == 405 { "Allow: GET\r\n" } else { "" };
        let mut head = Vec::with_capacity(128);
        let _ = write!(
            head,
            "HTTP/1.1 {code} {reason}\r\nContent-Length: {len}\r\n{allow}Connection: {connection}\r\n\r\n"
        );
        head
    }

    /// Serves the files under `root` on `listener` until the process ends, on
    /// a ring of `ring` (which chooses the backend).
    pub fn serve(listener: OwnedFd, ring: RingBuilder, root: PathBuf) -> io::Result<()> {
        serve_on(ring.entries(256).build()?, listener, root)
    }

    fn serve_on(mut ring: Ring<Server>, listener: OwnedFd, root: PathBuf) -> io::Result<()> {
        let mut server = Server {
            root,
            listener: Rc::new(listener),
            conns: ConnTable::new(),
            bodies: SendFile::new(ctx(Msg::Body, 0)),
            accept_errors: AcceptErrors::default(),
        };
        server.accept(&mut ring);
        ring.run(&mut server, RunMode::Forever)
    }

    /// What the command line asks for.
    struct Options {
        root: PathBuf,
        addr: SocketAddr,
        backend: Option<BackendKind>,
    }

    const USAGE: &str = "usage: file_server ROOT [ADDR] [--backend uring|poll]";

    fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let (mut root, mut addr, mut backend) = (None, None, None);
        while let Some(arg) = args.next() {
            if arg == "--backend" {
                backend = match args.next().as_deref() {
                    Some("uring") => Some(BackendKind::Uring),
                    Some("poll") => Some(BackendKind::Poll),
                    other => return Err(format!("--backend {other:?}: uring or poll")),
                };
            } else if root.is_none() {
                root = Some(PathBuf::from(arg));
            } else if addr.is_none() {
                addr = Some(arg.parse().map_err(|e| format!("{arg}: {e}"))?);
            } else {
                return Err(format!("unexpected argument {arg}"));
            }
        }
        Ok(Options {
            root: root.ok_or("no root directory given")?,
            addr: addr.unwrap_or_else(|| ([127, 0, 0, 1], 8000).into()),
            backend,
        })
    }

    /// What `main` does, given the command line's arguments (after the
    /// program's name).
    pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
        logging::init();
        let options = parse_args(args)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}\n{USAGE}")))?;
        if !options.root.is_dir() {
            let root = options.root.display();
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{root} is not a directory\n{USAGE}"),
            ));
        }
        let builder = match options.backend {
            Some(kind) => Ring::builder().backend(kind),
            None => Ring::builder(),
        };
        // Set up before claiming to listen, so that a setup error comes first.
        let ring = builder.entries(256).build()?;
        let listener = ouro::net::tcp_listener(options.addr, 1024)?;
        println!(
            "listening on {} ({})",
            ouro::net::local_addr(&listener)?,
            ring.backend_description()
        );
        io::stdout().flush()?;
        serve_on(ring, listener, options.root)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn dot_dot_segments_are_refused_and_dots_ignored() {
            let root = Path::new("/srv");
            assert_eq!(resolve(root, "/../etc/passwd"), None);
            assert_eq!(resolve(root, "/a/../../b"), None);
            assert_eq!(resolve(root, "/a/..?x"), None);
            assert_eq!(
                resolve(root, "/./a//b?q=1"),
                Some(PathBuf::from("/srv/a/b"))
            );
            assert_eq!(
                resolve(root, "/%2e%2e/x"),
                Some(PathBuf::from("/srv/%2e%2e/x"))
            );
        }

        #[test]
        fn requests_are_parsed_or_refused() {
            let get = |input: &[u8]| match parse(input) {
                Parsed::Get {
                    len,
                    path,
                    keep_alive,
                } => Some((len, path, keep_alive)),
                _ => None,
            };
            let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET";
            assert_eq!(get(req), Some((req.len() - 3, "/a".to_string(), true)));
            assert!(!get(b"GET /a HTTP/1.0\r\n\r\n").unwrap().2);
            let close = b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n";
            assert!(!get(close).unwrap().2);
            assert!(matches!(parse(b"GET /a HT"), Parsed::Partial));
            assert!(matches!(
                parse(b"POST / HTTP/1.1\r\n\r\n"),
                Parsed::Refused(405, _)
            ));
            let body = b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
            assert!(matches!(parse(body), Parsed::Refused(400, _)));
            assert!(matches!(
                parse(b"\x00garbage\r\n\r\n"),
                Parsed::Refused(400, _)
            ));
        }
    }
}
