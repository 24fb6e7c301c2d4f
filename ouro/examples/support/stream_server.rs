//! What the request/response server examples (`http_server`, `resp_server`)
//! share: accepting, receiving, sending, pausing and closing. A [`Protocol`]
//! only turns the bytes a connection sent into the bytes it gets back.
//!
//! One multishot accept serves every connection, each a ring fd (the ring
//! owns it: on io_uring it sits in the fixed file table, so operations skip
//! the fd lookup; on the readiness backend it stays registered). Each
//! connection has one
//! multishot receive whose buffers come from a group shared by all
//! connections: a buffer is taken only when bytes arrive, the requests in it
//! are answered straight from it, and it goes back to the group at once. A
//! request split over several arrivals is kept in the connection's `input`
//! until it is whole; answers collect in its `output` and go out in one send
//! at a time. Both are taken from a pool of spare vectors when needed and
//! given back when empty, so an idle connection holds no buffer at all —
//! only its ring fd and a few words of state.
//!
//! A peer that sends requests without reading the answers cannot make the
//! server buffer without end: past `MAX_OUTPUT` bytes of unsent answers the
//! connection's receive is cancelled, and re-armed once they are sent.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use ouro::{Buf, BufferGroup, Completion, Ctx, Outcome, Ring, RingBuilder, RingFd, RunMode, Task};
use slab::Slab;

#[path = "logging.rs"]
mod logging;

/// A request/response protocol.
pub trait Protocol {
    /// Input a connection may accumulate without completing a request;
    /// past it the connection gets [`too_large`](Protocol::too_large) and
    /// is closed.
    const MAX_INPUT: usize;

    /// Answers every complete request at the start of `input`, appending to
    /// `output`; returns how many bytes they took. Sets `closing` when the
    /// connection must close once the answers are sent (the client asked,
    /// or the input was malformed).
    fn respond(&mut self, input: &[u8], output: &mut Vec<u8>, closing: &mut bool) -> usize;

    /// The answer to input that grew past `MAX_INPUT` without a request.
    fn too_large(&self, output: &mut Vec<u8>);
}

ouro::messages! {
    enum Msg { Accepted, AcceptAgain, Received, Sent }
}

/// Receive buffers shared by the connections, and their size.
const BUFFERS: u16 = 512;
const BUFFER_SIZE: usize = 4096;
/// Unsent answers past which a connection's receive is paused.
const MAX_OUTPUT: usize = 256 * 1024;
/// How long to wait before accepting again after accept failed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// Spare vectors kept for reuse, and the largest capacity kept.
const SPARES: usize = 1024;
const SPARE_CAPACITY: usize = 64 * 1024;

/// A server example's `main`, given its command line's arguments: logs
/// warnings to stderr (see `logging.rs`), sets up the ring on the default
/// backend (io_uring where it works, else the readiness backend, or the one
/// `OURO_BACKEND` names) — so that a setup error comes before anything
/// claims to be listening — then listens on the address given as the first
/// argument (else `default`), prints `listening on ADDR (BACKEND)`, and
/// serves `protocol` until the process ends.
pub fn main_with<P: Protocol>(
    name: &str,
    default: SocketAddr,
    protocol: P,
    mut args: impl Iterator<Item = String>,
) -> io::Result<()> {
    logging::init();
    let addr: SocketAddr = match args.next() {
        Some(arg) => arg.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{arg}: {e} (usage: {name} ADDR)"),
            )
        })?,
        None => default,
    };
    let ring = server_ring(ouro::Ring::builder())?;
    let listener = ouro::net::tcp_listener(addr, 1024)?;
    println!(
        "listening on {} ({})",
        ouro::net::local_addr(&listener)?,
        ring.backend_description()
    );
    io::Write::flush(&mut io::stdout())?;
    serve_on(ring, listener, protocol)
}

/// Serves `protocol` on `listener` until the process ends, on a ring of
/// `ring` (which chooses the backend).
pub fn serve<P: Protocol>(listener: OwnedFd, ring: RingBuilder, protocol: P) -> io::Result<()> {
    serve_on(server_ring(ring)?, listener, protocol)
}

fn server_ring<P: Protocol>(builder: RingBuilder) -> io::Result<Ring<Server<P>>> {
    builder.entries(256).build()
}

fn serve_on<P: Protocol>(
    mut ring: Ring<Server<P>>,
    listener: OwnedFd,
    protocol: P,
) -> io::Result<()> {
    let group = ring.buffer_group(BUFFERS, BUFFER_SIZE)?;
    let mut server = Server {
        protocol,
        listener: Rc::new(listener),
        group,
        conns: Slab::new(),
        spares: Vec::new(),
    };
    server.accept(&mut ring);
    ring.run(&mut server, RunMode::Forever)
}

struct Server<P> {
    protocol: P,
    /// Shared with the accept task, which keeps it open while it runs.
    listener: Rc<OwnedFd>,
    group: BufferGroup,
    conns: Slab<Conn>,
    /// Empty vectors with capacity, for connections' input and output.
    spares: Vec<Vec<u8>>,
}

struct Conn {
    fd: RingFd,
    /// The start of a request not yet whole (no capacity when empty).
    input: Vec<u8>,
    /// Answers not yet handed to a send (no capacity when empty).
    output: Vec<u8>,
    /// A send is in flight (its vector is in the operation).
    sending: bool,
    /// The multishot receive, until its final completion.
    receive: Option<Task>,
    /// Its cancellation was asked for.
    receive_cancelled: bool,
    /// Receiving waits until the unsent answers are sent.
    paused: bool,
    /// Close once the answers are sent; read no more.
    closing: bool,
}

fn ctx<P: Protocol>(msg: Msg, key: usize) -> Ctx<Server<P>> {
    Ctx::new(Server::on_completion).msg(msg).key(key as u64)
}

impl<P: Protocol> Server<P> {
    fn on_completion(&mut self, ring: &mut Ring<Self>, c: Completion) -> io::Result<()> {
        let key = c.key() as usize;
        let last = c.is_final();
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::Accepted, Outcome::AcceptDirect(result)) => self.accepted(ring, result, last),
            (Msg::AcceptAgain, Outcome::Timer(_)) => self.accept(ring),
            (Msg::Received, Outcome::RecvMulti(result)) => self.received(ring, key, result, last),
            (Msg::Sent, Outcome::Send(result, buf)) => self.sent(ring, key, result, buf),
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
                let key = self.conns.insert(Conn {
                    fd,
                    input: Vec::new(),
                    output: Vec::new(),
                    sending: false,
                    receive: None,
                    receive_cancelled: false,
                    paused: false,
                    closing: false,
                });
                self.arm(ring, key);
                if last {
                    // A kernel without multishot accept.
                    self.accept(ring);
                }
            }
            Err(e) => {
                // Out of fds, say: keep serving the others and accept again
                // a little later (at once would fail again, in a busy loop).
                eprintln!("accept failed: {e}");
                if last {
                    ring.timer(ACCEPT_PAUSE, ctx(Msg::AcceptAgain, 0));
                }
            }
        }
    }

    /// Arms the connection's receive, unless it has one or must not.
    fn arm(&mut self, ring: &mut Ring<Self>, key: usize) {
        let conn = &mut self.conns[key];
        if conn.receive.is_none() && !conn.paused && !conn.closing {
            conn.receive_cancelled = false;
            conn.receive = Some(ring.recv_multishot(conn.fd, &self.group, ctx(Msg::Received, key)));
        }
    }

    fn received(&mut self, ring: &mut Ring<Self>, key: usize, result: io::Result<Buf>, last: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if last {
            conn.receive = None;
        }
        match result {
            Ok(buf) if buf.is_empty() => conn.closing = true,
            Ok(buf) => self.answer(key, &buf),
            // Every buffer was taken at once; they are back by now.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            // Paused or closing; or resumed since, and re-armed below.
            Err(e) if ouro::is_canceled(&e) => {}
            // Reset by the peer, say: nobody is left to answer.
            Err(_) => {
                conn.closing = true;
                conn.output.clear();
            }
        }
        if last {
            self.arm(ring, key);
        }
        self.settle(ring, key);
    }

    /// Answers what `data` completes.
    fn answer(&mut self, key: usize, data: &[u8]) {
        let conn = &mut self.conns[key];
        if conn.closing {
            return;
        }
        if conn.output.capacity() == 0 {
            conn.output = self.spares.pop().unwrap_or_default();
        }
        if conn.input.is_empty() {
            // The usual case: whole requests, answered from the buffer.
            let used = self
                .protocol
                .respond(data, &mut conn.output, &mut conn.closing);
            if used < data.len() && !conn.closing {
                conn.input = self.spares.pop().unwrap_or_default();
                conn.input.extend_from_slice(&data[used..]);
            }
        } else {
            conn.input.extend_from_slice(data);
            let used = self
                .protocol
                .respond(&conn.input, &mut conn.output, &mut conn.closing);
            conn.input.drain(..used);
        }
        if conn.input.len() > P::MAX_INPUT && !conn.closing {
            self.protocol.too_large(&mut conn.output);
            conn.closing = true;
        }
        if conn.input.is_empty() || conn.closing {
            recycle(&mut self.spares, std::mem::take(&mut conn.input));
        }
    }

    fn sent(&mut self, ring: &mut Ring<Self>, key: usize, result: io::Result<usize>, mut buf: Buf) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.sending = false;
        match result {
            Ok(n) => {
                buf.consume(n);
                if !buf.is_empty() {
                    conn.sending = true;
                    ring.send(conn.fd, buf, ctx(Msg::Sent, key));
                    return;
                }
                if let Ok(vec) = buf.downcast::<Vec<u8>>() {
                    recycle(&mut self.spares, vec);
                }
            }
            Err(_) => {
                conn.closing = true;
                conn.output.clear();
            }
        }
        let conn = &mut self.conns[key];
        if conn.paused && conn.output.len() < MAX_OUTPUT / 2 {
            conn.paused = false;
            self.arm(ring, key);
        }
        self.settle(ring, key);
    }

    /// Sends what is waiting; pauses or stops receiving; closes the
    /// connection once nothing of it is in flight.
    fn settle(&mut self, ring: &mut Ring<Self>, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.sending && !conn.output.is_empty() {
            conn.sending = true;
            let output = std::mem::take(&mut conn.output);
            ring.send(conn.fd, output, ctx(Msg::Sent, key));
        }
        if conn.output.len() > MAX_OUTPUT {
            conn.paused = true;
        }
        if conn.output.is_empty() {
            recycle(&mut self.spares, std::mem::take(&mut conn.output));
        }
        if conn.paused || conn.closing {
            // Stop receiving; the final completion comes back here.
            if let (Some(task), false) = (conn.receive, conn.receive_cancelled) {
                conn.receive_cancelled = true;
                ring.cancel(task, Ctx::none());
            }
        }
        if conn.closing && !conn.sending && conn.receive.is_none() {
            let conn = self.conns.remove(key);
            recycle(&mut self.spares, conn.input);
            ring.close(conn.fd, Ctx::none());
        }
    }
}

/// Keeps an emptied vector for reuse, unless enough are kept or it is big.
fn recycle(spares: &mut Vec<Vec<u8>>, mut vec: Vec<u8>) {
    if vec.capacity() > 0 && vec.capacity() <= SPARE_CAPACITY && spares.len() < SPARES {
        vec.clear();
        spares.push(vec);
    }
}
