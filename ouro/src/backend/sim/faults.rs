//! What a seed decides: the configuration of fault classes (swarm testing:
//! each class is on or off, with its own rate) and the independent random
//! streams every concern draws from.

use std::collections::BTreeMap;
use std::fmt;

use crate::op::OpKind;

/// The concerns that draw random numbers, each from a stream of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Latency,
    Timers,
    Order,
    User,
    NetShort,
    NetSegments,
    FaultsRecv,
    FaultsSend,
    FaultsConnect,
    FaultsAccept,
    Partitions,
    Planted,
    DatagramLoss,
    DatagramDuplicate,
    DatagramReorder,
    Components,
    SqFull,
    CancelRace,
    Spoofed,
    FilesErrors,
    FilesShort,
    FilesCrash,
    MultishotEnd,
    BuffersExhausted,
    Messages,
}

impl Stream {
    const ALL: [Stream; 25] = [
        Stream::Latency,
        Stream::Timers,
        Stream::Order,
        Stream::User,
        Stream::NetShort,
        Stream::NetSegments,
        Stream::FaultsRecv,
        Stream::FaultsSend,
        Stream::FaultsConnect,
        Stream::FaultsAccept,
        Stream::Partitions,
        Stream::Planted,
        Stream::DatagramLoss,
        Stream::DatagramDuplicate,
        Stream::DatagramReorder,
        Stream::Components,
        Stream::SqFull,
        Stream::CancelRace,
        Stream::Spoofed,
        Stream::FilesErrors,
        Stream::FilesShort,
        Stream::FilesCrash,
        Stream::MultishotEnd,
        Stream::BuffersExhausted,
        Stream::Messages,
    ];

    /// The name the stream is seeded from: renaming one reshuffles it.
    fn name(self) -> &'static str {
        match self {
            Stream::Latency => "latency",
            Stream::Timers => "timers",
            Stream::Order => "order",
            Stream::User => "user",
            Stream::NetShort => "net/short",
            Stream::NetSegments => "net/segments",
            Stream::FaultsRecv => "faults/recv",
            Stream::FaultsSend => "faults/send",
            Stream::FaultsConnect => "faults/connect",
            Stream::FaultsAccept => "faults/accept",
            Stream::Partitions => "partitions",
            Stream::Planted => "planted",
            Stream::DatagramLoss => "net/udp-loss",
            Stream::DatagramDuplicate => "net/udp-duplicate",
            Stream::DatagramReorder => "net/udp-reorder",
            Stream::Components => "ring/random",
            Stream::SqFull => "kernel/sq-full",
            Stream::CancelRace => "kernel/cancel-race",
            Stream::Spoofed => "net/udp-spoofed",
            Stream::FilesErrors => "faults/files",
            Stream::FilesShort => "files/short",
            Stream::FilesCrash => "files/crash",
            Stream::MultishotEnd => "multishot/end",
            Stream::BuffersExhausted => "multishot/buffers",
            Stream::Messages => "ring/messages",
        }
    }
}

/// One seeded random stream per concern: a stream's numbers depend only on
/// the seed and the concern's name, so a new concern shifts no other.
pub(crate) struct Streams([fastrand::Rng; Stream::ALL.len()]);

impl Streams {
    pub(crate) fn new(seed: u64) -> Streams {
        Streams(Stream::ALL.map(|s| fastrand::Rng::with_seed(seed ^ name_hash(s.name()))))
    }

    /// The stream of `concern`.
    pub(crate) fn get(&mut self, concern: Stream) -> &mut fastrand::Rng {
        &mut self.0[concern as usize]
    }

    /// Whether an event of probability `rate` happens, on `concern`'s stream.
    pub(crate) fn chance(&mut self, concern: Stream, rate: f64) -> bool {
        rate > 0.0 && self.get(concern).f64() < rate
    }
}

/// FNV-1a: stable across runs and platforms, unlike the std hasher.
pub(crate) fn name_hash(name: &str) -> u64 {
    fold(0xcbf2_9ce4_8422_2325, name.as_bytes())
}

/// Folds `bytes` into an FNV-1a hash.
fn fold(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// How long the network and the kernel take: a base, a uniform spread on
/// top, and a rare long tail.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// The least time an operation or a segment takes, in nanoseconds.
    pub base_ns: u64,
    /// Up to this much more, uniformly.
    pub spread_ns: u64,
    /// The share of delays that take `tail_ns` more.
    pub tail_rate: f64,
    /// The tail's extra delay.
    pub tail_ns: u64,
}

/// Partitions between hosts: a partition starts after a seeded gap, cuts
/// or clogs the path between two hosts, and heals after a seeded time;
/// then the next one is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partitions {
    /// The longest gap before a partition starts, in nanoseconds (0: no
    /// partitions).
    pub gap_ns: u64,
    /// The longest a partition lasts before it heals.
    pub longest_ns: u64,
    /// The most a clogged path delays a segment on top of its latency.
    pub clog_ns: u64,
}

impl Partitions {
    /// No partitions.
    pub const OFF: Partitions = Partitions {
        gap_ns: 0,
        longest_ns: 0,
        clog_ns: 0,
    };

    /// Whether partitions start at all.
    pub fn on(&self) -> bool {
        self.gap_ns > 0
    }

    /// The partitions `seed` draws, from a configuration stream of their
    /// own so that the other classes' rates stay what they were.
    fn from_seed(seed: u64) -> Partitions {
        let mut rng = fastrand::Rng::with_seed(seed ^ name_hash("config/partitions"));
        if !rng.bool() {
            return Partitions::OFF;
        }
        Partitions {
            gap_ns: rng.u64(1_000_000..20_000_000),
            longest_ns: rng.u64(1_000_000..200_000_000),
            clog_ns: rng.u64(1_000_000..50_000_000),
        }
    }
}

/// The fault classes a seed switches on, with their rates (0: off).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Delays of operations and of segments on the network.
    pub latency: Latency,
    /// The share of sends whose bytes are cut into several segments that
    /// arrive apart.
    pub segmenting: f64,
    /// The share of reads and writes (recv, send) that move fewer bytes
    /// than they could.
    pub short_io: f64,
    /// The share of operations that fail with an error the kernel can
    /// return for them (ECONNRESET on recv, EPIPE on send, ECONNREFUSED on
    /// connect, EMFILE on accept).
    pub errors: f64,
    /// Ready completions are handed to a ring in a shuffled order.
    pub shuffle: bool,
    /// Timers fire up to this many nanoseconds late (never early).
    pub late_timers_ns: u64,
    /// Partitions and clogged paths between hosts; a configuration
    /// without them, set on a world, heals the network.
    pub partitions: Partitions,
    /// The share of UDP datagrams lost on the way (the send succeeds).
    pub datagram_loss: f64,
    /// The share of UDP datagrams that arrive twice.
    pub datagram_duplicate: f64,
    /// The share of UDP datagrams delayed past the ones sent after them.
    pub datagram_reorder: f64,
    /// The share of submissions for which the submission queue reports
    /// full although it has room (it holds [`SQ_ENTRIES`] in any case).
    pub sq_full_early: f64,
    /// The completion queue's capacity; completions beyond it wait in the
    /// kernel's overflow list. The ring's real one is [`CQ_ENTRIES`].
    pub cq_entries: usize,
    /// The share of cancellations that race the operation: the cancel
    /// takes effect only after a delay, in which the operation may
    /// complete with its own result.
    pub cancel_race: f64,
    /// How long TCP keeps retransmitting over a cut path before it gives
    /// up with `ETIMEDOUT` (a connect after half of it); 0: never.
    pub tcp_give_up_ns: u64,
    /// The share of UDP datagrams arriving at a socket that bring a
    /// spoofed one along: a copy from another source, or random bytes.
    pub spoofed: f64,
    /// The share of file writes and fsyncs that fail with `EIO` or
    /// `ENOSPC` (half each).
    pub file_errors: f64,
    /// The share of file reads and writes that move fewer bytes than they
    /// could.
    pub file_short_io: f64,
    /// The share of a multishot accept's or receive's successes that end
    /// it (no "more" flag): the user must arm it again.
    pub multishot_end: f64,
    /// The share of arrivals for a multishot receive that find its buffer
    /// group empty although buffers are free: the receive ends with
    /// `ENOBUFS`.
    pub buffers_exhausted: f64,
    /// Messages between rings (and fds sent with them) wait up to this
    /// many nanoseconds before they reach their target's mailbox.
    pub message_delay_ns: u64,
}

/// The entries of a simulated ring's submission queue: those of a real
/// ring made with the builder's default.
pub const SQ_ENTRIES: usize = 256;

/// The entries of a simulated ring's completion queue: twice the
/// submission queue's, as the kernel makes them.
pub const CQ_ENTRIES: usize = 2 * SQ_ENTRIES;

impl Config {
    /// No fault at all: the liveness phase, and the default of a world
    /// made without a seed's configuration.
    pub fn calm() -> Config {
        Config {
            latency: Latency {
                base_ns: 10_000,
                spread_ns: 0,
                tail_rate: 0.0,
                tail_ns: 0,
            },
            segmenting: 0.0,
            short_io: 0.0,
            errors: 0.0,
            shuffle: false,
            late_timers_ns: 0,
            partitions: Partitions::OFF,
            datagram_loss: 0.0,
            datagram_duplicate: 0.0,
            datagram_reorder: 0.0,
            sq_full_early: 0.0,
            cq_entries: CQ_ENTRIES,
            cancel_race: 0.0,
            tcp_give_up_ns: 0,
            spoofed: 0.0,
            file_errors: 0.0,
            file_short_io: 0.0,
            multishot_end: 0.0,
            buffers_exhausted: 0.0,
            message_delay_ns: 0,
        }
    }

    /// The configuration `seed` expands into: each class on with even
    /// odds, at a rate drawn from the seed's `config` stream.
    pub fn from_seed(seed: u64) -> Config {
        let mut rng = fastrand::Rng::with_seed(seed ^ name_hash("config"));
        let rate = |rng: &mut fastrand::Rng, most: f64| {
            if rng.bool() {
                rng.f64() * most
            } else {
                0.0
            }
        };
        let mut multishot = fastrand::Rng::with_seed(seed ^ name_hash("config/multishot"));
        let tail_rate = rate(&mut rng, 0.05);
        let latency = Latency {
            base_ns: rng.u64(1_000..100_000),
            spread_ns: if rng.bool() { rng.u64(0..1_000_000) } else { 0 },
            tail_rate,
            tail_ns: if tail_rate > 0.0 {
                rng.u64(1_000_000..50_000_000)
            } else {
                0
            },
        };
        Config {
            latency,
            segmenting: rate(&mut rng, 0.5),
            short_io: rate(&mut rng, 0.5),
            errors: rate(&mut rng, 0.02),
            shuffle: rng.bool(),
            late_timers_ns: if rng.bool() {
                rng.u64(1..10_000_000)
            } else {
                0
            },
            partitions: Partitions::from_seed(seed),
            // Drawn last, so that the classes above keep their values.
            datagram_loss: rate(&mut rng, 0.2),
            datagram_duplicate: rate(&mut rng, 0.2),
            datagram_reorder: rate(&mut rng, 0.3),
            // From configuration streams of their own, like partitions.
            multishot_end: rate(&mut multishot, 0.2),
            buffers_exhausted: rate(&mut multishot, 0.1),
            file_errors: files_rate(seed, "config/file_errors", 0.05),
            file_short_io: files_rate(seed, "config/file_short_io", 0.5),
            message_delay_ns: message_delay_from_seed(seed),
            ..Config::kernel_from_seed(seed)
        }
    }

    /// The kernel's fault classes `seed` draws, from a configuration
    /// stream of their own so that the classes above keep their values.
    fn kernel_from_seed(seed: u64) -> Config {
        let mut rng = fastrand::Rng::with_seed(seed ^ name_hash("config/kernel"));
        let mut on = |most: f64| if rng.bool() { rng.f64() * most } else { 0.0 };
        let sq_full_early = on(0.2);
        let cq_small = on(1.0) > 0.0;
        let cancel_race = on(0.5);
        let tcp_give_up = on(1.0) > 0.0;
        let spoofed = on(0.3);
        let mut rng = fastrand::Rng::with_seed(seed ^ name_hash("config/kernel/sizes"));
        Config {
            sq_full_early,
            cq_entries: if cq_small {
                rng.usize(1..=16)
            } else {
                CQ_ENTRIES
            },
            cancel_race,
            tcp_give_up_ns: if tcp_give_up {
                rng.u64(20_000_000..=300_000_000)
            } else {
                0
            },
            spoofed,
            ..Config::calm()
        }
    }
}

/// A file fault class's rate under `seed`: on with even odds, from a
/// configuration stream of its own (`name`), so that the classes drawn
/// before files existed keep their values.
fn files_rate(seed: u64, name: &str, most: f64) -> f64 {
    let mut rng = fastrand::Rng::with_seed(seed ^ name_hash(name));
    if rng.bool() {
        rng.f64() * most
    } else {
        0.0
    }
}

/// The longest message delay `seed` draws, from a configuration stream of
/// its own so that the other classes' rates stay what they were.
fn message_delay_from_seed(seed: u64) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed ^ name_hash("config/messages"));
    if rng.bool() {
        rng.u64(1_000..5_000_000)
    } else {
        0
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency;
        write!(
            f,
            "latency={}ns+{}ns tail={:.3}x{}ns segmenting={:.3} short_io={:.3} errors={:.4} \
             shuffle={} late_timers={}ns partitions=gap<{}ns,longest<{}ns,clog<{}ns \
             udp_loss={:.3} udp_duplicate={:.3} udp_reorder={:.3} sq_full_early={:.3} \
             cq_entries={} cancel_race={:.3} tcp_give_up={}ns udp_spoofed={:.3} file_errors={:.4} \
             file_short_io={:.3} multishot_end={:.3} buffers_exhausted={:.3} \
             message_delay={}ns",
            l.base_ns,
            l.spread_ns,
            l.tail_rate,
            l.tail_ns,
            self.segmenting,
            self.short_io,
            self.errors,
            self.shuffle,
            self.late_timers_ns,
            self.partitions.gap_ns,
            self.partitions.longest_ns,
            self.partitions.clog_ns,
            self.datagram_loss,
            self.datagram_duplicate,
            self.datagram_reorder,
            self.sq_full_early,
            self.cq_entries,
            self.cancel_race,
            self.tcp_give_up_ns,
            self.spoofed,
            self.file_errors,
            self.file_short_io,
            self.multishot_end,
            self.buffers_exhausted,
            self.message_delay_ns
        )
    }
}

/// The error a real kernel can return for a `kind` operation that the
/// simulator injects, and the stream its decisions come from; `None` for
/// operations that get no injected error.
pub(crate) fn injectable(kind: OpKind) -> Option<(i32, Stream, Fault)> {
    match kind {
        OpKind::Recv | OpKind::RecvMulti => {
            Some((libc::ECONNRESET, Stream::FaultsRecv, Fault::Recv))
        }
        OpKind::Send => Some((libc::EPIPE, Stream::FaultsSend, Fault::Send)),
        OpKind::Connect => Some((libc::ECONNREFUSED, Stream::FaultsConnect, Fault::Connect)),
        OpKind::Accept | OpKind::AcceptMulti | OpKind::AcceptDirect => {
            Some((libc::EMFILE, Stream::FaultsAccept, Fault::Accept))
        }
        _ => None,
    }
}

/// The fault classes the world counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Accept,
    Connect,
    Recv,
    Send,
    LateTimer,
    LatencyTail,
    Segment,
    ShortRead,
    ShortWrite,
    Shuffle,
    PartitionSymmetric,
    PartitionOneWay,
    PartitionClogged,
    PartitionHeld,
    DatagramLoss,
    DatagramDuplicate,
    DatagramReorder,
    SqFull,
    SubmitBusy,
    CqOverflow,
    CancelLate,
    ConnectTimedOut,
    TimedOut,
    DatagramCut,
    Spoofed,
    FilesEio,
    FilesEnospc,
    FilesShortRead,
    FilesShortWrite,
    FilesTorn,
    MultishotEnd,
    BuffersExhausted,
    MessageDelay,
}

impl Fault {
    const ALL: [Fault; 33] = [
        Fault::Accept,
        Fault::Connect,
        Fault::Recv,
        Fault::Send,
        Fault::LateTimer,
        Fault::LatencyTail,
        Fault::Segment,
        Fault::ShortRead,
        Fault::ShortWrite,
        Fault::Shuffle,
        Fault::PartitionSymmetric,
        Fault::PartitionOneWay,
        Fault::PartitionClogged,
        Fault::PartitionHeld,
        Fault::DatagramLoss,
        Fault::DatagramDuplicate,
        Fault::DatagramReorder,
        Fault::SqFull,
        Fault::SubmitBusy,
        Fault::CqOverflow,
        Fault::CancelLate,
        Fault::ConnectTimedOut,
        Fault::TimedOut,
        Fault::DatagramCut,
        Fault::Spoofed,
        Fault::FilesEio,
        Fault::FilesEnospc,
        Fault::FilesShortRead,
        Fault::FilesShortWrite,
        Fault::FilesTorn,
        Fault::MultishotEnd,
        Fault::BuffersExhausted,
        Fault::MessageDelay,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Accept => "faults/accept",
            Fault::Connect => "faults/connect",
            Fault::Recv => "faults/recv",
            Fault::Send => "faults/send",
            Fault::LateTimer => "late_timer",
            Fault::LatencyTail => "latency_tail",
            Fault::Segment => "segment",
            Fault::ShortRead => "short_read",
            Fault::ShortWrite => "short_write",
            Fault::Shuffle => "shuffle",
            Fault::PartitionSymmetric => "partition/symmetric",
            Fault::PartitionOneWay => "partition/one_way",
            Fault::PartitionClogged => "partition/clogged",
            Fault::PartitionHeld => "partition/held",
            Fault::DatagramLoss => "udp_loss",
            Fault::DatagramDuplicate => "udp_duplicate",
            Fault::DatagramReorder => "udp_reorder",
            Fault::SqFull => "sq_full_early",
            Fault::SubmitBusy => "submit_busy",
            Fault::CqOverflow => "cq_overflow",
            Fault::CancelLate => "cancel_late",
            Fault::ConnectTimedOut => "tcp_timeout/connect",
            Fault::TimedOut => "tcp_timeout/data",
            Fault::DatagramCut => "partition/udp",
            Fault::Spoofed => "udp_spoofed",
            Fault::FilesEio => "files/eio",
            Fault::FilesEnospc => "files/enospc",
            Fault::FilesShortRead => "files/short_read",
            Fault::FilesShortWrite => "files/short_write",
            Fault::FilesTorn => "files/torn",
            Fault::MultishotEnd => "multishot_end",
            Fault::BuffersExhausted => "buffers_exhausted",
            Fault::MessageDelay => "message_delay",
        }
    }
}

/// The world's running count of faults, by class: a counter per class, so
/// that counting costs no lookup.
pub(crate) struct FaultTally([u64; Fault::ALL.len()]);

impl Default for FaultTally {
    fn default() -> FaultTally {
        FaultTally([0; Fault::ALL.len()])
    }
}

impl FaultTally {
    pub(crate) fn add(&mut self, class: Fault) {
        self.0[class as usize] += 1;
    }

    /// The classes injected at least once, with their counts.
    pub(crate) fn counts(&self) -> FaultCounts {
        let by_name = Fault::ALL
            .iter()
            .zip(self.0)
            .filter(|&(_, n)| n > 0)
            .map(|(class, n)| (class.name(), n))
            .collect();
        FaultCounts(by_name)
    }
}

/// Faults injected so far, by class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts(pub BTreeMap<&'static str, u64>);

impl FaultCounts {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &FaultCounts) {
        for (class, n) in &other.0 {
            *self.0.entry(class).or_default() += n;
        }
    }
}
