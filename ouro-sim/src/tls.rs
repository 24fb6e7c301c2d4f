//! The tls scenario: ouro-tls sessions over simulated TCP. A server ring
//! accepts connections and echoes, inside a TLS server session, every
//! byte each client sends; clients on two rings of their own each make
//! rounds, one session per round (TLS 1.3 or 1.2 by client), sending a
//! message of seeded length and checking every byte that comes back,
//! then closing with `close_notify` both ways. Segmenting, short reads and
//! writes, resets and partitions come from the seed; a session either
//! carries its bytes intact or fails with an error, and a failed round is
//! tried again on a new connection. The rustls configurations take the
//! world's clock and seeded randomness (`tls_config.rs`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::sim::{Config, Node, World};
use ouro::{Completion, Ctx, Outcome, Ring, RingFd, Task};
use ouro_tls::{ClientConfig, ServerConfig, TlsEvent, TlsStream};

use crate::tls_config::{self, WorldLent, SERVER_NAME};
use crate::Load;

const SERVER: ([u8; 4], u16) = ([10, 0, 0, 43], 443);
const CLIENT_RINGS: usize = 2;
/// The longest message a round sends: several full TLS records.
const MESSAGE_MOST: u64 = 24_000;
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// A handshake not done by then fails the session (and the round is
/// tried again).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const SAFETY_TIME: Duration = Duration::from_secs(60);
/// Half the seeds end their safety phase at a seeded time below this.
const SAFETY_CUT_NS: u64 = 200_000_000;
const LIVENESS_BOUND: Duration = Duration::from_secs(10);

ouro::messages! {
    enum Msg { Socket, Bound, Listening, Accepted, Tls, Connected, Retry }
}

/// The server: a listener and a TLS session per connection, each echoing
/// what it receives and answering `close_notify` with its own.
pub struct Server {
    config: Arc<ServerConfig>,
    listener: Option<RingFd>,
    accepting: Option<Task>,
    sessions: BTreeMap<u64, TlsStream<Server>>,
    next_key: u64,
    stopping: bool,
}

impl Server {
    fn start(ring: &mut Ring<Server>, config: Arc<ServerConfig>) -> Server {
        let ctx = Ctx::new(Server::on_completion).msg(Msg::Socket);
        ring.socket(Domain::IPV4, Type::STREAM, None, ctx);
        Server {
            config,
            listener: None,
            accepting: None,
            sessions: BTreeMap::new(),
            next_key: 0,
            stopping: false,
        }
    }

    fn on_completion(&mut self, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
        if c.msg() == u16::from(Msg::Tls) {
            return self.on_tls(ring, c);
        }
        let ctx = |msg: Msg| Ctx::new(Server::on_completion).msg(msg);
        match c.into_parts()? {
            (Msg::Socket, _, Outcome::Socket(fd)) => {
                let fd = ring.register_fd(fd?);
                self.listener = Some(fd);
                ring.bind(fd, SocketAddr::from(SERVER), ctx(Msg::Bound));
            }
            (Msg::Bound, _, Outcome::Bind(res)) => {
                res?;
                let fd = self.listener.ok_or_else(no_listener)?;
                ring.listen(fd, 64, ctx(Msg::Listening));
            }
            (Msg::Listening, _, Outcome::Listen(res)) => {
                res?;
                self.accept(ring)?;
            }
            (Msg::Accepted, _, Outcome::Accept(res)) => {
                self.accepting = None;
                // A failed accept (EMFILE) leaves the listener as it was.
                if let Ok((fd, _peer)) = res {
                    let fd = ring.register_fd(fd);
                    let key = self.next_key;
                    self.next_key += 1;
                    let ctx = Ctx::new(Server::on_completion).msg(Msg::Tls).key(key);
                    let mut tls = TlsStream::server(fd, self.config.clone(), ctx)?;
                    tls.start(ring);
                    self.sessions.insert(key, tls);
                }
                if self.stopping {
                    self.close_listener(ring);
                } else {
                    self.accept(ring)?;
                }
            }
            (msg, _, outcome) => {
                return Err(io::Error::other(format!(
                    "tls server: {msg:?} ended with {outcome:?}"
                )))
            }
        }
        Ok(())
    }

    fn on_tls(&mut self, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
        let key = c.key();
        let Some(tls) = self.sessions.get_mut(&key) else {
            return Err(io::Error::other(format!("tls server: no session {key}")));
        };
        tls.on_completion(ring, c)?;
        while let Some(event) = tls.next_event() {
            match event {
                TlsEvent::Received(bytes) => {
                    // Fails only once the session has failed, which the
                    // session reports itself.
                    let _ = tls.write(ring, &bytes);
                    tls.recycle(bytes);
                }
                TlsEvent::Closed => tls.shutdown(ring),
                TlsEvent::HandshakeDone(_) | TlsEvent::Written { .. } | TlsEvent::Failed(_) => {}
            }
        }
        if tls.is_ended() && tls.is_idle() {
            let fd = *tls.fd();
            self.sessions.remove(&key);
            ring.close(fd, Ctx::none());
        }
        Ok(())
    }

    fn accept(&mut self, ring: &mut Ring<Server>) -> io::Result<()> {
        let fd = self.listener.ok_or_else(no_listener)?;
        let ctx = Ctx::new(Server::on_completion).msg(Msg::Accepted);
        self.accepting = Some(ring.accept(fd, ctx));
        Ok(())
    }

    /// Stops accepting and ends the sessions still open (each closes its
    /// fd once its tasks have ended).
    fn stop(&mut self, ring: &mut Ring<Server>) {
        self.stopping = true;
        for tls in self.sessions.values_mut() {
            tls.cancel(ring);
        }
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
    io::Error::other("tls server: no listener")
}

/// One client: its session of the current round, the message it sends
/// and how much of it has come back.
struct Client {
    fd: Option<RingFd>,
    tls: Option<TlsStream<Clients>>,
    config: Arc<ClientConfig>,
    message: Vec<u8>,
    got: usize,
    rounds_left: u32,
    failures: u32,
}

/// The clients of one ring.
pub struct Clients {
    world: World,
    ring_index: usize,
    clients: Vec<Client>,
    /// Sessions that carried their message intact and closed cleanly.
    sessions_done: u64,
}

impl Clients {
    fn start(
        world: &World,
        ring: &mut Ring<Clients>,
        ring_index: usize,
        ids: Range<usize>,
        rounds: u32,
    ) -> io::Result<Clients> {
        let tls13 = tls_config::client(true)?;
        let tls12 = tls_config::client(false)?;
        let mut clients = Clients {
            world: world.clone(),
            ring_index,
            clients: Vec::new(),
            sessions_done: 0,
        };
        for (key, id) in ids.enumerate() {
            let config = if id % 2 == 0 { &tls13 } else { &tls12 };
            clients.clients.push(Client {
                fd: None,
                tls: None,
                config: config.clone(),
                message: Vec::new(),
                got: 0,
                rounds_left: rounds,
                failures: 0,
            });
            clients.next_round(ring, key as u64);
        }
        Ok(clients)
    }

    /// Starts a round on a new connection, unless the rounds are done.
    fn next_round(&mut self, ring: &mut Ring<Clients>, key: u64) {
        let len = 1 + (self.world.random() % MESSAGE_MOST) as usize;
        let first = self.world.random() as u8;
        let client = &mut self.clients[key as usize];
        if client.rounds_left == 0 {
            return;
        }
        // A pattern that repeats every 256 bytes, starting at a seeded
        // byte: a byte moved, lost or repeated shows.
        let pattern: [u8; 256] =
            std::array::from_fn(|i| first.wrapping_add((i as u8).wrapping_mul(13)));
        client.message.clear();
        while client.message.len() < len {
            let take = (len - client.message.len()).min(pattern.len());
            client.message.extend_from_slice(&pattern[..take]);
        }
        client.got = 0;
        let ctx = Ctx::new(Clients::on_completion).msg(Msg::Socket).key(key);
        ring.socket(Domain::IPV4, Type::STREAM, None, ctx);
    }

    fn on_completion(&mut self, ring: &mut Ring<Clients>, c: Completion) -> io::Result<()> {
        let key = c.key();
        if c.msg() == u16::from(Msg::Tls) {
            return self.on_tls(ring, key, c);
        }
        let ctx = |msg: Msg| Ctx::new(Clients::on_completion).msg(msg).key(key);
        let client = &mut self.clients[key as usize];
        match c.into_parts()? {
            (Msg::Socket, _, Outcome::Socket(fd)) => {
                let fd = ring.register_fd(fd?);
                client.fd = Some(fd);
                ring.connect(fd, SocketAddr::from(SERVER), ctx(Msg::Connected));
            }
            (Msg::Connected, _, Outcome::Connect(Ok(()))) => {
                let fd = client.fd.ok_or_else(|| io::Error::other("no fd"))?;
                let config = client.config.clone();
                let mut tls = TlsStream::client(fd, config, SERVER_NAME, ctx(Msg::Tls))?
                    .with_handshake_timeout(HANDSHAKE_TIMEOUT);
                tls.start(ring);
                // Written during the handshake: it waits for the keys.
                tls.write(ring, &client.message)?;
                client.tls = Some(tls);
            }
            (Msg::Retry, _, Outcome::Timer(_)) => self.next_round(ring, key),
            // Refused, reset: the round starts again on a new connection.
            (_, _, _) => {
                client.failures += 1;
                if let Some(fd) = client.fd.take() {
                    ring.close(fd, Ctx::none());
                }
                ring.timer(RETRY_PAUSE, ctx(Msg::Retry));
            }
        }
        Ok(())
    }

    fn on_tls(&mut self, ring: &mut Ring<Clients>, key: u64, c: Completion) -> io::Result<()> {
        let ring_index = self.ring_index;
        let client = &mut self.clients[key as usize];
        let Some(tls) = client.tls.as_mut() else {
            return Err(io::Error::other(format!("tls client {key}: no session")));
        };
        tls.on_completion(ring, c)?;
        let mut closed_cleanly = false;
        while let Some(event) = tls.next_event() {
            match event {
                TlsEvent::Received(bytes) => {
                    let expected = client.message.get(client.got..client.got + bytes.len());
                    if expected != Some(&bytes[..]) {
                        self.world.report(format!(
                            "tls: client {key} of ring {ring_index} got {} bytes at offset {} \
                             of its {}-byte message that are not what it sent",
                            bytes.len(),
                            client.got,
                            client.message.len()
                        ));
                    }
                    client.got += bytes.len();
                    tls.recycle(bytes);
                    if client.got == client.message.len() {
                        tls.shutdown(ring);
                    }
                }
                TlsEvent::Closed => {
                    if client.got != client.message.len() {
                        self.world.report(format!(
                            "tls: client {key} of ring {ring_index}: the server closed cleanly \
                             with {} of {} bytes echoed",
                            client.got,
                            client.message.len()
                        ));
                    }
                    closed_cleanly = true;
                }
                // A failure is an honest end: the round is tried again.
                TlsEvent::Failed(_) => client.failures += 1,
                TlsEvent::HandshakeDone(_) | TlsEvent::Written { .. } => {}
            }
        }
        if !(tls.is_ended() && tls.is_idle()) {
            return Ok(());
        }
        client.tls = None;
        if let Some(fd) = client.fd.take() {
            ring.close(fd, Ctx::none());
        }
        if closed_cleanly {
            client.rounds_left -= 1;
            self.sessions_done += 1;
            self.next_round(ring, key);
        } else {
            let ctx = Ctx::new(Clients::on_completion).msg(Msg::Retry).key(key);
            ring.timer(RETRY_PAUSE, ctx);
        }
        Ok(())
    }

    /// What each client that has rounds left is doing.
    fn unfinished(&self, out: &mut Vec<String>) {
        for (key, c) in self.clients.iter().enumerate() {
            if c.rounds_left == 0 {
                continue;
            }
            let doing = match &c.tls {
                None => "between sessions".to_string(),
                Some(tls) => format!(
                    "in a session (open: {}, {} of {} bytes back, {} queued)",
                    tls.is_open(),
                    c.got,
                    c.message.len(),
                    tls.queued()
                ),
            };
            out.push(format!(
                "client {key} of ring {}: {} round(s) left, {} failure(s), {doing}",
                self.ring_index, c.rounds_left, c.failures
            ));
        }
    }
}

/// Runs the tls scenario in `world`: `load.clients` clients over two
/// client rings, each making `load.rounds` rounds (one TLS session each);
/// a safety phase with the world's faults (ended early at a seeded time
/// in half the seeds), then a liveness phase with the faults off in which
/// every client must finish its rounds within 10 s of virtual time, then
/// shutdown. Violations go to the world.
pub fn run(world: &World, load: Load) -> io::Result<()> {
    run_phases(world, load).map(|_| ())
}

/// [`run`], returning how many sessions carried their message intact and
/// closed cleanly.
pub fn run_phases(world: &World, load: Load) -> io::Result<u64> {
    let _lent = WorldLent::new(world);
    let per_ring = (load.clients as usize).div_ceil(CLIENT_RINGS);
    let mut server_ring: Ring<Server> = Ring::simulated(world);
    let server = Server::start(&mut server_ring, tls_config::server()?);
    let mut server = (server_ring, server);
    let mut clients = Vec::new();
    for r in 0..CLIENT_RINGS {
        let mut ring = Ring::simulated(world);
        let first = (r * per_ring).min(load.clients as usize);
        let last = ((r + 1) * per_ring).min(load.clients as usize);
        let state = Clients::start(world, &mut ring, r, first..last, load.rounds)?;
        clients.push((ring, state));
    }
    let run_all = |server: &mut (Ring<Server>, Server),
                   clients: &mut Vec<(Ring<Clients>, Clients)>,
                   limit: Duration| {
        let mut nodes: Vec<&mut dyn Node> = vec![server];
        nodes.extend(clients.iter_mut().map(|c| c as &mut dyn Node));
        world.run(&mut nodes, limit)
    };
    let cut = world.seeded("tls/safety_phase");
    let safety = if cut % 2 == 0 {
        SAFETY_TIME
    } else {
        Duration::from_nanos((cut >> 1) % SAFETY_CUT_NS)
    };
    run_all(&mut server, &mut clients, safety)?;
    world.set_config(Config::calm());
    run_all(&mut server, &mut clients, LIVENESS_BOUND)?;
    let mut pending = Vec::new();
    for (_, state) in &clients {
        state.unfinished(&mut pending);
    }
    if !pending.is_empty() {
        let n = pending.len();
        pending.extend(world.unhealed());
        world.report(format!(
            "liveness: {n} tls client(s) had not finished their rounds {LIVENESS_BOUND:?} \
             after the network healed and the faults stopped: {}",
            pending.join("; ")
        ));
    }
    let (ring, state) = &mut server;
    state.stop(ring);
    run_all(&mut server, &mut clients, LIVENESS_BOUND)?;
    if !server.1.sessions.is_empty() {
        world.report(format!(
            "tls: {} server session(s) still open after shutdown",
            server.1.sessions.len()
        ));
    }
    Ok(clients.iter().map(|(_, state)| state.sessions_done).sum())
}
