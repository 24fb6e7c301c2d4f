//! ouro's demo: a TCP echo server and its clients, two components on one
//! ring, talking over loopback. Every byte is checked on its way back.
//!
//! ```text
//! cargo run --release --example echo                      # demo: prints what it did
//! cargo run --release --example echo -- --clients 8 --rounds 100 --size 4096
//! cargo run --release --example echo -- --serve 127.0.0.1:7000   # server only, until killed
//! OURO_BACKEND=poll cargo run --release --example echo -- --serve 127.0.0.1:7000
//! cargo run --release --example echo -- --backend poll   # force a backend
//! ```
//!
//! The ring runs on the backend `Ring::builder()` picks: io_uring where it
//! works, else the readiness backend (with a warning saying why on stderr,
//! e.g. under a seccomp profile that forbids io_uring), or the one
//! `OURO_BACKEND` names; `--backend uring|poll` overrides both. The demo
//! prints which it ran on.
//!
//! The server accepts with one multishot accept into ring fds (on io_uring,
//! straight into the ring's fixed file table: no fd lookup per operation;
//! on the readiness backend, registered once), receives with a multishot
//! receive per connection into buffers of a shared group (an idle
//! connection holds none), and sends each received buffer back as it is. A
//! connection whose peer does not read its echoes is paused, and what it
//! has queued is copied out of the group, rather than allowed to take every
//! buffer; connections that found no buffer are re-armed as soon as any
//! comes back. Each client sends a message, reads until
//! the whole echo is back, and repeats. Connections are identified by the
//! task key; what a task was for, by its message. `ouro-bench` runs this
//! server (`serve`) as its `ouro-uring` and `ouro-poll` echo contestants.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Instant;

use ouro::{
    BackendKind, Buf, BufferGroup, Completion, ConnTable, Ctx, Outcome, Ring, RingBuilder, RingFd,
    RunMode, Task,
};

#[path = "support/accept_errors.rs"]
pub mod accept_errors;
#[path = "support/cli.rs"]
pub mod cli;
#[path = "support/echo_clients.rs"]
mod echo_clients;
#[path = "support/fd_limit.rs"]
mod fd_limit;
#[path = "support/logging.rs"]
mod logging;
#[path = "support/shutdown.rs"]
mod shutdown;

use accept_errors::AcceptErrors;
use echo_clients::Clients;

ouro::messages! {
    enum Msg { Accepted, AcceptAgain, Received, Sent }
}

/// Accepts connections and echoes what each one sends.
///
/// One multishot accept serves every connection, each a ring fd (the ring
/// owns it: it cannot be closed under an operation); each connection has
/// one multishot receive whose buffers come from a shared group, so an idle
/// connection holds no buffer. A received buffer is sent back as it is
/// (no copy) and returns to the group when the send is done. Sends on a
/// connection go one at a time, in order.
///
/// No connection may take the group from the others. A connection is
/// paused (its receive cancelled) once it holds its share of the group
/// (`MAX_QUEUED` buffers, fewer as free buffers run out) or `MAX_QUEUED`
/// buffers' worth of bytes wait to be echoed; what a paused connection has
/// queued is copied out of the group into a vector of its own, so that a
/// peer that never reads holds at most the one buffer being sent to it. It
/// is resumed once its echoes drain. When every buffer is in use a receive
/// ends (`ENOBUFS`); such starved connections wait in a queue and are
/// re-armed, oldest first, whenever buffers come back — whatever gave them
/// back (a send done or failed, a connection closed, a queue copied out).
pub struct Server {
    /// Shared with the accept task, which keeps it open while it runs.
    listener: Rc<OwnedFd>,
    group: BufferGroup,
    /// Keyed by the `Ctx` key of the connection's tasks: a late
    /// completion (or a starved entry) of a closed connection finds nothing,
    /// also once another connection has its slot.
    conns: ConnTable<Conn>,
    /// Stop accepting after this many connections (`None`: never).
    accept_limit: Option<usize>,
    accepted: usize,
    accepting: Option<Task>,
    accept_errors: AcceptErrors,
    /// Connections whose receive ended for want of a buffer, oldest first.
    starved: VecDeque<u64>,
}

/// How long to wait before accepting again after accept failed.
const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Received buffers a connection may have waiting to be echoed (or hold
/// of the group) before its receive is paused.
const MAX_QUEUED: usize = 16;

/// A connection's share of the group is this fraction of the free buffers
/// (at least one, at most `MAX_QUEUED`), so that a reserve is left for the
/// connections that have none.
const SHARE_OF_FREE: usize = 4;

struct Conn {
    fd: RingFd,
    /// Received bytes waiting to be sent back, in order: group buffers, or
    /// (once paused) vectors they were copied into.
    queue: VecDeque<Buf>,
    /// Group buffers it holds: in `queue` or in the send in flight.
    held: usize,
    sending: bool,
    /// The connection's multishot receive, until its final completion.
    receive: Option<Task>,
    /// The receive was cancelled because too much waits to be sent.
    paused: bool,
    /// The peer closed its side: close once everything is sent.
    peer_done: bool,
    /// It waits in `Server::starved`.
    starved: bool,
}

impl Conn {
    /// Bytes waiting to be sent back (not counting the send in flight).
    fn queued_bytes(&self) -> usize {
        self.queue.iter().map(|buf| buf.len()).sum()
    }

    /// Copies the queued bytes from the first group buffer on into one
    /// vector, and gives those buffers back to the group.
    fn copy_out_of_group(&mut self) {
        let Some(first) = self.queue.iter().position(from_group) else {
            return;
        };
        let bytes = self.queue.range(first..).map(|buf| buf.len()).sum();
        let mut copied = Vec::with_capacity(bytes);
        for buf in self.queue.drain(first..) {
            if from_group(&buf) {
                self.held -= 1;
            }
            copied.extend_from_slice(&buf);
        }
        self.queue.push_back(Buf::new(copied));
    }
}

/// Whether a queued buffer is one of the group's (the others are vectors
/// the server copied them into).
fn from_group(buf: &Buf) -> bool {
    !buf.is::<Vec<u8>>()
}

impl Server {
    fn new(listener: OwnedFd, group: BufferGroup, accept_limit: Option<usize>) -> Server {
        // Echoes go out in buffer-sized pieces: don't let Nagle hold the
        // last piece back until the peer's delayed ACK. Accepted sockets
        // inherit the option (a connection accepted straight into
        // io_uring's fixed file table has no fd to set it on).
        match socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
            Ok(()) => {}
            // Not a socket of the OS (a simulated one): no Nagle to turn off.
            Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {}
            Err(e) => eprintln!("echo: TCP_NODELAY: {e}"),
        }
        Server {
            listener: Rc::new(listener),
            group,
            conns: ConnTable::new(),
            accept_limit,
            accepted: 0,
            accepting: None,
            accept_errors: AcceptErrors::default(),
            starved: VecDeque::new(),
        }
    }

    fn start<S: AsMut<Server>>(&mut self, ring: &mut Ring<S>) {
        let ctx = Server::ctx(Msg::Accepted, 0);
        self.accepting = Some(ring.accept_multishot_direct(&self.listener, ctx));
    }

    fn ctx<S: AsMut<Server>>(msg: Msg, key: u64) -> Ctx<S> {
        Ctx::new(Server::on_completion::<S>).msg(msg).key(key)
    }

    fn on_completion<S: AsMut<Server>>(
        state: &mut S,
        ring: &mut Ring<S>,
        c: Completion,
    ) -> io::Result<()> {
        let this = state.as_mut();
        let key = c.key();
        let last = c.is_final();
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::Accepted, Outcome::AcceptDirect(result)) => this.accepted(ring, result, last),
            (Msg::AcceptAgain, Outcome::Timer(_)) => this.start(ring),
            (Msg::Received, Outcome::RecvMulti(result)) => this.received(ring, key, result, last),
            (Msg::Sent, Outcome::Send(result, buf)) => this.sent(ring, key, result, buf),
            (msg, outcome) => return Err(unexpected("server", msg, outcome)),
        }
        this.wake_starved(ring);
        Ok(())
    }

    fn accepted<S: AsMut<Server>>(
        &mut self,
        ring: &mut Ring<S>,
        result: io::Result<RingFd>,
        last: bool,
    ) {
        if last {
            self.accepting = None;
        }
        match result {
            Ok(fd) => {
                self.accept_errors.accepted(ring.now());
                self.open(ring, fd)
            }
            Err(e) if ouro::is_canceled(&e) => return,
            Err(e) => {
                // Out of fds, say: accept again a little later, not at once
                // (which would fail again, in a busy loop).
                self.accept_errors.failed(&e, ring.now());
                if last {
                    ring.timer(ACCEPT_PAUSE, Server::ctx(Msg::AcceptAgain, 0));
                    return;
                }
            }
        }
        let limit_reached = self
            .accept_limit
            .is_some_and(|limit| self.accepted >= limit);
        match (limit_reached, self.accepting) {
            (true, Some(task)) => {
                ring.cancel(task, Ctx::none());
            }
            (false, None) => self.start(ring),
            _ => {}
        }
    }

    fn open<S: AsMut<Server>>(&mut self, ring: &mut Ring<S>, fd: RingFd) {
        self.accepted += 1;
        let key = self.conns.insert(Conn {
            fd,
            queue: VecDeque::new(),
            held: 0,
            sending: false,
            receive: None,
            paused: false,
            peer_done: false,
            starved: false,
        });
        self.receive(ring, key);
    }

    /// Arms the connection's receive, unless it has one or must not;
    /// returns whether it did.
    fn receive<S: AsMut<Server>>(&mut self, ring: &mut Ring<S>, key: u64) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.receive.is_some() || conn.paused || conn.peer_done {
            return false;
        }
        let ctx = Server::ctx(Msg::Received, key);
        conn.receive = Some(ring.recv_multishot(conn.fd, &self.group, ctx));
        true
    }

    /// How many group buffers a connection may hold before it is paused:
    /// a part of the free ones, so that some are left for the others.
    fn share(&self) -> usize {
        (self.group.available() / SHARE_OF_FREE).clamp(1, MAX_QUEUED)
    }

    /// Re-arms starved receives, oldest first, one per free buffer. Called
    /// after every completion: whatever gave buffers back, a connection
    /// waiting for one gets it (a receive armed with none free would only
    /// end with `ENOBUFS` again).
    fn wake_starved<S: AsMut<Server>>(&mut self, ring: &mut Ring<S>) {
        let mut free = self.group.available();
        while free > 0 {
            let Some(key) = self.starved.pop_front() else {
                return;
            };
            if let Some(conn) = self.conns.get_mut(key) {
                conn.starved = false;
            }
            if self.receive(ring, key) {
                free -= 1;
            }
        }
    }

    fn received<S: AsMut<Server>>(
        &mut self,
        ring: &mut Ring<S>,
        key: u64,
        result: io::Result<Buf>,
        last: bool,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if last {
            conn.receive = None;
        }
        let resumable = match result {
            Ok(buf) if buf.is_empty() => {
                conn.peer_done = true;
                false
            }
            Ok(buf) => {
                conn.held += 1;
                conn.queue.push_back(buf);
                true
            }
            // Every buffer was in use: re-armed by `wake_starved` when one
            // is free (which may be already).
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                if !conn.starved {
                    conn.starved = true;
                    self.starved.push_back(key);
                }
                false
            }
            // Paused (see `MAX_QUEUED`): re-armed once the queue drains.
            Err(e) if ouro::is_canceled(&e) => true,
            Err(_) => {
                conn.peer_done = true;
                false
            }
        };
        self.send_next(ring, key);
        self.pause_if_over(ring, key);
        if last && resumable {
            // The kernel ended it (a full completion queue, or a kernel
            // without multishot receive); or a paused receive may have
            // been resumed while its cancel was on the way.
            self.receive(ring, key);
        }
    }

    /// Pauses the connection's receive if it holds its share of the group
    /// or has too much waiting; a paused connection's queue is copied out
    /// of the group, as are buffers received after the pause (its cancel
    /// was on the way), so that a peer that does not read holds no more
    /// than the buffer being sent.
    fn pause_if_over<S: AsMut<Server>>(&mut self, ring: &mut Ring<S>, key: u64) {
        let share = self.share();
        let buffer_size = self.group.buffer_size();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let over = conn.held >= share || conn.queued_bytes() >= MAX_QUEUED * buffer_size;
        if over && !conn.paused {
            conn.paused = true;
            if let Some(task) = conn.receive {
                ring.cancel(task, Ctx::none());
            }
        }
        if conn.paused {
            conn.copy_out_of_group();
        }
    }

    fn sent<S: AsMut<Server>>(
        &mut self,
        ring: &mut Ring<S>,
        key: u64,
        result: io::Result<usize>,
        mut buf: Buf,
    ) {
        let share = self.share();
        let buffer_size = self.group.buffer_size();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.sending = false;
        let Ok(n) = result else {
            // The peer is gone: end the receive too, then close once its
            // final completion (which names this connection's key) is in.
            conn.queue.clear();
            conn.held = 0;
            conn.peer_done = true;
            if let Some(task) = conn.receive {
                ring.cancel(task, Ctx::none());
            }
            return self.send_next(ring, key);
        };
        buf.consume(n);
        if !buf.is_empty() {
            conn.queue.push_front(buf);
        } else if from_group(&buf) {
            // Dropped here: back in the group.
            conn.held -= 1;
        }
        let drained = conn.queued_bytes() <= MAX_QUEUED * buffer_size / 2;
        if conn.paused && drained && conn.held < share {
            conn.paused = false;
            self.receive(ring, key);
        }
        self.send_next(ring, key);
    }

    /// Sends the next queued buffer, or closes a finished connection.
    fn send_next<S: AsMut<Server>>(&mut self, ring: &mut Ring<S>, key: u64) {
        let conn = &mut self.conns[key];
        if conn.sending {
            return;
        }
        if let Some(buf) = conn.queue.pop_front() {
            conn.sending = true;
            ring.send(conn.fd, buf, Server::ctx(Msg::Sent, key));
        } else if conn.peer_done && conn.receive.is_none() {
            if let Some(conn) = self.conns.remove(key) {
                ring.close(conn.fd, Ctx::none());
            }
        }
    }
}

fn unexpected(who: &str, msg: Msg, outcome: Outcome) -> io::Error {
    io::Error::other(format!("{who}: unexpected {msg:?} with {outcome:?}"))
}

/// Both components on one ring.
struct Demo {
    server: Server,
    clients: Clients,
}

impl AsMut<Server> for Demo {
    fn as_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

impl AsMut<Clients> for Demo {
    fn as_mut(&mut self) -> &mut Clients {
        &mut self.clients
    }
}

impl AsMut<Server> for Server {
    fn as_mut(&mut self) -> &mut Server {
        self
    }
}

/// What to run: the demo, or with `serve` only the server.
pub struct Options {
    /// Serve on this address until killed, instead of the demo.
    pub serve: Option<SocketAddr>,
    /// Clients in the demo.
    pub clients: usize,
    /// Round trips per client.
    pub rounds: usize,
    /// Bytes per message.
    pub size: usize,
    /// The backend the ring runs on; `None`: the default choice (io_uring
    /// where it works, else the readiness backend, or `OURO_BACKEND`'s).
    pub backend: Option<BackendKind>,
    /// The server's receive buffers (a power of two), shared by all
    /// connections, of `GROUP_BUFFER_SIZE` bytes each.
    pub buffers: u16,
}

/// The ring's size, for the demo and the server alone.
const RING_ENTRIES: u32 = 256;

/// The size of each of the server's receive buffers.
pub const GROUP_BUFFER_SIZE: usize = 4096;

const USAGE: &str = "usage: echo [--serve ADDR] [--backend uring|poll] [--buffers N] [--clients N] [--rounds N] [--size BYTES]";

/// The most clients, whatever the fd limit (see `fd_limit.rs`).
const MAX_CLIENTS: usize = 1_000_000;

/// The most round trips a client may be asked for.
const MAX_ROUNDS: usize = 1_000_000_000;

/// The largest message.
const MAX_SIZE: usize = 1 << 20;

/// The most bytes the demo's clients may have in flight at once, all told
/// (each client's receive has room for a whole echo).
const MAX_IN_FLIGHT: usize = 1 << 30;

fn parse_args(args: impl Iterator<Item = String>) -> io::Result<Options> {
    let mut options = Options {
        serve: None,
        clients: 64,
        rounds: 1000,
        size: 64,
        backend: None,
        buffers: 1024,
    };
    let mut args = cli::Args::new(args, USAGE);
    while let Some(flag) = args.next_arg()? {
        match flag.as_str() {
            "--serve" => options.serve = Some(args.parsed(&flag)?),
            "--backend" => options.backend = Some(args.backend(&flag)?),
            "--buffers" => {
                let buffers = args.number(&flag, 1..=32768)?;
                options.buffers = u16::try_from(buffers)
                    .ok()
                    .filter(|n| n.is_power_of_two())
                    .ok_or_else(|| {
                        args.bad(format!("--buffers {buffers}: a power of two up to 32768"))
                    })?
            }
            "--clients" => options.clients = args.number(&flag, 1..=MAX_CLIENTS)?,
            "--rounds" => options.rounds = args.number(&flag, 1..=MAX_ROUNDS)?,
            "--size" => options.size = args.number(&flag, 1..=MAX_SIZE)?,
            _ => return Err(args.unexpected(&flag)),
        }
    }
    // A server alone runs no clients: its fds are for the connections.
    if options.serve.is_none() {
        fd_limit::check_clients(options.clients, 1).map_err(|why| args.bad(why))?;
    }
    if options.clients.saturating_mul(options.size) > MAX_IN_FLIGHT {
        return Err(args.bad(format!(
            "--clients {} with --size {}: more than the {MAX_IN_FLIGHT} bytes the demo holds in flight",
            options.clients, options.size
        )));
    }
    Ok(options)
}

/// A ring builder for `backend`, or the default choice.
fn ring_builder(backend: Option<BackendKind>) -> RingBuilder {
    match backend {
        Some(kind) => Ring::builder().backend(kind),
        None => Ring::builder(),
    }
}

/// What the demo did.
pub struct Report {
    /// The server's address.
    pub addr: SocketAddr,
    /// The ring's backend, described.
    pub backend: String,
    /// Clients that made all their round trips.
    pub clients_done: usize,
    /// Round trips made, over all clients.
    pub round_trips: usize,
    /// Bytes echoed back and checked against what was sent.
    pub bytes_verified: usize,
    /// Wall time of the run.
    pub seconds: f64,
}

/// The demo: a server and `options.clients` clients on one ring, over
/// loopback, until every client has made its round trips, or one failed
/// (the error then counts those that had failed by the end of that turn).
pub fn run(options: &Options) -> io::Result<Report> {
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 1024)?;
    let addr = ouro::net::local_addr(&listener)?;
    let mut ring = ring_builder(options.backend)
        .entries(RING_ENTRIES)
        .build()?;
    let group = ring.buffer_group(options.buffers, GROUP_BUFFER_SIZE)?;
    let mut demo = Demo {
        server: Server::new(listener, group, Some(options.clients)),
        clients: Clients::new(addr, options.size, options.rounds),
    };
    let started = Instant::now();
    demo.server.start(&mut ring);
    demo.clients.start(&mut ring, options.clients);
    ring.run(&mut demo, RunMode::UntilDone)?;
    if let Some(first) = demo.clients.first_failure.take() {
        let failed = demo.clients.failed;
        return Err(io::Error::new(
            first.kind(),
            format!(
                "{failed} of {} clients failed; the first: {first}",
                options.clients
            ),
        ));
    }
    Ok(Report {
        addr,
        backend: ring.backend_description(),
        clients_done: demo.clients.done,
        round_trips: demo.clients.round_trips,
        bytes_verified: demo.clients.verified,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Serves on `listener` until the process ends, on a ring of `ring` (which
/// chooses the backend), with `buffers` receive buffers (a power of two).
pub fn serve(listener: OwnedFd, ring: RingBuilder, buffers: u16) -> io::Result<()> {
    serve_on(ring.entries(RING_ENTRIES).build()?, listener, buffers)
}

fn serve_on(mut ring: Ring<Server>, listener: OwnedFd, buffers: u16) -> io::Result<()> {
    let mut server = start(&mut ring, listener, buffers)?;
    ring.run(&mut server, RunMode::Forever)
}

/// Starts serving on `listener` with `ring`, with `buffers` receive
/// buffers, and returns the server, for the caller to run with the ring:
/// what [`serve`] does, for a ring that is run step by step (the
/// simulator's `echo-example` scenario runs this server so).
pub fn start(ring: &mut Ring<Server>, listener: OwnedFd, buffers: u16) -> io::Result<Server> {
    let group = ring.buffer_group(buffers, GROUP_BUFFER_SIZE)?;
    let mut server = Server::new(listener, group, None);
    server.start(ring);
    Ok(server)
}

/// `--serve`: the server alone on `addr`, until SIGINT or SIGTERM. The ring
/// is built first, so that a setup error comes before "serving on".
fn serve_alone(addr: SocketAddr, options: &Options) -> io::Result<()> {
    let mut ring = ring_builder(options.backend)
        .entries(RING_ENTRIES)
        .build()?;
    let _signals = shutdown::stop_on_signals(&mut ring)?;
    let listener = ouro::net::tcp_listener(addr, 1024).map_err(cli::cannot_listen(addr))?;
    cli::line(format_args!(
        "echo: serving on {} ({})",
        ouro::net::local_addr(&listener)?,
        ring.backend_description()
    ))?;
    serve_on(ring, listener, options.buffers)
}

/// What `main` does, given the command line's arguments (after the
/// program's name): the demo, or with `--serve` the server alone. Warnings
/// (such as why io_uring is not used) go to stderr.
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    logging::init();
    let options = parse_args(args)?;
    if let Some(addr) = options.serve {
        return serve_alone(addr, &options);
    }
    let report = run(&options)?;
    cli::line(format_args!(
        "echo: {} clients x {} round trips of {} B over {} on {}",
        options.clients, options.rounds, options.size, report.addr, report.backend
    ))?;
    cli::line(format_args!(
        "echo: {} round trips, {} bytes echoed and verified, {}/{} clients done, in {:.3} s ({:.0} round trips/s)",
        report.round_trips,
        report.bytes_verified,
        report.clients_done,
        options.clients,
        report.seconds,
        report.round_trips as f64 / report.seconds
    ))?;
    if report.clients_done != options.clients {
        return Err(io::Error::other("not every client finished"));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    cli::main(USAGE, main_with)
}
