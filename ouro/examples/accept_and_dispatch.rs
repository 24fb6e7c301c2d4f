//! One ring accepts, worker threads serve: the main ring accepts TCP
//! connections on loopback as ring fds and moves each to one of N worker
//! threads, round-robin ([`Ring::send_fd`]: on io_uring the connection goes
//! from the main ring's fixed file table straight into the worker's, and
//! never has a process fd); each worker echoes on its own ring and tells
//! the main ring, by message, when a connection has closed. When the
//! expected connections have come and gone, the main ring stops the workers
//! and hears when each has stopped.
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

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
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
use ouro::{Ring, RingBuilder, RunMode};

/// Accepts `connections` connections on `listener`, serves them on
/// `workers` threads, and returns once all have closed and every worker has
/// stopped.
pub fn serve(listener: TcpListener, workers: usize, connections: usize) -> io::Result<Stats> {
    serve_on(Ring::builder().entries(256), listener, workers, connections)
}

/// [`serve`] on a ring `builder` makes (its worker rings take its fixed
/// file table size).
pub fn serve_on(
    builder: RingBuilder,
    listener: TcpListener,
    workers: usize,
    connections: usize,
) -> io::Result<Stats> {
    let mut ring: Ring<Dispatcher> = builder.build()?;
    let mut state = Dispatcher::start(&mut ring, listener.into(), workers, connections)?;
    ring.run(&mut state, RunMode::Forever)?;
    state.finish()
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
    let server = std::thread::spawn(move || serve(listener, workers, clients));
    let checked = run_clients(addr, clients, rounds, size)?;
    let stats = server
        .join()
        .map_err(|_| io::Error::other("the server panicked"))??;
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
    if stats.bytes_echoed != checked || stats.connections != clients {
        return Err(io::Error::other(
            "the server's count differs from the clients'",
        ));
    }
    Ok(())
}

#[allow(dead_code)] // the tests include this file for `serve` and `run_clients`
fn main() -> std::process::ExitCode {
    cli::main(USAGE, main_with)
}
