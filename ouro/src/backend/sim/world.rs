//! The world: one virtual clock, the seeded streams, the queue of events,
//! the network, the checkers; and the loop that steps every node.

use std::cell::{Cell, RefCell};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use super::clock::END_OF_TIME;
use super::faults::{name_hash, Config, Fault, FaultCounts, FaultTally, Stream, Streams};
use super::files::Files;
use super::groups::Groups;
use super::multishot::shuffle_keeping_shots;
use super::net::Net;
use super::partition::{Held, Paths};
use super::udp::Udp;
use crate::backend::{RawCompletion, MORE};
use crate::op::OpKind;
use crate::time::duration_ns;

/// A simulated world: the clock, the network and the random streams that
/// the rings made with [`Ring::simulated`](crate::Ring::simulated) share.
/// Single-threaded; clones share the same world. See the
/// [module docs](super).
#[derive(Clone)]
pub struct World {
    pub(crate) state: Rc<RefCell<State>>,
    pub(crate) now: Rc<Cell<u64>>,
}

/// A ring, with what it needs to run, as the world steps it: a
/// `(Ring<S>, S)` pair is one.
pub trait Node {
    /// Runs one turn of the ring without waiting
    /// ([`RunMode::NoWait`](crate::RunMode::NoWait)).
    fn step(&mut self) -> io::Result<()>;

    /// When the node next has something to do: the current time if it
    /// has work ready, else its nearest timer; `None` if nothing but
    /// another party can wake it.
    fn next_wake(&self) -> Option<u64>;
}

/// Why [`World::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Nothing is scheduled any more: no event, no timer, no work ready.
    Idle,
    /// The time limit came first.
    TimeUp,
}

/// Turns in a row with completions ready but no node of the run stepping
/// and nothing delivered, after which [`World::run`] takes them for
/// another ring's and goes on to what is scheduled.
const IDLE_TURNS_BEFORE_SCHEDULED: u32 = 16;

/// A planted defect, for showing that the checkers and the runner find
/// one; never on unless a test asks.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// One completion in a hundred is lost.
    DropCompletion,
    /// Partitions never heal, not even when the faults go off.
    PartitionNeverHeals,
    /// One completion in a hundred that overflow the completion queue is
    /// lost.
    DropOverflowed,
    /// One fsync in five succeeds without keeping the file's data.
    FsyncForgets,
    /// One message in twenty (with a payload that can be copied) is
    /// delivered twice.
    DuplicateMessage,
}

/// A completion waiting to be reaped, with the fd it makes, if any.
pub(crate) struct Ready {
    pub(crate) completion: RawCompletion,
    pub(crate) fd: Option<OwnedFd>,
}

pub(crate) enum What {
    Complete { node: u32, ready: Ready },
    Arrive { sock: usize, len: usize },
    Fin { sock: usize },
    Reset { sock: usize },
    PartitionStart,
    Heal { id: u64 },
    Datagram { slot: usize },
    Unreachable { sock: usize },
    Cancel { node: u32, user_data: u64 },
    GiveUp { sock: usize },
    ConnectGiveUp { key: (u32, u64), since: u64 },
    MessagesDue,
}

pub(crate) struct Event {
    at: u64,
    seq: u64,
    pub(crate) what: What,
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Event) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Event) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Folds `word` into `hash`: one rotate, xor and multiply, cheap enough for
/// every completion and every key lookup.
fn mix(hash: u64, word: u64) -> u64 {
    (hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// Hashes the (node, user_data) keys of operations in flight: a multiply
/// per word instead of SipHash, as the keys come from the rings, not from
/// an adversary, and the map is never iterated in its own order.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = mix(self.0, n);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) struct State {
    pub(crate) now: Rc<Cell<u64>>,
    pub(crate) seed: u64,
    pub(crate) config: Config,
    pub(crate) streams: Streams,
    pub(crate) events: BinaryHeap<Reverse<Event>>,
    seq: u64,
    /// Completions due, by node, not yet reaped.
    pub(crate) ready: Vec<Vec<Ready>>,
    /// Completions that overflowed each node's completion queue.
    pub(crate) overflow: Vec<VecDeque<Ready>>,
    pub(crate) net: Net,
    pub(crate) paths: Paths,
    pub(crate) udp: Udp,
    /// Operations started and not yet completed, by (node, user_data).
    in_flight: HashMap<(u32, u64), OpKind, BuildHasherDefault<KeyHasher>>,
    pub(crate) violations: Vec<String>,
    pub(crate) faults: FaultTally,
    log_hash: u64,
    ops: u64,
    pub(crate) bug: Option<Bug>,
    /// The host's files.
    pub(crate) fs: Files,
    /// Nodes that crashed: completions still on their way to them are dropped.
    pub(crate) down: Vec<u32>,
    /// The rings of spawned threads, which `World::run` steps too.
    pub(crate) threads: Vec<super::threads::SpawnedNode>,
    /// The ring that owns each socket's ring fd.
    pub(crate) owners: HashMap<usize, u32>,
    /// The buffer groups the rings made, for the end check.
    pub(crate) groups: Groups,
}

impl World {
    /// A world whose faults come from `seed`'s configuration
    /// ([`Config::from_seed`]).
    pub fn new(seed: u64) -> World {
        World::with_config(seed, Config::from_seed(seed))
    }

    /// A world with `seed`'s streams and the given configuration.
    pub fn with_config(seed: u64, config: Config) -> World {
        let now = Rc::new(Cell::new(0));
        let state = State {
            now: now.clone(),
            seed,
            config,
            streams: Streams::new(seed),
            events: BinaryHeap::new(),
            seq: 0,
            ready: Vec::new(),
            overflow: Vec::new(),
            net: Net::default(),
            paths: Paths::default(),
            udp: Udp::default(),
            in_flight: HashMap::default(),
            violations: Vec::new(),
            faults: FaultTally::default(),
            log_hash: mix(0xcbf2_9ce4_8422_2325, seed),
            ops: 0,
            bug: None,
            fs: Files::default(),
            down: Vec::new(),
            threads: Vec::new(),
            owners: HashMap::new(),
            groups: Groups::default(),
        };
        let world = World {
            state: Rc::new(RefCell::new(state)),
            now,
        };
        world.state.borrow_mut().arm_partitions();
        world
    }

    /// The seed the world was made with.
    pub fn seed(&self) -> u64 {
        self.state.borrow().seed
    }

    /// The fault configuration in force.
    pub fn config(&self) -> Config {
        self.state.borrow().config.clone()
    }

    /// Replaces the fault configuration (e.g. [`Config::calm`] for a
    /// liveness phase); the streams go on where they were. A configuration
    /// without partitions heals every partition at once, delivering what
    /// the cut paths held.
    pub fn set_config(&self, config: Config) {
        let mut state = self.state.borrow_mut();
        state.config = config;
        state.arm_partitions();
    }

    /// The partitions not healed, each with its hosts, how long it has
    /// lasted and what it holds: what a liveness failure names.
    pub fn unhealed(&self) -> Vec<String> {
        self.state.borrow().unhealed()
    }

    /// Plants a defect; for tests of the simulator itself.
    #[doc(hidden)]
    pub fn plant(&self, bug: Bug) {
        self.state.borrow_mut().bug = Some(bug);
    }

    /// Virtual time since the world began.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now.get())
    }

    /// A number that depends on the seed and `name` alone, drawn from no
    /// stream: for a scenario's own decisions (such as when its safety
    /// phase ends) that must shift no other decision.
    pub fn seeded(&self, name: &str) -> u64 {
        fastrand::Rng::with_seed(self.seed() ^ name_hash(name)).u64(..)
    }

    /// A number from the user's own seeded stream.
    pub fn random(&self) -> u64 {
        self.state.borrow_mut().streams.get(Stream::User).u64(..)
    }

    /// Faults injected so far, by class.
    pub fn faults(&self) -> FaultCounts {
        self.state.borrow().faults.counts()
    }

    /// Completions handed to rings so far.
    pub fn ops(&self) -> u64 {
        self.state.borrow().ops
    }

    /// A hash of every completion so far (when, to which operation, with
    /// what result): equal for two runs of the same seed.
    pub fn log_hash(&self) -> u64 {
        self.state.borrow().log_hash
    }

    /// The violations the checkers found so far.
    pub fn violations(&self) -> Vec<String> {
        self.state.borrow().violations.clone()
    }

    /// Records a violation found by user code (a scenario's own checks).
    pub fn report(&self, violation: impl Into<String>) {
        self.state.borrow_mut().violations.push(violation.into());
    }

    /// The checks at the end of a run: nothing in flight, no simulated fd
    /// open, every buffer of a group back in it. Adds what they find to
    /// the violations, and returns them all.
    pub fn finish(&self) -> Vec<String> {
        let running = World::take_running(&mut self.state.borrow_mut());
        // Their rings drop here, closing what they hold.
        drop(running);
        let mut state = self.state.borrow_mut();
        state.close_dropped();
        let mut in_flight: Vec<_> = state.in_flight.iter().map(|(&k, &v)| (k, v)).collect();
        in_flight.sort_by_key(|&(key, _)| key);
        for ((node, user_data), kind) in in_flight {
            state.violations.push(format!(
                "in flight at the end: {kind:?} of ring {node} (user_data {user_data:#x})"
            ));
        }
        // Named by the world's number: an fd's number depends on the
        // process, not the seed.
        for sock in state.net.fds.open_sockets() {
            state.violations.push(format!(
                "simulated socket {sock} still has an open fd at the end"
            ));
        }
        let files = state.fs.open_count();
        if files > 0 {
            state
                .violations
                .push(format!("{files} simulated file(s) still open at the end"));
        }
        state.check_groups();
        state.violations.clone()
    }

    /// Steps every node, in an order drawn from the seed, until nothing
    /// is scheduled or `limit` of virtual time has passed; when no node
    /// has work ready, the clock jumps to the next event or timer. A
    /// timer due at the end of virtual time counts as nothing scheduled.
    pub fn run(&self, nodes: &mut [&mut dyn Node], limit: Duration) -> io::Result<Stop> {
        let deadline = self.now.get().saturating_add(duration_ns(limit));
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        let mut threads = Vec::new();
        let mut idle_turns = 0;
        loop {
            let ops_before = self.state.borrow().ops;
            self.state.borrow_mut().process_due();
            self.spawned(&mut threads);
            if order.len() != nodes.len() + threads.len() {
                order = (0..nodes.len() + threads.len()).collect();
            }
            self.state
                .borrow_mut()
                .streams
                .get(Stream::Order)
                .shuffle(&mut order);
            for &i in &order {
                match i.checked_sub(nodes.len()) {
                    None => nodes[i].step()?,
                    Some(t) => threads[t].borrow_mut().step()?,
                }
            }
            let now = self.now.get();
            // Fetched again: a step may have spawned a thread with work.
            self.spawned(&mut threads);
            let thread_wake = threads.iter().filter_map(|t| t.borrow().next_wake()).min();
            let timer = nodes
                .iter()
                .filter_map(|n| n.next_wake())
                .chain(thread_wake)
                .filter(|&at| at < END_OF_TIME)
                .min();
            // Before the clock moves: a socket whose fd the program
            // dropped closes now, and its peer's wait may end with it.
            self.state.borrow_mut().close_dropped();
            if timer.is_none() && self.state.borrow().only_partitions_left() {
                return Ok(Stop::Idle);
            }
            let mut event = self.state.borrow().next_event_past_churn(timer);
            if event.is_some_and(|e| e <= now) {
                // Work is due now, yet no node has any and nothing was
                // delivered: what is ready belongs to rings not given to
                // this run, and waiting for it would spin. Go by what is
                // scheduled instead.
                let idle = timer != Some(now) && self.state.borrow().ops == ops_before;
                idle_turns = if idle { idle_turns + 1 } else { 0 };
                if idle_turns > IDLE_TURNS_BEFORE_SCHEDULED {
                    event = self.state.borrow().next_scheduled();
                }
            }
            let next = match (timer, event) {
                (Some(t), Some(e)) => t.min(e),
                (t, e) => match t.or(e) {
                    Some(next) => next,
                    None => return Ok(Stop::Idle),
                },
            };
            if next <= now {
                continue;
            }
            idle_turns = 0;
            if next > deadline {
                self.now.set(deadline.max(now));
                return Ok(Stop::TimeUp);
            }
            let late = event.is_none_or(|e| e > next);
            let next = if late {
                self.state.borrow_mut().late_timer(next)
            } else {
                next
            };
            self.now.set(next);
        }
    }
}

impl State {
    pub(crate) fn now(&self) -> u64 {
        self.now.get()
    }

    /// Queues `what` for `at`; not if that is the end of time, which
    /// never comes.
    pub(crate) fn schedule(&mut self, at: u64, what: What) {
        if at == END_OF_TIME {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        self.events.push(Reverse(Event { at, seq, what }));
    }

    /// Completes `user_data` of `node` at `at`.
    pub(crate) fn complete(&mut self, node: u32, user_data: u64, res: i32, at: u64) {
        self.complete_fd(node, user_data, res, None, at)
    }

    pub(crate) fn complete_fd(
        &mut self,
        node: u32,
        user_data: u64,
        res: i32,
        fd: Option<OwnedFd>,
        at: u64,
    ) {
        let completion = RawCompletion {
            user_data,
            res,
            flags: 0,
        };
        let ready = Ready { completion, fd };
        self.schedule(at, What::Complete { node, ready });
    }

    /// The time of the next scheduled event, leaving out completions
    /// already ready.
    fn next_scheduled(&self) -> Option<u64> {
        self.events.peek().map(|Reverse(e)| e.at)
    }

    pub(crate) fn next_event(&self) -> Option<u64> {
        if self.ready.iter().any(|r| !r.is_empty()) || self.overflow.iter().any(|o| !o.is_empty()) {
            return Some(self.now());
        }
        self.events.peek().map(|Reverse(e)| e.at)
    }

    /// Whether nothing is left to do but start and heal partitions: no
    /// other event, nothing ready, nothing held on a cut path.
    pub(crate) fn only_partitions_left(&self) -> bool {
        self.events.len() == self.paths.queued
            && self.paths.holds_nothing()
            && self.ready.iter().all(|r| r.is_empty())
            && self.overflow.iter().all(|o| o.is_empty())
    }

    /// Whether an event is due by now.
    pub(crate) fn event_due(&self) -> bool {
        let now = self.now();
        self.events.peek().is_some_and(|Reverse(e)| e.at <= now)
    }

    /// Whether `node` has operations in flight of which none can ever
    /// complete: none has a completion scheduled or waits on a socket.
    pub(crate) fn lost(&self, node: u32) -> bool {
        let in_flight = self.in_flight.keys().any(|&(n, _)| n == node);
        let scheduled = self.events.iter().any(|Reverse(e)| match &e.what {
            What::Complete { node: n, .. } => *n == node,
            _ => false,
        });
        in_flight
            && !scheduled
            && !self.has_completions(node)
            && !self.net.has_parked(node)
            && !self.udp.has_parked(node)
            && !self.paths.holds_for(node)
    }

    /// Carries out every event due by now.
    pub(crate) fn process_due(&mut self) {
        while self.event_due() {
            let Some(Reverse(event)) = self.events.pop() else {
                break;
            };
            match event.what {
                What::Complete { node, ready } => self.deliver(node, ready),
                What::Arrive { sock, len } => self.pass(sock, Held::Arrive { sock, len }),
                What::Fin { sock } => self.pass(sock, Held::Fin { sock }),
                What::Reset { sock } => self.pass(sock, Held::Reset { sock }),
                What::PartitionStart => self.start_partition(),
                What::Heal { id } => self.heal_partition(id),
                What::Datagram { slot } => self.datagram_arrives(slot),
                What::Unreachable { sock } => self.unreachable(sock),
                What::Cancel { node, user_data } => self.cancel_now(node, user_data),
                What::GiveUp { sock } => self.give_up(sock),
                What::ConnectGiveUp { key, since } => self.give_up_connect(key, since),
                // Only wakes the world: the ring sees the time has come.
                What::MessagesDue => {}
            }
        }
    }

    fn deliver(&mut self, node: u32, ready: Ready) {
        if self.down.contains(&node) {
            return;
        }
        if self.bug == Some(Bug::DropCompletion) && self.streams.chance(Stream::Planted, 0.01) {
            return;
        }
        self.post(node, ready);
    }

    /// Records that `node` started `user_data`: exactly once until it ends.
    pub(crate) fn started(&mut self, node: u32, user_data: u64, kind: OpKind) {
        if let Some(old) = self.in_flight.insert((node, user_data), kind) {
            self.violations.push(format!(
                "ring {node} started {kind:?} as user_data {user_data:#x}, \
                 which {old:?} still holds"
            ));
        }
    }

    /// Hands `node`'s due completions to `out`, in a shuffled order if the
    /// configuration says so; an fd goes as its number, which the ring
    /// then owns.
    pub(crate) fn reap(&mut self, node: u32, out: &mut Vec<RawCompletion>) {
        self.reap_queue(node, out);
        // As the kernel's reaping enters again to move overflowed
        // completions over, until none is left.
        while self.flush_overflow(node) {
            self.reap_queue(node, out);
        }
    }

    fn reap_queue(&mut self, node: u32, out: &mut Vec<RawCompletion>) {
        let mut ready = std::mem::take(&mut self.ready[node as usize]);
        if self.config.shuffle && ready.len() > 1 {
            shuffle_keeping_shots(&mut ready, self.streams.get(Stream::Order));
            self.faults.add(Fault::Shuffle);
        }
        let now = self.now();
        for Ready { mut completion, fd } in ready.drain(..) {
            let key = (node, completion.user_data);
            // A multishot task stays in flight until its final completion.
            let ends = completion.flags & MORE == 0;
            let known = if ends {
                self.in_flight.remove(&key).is_some()
            } else {
                self.in_flight.contains_key(&key)
            };
            if !known {
                self.violations.push(format!(
                    "ring {node}: a completion for user_data {:#x}, not in flight",
                    completion.user_data
                ));
            }
            // An fd's number depends on the process, not the seed.
            let logged = if fd.is_some() {
                i32::MIN
            } else {
                completion.res
            };
            self.log(now, node, completion.user_data, logged);
            if let Some(fd) = fd {
                completion.res = self.net.fds.hand_over(fd);
            }
            self.ops += 1;
            out.push(completion);
        }
        // Keeps the vector's room for the next turn.
        self.ready[node as usize] = ready;
    }

    fn log(&mut self, now: u64, node: u32, user_data: u64, res: i32) {
        let hash = mix(self.log_hash, now);
        let hash = mix(hash, u64::from(node) << 32 | u64::from(res as u32));
        self.log_hash = mix(hash, user_data);
    }

    /// Cancels the operation `user_data` of `node`, now or, if the
    /// configuration makes it race, after a delay (see
    /// [`cancel_now`](State::cancel_now)).
    pub(crate) fn cancel(&mut self, node: u32, user_data: u64) {
        if self
            .streams
            .chance(Stream::CancelRace, self.config.cancel_race)
        {
            self.faults.add(Fault::CancelLate);
            let most = self.config.latency.base_ns.max(1).saturating_mul(4);
            let late = self.streams.get(Stream::CancelRace).u64(1..=most);
            let at = self.now().saturating_add(late);
            self.schedule(at, What::Cancel { node, user_data });
            return;
        }
        self.cancel_now(node, user_data);
    }

    /// Whether the operation `user_data` of `node` may be cancelled now
    /// (it waits on the network or a cut path): then it completes with
    /// `ECANCELED`; else it completes, or has, with its own result.
    pub(crate) fn cancel_now(&mut self, node: u32, user_data: u64) {
        if self.net.unpark(node, user_data)
            || self.udp.unpark(node, user_data)
            || self.unhold(node, user_data)
        {
            let now = self.now();
            self.complete(node, user_data, -libc::ECANCELED, now);
        }
    }

    /// `node` crashed: each of its operations in flight ends at once with
    /// `ECANCELED` (nothing it waited for happens to it any more), and
    /// completions on their way to it are dropped. Then the host's files
    /// crash too.
    pub(crate) fn crash_node(&mut self, node: u32) {
        let mut ops: Vec<u64> = self
            .in_flight
            .keys()
            .filter(|&&(n, _)| n == node)
            .map(|&(_, user_data)| user_data)
            .collect();
        ops.sort_unstable();
        let ready = &mut self.ready[node as usize];
        ready.clear();
        for &user_data in &ops {
            let completion = RawCompletion {
                user_data,
                res: -libc::ECANCELED,
                flags: 0,
            };
            ready.push(Ready {
                completion,
                fd: None,
            });
        }
        for user_data in ops {
            self.net.unpark(node, user_data);
            self.udp.unpark(node, user_data);
            self.unhold(node, user_data);
        }
        self.down.push(node);
        self.crash_files();
    }

    /// The process fd `raw` as the world knows it.
    pub(crate) fn lookup(&self, raw: RawFd) -> Option<usize> {
        self.net.fds.lookup(raw)
    }
}
