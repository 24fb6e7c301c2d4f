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
//! until it is whole, with the protocol's [`Progress`](Protocol::Progress)
//! on it, so that each arrival is parsed once, not the request again from
//! its start (which would make a request sent in tiny pieces cost the square
//! of its size); answers collect in its `output` and go out in one send
//! at a time. Both are taken from a pool of spare vectors when needed and
//! given back when empty, so an idle connection holds no buffer at all —
//! only its ring fd and a few words of state.
//!
//! What the server holds is bounded by its [`Limits`]. Requests are answered
//! one at a time while the connection's unsent answers are under its
//! budget; past it the connection answers no more, keeps the requests it
//! has not answered in its `input`, and its receive is cancelled. Once the
//! peer has read enough, the held requests are answered (in order) before
//! the receive is re-armed. So a peer that sends without reading holds at
//! most the budget plus one answer. Answers held across connections have a
//! cap: past it every budget shrinks, and past twice it the connections
//! whose answers have gone unread longest are cut; a peer that leaves its
//! answers unread for the send timeout is cut anyway. Input held across
//! connections has a cap too: past it, the connection holding the most gets
//! the protocol's error and is closed. The pool of spare vectors is bounded in bytes, so a burst
//! leaves little behind.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ouro::{
    Buf, BufferGroup, Completion, ConnTable, Ctx, Outcome, Ring, RingBuilder, RingFd, RunMode, Task,
};

#[path = "accept_errors.rs"]
mod accept_errors;
#[path = "cli.rs"]
pub mod cli;
#[path = "logging.rs"]
mod logging;
#[path = "shutdown.rs"]
mod shutdown;

#[path = "stream_limits.rs"]
mod stream_limits;

use accept_errors::AcceptErrors;
use stream_limits::{release_free_memory, Spares};
// Part of the servers' interface; not every includer uses all of it.
#[allow(unused_imports)]
pub use stream_limits::{Held, Limits, OUTPUT_FLOOR};

/// A request/response protocol.
pub trait Protocol {
    /// How far the protocol has read the unfinished request at the start
    /// of a connection's input (the default: not at all). The server keeps
    /// one per connection and hands it back with the input, grown by what
    /// arrived since.
    type Progress: Default;

    /// Input a connection may accumulate without completing a request;
    /// past it the connection gets [`too_large`](Protocol::too_large) and
    /// is closed.
    const MAX_INPUT: usize;

    /// Answers the complete requests at the start of `input` in order, one
    /// at a time while `output` is shorter than `budget`, appending to
    /// `output`; returns how many bytes the answered requests took. Sets
    /// `closing` when the connection must close once the answers are sent
    /// (the client asked, or the input was malformed).
    ///
    /// `progress` is what this returned with last time, for the same input
    /// less the bytes it returned and plus what arrived since; it is left
    /// describing the request that starts where the answered ones end.
    fn respond(
        &mut self,
        input: &[u8],
        progress: &mut Self::Progress,
        output: &mut Vec<u8>,
        budget: usize,
        closing: &mut bool,
    ) -> usize;

    /// The answer to input that grew past `MAX_INPUT` without a request,
    /// or that made the server hold more input than its limit allows.
    fn too_large(&self, output: &mut Vec<u8>);

    /// Bytes of input the protocol has parsed over, on every connection
    /// so far: the measure of its work that the tests bound.
    fn examined(&self) -> u64;
}

ouro::messages! {
    enum Msg { Accepted, AcceptAgain, Received, Sent, Sweep }
}

/// Receive buffers shared by the connections, and their size. A buffer
/// comes back only once its completion is handled, so connections that
/// send without pause can hold them all at once, and a request arriving
/// then gets `ENOBUFS` until their turn is over: with 512, 64 such peers
/// (`ouro-bench hostile`'s non-reader) made another client's round trips
/// on io_uring 70–130 ms; with 2048 (8 MiB), 17–47 ms.
const BUFFERS: u16 = 2048;
const BUFFER_SIZE: usize = 4096;
/// How long to wait before accepting again after accept failed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// How often connections are checked for requests that take too long.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Bytes held (input, output and spares) from which a fall to a quarter
/// gives the allocator's free memory back to the system.
const TRIM_FROM: usize = 16 << 20;
/// A server example's `main`, given its command line's arguments: logs
/// warnings to stderr (see `logging.rs`), sets up the ring on the default
/// backend (io_uring where it works, else the readiness backend, or the one
/// `OURO_BACKEND` names) — so that a setup error comes before anything
/// claims to be listening — then listens on the address given as the only
/// argument (else `default`), prints `listening on ADDR (BACKEND)`, and
/// serves `protocol` until SIGINT or SIGTERM (see `shutdown.rs`). `usage`
/// is what `--help` and a bad command line show (see `cli.rs`).
pub fn main_with<P: Protocol>(
    usage: &str,
    default: SocketAddr,
    protocol: P,
    args: impl Iterator<Item = String>,
) -> io::Result<()> {
    logging::init();
    let addr = parse_address(cli::Args::new(args, usage))?.unwrap_or(default);
    let mut ring = server_ring(ouro::Ring::builder())?;
    let _signals = shutdown::stop_on_signals(&mut ring)?;
    let listener = ouro::net::tcp_listener(addr, 1024).map_err(cli::cannot_listen(addr))?;
    cli::line(format_args!(
        "listening on {} ({})",
        ouro::net::local_addr(&listener)?,
        ring.backend_description()
    ))?;
    serve_on(ring, listener, protocol, Limits::default())
}

/// The address on the command line, if it has one.
fn parse_address(
    mut args: cli::Args<impl Iterator<Item = String>>,
) -> io::Result<Option<SocketAddr>> {
    let Some(arg) = args.next_arg()? else {
        return Ok(None);
    };
    if arg.starts_with('-') {
        return Err(args.unexpected(&arg));
    }
    let addr = args.parse(&arg)?;
    match args.next_arg()? {
        Some(extra) => Err(args.unexpected(&extra)),
        None => Ok(Some(addr)),
    }
}

/// Serves `protocol` on `listener` until the process ends, on a ring of
/// `ring` (which chooses the backend), holding no more than `limits`.
pub fn serve<P: Protocol>(
    listener: OwnedFd,
    ring: RingBuilder,
    protocol: P,
    limits: Limits,
) -> io::Result<()> {
    serve_on(server_ring(ring)?, listener, protocol, limits)
}

fn server_ring<P: Protocol>(builder: RingBuilder) -> io::Result<Ring<Server<P>>> {
    builder.entries(256).build()
}

fn serve_on<P: Protocol>(
    mut ring: Ring<Server<P>>,
    listener: OwnedFd,
    protocol: P,
    limits: Limits,
) -> io::Result<()> {
    let mut server = start(&mut ring, listener, protocol, limits)?;
    ring.run(&mut server, RunMode::Forever)
}

/// Starts serving `protocol` on `listener` with `ring`, which the caller
/// then runs with the server it returns (forever, as [`serve`] does, or
/// step by step, as the simulator's world does); dropping both closes the
/// listener and every connection.
pub fn start<P: Protocol>(
    ring: &mut Ring<Server<P>>,
    listener: OwnedFd,
    protocol: P,
    limits: Limits,
) -> io::Result<Server<P>> {
    let group = ring.buffer_group(BUFFERS, BUFFER_SIZE)?;
    let mut server = Server {
        protocol,
        listener: Rc::new(listener),
        group,
        conns: ConnTable::new(),
        spares: Spares::new(limits.spares),
        limits,
        input: 0,
        output: 0,
        most_unsent: 0,
        high_water: 0,
        now: ring.now(),
        accept_errors: AcceptErrors::default(),
    };
    server.accept(ring);
    ring.timer(SWEEP_EVERY, ctx(Msg::Sweep, 0));
    Ok(server)
}

/// A server's state: its listener, buffer group and connections.
pub struct Server<P: Protocol> {
    protocol: P,
    /// Shared with the accept task, which keeps it open while it runs.
    listener: Rc<OwnedFd>,
    group: BufferGroup,
    /// Keyed by the `Ctx` key of the connection's tasks: a late
    /// completion of a closed connection finds nothing.
    conns: ConnTable<Conn<P::Progress>>,
    spares: Spares,
    limits: Limits,
    /// Input and output held across connections (their `counted` sums).
    input: usize,
    output: usize,
    /// The most unsent answers one connection has had (for `Held`).
    most_unsent: usize,
    /// The most bytes held since memory was last given back.
    high_water: usize,
    /// The ring's time at the completion being handled.
    now: Instant,
    accept_errors: AcceptErrors,
}

struct Conn<Progress> {
    fd: RingFd,
    /// Requests not yet answered: the start of one not yet whole, or whole
    /// ones held while the answers wait (no capacity when empty).
    input: Vec<u8>,
    /// How far the protocol has read the request at the start of `input`.
    progress: Progress,
    /// Answers not yet handed to a send (no capacity when empty).
    output: Vec<u8>,
    /// The send in flight (its vector is in the operation).
    sending: Option<InFlight>,
    /// The multishot receive, until its final completion.
    receive: Option<Task>,
    /// Its cancellation was asked for.
    receive_cancelled: bool,
    /// Over its budget: answers and receives no more until the unsent
    /// answers drain.
    paused: bool,
    /// Close once the answers are sent; read no more.
    closing: bool,
    /// The peer sent all it will: answer the held requests, then close.
    ended: bool,
    /// When its unfinished request began arriving (`None`: none pending).
    request_began: Option<Instant>,
    /// Input and output held, as last added to the server's sums.
    counted: (usize, usize),
}

/// A send in flight: what it has still to send, its vector's capacity, its
/// task, and when the peer last took bytes of it (or it began).
#[derive(Clone, Copy)]
struct InFlight {
    unsent: usize,
    capacity: usize,
    task: Task,
    progressed: Instant,
    /// Cut: cancelled, its answers dropped.
    cut: bool,
}

impl<Progress> Conn<Progress> {
    /// Answers not yet sent.
    fn unsent(&self) -> usize {
        self.output.len() + self.sending.map_or(0, |s| s.unsent)
    }

    /// Bytes held in input and in output, by capacity.
    fn held(&self) -> (usize, usize) {
        let in_flight = self.sending.map_or(0, |s| s.capacity);
        (self.input.capacity(), self.output.capacity() + in_flight)
    }
}

fn ctx<P: Protocol>(msg: Msg, key: u64) -> Ctx<Server<P>> {
    Ctx::new(Server::on_completion).msg(msg).key(key)
}

impl<P: Protocol> Server<P> {
    fn on_completion(&mut self, ring: &mut Ring<Self>, c: Completion) -> io::Result<()> {
        let key = c.key();
        let last = c.is_final();
        self.now = ring.now();
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::Accepted, Outcome::AcceptDirect(result)) => self.accepted(ring, result, last),
            (Msg::AcceptAgain, Outcome::Timer(_)) => self.accept(ring),
            (Msg::Received, Outcome::RecvMulti(result)) => self.received(ring, key, result, last),
            (Msg::Sent, Outcome::Send(result, buf)) => self.sent(ring, key, result, buf),
            (Msg::Sweep, Outcome::Timer(_)) => self.close_late_requests(ring),
            (msg, outcome) => {
                return Err(io::Error::other(format!(
                    "unexpected {msg:?} with {outcome:?}"
                )))
            }
        }
        self.enforce_input_limit(ring);
        self.enforce_output_limit(ring);
        self.give_back_after_burst();
        self.publish();
        Ok(())
    }

    fn accept(&mut self, ring: &mut Ring<Self>) {
        ring.accept_multishot_direct(&self.listener, ctx(Msg::Accepted, 0));
    }

    fn accepted(&mut self, ring: &mut Ring<Self>, result: io::Result<RingFd>, last: bool) {
        match result {
            Ok(fd) => {
                self.accept_errors.accepted(ring.now());
                let key = self.conns.insert(Conn {
                    fd,
                    input: Vec::new(),
                    progress: P::Progress::default(),
                    output: Vec::new(),
                    sending: None,
                    receive: None,
                    receive_cancelled: false,
                    paused: false,
                    closing: false,
                    ended: false,
                    request_began: None,
                    counted: (0, 0),
                });
                self.arm(ring, key);
                if last {
                    // The kernel ended it (a full completion queue, or a kernel
                    // without multishot accept).
                    self.accept(ring);
                }
            }
            Err(e) => {
                // Out of fds, say: keep serving the others and accept again
                // a little later (at once would fail again, in a busy loop).
                self.accept_errors.failed(&e, ring.now());
                if last {
                    ring.timer(ACCEPT_PAUSE, ctx(Msg::AcceptAgain, 0));
                }
            }
        }
    }

    /// Arms the connection's receive, unless it has one or must not.
    fn arm(&mut self, ring: &mut Ring<Self>, key: u64) {
        let conn = &mut self.conns[key];
        if conn.receive.is_none() && !conn.paused && !conn.closing && !conn.ended {
            conn.receive_cancelled = false;
            conn.receive = Some(ring.recv_multishot(conn.fd, &self.group, ctx(Msg::Received, key)));
        }
    }

    fn received(&mut self, ring: &mut Ring<Self>, key: u64, result: io::Result<Buf>, last: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if last {
            conn.receive = None;
        }
        match result {
            Ok(buf) if buf.is_empty() => {
                // Requests held for the budget are still answered.
                conn.ended = true;
                conn.closing = !conn.paused;
            }
            Ok(buf) => self.take_in(key, &buf),
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

    /// Answers what `data` completes, within the budget, and holds the
    /// rest.
    fn take_in(&mut self, key: u64, data: &[u8]) {
        let conn = &mut self.conns[key];
        if conn.closing {
            return;
        }
        if conn.input.is_empty() && !conn.paused {
            // The usual case: whole requests, answered from the buffer.
            let used = self.respond(key, data);
            self.hold(key, &data[used..]);
        } else {
            self.hold(key, data);
            self.answer_held(key);
        }
        self.check_input(key);
    }

    /// Keeps `data` after the held input, to be answered later.
    fn hold(&mut self, key: u64, data: &[u8]) {
        let conn = &mut self.conns[key];
        if data.is_empty() || conn.closing {
            return;
        }
        if conn.input.capacity() == 0 {
            conn.input = self.spares.take();
        }
        conn.input.extend_from_slice(data);
    }

    /// Answers the held requests, within the budget.
    fn answer_held(&mut self, key: u64) {
        let conn = &mut self.conns[key];
        if conn.paused || conn.closing || conn.input.is_empty() {
            return;
        }
        let input = std::mem::take(&mut conn.input);
        let used = self.respond(key, &input);
        let conn = &mut self.conns[key];
        conn.input = input;
        conn.input.drain(..used);
    }

    /// Lets the protocol answer requests from `input` while the connection
    /// is under its budget; pauses the connection once it is not. Returns
    /// the bytes answered.
    fn respond(&mut self, key: u64, input: &[u8]) -> usize {
        let limit = self.output_limit();
        let conn = &mut self.conns[key];
        let in_flight = conn.sending.map_or(0, |s| s.unsent);
        let budget = limit.saturating_sub(in_flight);
        if conn.output.capacity() == 0 {
            conn.output = self.spares.take();
        }
        let used = self.protocol.respond(
            input,
            &mut conn.progress,
            &mut conn.output,
            budget,
            &mut conn.closing,
        );
        conn.paused = conn.output.len() >= budget && !conn.closing;
        self.most_unsent = self.most_unsent.max(conn.unsent());
        used
    }

    /// What a connection may have unsent before it answers no more: its
    /// own budget, or the floor while the server holds too much output.
    fn output_limit(&self) -> usize {
        let limit = if self.output >= self.limits.output_total {
            self.limits.output_per_conn.min(OUTPUT_FLOOR)
        } else {
            self.limits.output_per_conn
        };
        // A budget of nothing would pause a connection with nothing to send.
        limit.max(1)
    }

    /// Closes a connection whose unfinished request grew too large.
    fn check_input(&mut self, key: u64) {
        let conn = &mut self.conns[key];
        // While paused the input holds whole requests, which are fine.
        if !conn.paused && !conn.closing && conn.input.len() > P::MAX_INPUT {
            self.protocol.too_large(&mut conn.output);
            conn.closing = true;
        }
        if conn.input.is_empty() {
            self.spares.give(std::mem::take(&mut conn.input));
        }
        let unfinished = !conn.input.is_empty() && !conn.paused;
        match (unfinished, conn.request_began) {
            (true, None) => conn.request_began = Some(self.now),
            (false, Some(_)) => conn.request_began = None,
            _ => {}
        }
    }

    /// Closes the connections whose unfinished request began longer than
    /// `request_timeout` ago, or whose answers the peer has not read for
    /// `send_timeout`, then sweeps again later.
    fn close_late_requests(&mut self, ring: &mut Ring<Self>) {
        self.now = ring.now();
        let (request_timeout, send_timeout) =
            (self.limits.request_timeout, self.limits.send_timeout);
        let late: Vec<u64> = (self.conns.iter())
            .filter(|(_, conn)| {
                let request_late = conn
                    .request_began
                    .is_some_and(|t| self.now - t > request_timeout);
                let send_late = conn
                    .sending
                    .is_some_and(|s| !s.cut && self.now - s.progressed > send_timeout);
                request_late || send_late
            })
            .map(|(key, _)| key)
            .collect();
        for key in late {
            self.cut(ring, key);
        }
        self.enforce_output_limit(ring);
        ring.timer(SWEEP_EVERY, ctx(Msg::Sweep, 0));
    }

    /// Closes a connection now, dropping its answers: its send, which a
    /// peer that does not read would never let finish, is cancelled.
    fn cut(&mut self, ring: &mut Ring<Self>, key: u64) {
        let conn = &mut self.conns[key];
        conn.closing = true;
        conn.output.clear();
        if let Some(sending) = conn.sending.as_mut().filter(|s| !s.cut) {
            sending.cut = true;
            ring.cancel(sending.task, Ctx::none());
        }
        self.settle(ring, key);
    }

    fn sent(&mut self, ring: &mut Ring<Self>, key: u64, result: io::Result<usize>, mut buf: Buf) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match result {
            Ok(n) => {
                buf.consume(n);
                if let Some(sending) = conn.sending.as_mut().filter(|s| !buf.is_empty() && !s.cut) {
                    sending.unsent = buf.len();
                    sending.task = ring.send(conn.fd, buf, ctx(Msg::Sent, key));
                    if n > 0 {
                        sending.progressed = self.now;
                    }
                    return;
                }
                conn.sending = None;
                if let Ok(vec) = buf.downcast::<Vec<u8>>() {
                    self.spares.give(vec);
                }
            }
            Err(_) => {
                conn.sending = None;
                conn.closing = true;
                conn.output.clear();
            }
        }
        self.resume(ring, key);
        self.settle(ring, key);
    }

    /// Once half the unsent answers are sent, answers the held requests
    /// and, if they leave it under its budget, receives again.
    fn resume(&mut self, ring: &mut Ring<Self>, key: u64) {
        let limit = self.output_limit();
        let conn = &mut self.conns[key];
        if !conn.paused || conn.unsent() > limit / 2 {
            return;
        }
        conn.paused = false;
        self.answer_held(key);
        self.check_input(key);
        let conn = &mut self.conns[key];
        if conn.ended && !conn.paused {
            // What is left is at most the start of a request never to end.
            conn.closing = true;
        }
        self.arm(ring, key);
    }

    /// Sends what is waiting; pauses or stops receiving; closes the
    /// connection once nothing of it is in flight.
    fn settle(&mut self, ring: &mut Ring<Self>, key: u64) {
        let conn = &mut self.conns[key];
        if conn.sending.is_none() && !conn.output.is_empty() {
            let output = std::mem::take(&mut conn.output);
            let (unsent, capacity) = (output.len(), output.capacity());
            conn.sending = Some(InFlight {
                unsent,
                capacity,
                task: ring.send(conn.fd, output, ctx(Msg::Sent, key)),
                progressed: self.now,
                cut: false,
            });
        }
        if conn.output.is_empty() {
            self.spares.give(std::mem::take(&mut conn.output));
        }
        if conn.closing {
            // Nothing more is answered.
            self.spares.give(std::mem::take(&mut conn.input));
        }
        if conn.paused || conn.closing {
            // Stop receiving; the final completion comes back here.
            if let (Some(task), false) = (conn.receive, conn.receive_cancelled) {
                conn.receive_cancelled = true;
                ring.cancel(task, Ctx::none());
            }
        }
        if conn.closing && conn.sending.is_none() && conn.receive.is_none() {
            if let Some(conn) = self.conns.remove(key) {
                self.input -= conn.counted.0;
                self.output -= conn.counted.1;
                self.spares.give(conn.input);
                ring.close(conn.fd, Ctx::none());
            }
            return;
        }
        self.recount(key);
    }

    /// Brings the server's sums up to date with what a connection holds.
    fn recount(&mut self, key: u64) {
        let conn = &mut self.conns[key];
        let (input, output) = conn.held();
        self.input = self.input - conn.counted.0 + input;
        self.output = self.output - conn.counted.1 + output;
        conn.counted = (input, output);
    }

    /// Once what the server holds has fallen to a quarter of a large
    /// peak, gives the memory freed since back to the system (the
    /// allocator keeps it otherwise).
    fn give_back_after_burst(&mut self) {
        let held = self.input + self.output + self.spares.bytes();
        self.high_water = self.high_water.max(held);
        if self.high_water >= TRIM_FROM && held < self.high_water / 4 {
            self.high_water = held;
            release_free_memory();
        }
    }

    /// Publishes what the server holds, if asked to.
    fn publish(&self) {
        let Some(held) = &self.limits.held else {
            return;
        };
        held.input.store(self.input, Ordering::Relaxed);
        held.output.store(self.output, Ordering::Relaxed);
        held.spares.store(self.spares.bytes(), Ordering::Relaxed);
        held.most_input.fetch_max(self.input, Ordering::Relaxed);
        held.most_output.fetch_max(self.output, Ordering::Relaxed);
        held.most_unsent.store(self.most_unsent, Ordering::Relaxed);
        held.examined
            .store(self.protocol.examined(), Ordering::Relaxed);
    }
}
