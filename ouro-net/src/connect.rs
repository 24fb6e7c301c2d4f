//! Connect by host name with Happy Eyeballs v2 (RFC 8305), on the ring.
//!
//! A [`Connector`] looks up AAAA and A at once through its own
//! [`Resolver`]. Connecting starts as soon as the AAAA answer is in, or 50
//! ms after the A answer if the AAAA one is still out (the resolution
//! delay); addresses are tried with the families interleaved, led by the
//! family of the address RFC 6724 puts first when both answers are in
//! (IPv6 when only the AAAA one is), a new attempt every 250 ms or as soon
//! as one fails, several in flight at once. The first connection made wins; the others are cancelled, and
//! one that connects after its cancel is closed with its completion
//! (nothing keeps its fd), so none leaks. Addresses that arrive while
//! attempts are under way join the queue; the next attempt starts 250 ms
//! after the last, or at once if that time has passed.
//!
//! The whole operation ends with exactly one completion of the `Ctx` it
//! was started with, a message whose [`connected`] is the socket and the
//! address it reached, or the error: the last attempt's, or the lookups'
//! when there was no address; `ECANCELED` when cancelled (or the connector
//! dropped), `ETIME` past its deadline.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ouro::net::{Domain, Type};
use ouro::{Completion, Ctx, Outcome, Payload, Ring, RingHandle, Task};

use crate::dns::literal::ip_literal;
use crate::dns::resolver::{cancel_left_behind, FOREIGN_TAG};
use crate::dns::sort::{sort_destinations, Sources};
use crate::dns::{Answer, Config, Hosts, RecordType, Resolver};

/// How long connecting waits for the AAAA answer once the A one is in
/// (RFC 8305's recommended resolution delay).
pub const RESOLUTION_DELAY: Duration = Duration::from_millis(50);
/// How long an attempt has before the next one starts alongside it (RFC
/// 8305's recommended connection attempt delay).
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// The most addresses tried for one name; a name with more ends with the
/// last attempt's error once these have failed.
pub const MAX_ATTEMPTS: usize = 64;

/// A connection made: the socket (blocking, as the ring's operations want
/// it: on io_uring a non-blocking socket's receive may end in `EAGAIN`)
/// and the address it reached.
#[derive(Debug)]
pub struct Connected {
    /// The connected socket.
    pub fd: OwnedFd,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// What a connect's completion carries; any other completion is an
/// `InvalidInput` error.
pub fn connected(c: Completion) -> io::Result<Connected> {
    match c.outcome {
        Outcome::Message(payload) => payload.into_value::<io::Result<Connected>>()?,
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a connect's completion: {other:?}"),
        )),
    }
}

/// A connect's handle, to cancel it or give it a deadline; stale once it
/// has ended, for good (its slot's generation is 64 bits wide: it does not
/// come round again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectId {
    slot: u32,
    generation: u64,
}

// A task's key: FOREIGN_TAG, the connect's slot, the low bits of its
// generation (for the lookups' answers, which come as messages), what the
// task is, and which attempt it is. It only says where to look: a
// completion of a task is taken only if the task is the one in flight
// there, which no stale task is.
const SLOT_MASK: u64 = (1 << 24) - 1;
const GENERATION_SHIFT: u32 = 24;
const GENERATION_MASK: u64 = (1 << 16) - 1;
const KIND_SHIFT: u32 = 40;
const INDEX_SHIFT: u32 = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    ResolvedV6 = 1,
    ResolvedV4,
    ResolutionDelay,
    Stagger,
    Socket,
    Connect,
    Deadline,
}

impl Kind {
    fn from_key(key: u64) -> Option<Kind> {
        Some(match (key >> KIND_SHIFT) as u8 {
            1 => Kind::ResolvedV6,
            2 => Kind::ResolvedV4,
            3 => Kind::ResolutionDelay,
            4 => Kind::Stagger,
            5 => Kind::Socket,
            6 => Kind::Connect,
            7 => Kind::Deadline,
            _ => return None,
        })
    }
}

enum Family {
    Pending,
    Done(Vec<SocketAddr>),
}

struct Attempt {
    addr: SocketAddr,
    fd: Option<Rc<OwnedFd>>,
    task: Option<Task>,
    live: bool,
}

struct Connect<S> {
    done: Ctx<S>,
    generation: u64,
    port: u16,
    v6: Family,
    v4: Family,
    lookups: Vec<crate::dns::LookupId>,
    /// Addresses not yet tried, in the order to try them.
    queue: Vec<SocketAddr>,
    attempts: Vec<Attempt>,
    connecting: bool,
    /// Whether the first attempt goes to IPv4: the RFC 6724 order of the
    /// two families' first addresses, once both are in.
    v4_first: bool,
    /// The timer in flight (resolution delay or stagger): a completion of
    /// an earlier one is stale.
    timer: Option<Task>,
    deadline: Option<Task>,
    last_error: Option<io::Error>,
}

/// Connects to host names, Happy Eyeballs v2 (see the [module docs](self)).
///
/// Its tasks (and its resolver's) carry the `ctx` it was made with; the
/// caller forwards each of their completions to
/// [`on_completion`](Connector::on_completion).
pub struct Connector<S> {
    resolver: Resolver<S>,
    ctx: Ctx<S>,
    handle: RingHandle<S>,
    connects: Vec<Option<Connect<S>>>,
    generations: Vec<u64>,
    free: Vec<u32>,
}

impl<S> Connector<S> {
    /// A connector resolving through `config` and `hosts`; its tasks carry
    /// `ctx`. Fails if the ring's mailbox cannot be set up.
    pub fn new(
        ring: &mut Ring<S>,
        config: Config,
        hosts: Hosts,
        ctx: Ctx<S>,
    ) -> io::Result<Connector<S>> {
        let resolver = Resolver::new(ring, config, hosts, ctx)?;
        Connector::with_resolver(ring, resolver)
    }

    /// A connector resolving through `resolver` (one made with
    /// [`Resolver::from_resolv_conf`], say, to follow changes of the
    /// file); its tasks carry the resolver's `ctx`. Fails if the ring's
    /// mailbox cannot be set up.
    pub fn with_resolver(ring: &mut Ring<S>, resolver: Resolver<S>) -> io::Result<Connector<S>> {
        Ok(Connector {
            ctx: resolver.ctx(),
            resolver,
            handle: ring.handle()?,
            connects: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
        })
    }

    /// Connects a TCP socket to `host` (a name, or an IP address) on
    /// `port`; `done` gets the one completion. A numeric host is read as
    /// [`ip_literal`] reads it (`127.1`, `[::1]`, `fe80::1%eth0` with the
    /// zone as its scope id; an unknown zone ends the connect with
    /// `InvalidInput`), with no lookup; a name the hosts file lists (or
    /// `localhost`) takes its addresses of both families from there, as a
    /// lookup of both families does.
    pub fn connect(
        &mut self,
        ring: &mut Ring<S>,
        host: &str,
        port: u16,
        done: Ctx<S>,
    ) -> ConnectId {
        let id = self.insert(done, port);
        // A numeric host is its address, in every form glibc reads
        // (`127.1`, `fe80::1%lo` with its zone as the scope id).
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match ip_literal(bare) {
            Some(Ok(literal)) => {
                let addr = socket_addr(literal.addr, port, literal.scope_id);
                self.connect_to(ring, id, vec![addr]);
                return id;
            }
            Some(Err(e)) => {
                self.finish(ring, id, Err(e));
                return id;
            }
            None => {}
        }
        for (qtype, kind) in [
            (RecordType::Aaaa, Kind::ResolvedV6),
            (RecordType::A, Kind::ResolvedV4),
        ] {
            let ctx = self.ctx.key(task_key(id, kind, 0));
            // Halves of one lookup of both families: a name with any
            // address in the hosts file (or `localhost`) stops there.
            let lookup = self.resolver.lookup_half(ring, host, qtype, ctx);
            if let Some(connect) = self.live(id) {
                connect.lookups.push(lookup);
            }
        }
        id
    }

    /// Starts connecting to `addrs`, known without a lookup.
    fn connect_to(&mut self, ring: &mut Ring<S>, id: ConnectId, addrs: Vec<SocketAddr>) {
        let Some(connect) = self.live(id) else { return };
        let (v6, v4) = addrs.into_iter().partition(SocketAddr::is_ipv6);
        connect.v6 = Family::Done(v6);
        connect.v4 = Family::Done(v4);
        self.start_connecting(ring, id);
    }

    /// Cancels a connect: its completion comes with `ECANCELED`. False
    /// for one that has ended.
    pub fn cancel(&mut self, ring: &mut Ring<S>, id: ConnectId) -> bool {
        self.finish(ring, id, Err(ouro::canceled_error()))
    }

    /// Gives a connect a deadline for the whole operation (lookups and
    /// attempts): past it, it ends with `ETIME`. `NotFound` for one that
    /// has ended.
    pub fn set_deadline(
        &mut self,
        ring: &mut Ring<S>,
        id: ConnectId,
        at: Instant,
    ) -> io::Result<()> {
        let ctx = self.ctx.key(task_key(id, Kind::Deadline, 0));
        let connect = self
            .live(id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if let Some(old) = connect.deadline.take() {
            ring.cancel(old, Ctx::none());
        }
        let task = ring.timer(at.saturating_duration_since(ring.now()), ctx);
        if let Some(connect) = self.live(id) {
            connect.deadline = Some(task);
        }
        Ok(())
    }

    /// Whether the connect is still going on.
    pub fn is_live(&self, id: ConnectId) -> bool {
        self.connects
            .get(id.slot as usize)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.generation == id.generation)
    }

    /// Takes a completion of one of the connector's tasks (those carrying
    /// its `ctx`). A completion of a connect that has ended, or of a task
    /// it no longer has in flight (a timer or deadline replaced, an
    /// attempt given up), is dropped: a socket it carries is closed.
    pub fn on_completion(&mut self, ring: &mut Ring<S>, c: Completion) -> io::Result<()> {
        let key = c.key();
        if key & FOREIGN_TAG == 0 {
            return self.resolver.on_completion(ring, c);
        }
        let slot = (key & SLOT_MASK) as u32;
        let Some(connect) = self.connects.get(slot as usize).and_then(Option::as_ref) else {
            return Ok(());
        };
        if (key >> GENERATION_SHIFT) & GENERATION_MASK != connect.generation & GENERATION_MASK {
            return Ok(());
        }
        let id = ConnectId {
            slot,
            generation: connect.generation,
        };
        let index = usize::from((key >> INDEX_SHIFT) as u8);
        let task = Some(c.task());
        let Some(kind) = Kind::from_key(key & !FOREIGN_TAG) else {
            return Ok(());
        };
        match kind {
            Kind::ResolvedV6 | Kind::ResolvedV4 => {
                // The key's 16 bits of generation come round: only the
                // lookup itself says whether the answer is this connect's.
                let (lookup, answer) = crate::dns::lookup_answer(c);
                if lookup.is_some_and(|lookup| connect.lookups.contains(&lookup)) {
                    self.resolved(ring, id, kind, answer);
                }
            }
            Kind::ResolutionDelay | Kind::Stagger if connect.timer == task => {
                self.timer_fired(ring, id, c.outcome)
            }
            Kind::Socket | Kind::Connect
                if connect.attempts.get(index).is_some_and(|a| a.task == task) =>
            {
                self.attempt_progress(ring, id, index, c.outcome)
            }
            Kind::Deadline if connect.deadline == task => {
                if matches!(c.outcome, Outcome::Timer(Ok(()))) {
                    self.finish(ring, id, Err(ouro::deadline_error()));
                }
            }
            // Stale: an earlier timer, deadline or try's task.
            _ => {}
        }
        Ok(())
    }

    fn insert(&mut self, done: Ctx<S>, port: u16) -> ConnectId {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.connects.push(None);
            self.generations.push(0);
            (self.connects.len() - 1) as u32
        });
        let generation = self.generations[slot as usize];
        self.connects[slot as usize] = Some(Connect {
            done,
            generation,
            port,
            v6: Family::Pending,
            v4: Family::Pending,
            lookups: Vec::new(),
            queue: Vec::new(),
            attempts: Vec::new(),
            connecting: false,
            v4_first: false,
            timer: None,
            deadline: None,
            last_error: None,
        });
        ConnectId { slot, generation }
    }

    fn live(&mut self, id: ConnectId) -> Option<&mut Connect<S>> {
        self.connects
            .get_mut(id.slot as usize)?
            .as_mut()
            .filter(|c| c.generation == id.generation)
    }

    fn resolved(
        &mut self,
        ring: &mut Ring<S>,
        id: ConnectId,
        kind: Kind,
        answer: io::Result<Answer>,
    ) {
        let Some(connect) = self.live(id) else { return };
        let port = connect.port;
        let addrs = match answer {
            Ok(answer) => (answer.addresses().into_iter())
                .map(|ip| socket_addr(ip, port, 0))
                .collect(),
            Err(e) => {
                connect.last_error.get_or_insert(e);
                Vec::new()
            }
        };
        let v6_done = kind == Kind::ResolvedV6;
        if v6_done {
            connect.v6 = Family::Done(addrs);
        } else {
            connect.v4 = Family::Done(addrs);
        }
        if connect.connecting {
            connect.refill_queue();
            return self.next_attempt_if_due(ring, id);
        }
        match (&connect.v6, &connect.v4) {
            // The AAAA answer is in with addresses, or both answers are in.
            (Family::Done(v6), _) if !v6.is_empty() => self.start_connecting(ring, id),
            (Family::Done(_), Family::Done(_)) => self.start_connecting(ring, id),
            // RFC 8305 section 3: give AAAA a moment before going IPv4-only.
            (Family::Pending, Family::Done(v4)) if !v4.is_empty() => {
                self.start_timer(ring, id, Kind::ResolutionDelay, RESOLUTION_DELAY)
            }
            _ => {}
        }
    }

    fn start_timer(&mut self, ring: &mut Ring<S>, id: ConnectId, kind: Kind, after: Duration) {
        let Some(connect) = self.live(id) else { return };
        if let Some(old) = connect.timer.take() {
            ring.cancel(old, Ctx::none());
        }
        let task = ring.timer(after, self.ctx.key(task_key(id, kind, 0)));
        if let Some(connect) = self.live(id) {
            connect.timer = Some(task);
        }
    }

    fn timer_fired(&mut self, ring: &mut Ring<S>, id: ConnectId, outcome: Outcome) {
        let Some(connect) = self.live(id) else { return };
        if !matches!(outcome, Outcome::Timer(Ok(()))) {
            return;
        }
        connect.timer = None;
        if !connect.connecting {
            return self.start_connecting(ring, id);
        }
        self.start_next_attempt(ring, id);
    }

    fn start_connecting(&mut self, ring: &mut Ring<S>, id: ConnectId) {
        let Some(connect) = self.live(id) else { return };
        connect.connecting = true;
        // RFC 8305 section 4: the family of the address RFC 6724 puts
        // first leads (IPv4 before a unique local IPv6 address, say).
        if let (Family::Done(v6), Family::Done(v4)) = (&connect.v6, &connect.v4) {
            if let (Some(v6), Some(v4)) = (v6.first(), v4.first()) {
                connect.v4_first = v4_leads(v6.ip(), v4.ip(), ring);
            }
        }
        connect.refill_queue();
        self.start_next_attempt(ring, id);
    }

    /// Starts the next address's attempt and the stagger timer; ends the
    /// connect when nothing is left to try or wait for.
    fn start_next_attempt(&mut self, ring: &mut Ring<S>, id: ConnectId) {
        let Some(connect) = self.live(id) else { return };
        if !connect.may_try_more() {
            return self.fail_if_exhausted(ring, id);
        }
        let addr = connect.queue.remove(0);
        let index = connect.attempts.len();
        let ctx = self.ctx.key(task_key(id, Kind::Socket, index as u8));
        let task = ring.socket(Domain::for_address(addr), Type::STREAM, None, ctx);
        let Some(connect) = self.live(id) else { return };
        connect.attempts.push(Attempt {
            addr,
            fd: None,
            task: Some(task),
            live: true,
        });
        self.start_timer(ring, id, Kind::Stagger, ATTEMPT_DELAY);
    }

    /// After addresses arrived: start one now if none is in flight, or if
    /// the stagger delay since the last one has passed already (its timer
    /// fired with nothing to start); otherwise the running timer will.
    fn next_attempt_if_due(&mut self, ring: &mut Ring<S>, id: ConnectId) {
        let Some(connect) = self.live(id) else { return };
        if connect.timer.is_some() && connect.attempts.iter().any(|a| a.live) {
            return;
        }
        self.start_next_attempt(ring, id);
    }

    fn fail_if_exhausted(&mut self, ring: &mut Ring<S>, id: ConnectId) {
        let Some(connect) = self.live(id) else { return };
        let waiting =
            matches!(connect.v6, Family::Pending) || matches!(connect.v4, Family::Pending);
        if waiting || connect.attempts.iter().any(|a| a.live) || connect.may_try_more() {
            return;
        }
        let error = connect
            .last_error
            .take()
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to"));
        self.finish(ring, id, Err(error));
    }

    fn attempt_progress(
        &mut self,
        ring: &mut Ring<S>,
        id: ConnectId,
        index: usize,
        outcome: Outcome,
    ) {
        let connect_ctx = self.ctx.key(task_key(id, Kind::Connect, index as u8));
        let Some(connect) = self.live(id) else { return };
        let Some(attempt) = connect.attempts.get_mut(index) else {
            return;
        };
        attempt.task = None;
        let error = match outcome {
            Outcome::Socket(Ok(fd)) => {
                // Non-blocking, so that io_uring waits for the handshake by
                // polling, which a cancel ends at once (a blocking connect
                // in a kernel worker runs until TCP gives up).
                if let Err(e) = socket2::SockRef::from(&fd).set_nonblocking(true) {
                    return self.attempt_failed(ring, id, index, e);
                }
                let fd = Rc::new(fd);
                attempt.fd = Some(fd.clone());
                attempt.task = Some(ring.connect(fd, attempt.addr, connect_ctx));
                return;
            }
            Outcome::Connect(Ok(())) => return self.won(ring, id, index),
            Outcome::Socket(Err(e)) | Outcome::Connect(Err(e)) => e,
            other => io::Error::other(format!("unexpected completion {other:?}")),
        };
        self.attempt_failed(ring, id, index, error);
    }

    fn attempt_failed(
        &mut self,
        ring: &mut Ring<S>,
        id: ConnectId,
        index: usize,
        error: io::Error,
    ) {
        let Some(connect) = self.live(id) else { return };
        let Some(attempt) = connect.attempts.get_mut(index) else {
            return;
        };
        attempt.live = false;
        attempt.fd = None;
        connect.last_error = Some(error);
        // RFC 8305 section 5: a failure starts the next attempt at once.
        self.start_next_attempt(ring, id);
    }

    fn won(&mut self, ring: &mut Ring<S>, id: ConnectId, index: usize) {
        let Some(connect) = self.live(id) else { return };
        let attempt = &mut connect.attempts[index];
        attempt.live = false;
        let peer = attempt.addr;
        let fd = attempt.fd.take().map(Rc::try_unwrap);
        let result = match fd {
            // Non-blocking only for the connect (see `attempt`).
            Some(Ok(fd)) => socket2::SockRef::from(&fd)
                .set_nonblocking(false)
                .map(|()| Connected { fd, peer }),
            _ => Err(io::Error::other("the connected socket is still shared")),
        };
        self.finish(ring, id, result);
    }

    /// Ends a connect: cancels its lookups, timers and other attempts
    /// (their sockets close with their completions) and sends the result.
    fn finish(&mut self, ring: &mut Ring<S>, id: ConnectId, result: io::Result<Connected>) -> bool {
        if !self.is_live(id) {
            return false;
        }
        let Some(mut connect) = self.connects[id.slot as usize].take() else {
            return false;
        };
        for lookup in connect.lookups.drain(..) {
            self.resolver.cancel(ring, lookup);
        }
        abort_attempts(&connect.attempts);
        let attempts = connect.attempts.iter_mut().filter_map(|a| a.task.take());
        for task in attempts
            .chain(connect.timer.take())
            .chain(connect.deadline.take())
        {
            ring.cancel(task, Ctx::none());
        }
        self.generations[id.slot as usize] += 1;
        self.free.push(id.slot);
        let _ = self.handle.send(connect.done, Payload::value(result));
        true
    }
}

impl<S> Connect<S> {
    /// Whether an address is left to try, within [`MAX_ATTEMPTS`].
    fn may_try_more(&self) -> bool {
        !self.queue.is_empty() && self.attempts.len() < MAX_ATTEMPTS
    }

    /// The addresses not yet tried, families interleaved (RFC 8305
    /// section 4, a first address family count of one): the leading
    /// family first (`v4_first`), or, when addresses arrive after attempts
    /// have started, the other family than the last attempt's, so that the
    /// alternation goes on.
    fn refill_queue(&mut self) {
        let tried: Vec<SocketAddr> = self.attempts.iter().map(|a| a.addr).collect();
        let untried = |family: &Family| -> Vec<SocketAddr> {
            match family {
                Family::Pending => Vec::new(),
                Family::Done(addrs) => addrs
                    .iter()
                    .filter(|a| !tried.contains(a))
                    .copied()
                    .collect(),
            }
        };
        let (v6, v4) = (untried(&self.v6), untried(&self.v4));
        let mut queue = Vec::with_capacity(v6.len() + v4.len());
        let v4_next = match self.attempts.last() {
            Some(last) => last.addr.is_ipv6(),
            None => self.v4_first,
        };
        let (first, second) = if v4_next { (v4, v6) } else { (v6, v4) };
        let (mut first, mut second) = (first.into_iter(), second.into_iter());
        loop {
            let (a, b) = (first.next(), second.next());
            if a.is_none() && b.is_none() {
                break;
            }
            queue.extend(a);
            queue.extend(b);
        }
        self.queue = queue;
    }
}

/// Ends each connect with `ECANCELED`, aborts its attempts and has the
/// ring cancel its timers, deadline and attempts' tasks, as a message (as
/// the resolver's drop does: drop has no ring, only the handle).
impl<S> Drop for Connector<S> {
    fn drop(&mut self) {
        let mut in_flight = Vec::new();
        for connect in self.connects.iter_mut().filter_map(Option::take) {
            abort_attempts(&connect.attempts);
            in_flight.extend(connect.attempts.iter().filter_map(|a| a.task));
            in_flight.extend(connect.timer.into_iter().chain(connect.deadline));
            let canceled = ouro::canceled_error();
            let _ = self
                .handle
                .send(connect.done, Payload::value(Err::<Connected, _>(canceled)));
        }
        if !in_flight.is_empty() {
            let cancel = Ctx::new(cancel_left_behind::<S>);
            let _ = self.handle.send(cancel, Payload::value(in_flight));
        }
    }
}

/// Aborts the connects still in progress: a shutdown of a socket in
/// SYN_SENT disconnects it, so its connect task ends at once on every
/// backend (also when the connector is dropped and can no longer cancel
/// it), and its socket closes with the completion.
fn abort_attempts(attempts: &[Attempt]) {
    for fd in attempts
        .iter()
        .filter(|a| a.live)
        .filter_map(|a| a.fd.as_ref())
    {
        let _ = socket2::SockRef::from(&**fd).shutdown(std::net::Shutdown::Both);
    }
}

/// Whether IPv4 address `v4` comes before IPv6 address `v6` in RFC 6724's
/// order, as `sources` sees the routes.
fn v4_leads(v6: IpAddr, v4: IpAddr, sources: &mut impl Sources) -> bool {
    let mut heads = [v6, v4];
    sort_destinations(&mut heads, sources);
    heads[0].is_ipv4()
}

fn task_key(id: ConnectId, kind: Kind, index: u8) -> u64 {
    FOREIGN_TAG
        | u64::from(id.slot)
        | ((id.generation & GENERATION_MASK) << GENERATION_SHIFT)
        | ((kind as u64) << KIND_SHIFT)
        | (u64::from(index) << INDEX_SHIFT)
}

/// The socket address of `ip` on `port`, an IPv6 one with `scope_id`.
fn socket_addr(ip: IpAddr, port: u16, scope_id: u32) -> SocketAddr {
    match ip {
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope_id)),
        IpAddr::V4(_) => SocketAddr::new(ip, port),
    }
}

#[cfg(test)]
mod tests;
