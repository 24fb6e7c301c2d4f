//! What the `http` and `resp` scenarios share: an example server's own
//! code on a simulated ring, and clients on rings of their own that send
//! rounds of pipelined requests, cut into several sends, and check every
//! byte of every answer against what the scenario's script expects.
//! Clients whose connection fails (reset, refused, an early end of stream)
//! reconnect after a pause and make the round again.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::sim::{Config, Node, Stop, World};
use ouro::{Completion, Ctx, Outcome, Ring, RingFd, Task};

use crate::Load;

const CLIENT_RINGS: usize = 2;
const RECV_SIZE: usize = 4096;
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// Virtual time the safety phase may take.
const SAFETY_TIME: Duration = Duration::from_secs(60);
/// Half the seeds end their safety phase at a seeded time below this, so
/// that their liveness phase often starts with rounds half done.
const SAFETY_CUT_NS: u64 = 200_000_000;
/// Virtual time, with faults off, in which every client must finish.
const LIVENESS_BOUND: Duration = Duration::from_secs(10);
/// How much virtual time passes between checks whether the clients are
/// done: the example servers sweep their connections every second, so the
/// world never runs out of things to do by itself.
const SLICE: Duration = Duration::from_millis(50);

ouro::messages! {
    enum Msg { Socket, Bound, Listening, Connected, Sent, Received, Retry }
}

/// One round of a client: the requests it sends, the answers it expects.
#[derive(Default)]
pub struct Round {
    /// The requests, pipelined.
    pub request: Vec<u8>,
    /// Every byte the server must send back, in order.
    pub answer: Vec<u8>,
    /// The server closes the connection after the answer.
    pub closes: bool,
    /// When the server closes on a request it refuses, input it has not
    /// read makes the close a reset, which may cut the answer short: any
    /// end of the connection once this many bytes are back ends the round.
    pub may_end_after: Option<usize>,
}

impl Round {
    fn clear(&mut self) {
        self.request.clear();
        self.answer.clear();
        self.closes = false;
        self.may_end_after = None;
    }
}

/// Writes client `client`'s next round, from the world's user stream.
pub type Script = fn(world: &World, client: u64, round: &mut Round);

struct Client {
    id: u64,
    fd: Option<RingFd>,
    round: Round,
    /// Bumped whenever a connection is given up: completions of an older
    /// attempt (in the key's upper half) are ignored.
    attempt: u32,
    sent: usize,
    got: usize,
    receiving: Option<Task>,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
    rounds_left: u32,
}

/// The clients of one ring.
pub struct Clients {
    world: World,
    script: Script,
    ring_index: usize,
    clients: Vec<Client>,
    server: SocketAddr,
}

fn key(index: usize, attempt: u32) -> u64 {
    u64::from(attempt) << 32 | index as u64
}

impl Clients {
    fn start(
        world: &World,
        ring: &mut Ring<Clients>,
        (ring_index, ids): (usize, Range<usize>),
        rounds: u32,
        script: Script,
        server: SocketAddr,
    ) -> Clients {
        let mut clients = Clients {
            world: world.clone(),
            script,
            ring_index,
            clients: Vec::new(),
            server,
        };
        for (i, id) in ids.enumerate() {
            clients.clients.push(Client {
                id: id as u64,
                fd: None,
                round: Round::default(),
                attempt: 0,
                sent: 0,
                got: 0,
                receiving: None,
                send_buf: Vec::new(),
                recv_buf: Vec::with_capacity(RECV_SIZE),
                rounds_left: rounds,
            });
            clients.next_round(ring, i);
        }
        clients
    }

    fn done(&self) -> bool {
        self.clients.iter().all(|c| c.rounds_left == 0)
    }

    /// What each client that has rounds left is doing.
    fn unfinished(&self, out: &mut Vec<String>) {
        for c in self.clients.iter().filter(|c| c.rounds_left > 0) {
            out.push(format!(
                "client {} of ring {}: {} round(s) left, {} of {} request bytes sent, \
                 {} of {} answer bytes back{}",
                c.id,
                self.ring_index,
                c.rounds_left,
                c.sent,
                c.round.request.len(),
                c.got,
                c.round.answer.len(),
                if c.fd.is_none() {
                    ", not connected"
                } else {
                    ""
                }
            ));
        }
    }

    fn ctx(&self, index: usize, msg: Msg) -> Ctx<Clients> {
        let attempt = self.clients[index].attempt;
        Ctx::new(Clients::on_completion)
            .msg(msg)
            .key(key(index, attempt))
    }

    /// Starts the client's next round (or ends the client).
    fn next_round(&mut self, ring: &mut Ring<Clients>, index: usize) {
        let client = &mut self.clients[index];
        if client.rounds_left == 0 {
            if let Some(fd) = client.fd.take() {
                ring.close(fd, Ctx::none());
            }
            return;
        }
        client.round.clear();
        (self.script)(&self.world, client.id, &mut client.round);
        client.sent = 0;
        client.got = 0;
        match client.fd {
            Some(_) => self.begin(ring, index),
            None => {
                let ctx = self.ctx(index, Msg::Socket);
                ring.socket(Domain::IPV4, Type::STREAM, None, ctx);
            }
        }
    }

    /// Sends the round's requests and receives the answers at once.
    fn begin(&mut self, ring: &mut Ring<Clients>, index: usize) {
        self.send_next(ring, index);
        self.recv(ring, index);
    }

    /// Sends the next piece of the requests: all that is left, or a
    /// random part of it, so that requests arrive cut anywhere.
    fn send_next(&mut self, ring: &mut Ring<Clients>, index: usize) {
        let pick = self.world.random();
        let ctx = self.ctx(index, Msg::Sent);
        let client = &mut self.clients[index];
        let Some(fd) = client.fd else { return };
        let left = client.round.request.len() - client.sent;
        let piece = if pick % 3 == 0 {
            left
        } else {
            1 + (pick >> 8) as usize % left
        };
        let mut data = std::mem::take(&mut client.send_buf);
        data.clear();
        data.extend_from_slice(&client.round.request[client.sent..client.sent + piece]);
        ring.send(fd, data, ctx);
    }

    fn recv(&mut self, ring: &mut Ring<Clients>, index: usize) {
        let ctx = self.ctx(index, Msg::Received);
        let client = &mut self.clients[index];
        let Some(fd) = client.fd else { return };
        let mut buf = std::mem::take(&mut client.recv_buf);
        buf.clear();
        buf.reserve(RECV_SIZE);
        client.receiving = Some(ring.recv(fd, buf, ctx));
    }

    fn on_completion(&mut self, ring: &mut Ring<Clients>, c: Completion) -> io::Result<()> {
        let (msg, key, outcome): (Msg, u64, Outcome) = c.into_parts()?;
        let index = (key & 0xffff_ffff) as usize;
        if self.clients[index].attempt != (key >> 32) as u32 {
            // Of a connection given up.
            return Ok(());
        }
        match (msg, outcome) {
            (Msg::Socket, Outcome::Socket(Ok(fd))) => {
                let fd = ring.register_fd(fd);
                self.clients[index].fd = Some(fd);
                let ctx = self.ctx(index, Msg::Connected);
                ring.connect(fd, self.server, ctx);
            }
            (Msg::Connected, Outcome::Connect(Ok(()))) => self.begin(ring, index),
            (Msg::Sent, Outcome::Send(Ok(n), buf)) => {
                let client = &mut self.clients[index];
                client.sent += n;
                client.send_buf = buf.into_vec();
                if client.sent < client.round.request.len() {
                    self.send_next(ring, index);
                } else {
                    self.finish_if_done(ring, index);
                }
            }
            (Msg::Received, Outcome::Recv(Ok(n), buf)) if n > 0 => {
                let client = &mut self.clients[index];
                client.receiving = None;
                let expected = client.round.answer.get(client.got..client.got + n);
                if expected != Some(&buf[..]) {
                    let report = format!(
                        "client {} got {n} bytes at offset {} of its {}-byte answer that \
                         are not what the server must send: {:?}",
                        client.id,
                        client.got,
                        client.round.answer.len(),
                        String::from_utf8_lossy(&buf[..n.min(200)])
                    );
                    self.world.report(report);
                    // One violation is enough: the client stops.
                    self.drop_connection(ring, index);
                    self.clients[index].rounds_left = 0;
                    return Ok(());
                }
                client.got += n;
                client.recv_buf = buf.into_vec();
                let all = client.got == client.round.answer.len();
                // After the whole answer, only a closing round reads on:
                // for its end of stream.
                if !all || client.round.closes {
                    self.recv(ring, index);
                }
                self.finish_if_done(ring, index);
            }
            (Msg::Received, Outcome::Recv(Ok(_), _)) if self.may_end(index) => {
                self.clients[index].receiving = None;
                self.end_round(ring, index);
            }
            (Msg::Retry, Outcome::Timer(_)) => self.next_round(ring, index),
            (_, Outcome::Recv(..) | Outcome::Send(..)) if self.may_end(index) => {
                self.end_round(ring, index)
            }
            // Refused, reset, a broken pipe, an early end of stream: the
            // round starts again on a new connection.
            _ => return self.fail(ring, index),
        }
        Ok(())
    }

    /// Whether the connection may end now: a closing round whose answer
    /// is back, or back as far as a reset may cut it.
    fn may_end(&self, index: usize) -> bool {
        let client = &self.clients[index];
        let round = &client.round;
        round.closes && client.got >= round.may_end_after.unwrap_or(round.answer.len())
    }

    /// Ends a round that keeps its connection once every request is sent
    /// and every answer back.
    fn finish_if_done(&mut self, ring: &mut Ring<Clients>, index: usize) {
        let client = &mut self.clients[index];
        let round = &client.round;
        if round.closes || client.sent < round.request.len() || client.got < round.answer.len() {
            return;
        }
        client.rounds_left -= 1;
        self.next_round(ring, index);
    }

    /// Ends a closing round: its connection has ended as it should.
    fn end_round(&mut self, ring: &mut Ring<Clients>, index: usize) {
        self.drop_connection(ring, index);
        self.clients[index].rounds_left -= 1;
        self.next_round(ring, index);
    }

    fn fail(&mut self, ring: &mut Ring<Clients>, index: usize) -> io::Result<()> {
        self.drop_connection(ring, index);
        let ctx = self.ctx(index, Msg::Retry);
        ring.timer(RETRY_PAUSE, ctx);
        Ok(())
    }

    /// Gives up the connection: what is still in flight on it is
    /// cancelled (a send ends by itself), and it is closed once that ends.
    fn drop_connection(&mut self, ring: &mut Ring<Clients>, index: usize) {
        let client = &mut self.clients[index];
        client.attempt = client.attempt.wrapping_add(1);
        if let Some(task) = client.receiving.take() {
            ring.cancel(task, Ctx::none());
        }
        if let Some(fd) = client.fd.take() {
            ring.close(fd, Ctx::none());
        }
    }
}

/// Makes a listening socket at `addr` in `world`, on a ring of its own.
fn listen(world: &World, addr: SocketAddr) -> io::Result<OwnedFd> {
    type Setup = (Option<std::rc::Rc<OwnedFd>>, Option<io::Error>, bool);
    fn step(state: &mut Setup, ring: &mut Ring<Setup>, c: Completion) -> io::Result<()> {
        let (_, addr, outcome): (Msg, u64, Outcome) = c.into_parts()?;
        let addr = SocketAddr::from(([10, 0, 0, 1], addr as u16));
        let ctx = |msg| Ctx::new(step).msg(msg).key(u64::from(addr.port()));
        let failed = match outcome {
            Outcome::Socket(Ok(fd)) => {
                let fd = std::rc::Rc::new(fd);
                ring.bind(fd.clone(), addr, ctx(Msg::Bound));
                state.0 = Some(fd);
                None
            }
            Outcome::Bind(Ok(())) => {
                if let Some(fd) = &state.0 {
                    ring.listen(fd.clone(), 1024, ctx(Msg::Listening));
                }
                None
            }
            Outcome::Listen(Ok(())) => {
                state.2 = true;
                None
            }
            Outcome::Socket(Err(e)) | Outcome::Bind(Err(e)) | Outcome::Listen(Err(e)) => Some(e),
            other => Some(io::Error::other(format!("setting up: {other:?}"))),
        };
        state.1 = state.1.take().or(failed);
        Ok(())
    }
    let mut ring: Ring<Setup> = Ring::simulated(world);
    let ctx = Ctx::new(step).msg(Msg::Socket).key(u64::from(addr.port()));
    ring.socket(Domain::IPV4, Type::STREAM, None, ctx);
    let mut node = (ring, (None, None, false));
    world.run(&mut [&mut node], Duration::from_secs(1))?;
    let (ring, (fd, err, listening)) = node;
    drop(ring);
    if let Some(err) = err {
        return Err(err);
    }
    match (fd.map(std::rc::Rc::try_unwrap), listening) {
        (Some(Ok(fd)), true) => Ok(fd),
        _ => Err(io::Error::other("the listener was not set up")),
    }
}

/// A scenario's server: its ring and what the example's own `start`
/// made of it.
pub type Start<S> = fn(&mut Ring<S>, OwnedFd) -> io::Result<S>;

/// Runs a server started by `start` on port `port` of 10.0.0.1, and
/// `load.clients` clients spread over two rings, each making `load.rounds`
/// rounds that `script` writes: a safety phase with the world's faults
/// (ended early at a seeded time in half the seeds), a liveness phase with
/// the network healed and the faults off in which every client must
/// finish within 10 s of virtual time (else a violation names each
/// unfinished client and partition), then shutdown: the server's ring and
/// state are dropped, as the example's `main` drops them.
pub fn run<S: 'static>(
    world: &World,
    load: Load,
    name: &str,
    port: u16,
    start: Start<S>,
    script: Script,
) -> io::Result<()> {
    let addr = SocketAddr::from(([10, 0, 0, 1], port));
    let listener = listen(world, addr)?;
    let mut server_ring: Ring<S> = Ring::simulated(world);
    let server = start(&mut server_ring, listener)?;
    let mut server = (server_ring, server);
    let per_ring = (load.clients as usize).div_ceil(CLIENT_RINGS);
    let mut clients: Vec<(Ring<Clients>, Clients)> = (0..CLIENT_RINGS)
        .map(|r| {
            let mut ring = Ring::simulated(world);
            let first = (r * per_ring).min(load.clients as usize);
            let last = ((r + 1) * per_ring).min(load.clients as usize);
            let ids = (r, first..last);
            let state = Clients::start(world, &mut ring, ids, load.rounds, script, addr);
            (ring, state)
        })
        .collect();
    let mut run_until_done = |server: &mut (Ring<S>, S), limit: Duration| -> io::Result<bool> {
        let end = world.now() + limit;
        while world.now() < end {
            if clients.iter().all(|(_, c)| c.done()) {
                return Ok(true);
            }
            let mut nodes: Vec<&mut dyn Node> = vec![server];
            nodes.extend(clients.iter_mut().map(|c| c as &mut dyn Node));
            if world.run(&mut nodes, SLICE.min(end - world.now()))? == Stop::Idle {
                // Nothing is scheduled: nothing more will happen.
                break;
            }
        }
        Ok(clients.iter().all(|(_, c)| c.done()))
    };
    let cut = world.seeded(&format!("{name}/safety_phase"));
    let safety = if cut % 2 == 0 {
        SAFETY_TIME
    } else {
        Duration::from_nanos((cut >> 1) % SAFETY_CUT_NS)
    };
    run_until_done(&mut server, safety)?;
    world.set_config(Config::calm());
    if !run_until_done(&mut server, LIVENESS_BOUND)? {
        let mut pending = Vec::new();
        for (_, state) in &clients {
            state.unfinished(&mut pending);
        }
        let unfinished = pending.len();
        pending.extend(world.unhealed());
        world.report(format!(
            "liveness: {unfinished} client(s) had not finished their rounds {LIVENESS_BOUND:?} \
             after the network healed and the faults stopped: {}",
            pending.join("; ")
        ));
    }
    // The clients' closes, and the server's answers to them, go through.
    let mut nodes: Vec<&mut dyn Node> = vec![&mut server];
    nodes.extend(clients.iter_mut().map(|c| c as &mut dyn Node));
    world.run(&mut nodes, Duration::from_secs(1))?;
    drop(server);
    Ok(())
}
