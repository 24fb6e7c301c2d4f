//! Unix signals as completions: a task on a ring that finishes when one of
//! the chosen signals arrives, carrying the signal numbers.
//!
//! ```no_run
//! use ouro::signal::{self, Signals, SIGINT, SIGTERM};
//! use ouro::{Completion, Ctx, Ring, RunMode};
//! use std::io;
//!
//! fn on_signal(_: &mut (), ring: &mut Ring<()>, c: Completion) -> io::Result<()> {
//!     let received = signal::received(&c)?;
//!     println!("stopping on {received}");
//!     ring.stop();
//!     Ok(())
//! }
//!
//! let mut ring: Ring<()> = Ring::new(16)?;
//! let signals = Signals::new(&[SIGINT, SIGTERM])?; // Ctrl-C included
//! signals.wait(&mut ring, Ctx::new(on_signal));
//! ring.run(&mut (), RunMode::Forever)?;
//! # Ok::<(), io::Error>(())
//! ```
//!
//! # Design: a self-pipe, not signalfd
//!
//! A signalfd receives a signal only while every thread of the process
//! blocks it; a thread that does not (one started before the mask was set,
//! or by a library) gets it by its default action, and for `SIGINT` or
//! `SIGTERM` the process dies. With rings on several threads that order is
//! easy to get wrong and impossible to check.
//!
//! So [`Signals`] installs a handler instead (through the `signal-hook`
//! crate, which chains any handler installed before it): the handler marks
//! the signal pending and wakes a thread of the `Signals`, which writes the
//! signal's number, one byte, to a non-blocking socket, unless a byte of
//! that signal is still unread there. [`Signals::wait`] is an ordinary
//! receive on the other end of that socket. Hence:
//! - no thread's signal mask matters, whichever thread the kernel picks;
//! - a signal that arrives before the wait is scheduled waits in the socket
//!   (nothing is lost between two waits): every arrival is reported by a
//!   wait that completes after it;
//! - a wait is a task like any other: cancelled with [`Ring::cancel`]
//!   (`ECANCELED`), given a deadline (`ETIME`), re-armed by calling
//!   [`wait`](Signals::wait) again, on io_uring and on the readiness backend
//!   alike, and on every Unix (kqueue platforms included);
//! - signals are coalesced per signal: the same signal arriving several
//!   times before a wait takes its byte is reported once, by that wait (the
//!   kernel coalesces standard signals too); different signals are each
//!   reported, however often another one arrived meanwhile. The socket
//!   holds at most one byte per signal, so it never fills.
//!
//! Each `Signals` costs one thread, asleep until a signal arrives, and two
//! socket pairs (the relay's and `signal-hook`'s own wake-up pipe).
//!
//! # Dropping
//!
//! Dropping a `Signals` stops its thread and removes its handler actions.
//! When no `Signals` of the process is left for a signal, the signal's
//! *default* action is back (for `SIGINT` and `SIGTERM`: the process ends).
//! The handler itself stays installed, as `signal-hook` leaves it, and runs
//! the default action: the previous disposition cannot be read back
//! through `signal-hook`, so a signal the process ignored before (`SIG_IGN`,
//! as a shell does for `SIGINT` in background jobs) gets its default action
//! after the drop, not its ignored state. A handler installed before the
//! first `Signals` keeps running all along (`signal-hook` chains it).
//!
//! A wait still in flight when its `Signals` is dropped completes with an
//! `UnexpectedEof` error from [`received`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use libc::c_int;
pub use libc::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

use crate::completion::Completion;
use crate::op::Outcome;
use crate::ring::{Ctx, Ring};
use crate::task::Task;

/// The most signals one wait reports before the rest wait for the next one.
const BATCH: usize = 64;

/// Signal numbers `signal-hook` handles (it keeps one slot per number).
const MAX_SIGNAL: c_int = 128;

/// A set of chosen signals whose arrivals become completions on a ring.
///
/// Create it with [`Signals::new`], then [`wait`](Signals::wait) on a ring
/// for each next arrival; read the numbers with [`received`]. See the
/// [module docs](self) for the design and for what dropping it restores.
#[derive(Debug)]
pub struct Signals {
    /// The end the ring receives signal numbers on.
    numbers: Arc<OwnedFd>,
    relay: Option<Relay>,
    signals: Vec<c_int>,
}

/// The thread that turns pending signals into bytes on the socket.
#[derive(Debug)]
struct Relay {
    handle: signal_hook::iterator::Handle,
    thread: JoinHandle<()>,
}

impl Signals {
    /// Starts receiving `signals` (for example [`SIGINT`], which Ctrl-C
    /// sends, and [`SIGTERM`]): from now on they no longer have their
    /// default action, and each arrival waits for a [`wait`](Signals::wait)
    /// on a ring. Several `Signals` may receive the same signal (on the same
    /// or different threads): each gets every arrival.
    ///
    /// An `InvalidInput` error for an empty list, and for a signal that
    /// cannot be handled or that `signal-hook` does not know (`SIGKILL`,
    /// `SIGSTOP`, `SIGSEGV`, `SIGILL`, `SIGFPE`, real-time signals, numbers
    /// that are no signal); the OS error if the handler, the socket pair or
    /// the thread cannot be set up (a thread that cannot start leaves every
    /// signal with the action it had).
    pub fn new(signals: &[c_int]) -> io::Result<Signals> {
        let mut signals = signals.to_vec();
        signals.sort_unstable();
        signals.dedup();
        check(&signals)?;
        let (numbers, relay_end) = UnixStream::pair()?;
        numbers.set_nonblocking(true)?;
        relay_end.set_nonblocking(true)?;
        let numbers = Arc::new(OwnedFd::from(numbers));
        // The relay's actions first, so that a signal arriving during this
        // call is recorded: in the other order, the first `claim` of a
        // signal installs the handler with the default action turned off,
        // and a signal arriving then would be neither recorded nor acted on.
        let relay = Relay::start(&signals, numbers.clone(), relay_end)?;
        if let Err(e) = claim(&signals) {
            relay.stop();
            return Err(e);
        }
        Ok(Signals {
            numbers,
            relay: Some(relay),
            signals,
        })
    }

    /// Schedules a task on `ring` that finishes, with `ctx`, when one of the
    /// signals has arrived since the last wait took the previous ones (at
    /// once if one already has). Its completion is a receive: read the
    /// signals with [`received`]; each signal is in it once, however often
    /// it arrived. Call it again from the callback to keep receiving. The
    /// task can be cancelled and given a deadline like any other; the
    /// signals it did not take wait for the next one.
    ///
    /// Several waits at once (on one ring or on rings of other threads)
    /// share the arrivals: each signal reported goes to one of them. Each
    /// wait allocates its small receive buffer; signals are rare enough
    /// for that not to matter.
    ///
    /// Works on every backend (a receive on a socket; io_uring 5.11).
    pub fn wait<S>(&self, ring: &mut Ring<S>, ctx: Ctx<S>) -> Task {
        ring.recv(self.numbers.clone(), Vec::with_capacity(BATCH), ctx)
    }

    /// The signals this `Signals` receives, in ascending order.
    pub fn signals(&self) -> &[c_int] {
        &self.signals
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.stop();
        }
        release(&self.signals);
    }
}

/// The signals a completion of [`Signals::wait`] carries.
///
/// The task's error if it failed (`ECANCELED` when cancelled, `ETIME` past
/// its deadline); `UnexpectedEof` if its `Signals` was dropped before a
/// signal arrived; `InvalidInput` for a completion that is not a receive.
/// A receive of another task cannot be told from a wait's (its bytes would
/// read as signal numbers): pass only the wait's completions, known by the
/// `msg` or `key` given to [`Signals::wait`].
pub fn received(c: &Completion) -> io::Result<SignalSet> {
    let Outcome::Recv(_, buf) = &c.outcome else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a {:?} completion carries no signals", c.op()),
        ));
    };
    let n = c.bytes()?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the Signals of this wait was dropped",
        ));
    }
    Ok(buf[..n].iter().map(|&b| c_int::from(b)).collect())
}

impl Relay {
    fn start(signals: &[c_int], numbers: Arc<OwnedFd>, mut out: UnixStream) -> io::Result<Relay> {
        // The thread before the handler: `signal-hook` never puts back the
        // disposition it replaced, and its handler does not run the default
        // action, so a handler installed for a thread that then fails to
        // start would leave the signals ignored for good. The thread gets
        // the handler's iterator once it exists.
        let (give, take) = mpsc::sync_channel::<signal_hook::iterator::Signals>(1);
        let thread = std::thread::Builder::new()
            .name("ouro-signals".into())
            .spawn(move || {
                // No iterator: the handler could not be installed.
                let Ok(mut pending) = take.recv() else {
                    return;
                };
                for signal in pending.forever() {
                    relay(signal, &numbers, &mut out);
                }
            })?;
        let pending = match signal_hook::iterator::Signals::new(signals) {
            Ok(pending) => pending,
            Err(e) => {
                drop(give);
                let _ = thread.join();
                return Err(e);
            }
        };
        let handle = pending.handle();
        // The thread waits for it and cannot have ended: the send succeeds.
        let _ = give.send(pending);
        Ok(Relay { handle, thread })
    }

    /// Stops the thread; the handler actions go with the last handle.
    fn stop(self) {
        self.handle.close();
        // The thread only waits, peeks and writes without blocking: it
        // cannot panic but through a bug, which the join then ignores.
        let _ = self.thread.join();
    }
}

/// Writes `signal`'s byte for the ring, unless one is still unread: that
/// byte's report, not made yet, covers this arrival too. Only this thread
/// writes, so what it saw unread stays so or is taken by a wait, whose
/// report then includes the signal; and the socket never holds more than
/// one byte per signal, so the write finds room and no other signal's byte
/// is ever dropped for lack of it.
fn relay(signal: c_int, numbers: &OwnedFd, out: &mut UnixStream) {
    if unread(numbers).contains(signal) {
        return;
    }
    // It cannot fail for want of room (see above), and the reading end
    // stays open while `numbers` is held: nothing to do about an error.
    let _ = out.write(&[signal as u8]);
}

/// The signals whose bytes wait in the socket, unread by any wait.
fn unread(numbers: &OwnedFd) -> SignalSet {
    // Room for every signal: the socket holds each at most once.
    let mut bytes = [0u8; MAX_SIGNAL as usize];
    // SAFETY: `bytes` is writable for its whole length, and `numbers` is
    // an open fd for the whole call. `MSG_PEEK` leaves the bytes for the
    // waits; `MSG_DONTWAIT` makes an empty socket an error, not a wait.
    let n = unsafe {
        libc::recv(
            numbers.as_raw_fd(),
            bytes.as_mut_ptr().cast(),
            bytes.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    // An error (`EAGAIN` above all: nothing unread) reads as nothing
    // unread: at worst a signal's byte is written twice, never lost.
    let n = usize::try_from(n).unwrap_or(0);
    bytes[..n].iter().map(|&b| c_int::from(b)).collect()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn check(signals: &[c_int]) -> io::Result<()> {
    if signals.is_empty() {
        return Err(invalid("no signal to receive".into()));
    }
    for &signal in signals {
        if signal_hook::consts::FORBIDDEN.contains(&signal) {
            return Err(invalid(format!("signal {signal} cannot be handled")));
        }
        let known = signal_hook::low_level::signal_name(signal).is_some();
        if !known || !(1..MAX_SIGNAL).contains(&signal) {
            return Err(invalid(format!("{signal} is not a signal ouro handles")));
        }
    }
    Ok(())
}

/// Per signal: how many live `Signals` receive it, and the flag that,
/// while none does, makes the handler run the default action.
static RECEIVERS: Mutex<BTreeMap<c_int, (usize, Arc<AtomicBool>)>> = Mutex::new(BTreeMap::new());

fn receivers() -> std::sync::MutexGuard<'static, BTreeMap<c_int, (usize, Arc<AtomicBool>)>> {
    // The map is consistent between statements: a panic elsewhere cannot
    // leave it half-updated.
    RECEIVERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a new receiver of `signals`; the first ever of a signal also
/// registers the action that restores its default once none is left.
fn claim(signals: &[c_int]) -> io::Result<()> {
    let mut receivers = receivers();
    for (i, &signal) in signals.iter().enumerate() {
        if let Err(e) = claim_one(&mut receivers, signal) {
            drop(receivers);
            release(&signals[..i]);
            return Err(e);
        }
    }
    Ok(())
}

fn claim_one(
    receivers: &mut BTreeMap<c_int, (usize, Arc<AtomicBool>)>,
    signal: c_int,
) -> io::Result<()> {
    if let Some((count, to_default)) = receivers.get_mut(&signal) {
        *count += 1;
        to_default.store(false, Ordering::SeqCst);
        return Ok(());
    }
    let to_default = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_default(signal, to_default.clone())?;
    receivers.insert(signal, (1, to_default));
    Ok(())
}

fn release(signals: &[c_int]) {
    let mut receivers = receivers();
    for signal in signals {
        if let Some((count, to_default)) = receivers.get_mut(signal) {
            *count -= 1;
            if *count == 0 {
                to_default.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// The signals one completion reported, each once.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SignalSet(u128);

impl SignalSet {
    /// Whether `signal` is in the set.
    pub fn contains(&self, signal: c_int) -> bool {
        (0..MAX_SIGNAL).contains(&signal) && self.0 & (1 << signal) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The number of signals in the set.
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// The signals, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = c_int> {
        let set = *self;
        (1..MAX_SIGNAL).filter(move |&s| set.contains(s))
    }
}

impl FromIterator<c_int> for SignalSet {
    fn from_iter<I: IntoIterator<Item = c_int>>(signals: I) -> SignalSet {
        let bits = signals
            .into_iter()
            .filter(|s| (0..MAX_SIGNAL).contains(s))
            .fold(0u128, |bits, s| bits | 1 << s);
        SignalSet(bits)
    }
}

/// The signal's name (`SIGTERM`), or its number if it has none.
fn name(signal: c_int) -> String {
    match signal_hook::low_level::signal_name(signal) {
        Some(name) => name.to_string(),
        None => signal.to_string(),
    }
}

/// The names, comma-separated: `SIGINT, SIGTERM`.
impl fmt::Display for SignalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.iter().map(name).collect();
        f.write_str(&names.join(", "))
    }
}

impl fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(name)).finish()
    }
}
