//! `msg`: handing work from one thread to another — ouro's messages against
//! the usual alternatives, every contestant in the same run.
//!
//! Two patterns, each between two threads A and B:
//!
//! - **ping-pong**: A sends a number to B, B sends it back, `roundtrips`
//!   times. Metrics: `roundtrips_per_sec` (from the first send to the last
//!   answer) and `p50_ns`, the median round trip measured on A.
//! - **one-way**: A sends `msgs` numbers to B as fast as it can; B counts
//!   them. Metric: `msgs_per_sec`, from A's first send to B's receipt of
//!   the last.
//!
//! Contestants:
//!
//! - `ouro-msgring`: A is a ring on the benchmark thread, B a ring started
//!   with `spawn_thread`; numbers travel as `msg_ring` messages
//!   (`Payload::U64`, fire and forget) woken by `IORING_OP_MSG_RING`
//!   doorbells. One-way, A's callback sends `batch` messages per turn
//!   (paced by a NOP, so each turn is one `io_uring_enter`).
//! - `ouro-mailbox`: the same, with `RingBuilder::msg_ring(false)`: the
//!   target is woken through its eventfd.
//! - `crossbeam`: crossbeam-channel unbounded channels; a blocking `recv`
//!   spins briefly, then parks the thread, and `send` unparks it.
//! - `eventfd`: ping-pong through a pair of blocking eventfds (a write
//!   wakes the other side's read); one-way through a mutex-guarded queue
//!   whose sender writes the receiver's eventfd only when no wake-up is
//!   outstanding (the coalescing ouro's mailbox does).
//!
//! Params: `{"pattern": "ping-pong"}` or `{"pattern": "one-way"}`; the
//! contestants are compared with `crossbeam`. Each measured run starts
//! fresh threads (and rings), outside the clock; one unmeasured run of a
//! tenth of the work warms each contestant up, and the order of the
//! contestants rotates from run to run. The ouro contestants use io_uring
//! whatever `OURO_BACKEND` says.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use ouro::{
    BackendKind, Completion, Ctx, Outcome, Payload, Ring, RingBuilder, RingHandle, RunMode,
};
use serde_json::json;

use super::{per_sec, Settings};
use crate::progress::Progress;
use crate::record::{params, Results, Sample};

const WORKLOAD: &str = "msg";

/// Options of the `msg` workload.
#[derive(Debug, Args)]
pub struct Options {
    /// Round trips per ping-pong run.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub roundtrips: u64,
    /// Messages per one-way run (enough for a fraction of a second at ouro's
    /// rate: shorter runs measure start-up more than the steady state).
    #[arg(long, default_value_t = 20_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub msgs: u64,
    /// Messages an ouro sender queues per turn, one-way.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contestant {
    OuroMsgRing,
    OuroMailbox,
    Crossbeam,
    Eventfd,
}

impl Contestant {
    const ALL: [Contestant; 4] = [
        Contestant::OuroMsgRing,
        Contestant::OuroMailbox,
        Contestant::Crossbeam,
        Contestant::Eventfd,
    ];

    fn name(self) -> &'static str {
        match self {
            Contestant::OuroMsgRing => "ouro-msgring",
            Contestant::OuroMailbox => "ouro-mailbox",
            Contestant::Crossbeam => "crossbeam",
            Contestant::Eventfd => "eventfd",
        }
    }

    fn ping_pong(self, roundtrips: u64) -> io::Result<PingPong> {
        match self {
            Contestant::OuroMsgRing => ouro_ping_pong(true, roundtrips),
            Contestant::OuroMailbox => ouro_ping_pong(false, roundtrips),
            Contestant::Crossbeam => crossbeam_ping_pong(roundtrips),
            Contestant::Eventfd => eventfd_ping_pong(roundtrips),
        }
    }

    fn one_way(self, msgs: u64, batch: u64) -> io::Result<Duration> {
        match self {
            Contestant::OuroMsgRing => ouro_one_way(true, msgs, batch),
            Contestant::OuroMailbox => ouro_one_way(false, msgs, batch),
            Contestant::Crossbeam => crossbeam_one_way(msgs),
            Contestant::Eventfd => eventfd_one_way(msgs),
        }
    }
}

/// What a ping-pong run measured.
struct PingPong {
    elapsed: Duration,
    /// Every round trip, in nanoseconds.
    rtts: Vec<u64>,
}

/// Measurements made, for the progress bar.
pub fn steps(_options: &Options, settings: &Settings) -> u64 {
    2 * u64::from(settings.runs) * super::included(settings, &Contestant::ALL, Contestant::name)
}

/// Measures both patterns `runs` times, interleaving the contestants.
pub fn measure(
    options: &Options,
    settings: &Settings,
    results: &mut Results,
    progress: &Progress,
) -> io::Result<()> {
    results.compare_against(WORKLOAD, Contestant::Crossbeam.name());
    for contestant in settings.order(&Contestant::ALL, Contestant::name, 0) {
        contestant.ping_pong((options.roundtrips / 10).max(1))?;
        contestant.one_way((options.msgs / 10).max(1), options.batch)?;
    }
    for run in 0..settings.runs {
        for contestant in settings.order(&Contestant::ALL, Contestant::name, run) {
            progress.step(format!("msg {} ping-pong", contestant.name()));
            let PingPong { elapsed, mut rtts } = contestant.ping_pong(options.roundtrips)?;
            progress.done();
            rtts.sort_unstable();
            let sample = |metric, value| Sample {
                workload: WORKLOAD,
                contestant: contestant.name(),
                params: params([("pattern", json!("ping-pong"))]),
                metric,
                value,
            };
            results.record(sample(
                "roundtrips_per_sec",
                per_sec(options.roundtrips, elapsed),
            ));
            results.record(sample("p50_ns", rtts[rtts.len() / 2] as f64));
        }
        for contestant in settings.order(&Contestant::ALL, Contestant::name, run) {
            progress.step(format!("msg {} one-way", contestant.name()));
            let elapsed = contestant.one_way(options.msgs, options.batch)?;
            progress.done();
            results.record(Sample {
                workload: WORKLOAD,
                contestant: contestant.name(),
                params: params([("pattern", json!("one-way"))]),
                metric: "msgs_per_sec",
                value: per_sec(options.msgs, elapsed),
            });
        }
    }
    Ok(())
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn builder(msg_ring: bool) -> RingBuilder {
    Ring::builder()
        .backend(BackendKind::Uring)
        .entries(256)
        .msg_ring(msg_ring)
}

// -- ouro ---------------------------------------------------------------------

/// A's side of the ouro ping-pong.
struct Pinger {
    ponger: RingHandle<Ponger>,
    left: u64,
    sent_at: Instant,
    rtts: Vec<u64>,
}

/// B's side: answers each number.
struct Ponger {
    pinger: RingHandle<Pinger>,
}

impl Pinger {
    fn ping(&mut self, ring: &mut Ring<Pinger>, n: u64) {
        self.sent_at = Instant::now();
        let message = Ctx::new(Ponger::on_ping);
        ring.msg_ring(&self.ponger, message, Payload::U64(n), Ctx::none());
    }

    fn on_pong(&mut self, ring: &mut Ring<Pinger>, c: Completion) -> io::Result<()> {
        self.rtts.push(elapsed_ns(self.sent_at));
        let Outcome::Message(Payload::U64(n)) = c.outcome else {
            return Err(io::Error::other("ping-pong: expected a number back"));
        };
        self.left -= 1;
        if self.left == 0 {
            ring.stop();
        } else {
            self.ping(ring, n + 1);
        }
        Ok(())
    }
}

impl Ponger {
    fn on_ping(&mut self, ring: &mut Ring<Ponger>, c: Completion) -> io::Result<()> {
        let Outcome::Message(payload) = c.outcome else {
            return Err(io::Error::other("ping-pong: expected a number"));
        };
        let answer = Ctx::new(Pinger::on_pong);
        ring.msg_ring(&self.pinger, answer, payload, Ctx::none());
        Ok(())
    }
}

fn ouro_ping_pong(msg_ring: bool, roundtrips: u64) -> io::Result<PingPong> {
    let mut ring: Ring<Pinger> = builder(msg_ring).build()?;
    let pinger = ring.handle()?;
    let ponger = ring.spawn_thread(256, move |_| Ok(Ponger { pinger }))?;
    let mut state = Pinger {
        ponger: ponger.handle().clone(),
        left: roundtrips,
        sent_at: Instant::now(),
        rtts: Vec::with_capacity(roundtrips as usize),
    };
    let start = Instant::now();
    state.ping(&mut ring, 0);
    ring.run(&mut state, RunMode::Forever)?;
    let elapsed = start.elapsed();
    ponger.join()?;
    Ok(PingPong {
        elapsed,
        rtts: state.rtts,
    })
}

/// A's side of the ouro one-way run: sends `batch` numbers per turn.
struct Producer {
    consumer: RingHandle<Consumer>,
    next: u64,
    total: u64,
    batch: u64,
}

impl Producer {
    fn on_turn(&mut self, ring: &mut Ring<Producer>, _: Completion) -> io::Result<()> {
        let end = (self.next + self.batch).min(self.total);
        for n in self.next..end {
            let message = Ctx::new(Consumer::on_number);
            ring.msg_ring(&self.consumer, message, Payload::U64(n), Ctx::none());
        }
        self.next = end;
        if self.next < self.total {
            ring.noop(Ctx::new(Producer::on_turn));
        }
        Ok(())
    }
}

/// B's side: counts, and reports when the last number has come.
struct Consumer {
    received: u64,
    total: u64,
    done: mpsc::SyncSender<io::Result<Instant>>,
}

impl Consumer {
    fn on_number(&mut self, _: &mut Ring<Consumer>, c: Completion) -> io::Result<()> {
        let Outcome::Message(Payload::U64(n)) = c.outcome else {
            return Err(io::Error::other("one-way: expected a number"));
        };
        if n != self.received {
            let _ = self.done.send(Err(io::Error::other(format!(
                "one-way: got {n}, expected {}",
                self.received
            ))));
        }
        self.received += 1;
        if self.received == self.total {
            let _ = self.done.send(Ok(Instant::now()));
        }
        Ok(())
    }
}

fn ouro_one_way(msg_ring: bool, msgs: u64, batch: u64) -> io::Result<Duration> {
    let mut ring: Ring<Producer> = builder(msg_ring).build()?;
    let (done, finished) = mpsc::sync_channel(1);
    let consumer = ring.spawn_thread(256, move |_| {
        Ok(Consumer {
            received: 0,
            total: msgs,
            done,
        })
    })?;
    let mut state = Producer {
        consumer: consumer.handle().clone(),
        next: 0,
        total: msgs,
        batch: batch.max(1),
    };
    let start = Instant::now();
    ring.noop(Ctx::new(Producer::on_turn));
    ring.run(&mut state, RunMode::UntilDone)?;
    let end = finished
        .recv()
        .map_err(|_| io::Error::other("one-way: the consumer stopped early"))??;
    consumer.join()?;
    Ok(end.duration_since(start))
}

// -- crossbeam ----------------------------------------------------------------

fn crossbeam_ping_pong(roundtrips: u64) -> io::Result<PingPong> {
    let (to_b, from_a) = crossbeam_channel::unbounded::<u64>();
    let (to_a, from_b) = crossbeam_channel::unbounded::<u64>();
    let b = std::thread::spawn(move || {
        while let Ok(n) = from_a.recv() {
            if to_a.send(n).is_err() {
                return;
            }
        }
    });
    let mut rtts = Vec::with_capacity(roundtrips as usize);
    let start = Instant::now();
    for n in 0..roundtrips {
        let sent_at = Instant::now();
        to_b.send(n)
            .map_err(|_| io::Error::other("crossbeam: B is gone"))?;
        let back = from_b
            .recv()
            .map_err(|_| io::Error::other("crossbeam: B is gone"))?;
        rtts.push(elapsed_ns(sent_at));
        assert_eq!(back, n);
    }
    let elapsed = start.elapsed();
    drop(to_b);
    b.join()
        .map_err(|_| io::Error::other("crossbeam: B panicked"))?;
    Ok(PingPong { elapsed, rtts })
}

fn crossbeam_one_way(msgs: u64) -> io::Result<Duration> {
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    let b = std::thread::spawn(move || {
        for expected in 0..msgs {
            match rx.recv() {
                Ok(n) if n == expected => {}
                _ => return None,
            }
        }
        Some(Instant::now())
    });
    let start = Instant::now();
    for n in 0..msgs {
        tx.send(n)
            .map_err(|_| io::Error::other("crossbeam: B is gone"))?;
    }
    let end = b
        .join()
        .map_err(|_| io::Error::other("crossbeam: B panicked"))?
        .ok_or_else(|| io::Error::other("crossbeam: lost or reordered a message"))?;
    Ok(end.duration_since(start))
}

// -- eventfd ------------------------------------------------------------------

/// A blocking eventfd.
struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> io::Result<EventFd> {
        // SAFETY: plain system call on integers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd returned a new fd that nothing else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn write(&self, value: u64) -> io::Result<()> {
        let bytes = value.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an fd we own.
        let res = unsafe { libc::write(self.0.as_raw_fd(), bytes.as_ptr().cast(), 8) };
        if res == 8 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn read(&self) -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        // SAFETY: reads 8 bytes into a live buffer from an fd we own.
        let res = unsafe { libc::read(self.0.as_raw_fd(), bytes.as_mut_ptr().cast(), 8) };
        if res == 8 {
            Ok(u64::from_ne_bytes(bytes))
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Written by A to end B's ping-pong loop.
const QUIT: u64 = 2;

fn eventfd_ping_pong(roundtrips: u64) -> io::Result<PingPong> {
    let to_b = Arc::new(EventFd::new()?);
    let to_a = Arc::new(EventFd::new()?);
    let b = std::thread::spawn({
        let (to_b, to_a) = (to_b.clone(), to_a.clone());
        move || -> io::Result<()> {
            while to_b.read()? != QUIT {
                to_a.write(1)?;
            }
            Ok(())
        }
    });
    let mut rtts = Vec::with_capacity(roundtrips as usize);
    let start = Instant::now();
    for _ in 0..roundtrips {
        let sent_at = Instant::now();
        to_b.write(1)?;
        to_a.read()?;
        rtts.push(elapsed_ns(sent_at));
    }
    let elapsed = start.elapsed();
    to_b.write(QUIT)?;
    b.join()
        .map_err(|_| io::Error::other("eventfd: B panicked"))??;
    Ok(PingPong { elapsed, rtts })
}

/// A queue with an eventfd doorbell, rung only when no wake-up is
/// outstanding.
struct Doorbelled {
    queue: Mutex<VecDeque<u64>>,
    notified: AtomicBool,
    bell: EventFd,
}

fn eventfd_one_way(msgs: u64) -> io::Result<Duration> {
    let shared = Arc::new(Doorbelled {
        queue: Mutex::new(VecDeque::new()),
        notified: AtomicBool::new(false),
        bell: EventFd::new()?,
    });
    let b = std::thread::spawn({
        let shared = shared.clone();
        move || -> io::Result<Instant> {
            let mut taken = VecDeque::new();
            let mut expected = 0;
            while expected < msgs {
                shared.bell.read()?;
                shared.notified.store(false, Ordering::Release);
                std::mem::swap(&mut *shared.queue.lock().unwrap(), &mut taken);
                for n in taken.drain(..) {
                    if n != expected {
                        return Err(io::Error::other("eventfd: lost or reordered a message"));
                    }
                    expected += 1;
                }
            }
            Ok(Instant::now())
        }
    });
    let start = Instant::now();
    for n in 0..msgs {
        shared.queue.lock().unwrap().push_back(n);
        if !shared.notified.load(Ordering::Acquire) && !shared.notified.swap(true, Ordering::AcqRel)
        {
            shared.bell.write(1)?;
        }
    }
    let end = b
        .join()
        .map_err(|_| io::Error::other("eventfd: B panicked"))??;
    Ok(end.duration_since(start))
}
