//! The dispatch scenario: the accept-and-dispatch example's own server
//! (`ouro/examples/support/dispatch.rs`, unchanged) on simulated rings. Its
//! acceptor ring spawns worker threads, which become nodes the world
//! steps, and hands each accepted connection's fd to one of them by
//! message; the workers echo, and tell the acceptor by message when a
//! connection has closed. Clients on rings of their own send rounds of
//! bytes and check every byte that comes back.
//!
//! The server accepts exactly one connection per client and stops its
//! workers once all have closed, so a client makes one connection: a
//! refused connect is tried again after a pause, but a connection that an
//! injected fault resets ends the client's session early (what it had
//! checked still counts).

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::sim::{Config, Node, World};
use ouro::{Completion, Ctx, Outcome, Ring, RingFd, RunMode};

use crate::Load;

#[path = "../../ouro/examples/support/dispatch.rs"]
mod server;

use server::Dispatcher;

const SERVER: ([u8; 4], u16) = ([10, 0, 0, 3], 7300);
const WORKERS: usize = 3;
const CLIENT_RINGS: usize = 2;
const RECV_SIZE: usize = 2048;
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// Virtual time the safety phase may take.
const SAFETY_TIME: Duration = Duration::from_secs(60);
/// Virtual time, with faults off, in which every client must finish and
/// the server must stop its workers.
const LIVENESS_BOUND: Duration = Duration::from_secs(10);

ouro::messages! {
    enum Msg { Socket, Bound, Listening, Connected, Sent, Received, Retry }
}

/// Makes the server's listening socket, on a ring of its own.
fn listen(world: &World) -> io::Result<OwnedFd> {
    struct Setup {
        fd: Option<Rc<OwnedFd>>,
        result: io::Result<()>,
    }
    fn step(setup: &mut Setup, ring: &mut Ring<Setup>, c: Completion) -> io::Result<()> {
        let (msg, _, outcome): (Msg, u64, Outcome) = c.into_parts()?;
        let ctx = |msg: Msg| Ctx::new(step).msg(msg);
        let failed = match (msg, outcome) {
            (Msg::Socket, Outcome::Socket(Ok(fd))) => {
                let fd = Rc::new(fd);
                ring.bind(&fd, server_addr(), ctx(Msg::Bound));
                setup.fd = Some(fd);
                None
            }
            (Msg::Bound, Outcome::Bind(Ok(()))) => {
                if let Some(fd) = &setup.fd {
                    ring.listen(fd, 64, ctx(Msg::Listening));
                }
                None
            }
            (Msg::Listening, Outcome::Listen(Ok(()))) => None,
            (msg, outcome) => Some(format!("{msg:?} ended with {outcome:?}")),
        };
        if let Some(what) = failed {
            setup.result = Err(io::Error::other(format!("the listener: {what}")));
        }
        Ok(())
    }
    let mut ring: Ring<Setup> = Ring::simulated(world);
    let mut setup = Setup {
        fd: None,
        result: Ok(()),
    };
    ring.socket(
        Domain::IPV4,
        Type::STREAM,
        None,
        Ctx::new(step).msg(Msg::Socket),
    );
    ring.run(&mut setup, RunMode::UntilDone)?;
    setup.result?;
    let fd = setup.fd.ok_or_else(|| io::Error::other("no listener"))?;
    Rc::try_unwrap(fd).map_err(|_| io::Error::other("the listener is still shared"))
}

fn server_addr() -> SocketAddr {
    SocketAddr::from(SERVER)
}

/// One client: its connection, the round's message and how much of it
/// went out and came back.
struct Client {
    fd: Option<RingFd>,
    message: Vec<u8>,
    sent: usize,
    got: usize,
    rounds_left: u32,
    /// Bytes that came back and matched.
    checked: u64,
    /// The session is over: all rounds done, or the connection ended.
    done: bool,
}

/// The clients of one ring.
struct Clients {
    world: World,
    clients: Vec<Client>,
}

impl Clients {
    fn start(world: &World, ring: &mut Ring<Clients>, count: usize, rounds: u32) -> Clients {
        let mut clients = Clients {
            world: world.clone(),
            clients: Vec::new(),
        };
        for key in 0..count {
            clients.clients.push(Client {
                fd: None,
                message: Vec::new(),
                sent: 0,
                got: 0,
                rounds_left: rounds,
                checked: 0,
                done: false,
            });
            // With no rounds too: the server waits for one connection per
            // client, and one closed at once is a case of its own.
            Clients::connect(ring, key as u64);
        }
        clients
    }

    fn connect(ring: &mut Ring<Clients>, key: u64) {
        let ctx = Ctx::new(Clients::on_completion).msg(Msg::Socket).key(key);
        ring.socket(Domain::IPV4, Type::STREAM, None, ctx);
    }

    /// Sends the next round's message, or ends the session.
    fn next_round(&mut self, ring: &mut Ring<Clients>, key: u64) {
        let client = &mut self.clients[key as usize];
        let Some(fd) = client.fd else {
            return;
        };
        if client.rounds_left == 0 {
            client.done = true;
            client.fd = None;
            ring.close(fd, Ctx::none());
            return;
        }
        let len = 1 + (self.world.random() % 5000) as usize;
        let first = self.world.random() as u8;
        client.message.clear();
        client
            .message
            .extend((0..len).map(|i| first.wrapping_add((i as u8).wrapping_mul(13))));
        client.sent = 0;
        client.got = 0;
        let ctx = Ctx::new(Clients::on_completion).msg(Msg::Sent).key(key);
        ring.send(fd, client.message.clone(), ctx);
    }

    fn on_completion(&mut self, ring: &mut Ring<Clients>, c: Completion) -> io::Result<()> {
        let (msg, key, outcome): (Msg, u64, Outcome) = c.into_parts()?;
        let ctx = |msg: Msg| Ctx::new(Clients::on_completion).msg(msg).key(key);
        let client = &mut self.clients[key as usize];
        match (msg, outcome) {
            (Msg::Socket, Outcome::Socket(fd)) => {
                let fd = ring.register_fd(fd?);
                client.fd = Some(fd);
                ring.connect(fd, server_addr(), ctx(Msg::Connected));
            }
            (Msg::Connected, Outcome::Connect(Ok(()))) => self.next_round(ring, key),
            // Refused: no connection was made, so another try is no
            // extra connection for the server.
            (Msg::Connected, Outcome::Connect(Err(_))) => {
                if let Some(fd) = client.fd.take() {
                    ring.close(fd, Ctx::none());
                }
                ring.timer(RETRY_PAUSE, ctx(Msg::Retry));
            }
            (Msg::Retry, Outcome::Timer(_)) => Clients::connect(ring, key),
            (Msg::Sent, Outcome::Send(Ok(n), buf)) => {
                let fd = client.fd.ok_or_else(|| io::Error::other("no fd"))?;
                client.sent += n;
                let mut rest = buf.into_vec();
                if n < rest.len() {
                    rest.drain(..n);
                    ring.send(fd, rest, ctx(Msg::Sent));
                } else {
                    ring.recv(fd, Vec::with_capacity(RECV_SIZE), ctx(Msg::Received));
                }
            }
            (Msg::Received, Outcome::Recv(Ok(n), buf)) if n > 0 => {
                let fd = client.fd.ok_or_else(|| io::Error::other("no fd"))?;
                if client.message.get(client.got..client.got + n) != Some(&buf[..]) {
                    self.world.report(format!(
                        "dispatch: client {key} got {n} bytes at offset {} of its {}-byte \
                         message that are not what it sent",
                        client.got,
                        client.message.len()
                    ));
                    self.end(ring, key);
                    return Ok(());
                }
                client.got += n;
                client.checked += n as u64;
                if client.got < client.message.len() {
                    let mut buf = buf.into_vec();
                    buf.clear();
                    ring.recv(fd, buf, ctx(Msg::Received));
                } else {
                    client.rounds_left -= 1;
                    self.next_round(ring, key);
                }
            }
            // Reset, a broken pipe, an early end of stream: the server
            // counts this connection as served, so the session ends.
            (_, _) => self.end(ring, key),
        }
        Ok(())
    }

    fn end(&mut self, ring: &mut Ring<Clients>, key: u64) {
        let client = &mut self.clients[key as usize];
        client.done = true;
        if let Some(fd) = client.fd.take() {
            ring.close(fd, Ctx::none());
        }
    }
}

/// Runs the dispatch scenario in `world`: the example's server with three
/// workers, and `load.clients` clients over two client rings, each making
/// `load.rounds` rounds on one connection (with none, it connects and
/// closes); a safety phase with the
/// world's faults, then a liveness phase with the faults off in which
/// every client must finish and the server must stop its workers within
/// 10 s of virtual time. Then the server's count of connections and of
/// bytes echoed is checked against the clients'.
pub fn run(world: &World, load: Load) -> io::Result<()> {
    // A worker may receive bytes it cannot send back only when a fault
    // resets the connection: an injected error, or TCP giving up over a
    // partition.
    let lossless = world.config().errors == 0.0 && world.config().tcp_give_up_ns == 0;
    let listener = listen(world)?;
    let clients = load.clients as usize;
    let mut ring: Ring<Dispatcher> = Ring::simulated(world);
    let dispatcher = Dispatcher::start(&mut ring, listener, WORKERS, clients)?;
    let mut server = (ring, dispatcher);
    let per_ring = clients.div_ceil(CLIENT_RINGS);
    let mut client_rings: Vec<(Ring<Clients>, Clients)> = (0..CLIENT_RINGS)
        .map(|r| {
            let mut ring = Ring::simulated(world);
            let count = per_ring.min(clients - (r * per_ring).min(clients));
            let state = Clients::start(world, &mut ring, count, load.rounds);
            (ring, state)
        })
        .collect();
    let mut run_all = |limit: Duration| {
        let mut nodes: Vec<&mut dyn Node> = vec![&mut server];
        nodes.extend(client_rings.iter_mut().map(|c| c as &mut dyn Node));
        world.run(&mut nodes, limit)
    };
    run_all(SAFETY_TIME)?;
    world.set_config(Config::calm());
    run_all(LIVENESS_BOUND)?;
    let unfinished = client_rings
        .iter()
        .flat_map(|(_, c)| &c.clients)
        .filter(|c| !c.done)
        .count();
    if unfinished > 0 {
        world.report(format!(
            "liveness: {unfinished} client(s) had not finished {LIVENESS_BOUND:?} after \
             the faults stopped; {}",
            world.unhealed().join("; ")
        ));
    }
    if world.threads_running() > 0 {
        world.report(format!(
            "liveness: the server had not stopped its {} running worker(s) {LIVENESS_BOUND:?} \
             after the faults stopped",
            world.threads_running()
        ));
    }
    let checked: u64 = client_rings
        .iter()
        .flat_map(|(_, c)| &c.clients)
        .map(|c| c.checked)
        .sum();
    let (ring, dispatcher) = server;
    let stats = dispatcher.finish()?;
    drop(ring);
    // Moved fds arrive as process fds here: no worker is ever full.
    if stats.connections != clients
        || stats.per_worker.iter().sum::<usize>() != clients
        || stats.refused != 0
    {
        world.report(format!(
            "dispatch: {clients} clients, but the server accepted {} connections, \
             handed {:?} to its workers and refused {}",
            stats.connections, stats.per_worker, stats.refused
        ));
    }
    // Every byte a client checked was echoed.
    if stats.bytes_echoed < checked || (lossless && stats.bytes_echoed != checked) {
        world.report(format!(
            "dispatch: the workers echoed {} bytes, the clients checked {checked}",
            stats.bytes_echoed
        ));
    }
    Ok(())
}
