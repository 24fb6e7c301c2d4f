//! One question to the servers on the ring: a fresh socket per try
//! (connected, so the kernel drops datagrams from any other address),
//! retries over the servers, EDNS0 dropped after a FORMERR, TCP after a
//! truncated answer.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ouro::net::{Domain, Type};
use ouro::{Ctx, Outcome, Ring, Task};

use super::wire::{self, Record, RecordType, Verdict, MAX_CNAME_CHAIN};

/// Room for a reply over UDP: larger than the EDNS0 payload asked for, so
/// that a server ignoring it still fits (a larger datagram is cut, fails
/// to parse and is ignored).
const UDP_REPLY_ROOM: usize = 4096;

/// How a question ended.
#[derive(Debug)]
pub(crate) enum Ended {
    Records {
        canonical: String,
        records: Vec<Record>,
    },
    NoData,
    NxDomain,
    Failed(io::Error),
}

/// The servers and limits every try of a lookup follows.
pub(crate) struct Plan<'a> {
    pub servers: &'a [SocketAddr],
    /// The server the first try goes to (`rotate` moves it per lookup).
    pub first: usize,
    pub attempts: u8,
    pub timeout: Duration,
    pub use_tcp: bool,
}

/// One question (a name and a type) being asked.
pub(crate) struct Exchange<S> {
    pub qtype: RecordType,
    /// The name asked for: the lookup's, or the target of its CNAMEs.
    name: String,
    /// The names asked for before `name`, each a CNAME of the next.
    aliases: Vec<String>,
    /// The CNAMEs followed so far, over all the answers.
    cnames: usize,
    /// Its tasks' context: callback, message and the key naming the lookup
    /// and this exchange.
    ctx: Ctx<S>,
    tries: usize,
    id: u16,
    edns: bool,
    tcp: bool,
    server: Option<SocketAddr>,
    /// When the try's tasks are cut short; none for a timeout past the
    /// clock's range (`Duration::MAX` is "no timeout").
    try_deadline: Option<Instant>,
    fd: Option<Rc<OwnedFd>>,
    /// The task in flight: a completion of any other is stale.
    task: Option<Task>,
    query: Vec<u8>,
    last_error: Option<io::Error>,
    pub ended: Option<Ended>,
    pub started: bool,
}

/// A fresh query ID from the ring's random source (the OS's CSPRNG on a
/// real ring: an off-path attacker who could guess it could forge
/// answers; the world's seeded stream under the simulator, so that a run
/// replays).
fn query_id<S>(ring: &mut Ring<S>) -> io::Result<u16> {
    ring.random_u64().map(|random| random as u16)
}

impl<S> Exchange<S> {
    /// The exchange for `name` and `qtype`; its tasks carry `ctx` with `key`.
    pub fn new(name: String, qtype: RecordType, ctx: Ctx<S>, key: u64, edns: bool) -> Exchange<S> {
        Exchange {
            qtype,
            name,
            aliases: Vec::new(),
            cnames: 0,
            ctx: ctx.key(key),
            tries: 0,
            id: 0,
            edns,
            tcp: false,
            server: None,
            try_deadline: None,
            fd: None,
            task: None,
            query: Vec::new(),
            last_error: None,
            ended: None,
            started: false,
        }
    }

    /// The task in flight, if any.
    pub fn in_flight(&self) -> Option<Task> {
        self.task
    }

    /// Whether `task` is the one in flight (a completion of any other is
    /// stale: of an earlier try, or not this exchange's at all).
    pub fn is_in_flight(&self, task: Task) -> bool {
        self.task == Some(task)
    }

    /// Cancels what is in flight (its completion then is no longer of the
    /// task in flight and is dropped, closing the socket).
    pub fn stop(&mut self, ring: &mut Ring<S>) {
        self.fd = None;
        if let Some(task) = self.task.take() {
            ring.cancel(task, Ctx::none());
        }
    }

    /// The next try: the next server, a fresh socket, a fresh ID.
    pub fn next_try(&mut self, ring: &mut Ring<S>, plan: &Plan) {
        self.started = true;
        let total = usize::from(plan.attempts) * plan.servers.len();
        if self.tries >= total {
            let error = self.last_error.take().unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::TimedOut, "no answer from the name servers")
            });
            return self.end(ring, Ended::Failed(error));
        }
        let server = plan.servers[(plan.first + self.tries) % plan.servers.len()];
        self.tries += 1;
        self.server = Some(server);
        self.tcp = plan.use_tcp;
        self.try_deadline = ring.now().checked_add(plan.timeout);
        self.start_socket(ring);
    }

    /// The same server again (without EDNS0, or over TCP), within the same
    /// deadline.
    fn same_server_again(&mut self, ring: &mut Ring<S>) {
        self.start_socket(ring);
    }

    fn start_socket(&mut self, ring: &mut Ring<S>) {
        self.stop(ring);
        let Some(server) = self.server else { return };
        let id = match query_id(ring) {
            Ok(id) => id,
            Err(e) => return self.end(ring, Ended::Failed(e)),
        };
        self.id = id;
        self.query = match wire::encode_query(id, &self.name, self.qtype, self.edns) {
            Ok(query) => query,
            Err(e) => return self.end(ring, Ended::Failed(e)),
        };
        if self.tcp {
            let len = (self.query.len() as u16).to_be_bytes();
            self.query.splice(0..0, len);
        }
        let ty = if self.tcp { Type::STREAM } else { Type::DGRAM };
        let task = ring.socket(Domain::for_address(server), ty, None, self.ctx);
        self.track(ring, task);
    }

    fn track(&mut self, ring: &mut Ring<S>, task: Task) {
        self.task = Some(task);
        if let Some(deadline) = self.try_deadline {
            // A task that finished at once is no longer live: nothing to bound.
            let _ = ring.set_deadline(task, deadline);
        }
    }

    fn end(&mut self, ring: &mut Ring<S>, ended: Ended) {
        self.stop(ring);
        self.ended = Some(ended);
    }

    /// A completion of the current try. Returns whether the exchange has
    /// ended.
    pub fn on_completion(&mut self, ring: &mut Ring<S>, outcome: Outcome, plan: &Plan) -> bool {
        self.task = None;
        let result = match outcome {
            Outcome::Socket(Ok(fd)) => self.connect(ring, fd),
            Outcome::Connect(Ok(())) => self.connected(ring),
            Outcome::Send(Ok(sent), _) => self.sent(ring, sent),
            Outcome::Recv(Ok(n), buf) => self.received(ring, n, buf.into_vec(), plan),
            other => Err(step_error(other)),
        };
        if let Err(e) = result {
            self.last_error = Some(match ouro::is_deadline(&e) {
                true => io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the name server in time",
                ),
                false => e,
            });
            self.next_try(ring, plan);
        }
        self.ended.is_some()
    }

    fn connect(&mut self, ring: &mut Ring<S>, fd: OwnedFd) -> io::Result<()> {
        let server = self.server.ok_or_else(|| io::Error::other("no server"))?;
        // Non-blocking for the connect, so that a TCP connect to a server
        // that never answers waits by polling, which its deadline ends at
        // once; blocking again once connected (on io_uring a receive on a
        // non-blocking socket may end in `EAGAIN`). A UDP connect does not
        // wait.
        socket2::SockRef::from(&fd).set_nonblocking(self.tcp)?;
        let fd = Rc::new(fd);
        self.fd = Some(fd.clone());
        let task = ring.connect(fd, server, self.ctx);
        self.track(ring, task);
        Ok(())
    }

    fn connected(&mut self, ring: &mut Ring<S>) -> io::Result<()> {
        if let (true, Some(fd)) = (self.tcp, &self.fd) {
            socket2::SockRef::from(&**fd).set_nonblocking(false)?;
        }
        self.send(ring, 0)
    }

    fn send(&mut self, ring: &mut Ring<S>, from: usize) -> io::Result<()> {
        let fd = self
            .fd
            .clone()
            .ok_or_else(|| io::Error::other("no socket"))?;
        let task = ring.send(fd, self.query[from..].to_vec(), self.ctx);
        self.track(ring, task);
        Ok(())
    }

    fn sent(&mut self, ring: &mut Ring<S>, sent: usize) -> io::Result<()> {
        if self.tcp && sent < self.query.len() {
            self.query.drain(..sent);
            return self.send(ring, 0);
        }
        self.recv(ring, Vec::with_capacity(UDP_REPLY_ROOM))
    }

    fn recv(&mut self, ring: &mut Ring<S>, buf: Vec<u8>) -> io::Result<()> {
        let fd = self
            .fd
            .clone()
            .ok_or_else(|| io::Error::other("no socket"))?;
        let task = ring.recv(fd, buf, self.ctx);
        self.track(ring, task);
        Ok(())
    }

    fn received(
        &mut self,
        ring: &mut Ring<S>,
        n: usize,
        mut buf: Vec<u8>,
        plan: &Plan,
    ) -> io::Result<()> {
        if self.tcp {
            return self.received_on_tcp(ring, n, buf, plan);
        }
        let verdict = wire::judge(self.id, &self.name, self.qtype, self.edns, false, &buf);
        if matches!(verdict, Verdict::Ignore) {
            buf.clear();
            return self.recv(ring, buf);
        }
        self.follow(ring, verdict, plan);
        Ok(())
    }

    /// TCP: a 2-byte length, then the message, in as many reads as it takes.
    fn received_on_tcp(
        &mut self,
        ring: &mut Ring<S>,
        n: usize,
        mut buf: Vec<u8>,
        plan: &Plan,
    ) -> io::Result<()> {
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the TCP connection mid-answer",
            ));
        }
        let Some(len) = buf
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            buf.reserve(2);
            return self.recv(ring, buf);
        };
        if buf.len() < 2 + len {
            buf.reserve(2 + len - buf.len());
            return self.recv(ring, buf);
        }
        let verdict = wire::judge(
            self.id,
            &self.name,
            self.qtype,
            self.edns,
            true,
            &buf[2..2 + len],
        );
        if matches!(verdict, Verdict::Ignore) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TCP answer was not for this question",
            ));
        }
        self.follow(ring, verdict, plan);
        Ok(())
    }

    fn follow(&mut self, ring: &mut Ring<S>, verdict: Verdict, plan: &Plan) {
        match verdict {
            Verdict::Ignore => {}
            Verdict::Answer { canonical, records } => {
                self.end(ring, Ended::Records { canonical, records })
            }
            Verdict::Alias { target, hops } => self.ask_for_alias_target(ring, target, hops, plan),
            Verdict::NoData => self.end(ring, Ended::NoData),
            Verdict::NxDomain => self.end(ring, Ended::NxDomain),
            Verdict::Failed(e) => self.end(ring, Ended::Failed(e)),
            Verdict::NextServer => {
                self.last_error = Some(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "the name servers refused or failed",
                ));
                self.next_try(ring, plan);
            }
            Verdict::RetryWithoutEdns => {
                self.edns = false;
                self.same_server_again(ring);
            }
            Verdict::Truncated => {
                self.tcp = true;
                self.same_server_again(ring);
            }
        }
    }

    /// Asks for the target of a CNAME chain whose records the answer left
    /// out (as glibc does), from the first server on, with fresh tries: the
    /// CNAMEs of every answer count against the one cap, and a target asked
    /// for before is a loop.
    fn ask_for_alias_target(
        &mut self,
        ring: &mut Ring<S>,
        target: String,
        hops: usize,
        plan: &Plan,
    ) {
        self.cnames += hops;
        let refusal = if self.aliases.contains(&target) {
            Some("a CNAME loop across answers")
        } else if self.cnames > MAX_CNAME_CHAIN {
            Some("a CNAME chain longer than 8")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            let error = io::Error::new(io::ErrorKind::InvalidData, refusal);
            return self.end(ring, Ended::Failed(error));
        }
        let alias = std::mem::replace(&mut self.name, target);
        self.aliases.push(alias);
        self.tries = 0;
        self.last_error = None;
        self.next_try(ring, plan);
    }
}

/// The error of a step that failed (an unexpected outcome is a bug in the
/// key bookkeeping, reported as an error rather than a panic).
fn step_error(outcome: Outcome) -> io::Error {
    match outcome {
        Outcome::Socket(Err(e)) | Outcome::Connect(Err(e)) => e,
        Outcome::Send(Err(e), _) | Outcome::Recv(Err(e), _) => e,
        other => io::Error::other(format!("unexpected completion {other:?}")),
    }
}
