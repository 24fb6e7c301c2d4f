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
//!   a `Connection` header with `close` among its comma-separated options
//!   (or HTTP/1.0 without `keep-alive`) closes after the answer, else the
//!   connection is kept for the next request;
//! - a path with a `..` segment gets `403` (the file system is not asked),
//!   a missing file or anything that is not a regular file `404`, a file
//!   the server may not read `403`; nothing is percent-decoded, so an
//!   encoded `..` names a file of that name (absent: `404`). Symbolic
//!   links under the root are followed: the root is trusted;
//! - empty and `.` segments inside a path name nothing, so `/dir//file`
//!   and `/dir/./file` are `/dir/file` (as with nginx's default
//!   `merge_slashes`, and the kernel's own path lookup); a path that ends
//!   in `/` (or `/.`) names a directory, and no directory is served: it
//!   gets `404`, also after a file's name (`/index.html/`, which the
//!   kernel refuses with `ENOTDIR`);
//! - other methods get `405`, malformed requests or requests with a body
//!   `400`, a head over `MAX_HEAD` bytes `431`, each then closing;
//! - a connection ends after its last answer with its sending side shut
//!   down, and what the client still sends is read and dropped until it
//!   closes: closing with a request unread would reset the connection,
//!   which can destroy the answer before the client reads it;
//! - a connection whose next request has not arrived whole within
//!   `REQUEST_TIMEOUT` (10 s) of the connection's start, or of the end of
//!   the previous answer, is closed, however the bytes trickle in; a
//!   connection being ended reads what the client still sends for at most
//!   that long in all;
//! - the body's pipe is made before the `200` head goes out: out of fds
//!   (for the file or the pipe), the client gets `503 Service
//!   Unavailable` (and the connection is closed), never a `200` with a
//!   short body;
//! - a file cut short while it is being sent (truncated by another
//!   process) ends its connection early: once the head is out, HTTP/1.1
//!   has no other way to say so, and the client sees a body shorter than
//!   its `Content-Length`, then the end of the stream.
//!
//! A client that stops reading holds its transfer (one pipe, at most 64 KiB
//! of the file in the kernel) and nothing else: the other connections go
//! on. Once no byte of its body has moved for `BODY_STALL` (10 s), or an
//! answer's head has waited that long to go out (answers with no body,
//! pipelined), its connection is closed, with the file and the pipe.
//!
//! On `SIGINT` (Ctrl-C) or `SIGTERM` the server stops accepting, closes
//! every connection, says why on stdout and exits with status 0 (see
//! `support/shutdown.rs`), as the other example servers do.

#[cfg(target_os = "linux")]
#[path = "support/accept_errors.rs"]
mod accept_errors;
#[cfg(target_os = "linux")]
#[path = "support/cli.rs"]
pub mod cli;
#[cfg(target_os = "linux")]
#[path = "support/http_files.rs"]
mod http_files;
#[cfg(target_os = "linux")]
#[path = "support/logging.rs"]
mod logging;
#[cfg(target_os = "linux")]
#[path = "support/shutdown.rs"]
mod shutdown;

#[cfg(target_os = "linux")]
pub use server::{main_with, serve};

#[allow(dead_code)] // the tests use `serve`
#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    cli::main(server::USAGE, main_with)
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
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::OwnedFd;
    use std::path::PathBuf;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use ouro::fs::OpenOptions;
    use ouro::{
        BackendKind, Completion, ConnTable, Ctx, Outcome, Ring, RingBuilder, RingFd, RunMode,
        SendFile, Sent, Task, WriteQueue,
    };

    use super::accept_errors::AcceptErrors;
    use super::http_files::{head, parse, resolve, Parsed};
    use super::{cli, logging, shutdown};

    /// The largest request head accepted.
    const MAX_HEAD: usize = 8 * 1024;
    /// The most a connection that is being ended may still send.
    const MAX_LINGER: usize = 64 * 1024;
    /// How long the next request may take to arrive whole, from the
    /// connection's start or the end of the previous answer; and how long
    /// a connection being ended is read from.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long a body may go without a byte of it moving, or a head may
    /// take to go out, before its connection is closed (its client has
    /// stopped reading, say).
    const BODY_STALL: Duration = Duration::from_secs(10);
    /// After a failed accept (out of fds, say), accept again after this.
    const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

    ouro::messages! {
        enum Msg { Accepted, AcceptAgain, Received, Sent, HeadLate, Opened, Body }
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
        /// When the request being read must have arrived whole (or, while
        /// lingering, when reading ends): one deadline for all its
        /// receives, so that bytes trickling in do not extend it.
        receive_by: Instant,
        /// Answer heads (and error answers), in order.
        writes: WriteQueue<Server>,
        /// The timer that ends the connection if the head being sent is
        /// not out by then: a client that reads nothing holds no connection
        /// for ever (pipelined requests for missing files have no body to
        /// stall).
        head_late: Option<Task>,
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
        /// The head is being written, a pipe reserved for the body (under
        /// the connection's key); then the body goes.
        Head { file: RingFd, len: u64 },
        /// The body is being sent from `file`.
        Body { file: RingFd },
    }

    fn ctx(msg: Msg, key: u64) -> Ctx<Server> {
        Ctx::new(Server::on_completion).msg(msg).key(key)
    }

    impl Server {
        fn on_completion(&mut self, ring: &mut Ring<Self>, c: Completion) -> io::Result<()> {
            let (key, last) = (c.key(), c.is_final());
            let msg = c.message::<Msg>()?;
            if msg == Msg::Body {
                let moved = matches!(c.outcome, Outcome::Splice(Ok(n)) if n > 0);
                match self.bodies.on_completion(ring, c)? {
                    Some(sent) => self.body_sent(ring, sent),
                    // The transfer's deadline moves on with its bytes: only
                    // a body that stops moving ends at it.
                    None if moved => {
                        let _ = self.bodies.set_deadline(ring, key, ring.now() + BODY_STALL);
                    }
                    None => {}
                }
                return Ok(());
            }
            if msg == Msg::Sent {
                return self.head_sent(ring, key, c);
            }
            let task = c.task();
            match (msg, c.outcome) {
                (Msg::Accepted, Outcome::AcceptDirect(result)) => self.accepted(ring, result, last),
                (Msg::AcceptAgain, Outcome::Timer(_)) => self.accept(ring),
                (Msg::HeadLate, Outcome::Timer(Ok(()))) => self.head_late(ring, key, task),
                (Msg::HeadLate, Outcome::Timer(Err(_))) => {}
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
                        receive_by: ring.now() + REQUEST_TIMEOUT,
                        writes: WriteQueue::new(fd, ctx(Msg::Sent, key)),
                        head_late: None,
                        answer: Answer::Idle,
                        keep_alive: true,
                        closing: false,
                        lingering: None,
                    });
                    self.next_request(ring, key);
                    if last {
                        // The kernel ended it (a full completion queue, or a
                        // kernel without multishot accept).
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
            // Just scheduled, so live: this cannot fail. (A deadline passed
            // already ends the receive at once.)
            let _ = ring.set_deadline(task, conn.receive_by);
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
                        // ENXIO: a socket file, which cannot be opened.
                        Some(
                            libc::ENOENT
                            | libc::ENOTDIR
                            | libc::ELOOP
                            | libc::ENAMETOOLONG
                            | libc::ENXIO,
                        ) => (404, "Not Found"),
                        // Out of fds, or a file leased by another process:
                        // another time may do.
                        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN) => {
                            (503, "Service Unavailable")
                        }
                        _ => (500, "Internal Server Error"),
                    };
                    let keep_alive = !matches!(code, 500 | 503);
                    return self.status(ring, key, code, reason, keep_alive);
                }
            };
            // The size of the file that was opened (a path's could change
            // between a stat and the open); fstat does not wait for a device.
            let len = match file.metadata() {
                Ok(meta) if meta.is_file() => meta.len(),
                Ok(_) => return self.status(ring, key, 404, "Not Found", true),
                Err(_) => return self.status(ring, key, 500, "Internal Server Error", false),
            };
            // The body's pipe, before the head promises the body.
            if let Err(e) = self.bodies.reserve_pipe(ring, key) {
                tracing::debug!("connection {key}: no pipe for the body: {e}");
                // The file closes as it drops; so does the connection, to
                // give back its fd too.
                return self.status(ring, key, 503, "Service Unavailable", false);
            }
            let file = ring.register_fd(file.into());
            let head = head(200, "OK", len, conn.keep_alive);
            conn.answer = Answer::Head { file, len };
            self.send_head(ring, key, head);
        }

        /// Sends an answer's head, which must be out within `BODY_STALL`.
        fn send_head(&mut self, ring: &mut Ring<Self>, key: u64, head: Vec<u8>) {
            let conn = &mut self.conns[key];
            if conn.writes.push(ring, head).is_err() {
                return self.close(ring, key);
            }
            if let Some(old) = conn.head_late.take() {
                ring.cancel(old, Ctx::none());
            }
            conn.head_late = Some(ring.timer(BODY_STALL, ctx(Msg::HeadLate, key)));
        }

        /// The head has not gone out in time: the client reads nothing.
        fn head_late(&mut self, ring: &mut Ring<Self>, key: u64, timer: Task) {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.head_late == Some(timer) {
                conn.head_late = None;
                tracing::debug!("connection {key}: its answer went unread for {BODY_STALL:?}");
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
            self.send_head(ring, key, head);
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
            if let Some(timer) = conn.head_late.take() {
                ring.cancel(timer, Ctx::none());
            }
            match conn.answer {
                Answer::Head { file, len } => {
                    // On the pipe reserved for it: no fd is needed.
                    match self.bodies.start(ring, file, 0, len, conn.fd, key) {
                        Ok(transfer) => {
                            conn.answer = Answer::Body { file };
                            let stall = ring.now() + BODY_STALL;
                            let _ = self.bodies.set_deadline(ring, transfer, stall);
                        }
                        Err(e) => {
                            tracing::warn!("connection {key}: cannot send a file: {e}");
                            self.close(ring, key);
                        }
                    }
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
                conn.receive_by = ring.now() + REQUEST_TIMEOUT;
                self.next_request(ring, key);
            } else {
                self.linger(ring, key);
            }
        }

        /// Ends the connection after its last answer: shuts its sending side
        /// down (the client reads the end after the answer), then reads what
        /// the client still sends until it closes (or `MAX_LINGER` bytes, or
        /// `REQUEST_TIMEOUT` in all). Closing at once, with a request unread, would
        /// reset the connection, and a reset may destroy the answer before
        /// the client has read it.
        fn linger(&mut self, ring: &mut Ring<Self>, key: u64) {
            let conn = &mut self.conns[key];
            if conn.closing {
                return self.close(ring, key);
            }
            conn.lingering = Some(0);
            conn.receive_by = ring.now() + REQUEST_TIMEOUT;
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
            if let Some(timer) = conn.head_late.take() {
                ring.cancel(timer, Ctx::none());
            }
            match conn.answer {
                Answer::Opening | Answer::Body { .. } => {}
                Answer::Head { file, .. } => {
                    ring.close(file, Ctx::none());
                    self.bodies.release_pipe(ring, key);
                    self.conns.remove(key);
                }
                Answer::Idle | Answer::Status => {
                    self.conns.remove(key);
                }
            }
        }
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

    pub const USAGE: &str =
        "usage: file_server ROOT [ADDR] [--backend uring|poll]   (default ADDR: 127.0.0.1:8000)";

    fn parse_args(args: impl Iterator<Item = String>) -> io::Result<Options> {
        let mut args = cli::Args::new(args, USAGE);
        let (mut root, mut addr, mut backend) = (None, None, None);
        while let Some(arg) = args.next_arg()? {
            if arg == "--backend" {
                backend = Some(args.backend(&arg)?);
            } else if arg.starts_with('-') {
                return Err(args.unexpected(&arg));
            } else if root.is_none() {
                root = Some(PathBuf::from(arg));
            } else if addr.is_none() {
                addr = Some(args.parse(&arg)?);
            } else {
                return Err(args.unexpected(&arg));
            }
        }
        Ok(Options {
            root: root.ok_or_else(|| args.bad("no root directory given"))?,
            addr: addr.unwrap_or_else(|| ([127, 0, 0, 1], 8000).into()),
            backend,
        })
    }

    /// What `main` does, given the command line's arguments (after the
    /// program's name).
    pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
        logging::init();
        let options = parse_args(args)?;
        if !options.root.is_dir() {
            let root = options.root.display();
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot serve {root}: not a directory"),
            ));
        }
        let builder = match options.backend {
            Some(kind) => Ring::builder().backend(kind),
            None => Ring::builder(),
        };
        // Set up before claiming to listen, so that a setup error comes first.
        let mut ring = builder.entries(256).build()?;
        // Kept until the ring has stopped: dropping it would give the
        // signals their default action (the end of the process) back.
        let _signals = shutdown::stop_on_signals(&mut ring)?;
        let listener = ouro::net::tcp_listener(options.addr, 1024)
            .map_err(cli::cannot_listen(options.addr))?;
        cli::line(format_args!(
            "listening on {} ({})",
            ouro::net::local_addr(&listener)?,
            ring.backend_description()
        ))?;
        serve_on(ring, listener, options.root)
    }
}
