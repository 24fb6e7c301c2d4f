//! A TLS echo server: every byte a client sends comes back, until the
//! client closes (with `close_notify`, answered by ours). Connections are
//! accepted on the ring and kept in a `ConnTable`; each gets a 10 s
//! handshake deadline. A connection whose echoes pile up (a client that
//! sends and does not read) stops being received from until they drain,
//! past 256 KiB, or past its share of 64 MiB over all connections (at
//! least 16 KiB), and frees its receive buffers meanwhile, so the echoes
//! held stay under 64 MiB plus about one receive (at most 132 KiB) per
//! connection; one whose echoes go unread for 10 s is cut, and so is
//! one that neither sends nor takes an echo for 30 s (a client that went
//! quiet, or whose echoes sit unread in the kernel). Out of fds,
//! it accepts again every 10 ms and logs the failures sparingly (ouro's
//! `examples/support/accept_errors.rs`); a client's own failure is logged
//! at debug level (`RUST_LOG=debug`). Prints the address it listens on.
//!
//! ```sh
//! cargo run -p ouro-tls --example tls_echo -- 127.0.0.1:8443 cert.pem key.pem
//! ```
//!
//! Bad arguments exit with 2, `--help` with 0, a failure (an address in
//! use, a file that cannot be read) with 1; a closed stdout ends it
//! quietly (ouro's `examples/support/cli.rs`, which all the examples
//! share).

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ouro::{Completion, ConnTable, Ctx, Outcome, Ring, RunMode, Task};
use ouro_tls::{
    certificates_from_pem, private_key_from_pem, server_config, ServerConfig, TlsEvent, TlsStream,
    Versions,
};

#[path = "../../ouro/examples/support/accept_errors.rs"]
mod accept_errors;
#[path = "../../ouro/examples/support/cli.rs"]
pub mod cli;
#[path = "../../ouro/examples/support/logging.rs"]
pub mod logging;

use accept_errors::AcceptErrors;

const USAGE: &str = "usage: tls_echo ADDR CERT_PEM KEY_PEM";

/// What `main` does, given the command line's arguments (after the
/// program's name).
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    let mut args = cli::Args::new(args, USAGE);
    let words = args.words()?;
    let [addr, cert_file, key_file] = &words[..] else {
        return Err(args.bad("expected an address, a certificate file and a key file"));
    };
    run(addr, cert_file, key_file)
}

fn main() -> ExitCode {
    logging::init();
    cli::main(USAGE, main_with)
}

fn run(addr: &str, cert_file: &str, key_file: &str) -> io::Result<()> {
    let chain = certificates_from_pem(&read(cert_file)?)?;
    let key = private_key_from_pem(&read(key_file)?)?;
    let config = server_config(chain, key, &[], Versions::Both)?;
    let listener = TcpListener::bind(addr).map_err(cli::cannot_listen(addr))?;
    cli::line(format_args!("listening on {}", listener.local_addr()?))?;
    serve(listener, config, None)
}

/// The file at `path`; an error names it.
fn read(path: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot read {path}: {err}")))
}

/// Echoes waiting to be sent above which a connection's receiving is
/// paused (at most; see [`Server::pause_above`]), and below which it
/// resumes.
const PAUSE_ABOVE: usize = 256 * 1024;
const RESUME_BELOW: usize = 64 * 1024;
/// Echoes waiting over all connections that the pause thresholds are
/// shared out of, once there are connections enough to need it; no
/// connection's threshold goes below `MIN_PAUSE_ABOVE`.
const ALL_PAUSE_ABOVE: usize = 64 << 20;
const MIN_PAUSE_ABOVE: usize = 16 * 1024;
/// A connection paused this long (its peer reads none of its echoes) is
/// cut.
const UNREAD_FOR: Duration = Duration::from_secs(10);
/// A connection with no progress this long (nothing received, no echo
/// sent) is cut: idle clients would otherwise hold the server's fds for
/// ever.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// How long a failed accept (out of fds, say) waits before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

struct Conn {
    tls: TlsStream<Server, Rc<TcpStream>>,
    /// Cuts the connection if it is still paused when it fires.
    unread_timer: Option<Task>,
    /// Cuts the connection if it has made no progress since `active`.
    idle_timer: Option<Task>,
    /// When it last received or sent.
    active: Instant,
}

pub struct Server {
    listener: Rc<TcpListener>,
    config: Arc<ServerConfig>,
    conns: ConnTable<Conn>,
    /// Connections still to accept (`None`: forever).
    to_accept: Option<usize>,
    accept_errors: AcceptErrors,
    idle_for: Duration,
}

/// Serves on `listener` with `config`; after `connections` connections
/// (if given) stops accepting and returns once they have all ended.
pub fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    connections: Option<usize>,
) -> io::Result<()> {
    serve_cutting_idle(listener, config, connections, IDLE_FOR)
}

/// [`serve`], cutting connections idle for `idle_for`.
pub fn serve_cutting_idle(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    connections: Option<usize>,
    idle_for: Duration,
) -> io::Result<()> {
    let mut ring = Ring::new(256)?;
    let mut server = Server {
        listener: Rc::new(listener),
        config,
        conns: ConnTable::with_capacity(64),
        to_accept: connections,
        accept_errors: AcceptErrors::default(),
        idle_for,
    };
    server.accept_next(&mut ring);
    ring.run(&mut server, RunMode::UntilDone)
}

impl Server {
    fn accept_next(&mut self, ring: &mut Ring<Server>) {
        if self.to_accept != Some(0) {
            ring.accept(self.listener.clone(), Ctx::new(on_accept));
        }
    }

    fn start(&mut self, ring: &mut Ring<Server>, fd: OwnedFd) {
        self.to_accept = self.to_accept.map(|n| n - 1);
        let socket = TcpStream::from(fd);
        // Echoes go out at once, not held back behind unacknowledged data
        // (a TLS 1.3 server's tickets) until the peer's delayed ACK.
        if let Err(err) = socket.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {err}");
        }
        let socket = Rc::new(socket);
        let config = self.config.clone();
        let key = self.conns.insert_with(|key| Conn {
            tls: TlsStream::server(socket, config, Ctx::new(on_tls).key(key))
                .map(|tls| tls.with_handshake_timeout(Duration::from_secs(10)))
                .expect("a server session from a checked config"),
            unread_timer: None,
            idle_timer: None,
            active: ring.now(),
        });
        self.conns[key].tls.start(ring);
        self.watch_idle(ring, key, self.idle_for);
    }

    /// Looks at connection `key` again in `after`.
    fn watch_idle(&mut self, ring: &mut Ring<Server>, key: u64, after: Duration) {
        let ctx = Ctx::new(on_idle_check).key(key);
        self.conns[key].idle_timer = Some(ring.timer(after, ctx));
    }

    /// The echoes a connection may have waiting before it is paused: its
    /// share of `ALL_PAUSE_ABOVE`, between `MIN_PAUSE_ABOVE` and
    /// `PAUSE_ABOVE`.
    fn pause_above(&self) -> usize {
        (ALL_PAUSE_ABOVE / self.conns.len().max(1)).clamp(MIN_PAUSE_ABOVE, PAUSE_ABOVE)
    }

    /// Takes connection `key`'s events, then drops it once it has ended
    /// and has nothing in flight.
    fn handle_events(&mut self, ring: &mut Ring<Server>, key: u64) {
        let pause_above = self.pause_above();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        while let Some(event) = conn.tls.next_event() {
            if matches!(event, TlsEvent::Received(_) | TlsEvent::Written { .. }) {
                conn.active = ring.now();
            }
            match event {
                TlsEvent::Received(bytes) => {
                    // A failed write has been reported as Failed already.
                    let queued = conn.tls.write(ring, &bytes);
                    conn.tls.recycle(bytes);
                    if queued.is_ok_and(|queued| queued > pause_above) {
                        conn.pause(ring, key);
                    }
                }
                TlsEvent::Written { queued } if queued < RESUME_BELOW.min(pause_above / 4) => {
                    conn.resume(ring)
                }
                TlsEvent::Closed => conn.tls.shutdown(ring),
                // A client's failure is no failure of the server's.
                TlsEvent::Failed(err) => tracing::debug!("connection {key}: {err}"),
                TlsEvent::HandshakeDone(_) | TlsEvent::Written { .. } => {}
            }
        }
        if conn.tls.is_ended() && conn.tls.is_idle() {
            for timer in [conn.unread_timer.take(), conn.idle_timer.take()]
                .into_iter()
                .flatten()
            {
                ring.cancel(timer, Ctx::none());
            }
            self.conns.remove(key);
        }
    }
}

impl Conn {
    fn pause(&mut self, ring: &mut Ring<Server>, key: u64) {
        if self.tls.is_receiving_paused() {
            return;
        }
        self.tls.pause_receiving();
        let ctx = Ctx::new(on_unread_for_too_long).key(key);
        self.unread_timer = Some(ring.timer(UNREAD_FOR, ctx));
    }

    fn resume(&mut self, ring: &mut Ring<Server>) {
        if let Some(timer) = self.unread_timer.take() {
            ring.cancel(timer, Ctx::none());
        }
        self.tls.resume_receiving(ring);
    }
}

fn on_accept(server: &mut Server, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
    match c.outcome {
        Outcome::Accept(Ok((fd, _peer))) => {
            server.accept_errors.accepted(ring.now());
            server.start(ring, fd);
            server.accept_next(ring);
        }
        // One failed accept (the peer gone, no fd left) ends no other;
        // the next waits a little (at once would fail again, in a busy
        // loop), and the failures are logged sparingly.
        Outcome::Accept(Err(err)) => {
            server.accept_errors.failed(&err, ring.now());
            ring.timer(ACCEPT_PAUSE, Ctx::new(on_accept_pause));
        }
        other => return Err(io::Error::other(format!("not an accept: {other:?}"))),
    }
    Ok(())
}

fn on_accept_pause(server: &mut Server, ring: &mut Ring<Server>, _: Completion) -> io::Result<()> {
    server.accept_next(ring);
    Ok(())
}

fn on_tls(server: &mut Server, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
    let key = c.key();
    let Some(conn) = server.conns.get_mut(key) else {
        return Ok(()); // a connection already gone
    };
    conn.tls.on_completion(ring, c)?;
    server.handle_events(ring, key);
    Ok(())
}

/// Cuts a connection that made no progress for the server's `idle_for`;
/// else looks again when that much has passed since its last progress.
fn on_idle_check(server: &mut Server, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
    let key = c.key();
    let Some(conn) = server.conns.get_mut(key) else {
        return Ok(());
    };
    if !fired(&c, &mut conn.idle_timer) {
        return Ok(()); // cancelled: the connection ended
    }
    let idle = ring.now().saturating_duration_since(conn.active);
    if idle < server.idle_for {
        server.watch_idle(ring, key, server.idle_for - idle);
        return Ok(());
    }
    tracing::debug!("connection {key}: idle for {idle:?}, cut");
    cut(server, ring, key);
    Ok(())
}

/// Whether the connection's `timer` fired (rather than being cancelled);
/// it is the connection's no more.
fn fired(c: &Completion, timer: &mut Option<Task>) -> bool {
    matches!(c.outcome, Outcome::Timer(Ok(()))) && timer.take().is_some()
}

/// Shuts connection `key`'s socket down, so that its sends fail, and ends
/// its stream.
fn cut(server: &mut Server, ring: &mut Ring<Server>, key: u64) {
    let conn = &mut server.conns[key];
    let _ = conn.tls.fd().shutdown(Shutdown::Both);
    conn.tls.cancel(ring);
    server.handle_events(ring, key);
}

/// Cuts a connection still paused `UNREAD_FOR` after it paused: its sends
/// fail (the socket is shut down) and so does the stream.
fn on_unread_for_too_long(
    server: &mut Server,
    ring: &mut Ring<Server>,
    c: Completion,
) -> io::Result<()> {
    let key = c.key();
    let Some(conn) = server.conns.get_mut(key) else {
        return Ok(());
    };
    if !fired(&c, &mut conn.unread_timer) {
        return Ok(()); // cancelled: the connection resumed
    }
    tracing::debug!("connection {key}: echoes unread for {UNREAD_FOR:?}, cut");
    cut(server, ring, key);
    Ok(())
}
