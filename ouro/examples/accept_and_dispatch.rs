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
//! The clients are plain blocking sockets on their own threads; each sends
//! a pattern unique to it and the round, and checks every byte that comes
//! back.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Instant;

#[path = "support/logging.rs"]
mod logging;

use ouro::{
    Completion, ConnTable, Ctx, Outcome, Payload, Ring, RingFd, RingHandle, RingThread, RunMode,
    Task,
};

ouro::messages! {
    enum Msg { Accepted, HandedOver, ConnectionClosed, WorkerStopped, NewConnection, Received, Sent }
}

/// What the server did.
#[derive(Debug)]
pub struct Stats {
    /// Connections accepted and served.
    pub connections: usize,
    /// Connections each worker served.
    pub per_worker: Vec<usize>,
    /// Bytes the workers echoed.
    pub bytes_echoed: u64,
}

/// Accepts `connections` connections on `listener`, serves them on
/// `workers` threads, and returns once all have closed and every worker has
/// stopped.
pub fn serve(listener: TcpListener, workers: usize, connections: usize) -> io::Result<Stats> {
    let mut ring: Ring<Dispatcher> = Ring::new(256)?;
    let dispatcher = ring.handle()?;
    let workers = (0..workers.max(1))
        .map(|_| {
            let dispatcher = dispatcher.clone();
            ring.spawn_thread(256, move |_| Ok(Worker::new(dispatcher)))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut state = Dispatcher {
        listener: Rc::new(listener.into()),
        per_worker: vec![0; workers.len()],
        workers,
        next: 0,
        limit: connections,
        accepting: None,
        accepted: 0,
        closed: 0,
        stopped: 0,
        bytes_echoed: 0,
    };
    if connections == 0 {
        state.stop_workers(&mut ring);
    } else {
        let accepting =
            ring.accept_multishot_direct(&state.listener, Dispatcher::ctx(Msg::Accepted, 0));
        state.accepting = Some(accepting);
    }
    ring.run(&mut state, RunMode::Forever)?;
    for worker in state.workers.drain(..) {
        worker.join()?;
    }
    Ok(Stats {
        connections: state.accepted,
        per_worker: state.per_worker,
        bytes_echoed: state.bytes_echoed,
    })
}

/// The main ring's state: accepts and hands out connections.
struct Dispatcher {
    /// Shared with the accept task, which keeps it open while it runs.
    listener: Rc<OwnedFd>,
    workers: Vec<RingThread<Worker>>,
    /// The worker the next connection goes to.
    next: usize,
    limit: usize,
    /// The multishot accept, cancelled once `limit` connections came.
    accepting: Option<Task>,
    accepted: usize,
    closed: usize,
    stopped: usize,
    per_worker: Vec<usize>,
    bytes_echoed: u64,
}

impl Dispatcher {
    fn ctx(msg: Msg, key: usize) -> Ctx<Dispatcher> {
        Ctx::new(Dispatcher::on_completion).msg(msg).key(key as u64)
    }

    fn on_completion(&mut self, ring: &mut Ring<Dispatcher>, c: Completion) -> io::Result<()> {
        let (key, last) = (c.key() as usize, c.is_final());
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::Accepted, Outcome::AcceptDirect(result)) => {
                if last && self.accepted == self.limit {
                    return Ok(()); // the cancelled accept's last word
                }
                let fd = result?;
                self.accepted += 1;
                if self.accepted == self.limit {
                    if let Some(accepting) = self.accepting.take() {
                        ring.cancel(accepting, Ctx::none());
                    }
                }
                let worker = self.next;
                self.next = (self.next + 1) % self.workers.len();
                let message = Ctx::new(Worker::on_completion).msg(Msg::NewConnection);
                let handed = Dispatcher::ctx(Msg::HandedOver, worker);
                ring.send_fd(self.workers[worker].handle(), fd, message, handed);
            }
            (Msg::HandedOver, Outcome::MsgRing(result, returned)) => {
                if let Err(err) = result {
                    // Still ours (or, after travelling as a process fd, an
                    // fd that closes as it drops): close it.
                    if let Some(fd) = returned.ring_fd() {
                        ring.close(fd, Ctx::none());
                    }
                    return Err(err);
                }
                self.per_worker[key] += 1;
            }
            (Msg::ConnectionClosed, Outcome::Message(echoed)) => {
                self.closed += 1;
                self.bytes_echoed += echoed.as_u64().unwrap_or(0);
                if self.closed == self.limit {
                    self.stop_workers(ring);
                }
            }
            (Msg::WorkerStopped, Outcome::ThreadStopped(result)) => {
                result?;
                self.stopped += 1;
                if self.stopped == self.workers.len() {
                    ring.stop();
                }
            }
            (msg, outcome) => return Err(unexpected("dispatcher", msg, outcome)),
        }
        Ok(())
    }

    fn stop_workers(&mut self, ring: &mut Ring<Dispatcher>) {
        for worker in &self.workers {
            worker.stop(ring, Dispatcher::ctx(Msg::WorkerStopped, 0));
        }
    }
}

/// A worker thread's state: its connections.
struct Worker {
    dispatcher: RingHandle<Dispatcher>,
    /// Keyed by the `Ctx` key of the connection's tasks: a late
    /// completion of a closed connection finds nothing.
    conns: ConnTable<Conn>,
}

struct Conn {
    fd: RingFd,
    echoed: u64,
}

const BUFFER_SIZE: usize = 16 * 1024;

impl Worker {
    fn new(dispatcher: RingHandle<Dispatcher>) -> Worker {
        Worker {
            dispatcher,
            conns: ConnTable::new(),
        }
    }

    fn ctx(msg: Msg, key: u64) -> Ctx<Worker> {
        Ctx::new(Worker::on_completion).msg(msg).key(key)
    }

    fn on_completion(&mut self, ring: &mut Ring<Worker>, c: Completion) -> io::Result<()> {
        let key = c.key();
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::NewConnection, Outcome::Message(payload)) => {
                let fd = payload
                    .ring_fd()
                    .ok_or_else(|| io::Error::other("a new connection without its fd"))?;
                let key = self.conns.insert(Conn { fd, echoed: 0 });
                let buf = Vec::with_capacity(BUFFER_SIZE);
                ring.recv(fd, buf, Worker::ctx(Msg::Received, key));
            }
            (Msg::Received, Outcome::Recv(result, buf)) => match result {
                Ok(0) | Err(_) => self.close(ring, key),
                Ok(n) => {
                    let conn = self.conn(key)?;
                    conn.echoed += n as u64;
                    ring.send(conn.fd, buf, Worker::ctx(Msg::Sent, key));
                }
            },
            (Msg::Sent, Outcome::Send(result, mut buf)) => {
                let Ok(n) = result else {
                    self.close(ring, key);
                    return Ok(());
                };
                buf.consume(n);
                let fd = self.conn(key)?.fd;
                if !buf.is_empty() {
                    ring.send(fd, buf, Worker::ctx(Msg::Sent, key));
                    return Ok(());
                }
                let mut vec: Vec<u8> = buf.downcast().unwrap_or_default();
                vec.clear();
                vec.reserve(BUFFER_SIZE);
                ring.recv(fd, vec, Worker::ctx(Msg::Received, key));
            }
            (msg, outcome) => return Err(unexpected("worker", msg, outcome)),
        }
        Ok(())
    }

    fn conn(&mut self, key: u64) -> io::Result<&mut Conn> {
        self.conns
            .get_mut(key)
            .ok_or_else(|| io::Error::other(format!("no connection {key}")))
    }

    /// Closes a connection and tells the dispatcher how much it echoed.
    fn close(&mut self, ring: &mut Ring<Worker>, key: u64) {
        let Some(conn) = self.conns.remove(key) else {
            return;
        };
        ring.close(conn.fd, Ctx::none());
        let closed = Ctx::new(Dispatcher::on_completion).msg(Msg::ConnectionClosed);
        let echoed = Payload::U64(conn.echoed);
        ring.msg_ring(&self.dispatcher, closed, echoed, Ctx::none());
    }
}

fn unexpected(who: &str, msg: Msg, outcome: Outcome) -> io::Error {
    io::Error::other(format!("{who}: unexpected {msg:?} with {outcome:?}"))
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

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[allow(dead_code)] // the tests include this file for `serve` and `run_clients`
fn main() -> io::Result<()> {
    logging::init();
    let args: Vec<String> = std::env::args().collect();
    let workers = arg(&args, "--workers", 4);
    let clients = arg(&args, "--clients", 64);
    let rounds = arg(&args, "--rounds", 100);
    let size = arg(&args, "--size", 4096);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let server = std::thread::spawn(move || serve(listener, workers, clients));
    let checked = run_clients(addr, clients, rounds, size)?;
    let stats = server
        .join()
        .map_err(|_| io::Error::other("the server panicked"))??;
    let elapsed = started.elapsed();
    println!(
        "{clients} clients x {rounds} rounds x {size} B echoed through {workers} workers in {elapsed:.2?}"
    );
    println!(
        "connections per worker: {:?}; {} bytes echoed, {checked} bytes checked ({:.1} MB/s)",
        stats.per_worker,
        stats.bytes_echoed,
        checked as f64 / elapsed.as_secs_f64() / 1e6
    );
    if stats.bytes_echoed != checked || stats.connections != clients {
        return Err(io::Error::other(
            "the server's count differs from the clients'",
        ));
    }
    Ok(())
}
