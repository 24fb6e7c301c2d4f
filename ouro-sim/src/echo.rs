//! The echo scenario: a server that accepts connections and sends back
//! what each one sends, as the echo example does, and clients on rings of
//! their own that check every byte of every answer. Clients whose
//! connection fails (reset, refused) reconnect after a pause and start
//! their round again.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::sim::{Config, World};
use ouro::{Completion, ConnTable, Ctx, Outcome, Ring, RingFd, Task};

use crate::Load;

const SERVER: &str = "10.0.0.1:7000";
const CLIENT_RINGS: usize = 2;
const RECV_SIZE: usize = 2048;
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// Virtual time the safety phase may take.
const SAFETY_TIME: Duration = Duration::from_secs(60);
/// Half the seeds end their safety phase at a seeded time below this
/// (half the runs take longer than 50 ms), so that their liveness phase
/// often starts with rounds half done and data or connects held on cut
/// paths.
const SAFETY_CUT_NS: u64 = 200_000_000;
/// Virtual time, with faults off, in which every client must finish.
const LIVENESS_BOUND: Duration = Duration::from_secs(10);

ouro::messages! {
    enum Msg { Socket, Bound, Listening, Accepted, Received, Sent, Connected, Retry, Closed }
}

/// The server's state: its listener and connections.
pub struct Server {
    listener: Option<RingFd>,
    accepting: Option<Task>,
    conns: ConnTable<RingFd>,
    stopping: bool,
}

impl Server {
    fn start(ring: &mut Ring<Server>) -> Server {
        let ctx = Ctx::new(Server::on_completion).msg(Msg::Socket);
        ring.socket(Domain::IPV4, Type::STREAM, None, ctx);
        Server {
            listener: None,
            accepting: None,
            conns: ConnTable::with_capacity(16),
            stopping: false,
        }
    }

    fn on_completion(&mut self, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
        let (msg, key, outcome): (Msg, u64, Outcome) = c.into_parts()?;
        let ctx = |msg: Msg| Ctx::new(Server::on_completion).msg(msg).key(key);
        match (msg, outcome) {
            (Msg::Socket, Outcome::Socket(fd)) => {
                let fd = ring.register_fd(fd?);
                self.listener = Some(fd);
                ring.bind(fd, server_addr(), ctx(Msg::Bound));
            }
            (Msg::Bound, Outcome::Bind(res)) => {
                res?;
                let fd = self.listener.ok_or_else(no_listener)?;
                ring.listen(fd, 64, ctx(Msg::Listening));
            }
            (Msg::Listening, Outcome::Listen(res)) => {
                res?;
                self.accept(ring)?;
            }
            (Msg::Accepted, Outcome::Accept(res)) => {
                self.accepting = None;
                // A failed accept (EMFILE) leaves the listener as it was.
                if let Ok((fd, _peer)) = res {
                    let fd = ring.register_fd(fd);
                    let key = self.conns.insert(fd);
                    Server::recv(ring, fd, key);
                }
                if self.stopping {
                    self.close_listener(ring);
                } else {
                    self.accept(ring)?;
                }
            }
            (Msg::Received, Outcome::Recv(Ok(n), buf)) if n > 0 => {
                let Some(&fd) = self.conns.get(key) else {
                    return Ok(());
                };
                ring.send(fd, buf.into_vec(), ctx(Msg::Sent));
            }
            (Msg::Received, Outcome::Recv(..)) => self.close(ring, key),
            (Msg::Sent, Outcome::Send(Ok(n), buf)) => {
                let Some(&fd) = self.conns.get(key) else {
                    return Ok(());
                };
                let mut rest = buf.into_vec();
                if n < rest.len() {
                    rest.drain(..n);
                    ring.send(fd, rest, ctx(Msg::Sent));
                } else {
                    // The same buffer carries the connection's next bytes.
                    rest.clear();
                    Server::recv_into(ring, fd, key, rest);
                }
            }
            (Msg::Sent, Outcome::Send(Err(_), _)) => self.close(ring, key),
            (msg, outcome) => {
                return Err(io::Error::other(format!(
                    "server: {msg:?} ended with {outcome:?}"
                )))
            }
        }
        Ok(())
    }

    fn accept(&mut self, ring: &mut Ring<Server>) -> io::Result<()> {
        let fd = self.listener.ok_or_else(no_listener)?;
        let ctx = Ctx::new(Server::on_completion).msg(Msg::Accepted);
        self.accepting = Some(ring.accept(fd, ctx));
        Ok(())
    }

    fn recv(ring: &mut Ring<Server>, fd: RingFd, key: u64) {
        Server::recv_into(ring, fd, key, Vec::with_capacity(RECV_SIZE));
    }

    fn recv_into(ring: &mut Ring<Server>, fd: RingFd, key: u64, buf: Vec<u8>) {
        let ctx = Ctx::new(Server::on_completion).msg(Msg::Received).key(key);
        ring.recv(fd, buf, ctx);
    }

    fn close(&mut self, ring: &mut Ring<Server>, key: u64) {
        if let Some(fd) = self.conns.remove(key) {
            ring.close(fd, Ctx::none());
        }
    }

    /// Stops accepting; the listener closes once the accept has ended.
    fn stop(&mut self, ring: &mut Ring<Server>) {
        self.stopping = true;
        match self.accepting {
            Some(task) => {
                ring.cancel(task, Ctx::none());
            }
            None => self.close_listener(ring),
        }
    }

    fn close_listener(&mut self, ring: &mut Ring<Server>) {
        if let Some(fd) = self.listener.take() {
            ring.close(fd, Ctx::none());
        }
    }
}

fn no_listener() -> io::Error {
    io::Error::other("server: no listener")
}

fn server_addr() -> SocketAddr {
    SERVER
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([10, 0, 0, 1], 7000)))
}

/// One client: a connection, the message of its current round, what has
/// come back of it, and the buffers its sends and receives reuse.
struct Client {
    fd: Option<RingFd>,
    message: Vec<u8>,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
    sent: usize,
    got: usize,
    rounds_left: u32,
    failures: u32,
}

/// The clients of one ring.
pub struct Clients {
    world: World,
    ring_index: usize,
    clients: Vec<Client>,
}

impl Clients {
    /// The clients numbered `ids`, each to make `rounds` rounds.
    fn start(
        world: &World,
        ring: &mut Ring<Clients>,
        ring_index: usize,
        ids: Range<usize>,
        rounds: u32,
    ) -> Clients {
        let mut clients = Clients {
            world: world.clone(),
            ring_index,
            clients: Vec::new(),
        };
        for (i, id) in ids.enumerate() {
            let id = id as u64;
            clients.clients.push(Client {
                fd: None,
                message: Vec::new(),
                send_buf: Vec::new(),
                recv_buf: Vec::with_capacity(RECV_SIZE),
                sent: 0,
                got: 0,
                rounds_left: rounds,
                failures: 0,
            });
            clients.next_round(ring, i as u64, id);
        }
        clients
    }

    /// What each client that has rounds left is doing.
    fn unfinished(&self, ids: &mut Vec<String>) {
        for (key, c) in self.clients.iter().enumerate() {
            if c.rounds_left == 0 {
                continue;
            }
            let doing = match c.fd {
                None => "between connections".to_string(),
                Some(_) if c.sent < c.message.len() => format!(
                    "connecting or sending ({} of {} bytes sent)",
                    c.sent,
                    c.message.len()
                ),
                Some(_) => format!(
                    "waiting for its answer ({} of {} bytes back)",
                    c.got,
                    c.message.len()
                ),
            };
            ids.push(format!(
                "client {key} of ring {}: {} round(s) left, {doing}",
                self.ring_index, c.rounds_left
            ));
        }
    }

    /// Starts a round (or ends the client): a new message on the open
    /// connection, or a new connection first.
    fn next_round(&mut self, ring: &mut Ring<Clients>, key: u64, salt: u64) {
        let client = &mut self.clients[key as usize];
        if client.rounds_left == 0 {
            if let Some(fd) = client.fd.take() {
                ring.close(fd, Ctx::none());
            }
            return;
        }
        let len = 1 + (self.world.random() % 6000) as usize;
        let seed = self.world.random() ^ salt;
        let first = seed as u8;
        client.message.clear();
        client
            .message
            .extend((0..len).map(|i| first.wrapping_add((i as u8).wrapping_mul(7))));
        client.sent = 0;
        client.got = 0;
        match client.fd {
            Some(fd) => Clients::send_message(ring, fd, key, client),
            None => {
                let ctx = Ctx::new(Clients::on_completion).msg(Msg::Socket).key(key);
                ring.socket(Domain::IPV4, Type::STREAM, None, ctx);
            }
        }
    }

    /// Sends the client's whole message, from its reused send buffer.
    fn send_message(ring: &mut Ring<Clients>, fd: RingFd, key: u64, client: &mut Client) {
        let mut data = std::mem::take(&mut client.send_buf);
        data.clear();
        data.extend_from_slice(&client.message);
        Clients::send(ring, fd, key, data);
    }

    fn send(ring: &mut Ring<Clients>, fd: RingFd, key: u64, data: Vec<u8>) {
        let ctx = Ctx::new(Clients::on_completion).msg(Msg::Sent).key(key);
        ring.send(fd, data, ctx);
    }

    /// Receives into the client's reused receive buffer.
    fn recv(ring: &mut Ring<Clients>, fd: RingFd, key: u64, client: &mut Client) {
        let mut buf = std::mem::take(&mut client.recv_buf);
        buf.clear();
        buf.reserve(RECV_SIZE);
        let ctx = Ctx::new(Clients::on_completion).msg(Msg::Received).key(key);
        ring.recv(fd, buf, ctx);
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
            (Msg::Connected, Outcome::Connect(Ok(()))) => {
                let fd = client.fd.ok_or_else(|| io::Error::other("no fd"))?;
                Clients::send_message(ring, fd, key, client);
            }
            (Msg::Sent, Outcome::Send(Ok(n), buf)) => {
                let fd = client.fd.ok_or_else(|| io::Error::other("no fd"))?;
                client.sent += n;
                let mut rest = buf.into_vec();
                if n < rest.len() {
                    rest.drain(..n);
                    Clients::send(ring, fd, key, rest);
                } else {
                    client.send_buf = rest;
                    Clients::recv(ring, fd, key, client);
                }
            }
            (Msg::Received, Outcome::Recv(Ok(n), buf)) if n > 0 => {
                let fd = client.fd.ok_or_else(|| io::Error::other("no fd"))?;
                let expected = client.message.get(client.got..client.got + n);
                if expected != Some(&buf[..]) {
                    self.world.report(format!(
                        "echo: client {key} got {n} bytes at offset {} of its {}-byte \
                         message that are not what it sent",
                        client.got,
                        client.message.len()
                    ));
                    return self.fail(ring, key);
                }
                client.got += n;
                client.recv_buf = buf.into_vec();
                if client.got < client.message.len() {
                    Clients::recv(ring, fd, key, client);
                } else {
                    client.rounds_left -= 1;
                    self.next_round(ring, key, key);
                }
            }
            (Msg::Retry, Outcome::Timer(_)) => self.next_round(ring, key, key),
            // Refused, reset, a broken pipe, an early end of stream: the
            // round starts again on a new connection.
            (_, _) => return self.fail(ring, key),
        }
        Ok(())
    }

    fn fail(&mut self, ring: &mut Ring<Clients>, key: u64) -> io::Result<()> {
        let client = &mut self.clients[key as usize];
        client.failures += 1;
        if let Some(fd) = client.fd.take() {
            ring.close(fd, Ctx::none());
        }
        let ctx = Ctx::new(Clients::on_completion).msg(Msg::Retry).key(key);
        ring.timer(RETRY_PAUSE, ctx);
        Ok(())
    }
}

/// Runs the echo scenario in `world`, `load.clients` clients spread over
/// two client rings, each making `load.rounds` rounds: a safety phase with
/// the world's faults (ended early at a seeded time in half the seeds),
/// then a liveness phase with the network healed and the faults off in
/// which every client must finish its rounds within 10 s of virtual time
/// (else a violation names each unfinished client and partition), then
/// shutdown; violations go to the world.
pub fn run(world: &World, load: Load) -> io::Result<()> {
    run_phases(world, load).map(|_| ())
}

/// What was still pending when the liveness phase started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LivenessStart {
    /// Clients with rounds left.
    pub clients_pending: usize,
    /// Partitions in force, which the liveness phase healed.
    pub partitions: usize,
}

/// [`run`], returning what was pending when the liveness phase started.
pub fn run_phases(world: &World, load: Load) -> io::Result<LivenessStart> {
    let per_ring = (load.clients as usize).div_ceil(CLIENT_RINGS);
    let mut server_ring: Ring<Server> = Ring::simulated(world);
    let server = Server::start(&mut server_ring);
    let mut server = (server_ring, server);
    let mut clients: Vec<(Ring<Clients>, Clients)> = (0..CLIENT_RINGS)
        .map(|r| {
            let mut ring = Ring::simulated(world);
            let first = (r * per_ring).min(load.clients as usize);
            let last = ((r + 1) * per_ring).min(load.clients as usize);
            let state = Clients::start(world, &mut ring, r, first..last, load.rounds);
            (ring, state)
        })
        .collect();
    let run_all = |server: &mut (Ring<Server>, Server),
                   clients: &mut Vec<(Ring<Clients>, Clients)>,
                   limit: Duration| {
        let mut nodes: Vec<&mut dyn ouro::sim::Node> = vec![server];
        nodes.extend(clients.iter_mut().map(|c| c as &mut dyn ouro::sim::Node));
        world.run(&mut nodes, limit)
    };
    let cut = world.seeded("echo/safety_phase");
    let safety = if cut % 2 == 0 {
        SAFETY_TIME
    } else {
        Duration::from_nanos((cut >> 1) % SAFETY_CUT_NS)
    };
    run_all(&mut server, &mut clients, safety)?;
    let mut pending = Vec::new();
    for (_, state) in &clients {
        state.unfinished(&mut pending);
    }
    let start = LivenessStart {
        clients_pending: pending.len(),
        partitions: world.unhealed().len(),
    };
    world.set_config(Config::calm());
    run_all(&mut server, &mut clients, LIVENESS_BOUND)?;
    pending.clear();
    for (_, state) in &clients {
        state.unfinished(&mut pending);
    }
    if !pending.is_empty() {
        let clients = pending.len();
        pending.extend(world.unhealed());
        world.report(format!(
            "liveness: {clients} client(s) had not finished their rounds {LIVENESS_BOUND:?} \
             after the network healed and the faults stopped: {}",
            pending.join("; ")
        ));
    }
    let (ring, state) = &mut server;
    state.stop(ring);
    run_all(&mut server, &mut clients, LIVENESS_BOUND)?;
    Ok(start)
}
