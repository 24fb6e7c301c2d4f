//! Partitions between the world's hosts. A partition starts after a
//! seeded gap and heals after a seeded time: a symmetric one cuts the path
//! both ways, a one-way one cuts it from one host to the other only, and a
//! clogged path delivers late what it carries. TCP over a cut path is
//! modelled as a kernel that keeps retransmitting: what is sent is held
//! (segments, ends of stream, resets, and connects whose SYN or answer
//! cannot pass) and delivered, in order, when the path heals, unless TCP
//! gives up first (see `give_up.rs`). UDP datagrams across a cut path are
//! dropped.

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use super::clock::END_OF_TIME;
use super::faults::{Fault, Stream};
use super::net::{Parked, Reply};
use super::world::{Bug, State, What, World};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Symmetric,
    OneWay,
    Clogged,
}

struct Partition {
    id: u64,
    kind: Kind,
    from: IpAddr,
    to: IpAddr,
    since: u64,
}

impl Partition {
    /// Whether nothing passes from `from` to `to`.
    fn cuts(&self, from: IpAddr, to: IpAddr) -> bool {
        let forward = (self.from, self.to) == (from, to);
        match self.kind {
            Kind::Symmetric => forward || (self.to, self.from) == (from, to),
            Kind::OneWay => forward,
            Kind::Clogged => false,
        }
    }

    fn clogs(&self, from: IpAddr, to: IpAddr) -> bool {
        self.kind == Kind::Clogged && (self.from, self.to) == (from, to)
    }
}

/// What a cut path holds until it heals.
pub(crate) enum Held {
    Arrive {
        sock: usize,
        len: usize,
    },
    Fin {
        sock: usize,
    },
    Reset {
        sock: usize,
    },
    Connect {
        parked: Parked,
        sock: usize,
        addr: SocketAddr,
    },
}

/// The partitions in force and what they hold.
#[derive(Default)]
pub(crate) struct Paths {
    active: Vec<Partition>,
    /// What cut paths hold, in the order it was sent, with its path and
    /// when it was held.
    pub(crate) held: VecDeque<(IpAddr, IpAddr, Held, u64)>,
    /// The sockets whose held segments TCP will give up on at a time
    /// already scheduled.
    pub(crate) giving_up: BTreeSet<usize>,
    next_id: u64,
    /// Partition starts and heals in the world's queue.
    pub(crate) queued: usize,
    /// Whether a start or a heal is in the queue.
    armed: bool,
    /// Hosts that never answer a connect (see [`World::blackhole`]).
    blackholes: Vec<IpAddr>,
}

impl Paths {
    /// Whether an operation of `node` waits for a path to heal.
    pub(crate) fn holds_for(&self, node: u32) -> bool {
        self.held
            .iter()
            .any(|(_, _, h, _)| matches!(h, Held::Connect { parked, .. } if parked.node == node))
    }

    pub(crate) fn holds_nothing(&self) -> bool {
        self.held.is_empty()
    }
}

impl State {
    /// Starts the seeded sequence of partitions if the configuration has
    /// them and it is not running; heals the network if it has none.
    pub(crate) fn arm_partitions(&mut self) {
        if !self.config.partitions.on() {
            self.heal_all();
        } else if !self.paths.armed {
            self.schedule_partition();
        }
    }

    fn schedule_partition(&mut self) {
        let gap = self.config.partitions.gap_ns;
        let at = self
            .now()
            .saturating_add(self.streams.get(Stream::Partitions).u64(1..=gap));
        self.paths.armed = self.queue(at, What::PartitionStart);
    }

    /// Queues a start or a heal, unless `at` is the end of time, which
    /// never comes: whether it was queued.
    fn queue(&mut self, at: u64, what: What) -> bool {
        if at == END_OF_TIME {
            return false;
        }
        self.schedule(at, what);
        self.paths.queued += 1;
        true
    }

    /// A partition starts between two hosts drawn from those the network
    /// knows, and its heal is scheduled.
    pub(crate) fn start_partition(&mut self) {
        self.paths.queued -= 1;
        let plan = self.config.partitions;
        if !plan.on() {
            self.paths.armed = false;
            return;
        }
        let hosts = self.net.hosts();
        if hosts.len() < 2 {
            self.schedule_partition();
            return;
        }
        let rng = self.streams.get(Stream::Partitions);
        let a = rng.usize(..hosts.len());
        let mut b = rng.usize(..hosts.len() - 1);
        if b >= a {
            b += 1;
        }
        let (kind, class) = match rng.u8(..3) {
            0 => (Kind::Symmetric, Fault::PartitionSymmetric),
            1 => (Kind::OneWay, Fault::PartitionOneWay),
            _ => (Kind::Clogged, Fault::PartitionClogged),
        };
        let lasts = rng.u64(1..=plan.longest_ns);
        self.faults.add(class);
        self.paths.next_id += 1;
        let id = self.paths.next_id;
        let since = self.now();
        self.paths.active.push(Partition {
            id,
            kind,
            from: hosts[a],
            to: hosts[b],
            since,
        });
        self.queue(since.saturating_add(lasts), What::Heal { id });
    }

    /// Partition `id` heals, and the next one is scheduled if partitions
    /// are still on. Under the planted bug it stays, and no other starts.
    pub(crate) fn heal_partition(&mut self, id: u64) {
        self.paths.queued -= 1;
        let heals = self.bug != Some(Bug::PartitionNeverHeals);
        if heals {
            self.paths.active.retain(|p| p.id != id);
            self.release();
        }
        if heals && self.config.partitions.on() {
            self.schedule_partition();
        } else {
            self.paths.armed = false;
        }
    }

    fn heal_all(&mut self) {
        if self.bug != Some(Bug::PartitionNeverHeals) {
            self.paths.active.clear();
            self.release();
        }
    }

    /// Delivers, in order, what paths that are no longer cut held.
    fn release(&mut self) {
        let held = std::mem::take(&mut self.paths.held);
        for (from, to, item, since) in held {
            if self.is_cut(from, to) {
                self.paths.held.push_back((from, to, item, since));
            } else {
                self.apply(item);
            }
        }
    }

    pub(crate) fn is_cut(&self, from: IpAddr, to: IpAddr) -> bool {
        self.paths.blackholes.contains(&to) || self.paths.active.iter().any(|p| p.cuts(from, to))
    }

    /// Whether a connect from `sock` to `addr` cannot complete (its SYN or
    /// the answer is cut); then it is held until the path heals.
    pub(crate) fn hold_connect(&mut self, parked: Parked, sock: usize, addr: SocketAddr) -> bool {
        let (from, to) = (self.net.host_of(sock), addr.ip());
        if self.paths.blackholes.contains(&to) {
            // Not a fault of the seed's: no partition heals it.
            // TCP still gives up on it, as on any path that never answers.
            let item = Held::Connect { parked, sock, addr };
            let since = self.now();
            self.arm_give_up(&item, since);
            self.paths.held.push_back((from, to, item, since));
            return true;
        }
        if self.paths.active.is_empty() {
            return false;
        }
        if !self.is_cut(from, to) && !self.is_cut(to, from) {
            return false;
        }
        self.hold(from, to, Held::Connect { parked, sock, addr });
        true
    }

    fn hold(&mut self, from: IpAddr, to: IpAddr, item: Held) {
        self.faults.add(Fault::PartitionHeld);
        let since = self.now();
        self.arm_give_up(&item, since);
        self.paths.held.push_back((from, to, item, since));
    }

    /// Carries out what the network delivers to a socket, or holds it if
    /// its path is cut.
    pub(crate) fn pass(&mut self, sock: usize, item: Held) {
        if !self.paths.active.is_empty() {
            if let Some((from, to)) = self.net.path_to(sock) {
                if self.is_cut(from, to) {
                    return self.hold(from, to, item);
                }
            }
        }
        self.apply(item);
    }

    fn apply(&mut self, item: Held) {
        match item {
            Held::Arrive { sock, len } => self.arrive(sock, len),
            Held::Fin { sock } => self.fin(sock),
            Held::Reset { sock } => self.reset(sock),
            Held::Connect { parked, sock, addr } => {
                let res = if self.net.is_closed(sock) {
                    Reply::Res(-libc::ECANCELED)
                } else {
                    self.connect(parked, sock, addr)
                };
                if let Reply::Res(res) = res {
                    let at = self.now().saturating_add(self.delay());
                    self.complete(parked.node, parked.user_data, res, at);
                }
            }
        }
    }

    /// The delay of a segment bound for `sock`: the usual latency, and on a
    /// clogged path up to the clog's most on top.
    pub(crate) fn segment_delay(&mut self, sock: usize) -> u64 {
        let delay = self.delay();
        if self.paths.active.is_empty() {
            return delay;
        }
        let Some((from, to)) = self.net.path_to(sock) else {
            return delay;
        };
        if !self.paths.active.iter().any(|p| p.clogs(from, to)) {
            return delay;
        }
        let most = self.config.partitions.clog_ns;
        delay + self.streams.get(Stream::Partitions).u64(0..=most)
    }

    /// Takes the held connect `user_data` of `node` off its path.
    pub(crate) fn unhold(&mut self, node: u32, user_data: u64) -> bool {
        let found = self.paths.held.iter().position(|(_, _, h, _)| {
            matches!(h, Held::Connect { parked, .. }
                if parked.node == node && parked.user_data == user_data)
        });
        found.is_some_and(|i| self.paths.held.remove(i).is_some())
    }

    /// The partitions not healed, with what each path holds.
    pub(crate) fn unhealed(&self) -> Vec<String> {
        let now = self.now();
        self.paths
            .active
            .iter()
            .map(|p| {
                let arrow = if p.kind == Kind::Symmetric {
                    "<->"
                } else {
                    "->"
                };
                let held = self
                    .paths
                    .held
                    .iter()
                    .filter(|(from, to, _, _)| p.cuts(*from, *to))
                    .count();
                format!(
                    "{:?} partition {} {arrow} {} not healed after {:?}, holding {held} \
                     segment(s), end(s), reset(s) or connect(s)",
                    p.kind,
                    p.from,
                    p.to,
                    std::time::Duration::from_nanos(now - p.since)
                )
            })
            .collect()
    }
}

impl World {
    /// Makes `host` a blackhole: nothing answers a connect to any of its
    /// addresses, as if every SYN were dropped, so the connect waits until
    /// it is cancelled (a real kernel would give up with `ETIMEDOUT` after
    /// minutes of retries). Healing partitions does not end it.
    pub fn blackhole(&self, host: IpAddr) {
        let mut state = self.state.borrow_mut();
        if !state.paths.blackholes.contains(&host) {
            state.paths.blackholes.push(host);
        }
    }
}
