//! One ring accepts, worker threads serve: the main ring accepts TCP
//! connections on loopback as ring fds and moves each to one of N worker
//! threads, round-robin ([`Ring::send_fd`]: on io_uring the connection goes
//! from the main ring's fixed file table straight into the worker's, and
//! never has a process fd); each worker echoes on its own ring and tells
//! the main ring, by message, when a connection has closed. When the
//! demo's clients are done, the main ring stops the workers, which close
//! the connections still open, and hears when each has stopped.
//!
//! ```text
//! cargo run --release --example accept_and_dispatch
//! cargo run --release --example accept_and_dispatch -- --workers 4 --clients 64 --rounds 100 --size 4096
//! ```
//!
//! The server is `support/dispatch.rs`, which the simulator's `dispatch`
//! scenario runs unchanged on simulated rings (see `docs/simulator.md`).
//!
//! The clients are plain blocking sockets on their own threads; each sends
//! a pattern unique to it and the round, and checks every byte that comes
//! back.
//!
//! The port is a loopback one, which any local process can connect to:
//! the server serves whoever comes, and ends when the demo's own clients
//! are done (not after as many accepts as it has clients, which other
//! connections could use up), closing every connection still open, ours or
//! not. A connection that sends without reading stalls only itself (a
//! worker reads it again only once its echo is out). The server's counts
//! then include the other connections: they must be at least the
//! clients', and equal when no one else came.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

#[path = "support/cli.rs"]
pub mod cli;
#[path = "support/dispatch.rs"]
mod dispatch;
#[path = "support/fd_limit.rs"]
mod fd_limit;
#[path = "support/logging.rs"]
mod logging;

use dispatch::{Dispatcher, Stats};
use ouro::{Ring, RingBuilder, RingHandle, RunMode};

/// The server, on a thread of its own until [`end`](Server::end)ed.
pub struct Server {
    thread: JoinHandle<io::Result<Stats>>,
    ring: RingHandle<Dispatcher>,
}

impl Server {
    /// Starts the server on a ring `builder` makes (its worker rings take
    /// its fixed file table size), on a thread of its own: it accepts
    /// whoever connects to `listener` and serves them on `workers` worker
    /// threads. Returns once it accepts, or with the error that kept it
    /// from starting.
    pub fn start(
        builder: RingBuilder,
        listener: TcpListener,
        workers: usize,
    ) -> io::Result<Server> {
        let (ready, started) = mpsc::sync_channel(1);
        let thread = std::thread::spawn(move || {
            let (mut ring, mut state) = match set_up(builder, listener, workers) {
                Ok((ring, state, handle)) => {
                    let _ = ready.send(Ok(handle));
                    (ring, state)
                }
                Err(err) => {
                    let _ = ready.send(Err(err));
                    return Err(io::Error::other("the server did not start"));
                }
            };
            ring.run(&mut state, RunMode::Forever)?;
            state.finish()
        });
        match started.recv() {
            Ok(Ok(ring)) => Ok(Server { thread, ring }),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(io::Error::other("the server panicked")),
        }
    }

    /// Ends the server: it accepts no more, closes every connection still
    /// open (whoever made it), stops its workers, and says what it did.
    pub fn end(self) -> io::Result<Stats> {
        Dispatcher::end(&self.ring);
        self.thread
            .join()
            .map_err(|_| io::Error::other("the server panicked"))?
    }
}

/// The server's ring, its state, and the handle that ends it.
fn set_up(
    builder: RingBuilder,
    listener: TcpListener,
    workers: usize,
) -> io::Result<(Ring<Dispatcher>, Dispatcher, RingHandle<Dispatcher>)> {
    let mut ring: Ring<Dispatcher> = builder.build()?;
    let handle = ring.handle()?;
    let state = Dispatcher::start_until_ended(&mut ring, listener.into(), workers)?;
    Ok((ring, state, handle))
}

/// Runs `clients` blocking clients against `addr` at once, each sending
/// `rounds` messages of `size` bytes (a pattern unique to the client and the
/// round) and checking every byte of each echo. Returns the bytes checked.
pub fn run_clients(
    addr: SocketAddr,
    clients: usize,
    rounds: usize,
    size: usize,
) -> io::Result<u64> {
    let threads: Vec<_> = (0..clients)
        .map(|client| std::thread::spawn(move || client_session(addr, client, rounds, size)))
        .collect();
    let mut checked = 0;
    for thread in threads {
        checked += thread
            .join()
            .map_err(|_| io::Error::other("a client panicked"))??;
    }
    Ok(checked)
}

fn client_session(addr: SocketAddr, client: usize, rounds: usize, size: usize) -> io::Result<u64> {
    let mut stream = TcpStream::connect(addr)?;
    let mut sent = vec![0u8; size];
    let mut echoed = vec![0u8; size];
    for round in 0..rounds {
        for (i, byte) in sent.iter_mut().enumerate() {
            *byte = (client.wrapping_mul(131) ^ round.wrapping_mul(31) ^ i) as u8;
        }
        stream.write_all(&sent)?;
        stream.read_exact(&mut echoed)?;
        if echoed != sent {
            let at = sent.iter().zip(&echoed).position(|(a, b)| a != b);
            return Err(io::Error::other(format!(
                "client {client}, round {round}: echo differs at byte {at:?}"
            )));
        }
    }
    Ok((rounds * size) as u64)
}

const USAGE: &str =
    "usage: accept_and_dispatch [--workers N] [--clients N] [--rounds N] [--size BYTES]";

/// What the demo is asked to do.
struct Options {
    workers: usize,
    clients: usize,
    rounds: usize,
    size: usize,
}

/// The most worker threads.
const MAX_WORKERS: usize = 256;

/// The most clients: each is a thread of its own.
const MAX_CLIENTS: usize = 1000;

/// The most round trips per client.
const MAX_ROUNDS: usize = 1_000_000_000;

/// The largest message.
const MAX_SIZE: usize = 1 << 20;

/// The most bytes the clients may hold at once, all told (each holds a
/// message and room for its echo).
const MAX_IN_FLIGHT: usize = 1 << 30;

fn parse_args(args: impl Iterator<Item = String>) -> io::Result<Options> {
    let mut options = Options {
        workers: 4,
        clients: 64,
        rounds: 100,
        size: 4096,
    };
    let mut args = cli::Args::new(args, USAGE);
    while let Some(flag) = args.next_arg()? {
        match flag.as_str() {
            "--workers" => options.workers = args.number(&flag, 1..=MAX_WORKERS)?,
            "--clients" => options.clients = args.number(&flag, 1..=MAX_CLIENTS)?,
            "--rounds" => options.rounds = args.number(&flag, 1..=MAX_ROUNDS)?,
            "--size" => options.size = args.number(&flag, 1..=MAX_SIZE)?,
            _ => return Err(args.unexpected(&flag)),
        }
    }
    fd_limit::check_clients(options.clients, 1 + options.workers).map_err(|why| args.bad(why))?;
    if options
        .clients
        .saturating_mul(options.size)
        .saturating_mul(2)
        > MAX_IN_FLIGHT
    {
        return Err(args.bad(format!(
            "--clients {} with --size {}: more than the {MAX_IN_FLIGHT} bytes the demo holds in flight",
            options.clients, options.size
        )));
    }
    Ok(options)
}

/// What `main` does, given the command line's arguments (after the
/// program's name).
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    logging::init();
    let Options {
        workers,
        clients,
        rounds,
        size,
    } = parse_args(args)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let server = Server::start(Ring::builder().entries(256), listener, workers)?;
    let checked = run_clients(addr, clients, rounds, size);
    // Ended whether or not the clients did well; their failure comes first.
    let stats = server.end();
    let (checked, stats) = (checked?, stats?);
    let elapsed = started.elapsed();
    cli::line(format_args!(
        "{clients} clients x {rounds} rounds x {size} B echoed through {workers} workers in {elapsed:.2?}"
    ))?;
    cli::line(format_args!(
        "connections per worker: {:?}; {} bytes echoed, {checked} bytes checked ({:.1} MB/s)",
        stats.per_worker,
        stats.bytes_echoed,
        checked as f64 / elapsed.as_secs_f64() / 1e6
    ))?;
    // Other local processes may have connected too, and been served.
    let others = stats.connections > clients;
    if stats.connections < clients
        || stats.bytes_echoed < checked
        || (!others && stats.bytes_echoed != checked)
    {
        return Err(io::Error::other(
            "the server's count differs from the clients'",
        ));
    }
    Ok(())
}

#[allow(dead_code)] // the tests include this file for `Server` and `run_clients`
fn main() -> std::process::ExitCode {
    cli::main(USAGE, main_with)
}
