//! The `paced` pattern: lookups arrive at a fixed rate, the same for
//! every contestant, instead of each starting as soon as one ends. A
//! closed loop makes a faster contestant carry more load (more sockets
//! opened and freed per second, and the kernel's deferred frees of them
//! land in its lookups' latency); at one offered rate the latencies
//! compare at equal load.
//!
//! A pacer thread on the server CPU hands lookup `i` to the contestant at
//! `start + i / rate` (ouro: a message to its ring through a
//! `RingHandle`; hickory-resolver: a tokio channel; getaddrinfo: a channel
//! its threads take turns receiving from). At most `in_flight` lookups
//! run at once, the rest wait their turn in arrival order. A lookup's time
//! runs from its arrival time, so time spent waiting (for the contestant
//! to wake up, or for a free slot) counts.

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use hickory_resolver::TokioResolver;
use ouro::{Completion, Ctx, Payload, Ring, RunMode};
use ouro_net::dns::{answer, Resolver};

use super::{check, hickory_resolver, ouro_resolver, to_resolver, WithResolver};
use crate::server::{pin_to_cpu, thread_cpu_micros, SERVER_CPU};

/// When each lookup arrives: the `i`th at `start + i * period`.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    start: Instant,
    period_ns: u64,
}

impl Schedule {
    /// Arrivals at `rate` per second, the first a moment from now (the
    /// pacer thread starting).
    fn new(rate: u32) -> Schedule {
        Schedule {
            start: Instant::now() + Duration::from_millis(5),
            period_ns: 1_000_000_000 / u64::from(rate),
        }
    }

    fn arrival(&self, i: usize) -> Instant {
        self.start + Duration::from_nanos(self.period_ns.saturating_mul(i as u64))
    }

    /// Microseconds from lookup `i`'s arrival to now.
    fn since_arrival(&self, i: usize) -> u64 {
        Instant::now().duration_since(self.arrival(i)).as_micros() as u64
    }
}

/// Hands `0..count` to `deliver`, each at its arrival time, from the
/// calling thread (a pacer the caller started), moved to the server CPU so
/// that it takes no time from the contestant's. Stops early when `deliver`
/// fails (the contestant is gone). Returns the thread's CPU time in
/// microseconds: the pacer's, not the contestant's.
fn pace(schedule: Schedule, count: usize, mut deliver: impl FnMut(usize) -> bool) -> u64 {
    pin_to_cpu(SERVER_CPU);
    // SAFETY: PR_SET_TIMERSLACK takes a number and changes only how late
    // this thread's sleeps may end (the default lets them run 50 µs late).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    for i in 0..count {
        let due = schedule.arrival(i);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if !deliver(i) {
            break;
        }
    }
    thread_cpu_micros()
}

/// Each lookup's time, and the pacer's CPU time (microseconds).
type Timed = (Vec<u64>, u64);

/// Each lookup's time (from its arrival) for `contestant` at `rate`, and
/// the pacer's CPU time, which is not the contestant's.
pub(super) fn lookups(
    contestant: super::Contestant,
    names: &[String],
    in_flight: u16,
    rate: u32,
) -> io::Result<Timed> {
    match contestant {
        super::Contestant::Ouro => ouro(names, in_flight, rate),
        super::Contestant::Getaddrinfo => getaddrinfo(names, in_flight, rate),
        super::Contestant::Hickory => hickory(names, in_flight, rate),
    }
}

/// getaddrinfo on `threads` threads taking the arrivals in turn.
fn getaddrinfo(names: &[String], threads: u16, rate: u32) -> io::Result<Timed> {
    let (arrivals, arrived) = mpsc::channel::<usize>();
    let arrived = Mutex::new(arrived);
    let schedule = Schedule::new(rate);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> io::Result<Vec<u64>> {
                    let mut times = Vec::new();
                    loop {
                        let next = arrived
                            .lock()
                            .map_err(|_| io::Error::other("a getaddrinfo thread panicked"))?
                            .recv();
                        let Ok(i) = next else {
                            return Ok(times);
                        };
                        let found = super::getaddrinfo(&names[i])?;
                        times.push(schedule.since_arrival(i));
                        check(&names[i], found)?;
                    }
                })
            })
            .collect();
        let pacer = scope.spawn(move || pace(schedule, names.len(), |i| arrivals.send(i).is_ok()));
        Ok((super::gathered(workers)?, joined(pacer)?))
    })
}

/// hickory-resolver on a current-thread tokio runtime, fed by a channel.
fn hickory(names: &[String], tasks: u16, rate: u32) -> io::Result<Timed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let resolver = runtime.block_on(async { hickory_resolver() })?;
    let (arrivals, mut arrived) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let schedule = Schedule::new(rate);
    thread::scope(|scope| {
        let pacer = scope.spawn(move || pace(schedule, names.len(), |i| arrivals.send(i).is_ok()));
        let times = runtime.block_on(async {
            let mut waiting = VecDeque::new();
            let mut running = FuturesUnordered::new();
            let mut times = Vec::with_capacity(names.len());
            let mut all_arrived = false;
            while times.len() < names.len() {
                while running.len() < usize::from(tasks) {
                    let Some(i) = waiting.pop_front() else { break };
                    running.push(hickory_lookup(&resolver, names, i));
                }
                tokio::select! {
                    next = arrived.recv(), if !all_arrived => match next {
                        Some(i) => waiting.push_back(i),
                        None => all_arrived = true,
                    },
                    Some(done) = running.next(), if !running.is_empty() => {
                        times.push(schedule.since_arrival(done?));
                    }
                    else => return Err(io::Error::other("the pacer stopped early")),
                }
            }
            Ok(times)
        })?;
        Ok((times, joined(pacer)?))
    })
}

fn joined(pacer: thread::ScopedJoinHandle<'_, u64>) -> io::Result<u64> {
    pacer
        .join()
        .map_err(|_| io::Error::other("the pacer thread panicked"))
}

/// One lookup of `names[i]`; `i` once it is done and checked.
async fn hickory_lookup(resolver: &TokioResolver, names: &[String], i: usize) -> io::Result<usize> {
    let found = resolver.lookup_ip(names[i].as_str()).await;
    check(&names[i], found.map_err(io::Error::other)?.iter().collect())?;
    Ok(i)
}

struct Paced<'a> {
    resolver: Option<Resolver<Paced<'a>>>,
    names: &'a [String],
    schedule: Schedule,
    waiting: VecDeque<usize>,
    running: usize,
    in_flight: usize,
    times: Vec<u64>,
    failure: Option<io::Error>,
}

impl<'a> WithResolver for Paced<'a> {
    fn resolver(&mut self) -> Option<&mut Resolver<Paced<'a>>> {
        self.resolver.as_mut()
    }
}

/// ouro-net's resolver on one ring, each arrival a message to it.
fn ouro(names: &[String], in_flight: u16, rate: u32) -> io::Result<Timed> {
    let mut ring = Ring::new(1024)?;
    let resolver = ouro_resolver(&mut ring, Ctx::new(to_resolver))?;
    let handle = ring.handle()?;
    let schedule = Schedule::new(rate);
    let mut state = Paced {
        resolver: Some(resolver),
        names,
        schedule,
        waiting: VecDeque::new(),
        running: 0,
        in_flight: usize::from(in_flight),
        times: Vec::with_capacity(names.len()),
        failure: None,
    };
    let pacer_cpu = thread::scope(|scope| {
        let pacer = scope.spawn(move || {
            pace(schedule, names.len(), |i| {
                let arrival = Ctx::new(on_arrival).key(i as u64);
                handle.send(arrival, Payload::None).is_ok()
            })
        });
        ring.run(&mut state, RunMode::Forever)?;
        joined(pacer)
    })?;
    match state.failure {
        Some(err) => Err(err),
        None => Ok((state.times, pacer_cpu)),
    }
}

fn on_arrival<'a>(
    state: &mut Paced<'a>,
    ring: &mut Ring<Paced<'a>>,
    c: Completion,
) -> io::Result<()> {
    state.waiting.push_back(c.key() as usize);
    start_waiting(state, ring);
    Ok(())
}

fn start_waiting<'a>(state: &mut Paced<'a>, ring: &mut Ring<Paced<'a>>) {
    while state.running < state.in_flight {
        let Some(i) = state.waiting.pop_front() else {
            return;
        };
        let Some(resolver) = state.resolver.as_mut() else {
            return;
        };
        resolver.lookup_ip(ring, &state.names[i], Ctx::new(on_answer).key(i as u64));
        state.running += 1;
    }
}

fn on_answer<'a>(
    state: &mut Paced<'a>,
    ring: &mut Ring<Paced<'a>>,
    c: Completion,
) -> io::Result<()> {
    let i = c.key() as usize;
    state.running -= 1;
    state.times.push(state.schedule.since_arrival(i));
    let checked = answer(c).and_then(|answer| check(&state.names[i], answer.addresses()));
    if let Err(err) = checked {
        state.failure.get_or_insert(err);
        ring.stop();
        return Ok(());
    }
    if state.times.len() == state.names.len() {
        ring.stop();
        return Ok(());
    }
    start_waiting(state, ring);
    Ok(())
}
