//! `ouro::signal`: real signals (`raise`, `kill` of this process) as
//! completions, on every backend. Signal dispositions belong to the whole
//! process, so these tests have a binary of their own and take one lock
//! each; a signal is raised only while a `Signals` receives it (else its
//! default action would end the test binary), except in the child processes
//! that check exactly that.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::Duration;

use ouro::signal::{self, SignalSet, Signals, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use ouro::{BackendKind, Completion, Ctx, Ring, RunMode};
use signal_hook::low_level::raise;

#[macro_use]
#[path = "common/backends.rs"]
mod backends;
#[cfg(target_os = "linux")]
#[path = "common/seccomp.rs"]
mod seccomp;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `test` on `kind` alone among the tests of this binary.
fn on_backend(test: fn(BackendKind), kind: BackendKind) {
    let _serial = serial();
    if !backends::skipped(kind) {
        test(kind)
    }
}

macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::on_backend, $name);)+
    };
}

backend_tests![
    a_raised_signal_completes_the_wait_with_its_number,
    a_signal_raised_before_the_wait_is_not_lost,
    two_signals_are_both_reported,
    a_rearmed_wait_receives_the_next_signal,
    a_cancelled_wait_fails_with_ecanceled_and_loses_no_signal,
    a_wait_past_its_deadline_fails_with_etime_and_loses_no_signal,
    dropping_signals_ends_its_pending_wait_with_unexpected_eof,
    a_signal_sent_to_the_process_reaches_a_ring_on_another_thread,
    two_signals_receiving_one_signal_both_get_it,
    signals_dropped_in_their_own_callback_stop_cleanly,
    a_signal_after_a_burst_of_another_is_not_lost,
];

/// A component that waits for signals and keeps what each wait brought.
struct Waiter {
    signals: Option<Signals>,
    got: Vec<io::Result<SignalSet>>,
    /// Waits again until every one of these has been received.
    until: SignalSet,
}

impl Waiter {
    fn new(signals: Signals) -> Waiter {
        Waiter {
            signals: Some(signals),
            got: Vec::new(),
            until: SignalSet::default(),
        }
    }

    fn wait(&self, ring: &mut Ring<Waiter>) -> ouro::Task {
        let signals = self.signals.as_ref().expect("the signals");
        signals.wait(ring, Ctx::new(Waiter::on_signal))
    }

    fn on_signal(&mut self, ring: &mut Ring<Waiter>, c: Completion) -> io::Result<()> {
        self.got.push(signal::received(&c));
        if !self.received().is_superset_of(self.until) {
            self.wait(ring);
        }
        Ok(())
    }

    /// Every signal received so far.
    fn received(&self) -> Received {
        Received(
            self.got
                .iter()
                .flatten()
                .flat_map(|set| set.iter())
                .collect(),
        )
    }
}

struct Received(SignalSet);

impl Received {
    fn is_superset_of(&self, wanted: SignalSet) -> bool {
        wanted.iter().all(|s| self.0.contains(s))
    }
}

fn ring(kind: BackendKind) -> Ring<Waiter> {
    Ring::builder().backend(kind).entries(16).build().unwrap()
}

fn set(signals: &[i32]) -> SignalSet {
    signals.iter().copied().collect()
}

fn a_raised_signal_completes_the_wait_with_its_number(kind: BackendKind) {
    let mut ring = ring(kind);
    let mut waiter = Waiter::new(Signals::new(&[SIGUSR1, SIGTERM]).unwrap());
    waiter.wait(&mut ring);
    raise(SIGUSR1).unwrap();
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    assert_eq!(waiter.got.len(), 1);
    assert_eq!(*waiter.got[0].as_ref().unwrap(), set(&[SIGUSR1]));
}

fn a_signal_raised_before_the_wait_is_not_lost(kind: BackendKind) {
    let mut ring = ring(kind);
    let mut waiter = Waiter::new(Signals::new(&[SIGUSR2]).unwrap());
    raise(SIGUSR2).unwrap();
    // A turn of the ring with nothing to do, then the wait.
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    waiter.wait(&mut ring);
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    assert_eq!(*waiter.got[0].as_ref().unwrap(), set(&[SIGUSR2]));
}

fn two_signals_are_both_reported(kind: BackendKind) {
    let mut ring = ring(kind);
    let mut waiter = Waiter::new(Signals::new(&[SIGUSR1, SIGUSR2]).unwrap());
    waiter.until = set(&[SIGUSR1, SIGUSR2]);
    raise(SIGUSR2).unwrap();
    raise(SIGUSR1).unwrap();
    waiter.wait(&mut ring);
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    // One completion or two, as the relay coalesced them.
    assert!(waiter.got.len() <= 2, "{:?}", waiter.got);
    assert_eq!(waiter.received().0, set(&[SIGUSR1, SIGUSR2]));
}

fn a_rearmed_wait_receives_the_next_signal(kind: BackendKind) {
    let mut ring = ring(kind);
    let mut waiter = Waiter::new(Signals::new(&[SIGUSR1, SIGUSR2]).unwrap());
    for signal in [SIGUSR1, SIGUSR2, SIGUSR1] {
        waiter.wait(&mut ring);
        raise(signal).unwrap();
        ring.run(&mut waiter, RunMode::UntilDone).unwrap();
        assert_eq!(
            *waiter.got.last().unwrap().as_ref().unwrap(),
            set(&[signal])
        );
    }
    assert_eq!(waiter.got.len(), 3);
}

fn a_cancelled_wait_fails_with_ecanceled_and_loses_no_signal(kind: BackendKind) {
    let mut ring = ring(kind);
    let mut waiter = Waiter::new(Signals::new(&[SIGUSR1]).unwrap());
    let task = waiter.wait(&mut ring);
    ring.cancel(task, Ctx::none());
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    let err = waiter.got.pop().unwrap().unwrap_err();
    assert!(ouro::is_canceled(&err), "{err}");
    raise(SIGUSR1).unwrap();
    waiter.wait(&mut ring);
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    assert_eq!(*waiter.got[0].as_ref().unwrap(), set(&[SIGUSR1]));
}

fn a_wait_past_its_deadline_fails_with_etime_and_loses_no_signal(kind: BackendKind) {
    let mut ring = ring(kind);
    let mut waiter = Waiter::new(Signals::new(&[SIGUSR1]).unwrap());
    let task = waiter.wait(&mut ring);
    ring.set_timeout(task, Duration::from_millis(1)).unwrap();
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    let err = waiter.got.pop().unwrap().unwrap_err();
    assert!(ouro::is_deadline(&err), "{err}");
    raise(SIGUSR1).unwrap();
    let task = waiter.wait(&mut ring);
    ring.set_timeout(task, Duration::from_secs(60)).unwrap();
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    assert_eq!(*waiter.got[0].as_ref().unwrap(), set(&[SIGUSR1]));
}

fn dropping_signals_ends_its_pending_wait_with_unexpected_eof(kind: BackendKind) {
    let fds = open_fds();
    let mut ring = ring(kind);
    let mut waiter = Waiter::new(Signals::new(&[SIGUSR1]).unwrap());
    waiter.wait(&mut ring);
    waiter.signals = None;
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    let err = waiter.got.pop().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    drop(ring);
    assert_eq!(open_fds(), fds, "the socket pair is closed");
}

fn a_signal_sent_to_the_process_reaches_a_ring_on_another_thread(kind: BackendKind) {
    let (ready, is_ready) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut ring = ring(kind);
        let mut waiter = Waiter::new(Signals::new(&[SIGINT, SIGUSR2]).unwrap());
        waiter.wait(&mut ring);
        ready.send(()).unwrap();
        ring.run(&mut waiter, RunMode::UntilDone).unwrap();
        waiter.got.pop().unwrap().unwrap()
    });
    is_ready.recv().unwrap();
    // Sent to the process, not to the thread: any thread may take it.
    // SAFETY: kill has no memory effects; it signals this very process.
    assert_eq!(unsafe { libc::kill(libc::getpid(), SIGINT) }, 0);
    assert_eq!(thread.join().unwrap(), set(&[SIGINT]));
}

fn two_signals_receiving_one_signal_both_get_it(kind: BackendKind) {
    let mut ring = ring(kind);
    let mut first = Waiter::new(Signals::new(&[SIGUSR1]).unwrap());
    let mut second = Waiter::new(Signals::new(&[SIGUSR1, SIGUSR2]).unwrap());
    raise(SIGUSR1).unwrap();
    for waiter in [&mut first, &mut second] {
        waiter.wait(&mut ring);
        ring.run(waiter, RunMode::UntilDone).unwrap();
        assert_eq!(*waiter.got[0].as_ref().unwrap(), set(&[SIGUSR1]));
    }
    // One dropped, the other still receives (no default action yet).
    drop(first);
    raise(SIGUSR1).unwrap();
    second.wait(&mut ring);
    ring.run(&mut second, RunMode::UntilDone).unwrap();
    assert_eq!(*second.got[1].as_ref().unwrap(), set(&[SIGUSR1]));
}

fn drop_signals(waiter: &mut Waiter, _: &mut Ring<Waiter>, c: Completion) -> io::Result<()> {
    waiter.got.push(signal::received(&c));
    waiter.signals = None; // joins the relay thread from inside the ring
    Ok(())
}

fn signals_dropped_in_their_own_callback_stop_cleanly(kind: BackendKind) {
    let mut ring = ring(kind);
    let mut waiter = Waiter::new(Signals::new(&[SIGUSR2, SIGUSR1]).unwrap());
    let signals = waiter.signals.as_ref().unwrap();
    signals.wait(&mut ring, Ctx::new(drop_signals));
    signals.wait(&mut ring, Ctx::new(drop_signals));
    raise(SIGUSR2).unwrap();
    ring.run(&mut waiter, RunMode::UntilDone).unwrap();
    // One wait took the signal, the other ended with the drop.
    assert!(waiter.signals.is_none());
    let [first, second] = [&waiter.got[0], &waiter.got[1]];
    assert_eq!(*first.as_ref().unwrap(), set(&[SIGUSR2]));
    let err = second.as_ref().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
}

/// Arrivals of `SIGUSR1` in the burst, each relayed on its own: enough to
/// fill the socket had each arrival its own byte there.
const BURST: usize = 3000;

/// The most waits the relay can need to report `SIGUSR2` after the burst:
/// when the first one runs, the socket holds at most one unread `SIGUSR1`,
/// and the relay has at most two `SIGUSR1` still to write (one in hand,
/// one pending in `signal-hook`) before `SIGUSR2`; each wait takes at
/// least one of those four bytes. A socket filled by the burst holds far
/// more `SIGUSR1` bytes than four waits take.
const WAITS_FOR_THE_OTHER: usize = 4;

/// A burst of `SIGUSR1` with no wait running, each arrival relayed on its
/// own (a pause after each lets the relay thread run), then one `SIGUSR2`:
/// every wait after it ends, and one of the first few reports `SIGUSR2`.
/// Each arrival once took its own byte in the socket; the burst filled it
/// and the `SIGUSR2` byte was dropped for want of room.
fn a_signal_after_a_burst_of_another_is_not_lost(kind: BackendKind) {
    let mut ring = ring(kind);
    let mut waiter = Waiter::new(Signals::new(&[SIGUSR1, SIGUSR2]).unwrap());
    for _ in 0..BURST {
        raise(SIGUSR1).unwrap();
        std::thread::sleep(Duration::from_micros(100));
    }
    raise(SIGUSR2).unwrap();
    for _ in 0..WAITS_FOR_THE_OTHER {
        let task = waiter.wait(&mut ring);
        ring.set_timeout(task, Duration::from_secs(10)).unwrap();
        ring.run(&mut waiter, RunMode::UntilDone).unwrap();
        let got = waiter.got.last().unwrap();
        assert!(
            got.is_ok(),
            "wait {} did not end: {got:?}",
            waiter.got.len()
        );
        if waiter.received().0.contains(SIGUSR2) {
            return;
        }
    }
    panic!("no SIGUSR2 in {:?}", waiter.got);
}

#[test]
fn signals_that_cannot_be_received_are_invalid_input() {
    let _serial = serial();
    let bad: [&[i32]; 7] = [
        &[],
        &[libc::SIGKILL],
        &[SIGTERM, libc::SIGSTOP],
        &[libc::SIGSEGV],
        &[0],
        &[-1],
        &[200],
    ];
    for signals in bad {
        let err = Signals::new(signals).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidInput,
            "{signals:?}: {err}"
        );
    }
    let signals = Signals::new(&[SIGTERM, SIGINT, SIGTERM]).unwrap();
    assert_eq!(signals.signals(), [SIGINT, SIGTERM]);
}

#[test]
fn a_signal_set_names_its_signals() {
    let received = set(&[SIGTERM, SIGINT]);
    assert_eq!(received.to_string(), "SIGINT, SIGTERM");
    assert_eq!(received.len(), 2);
    assert!(received.contains(SIGINT) && !received.contains(SIGUSR1));
    assert!(!received.contains(-3) && !received.contains(500));
    assert!(SignalSet::default().is_empty());
}

const DEFAULT_CHILD: &str = "OURO_SIGNALS_DEFAULT_CHILD";

/// The child dies of `SIGUSR1` raised after the last `Signals` for it was
/// dropped: the default action is back. Run in a child process, which the
/// signal ends.
#[test]
fn dropping_the_last_signals_restores_the_default_action() {
    if std::env::var_os(DEFAULT_CHILD).is_some() {
        let first = Signals::new(&[SIGUSR1]).unwrap();
        let second = Signals::new(&[SIGUSR1]).unwrap();
        drop(first);
        raise(SIGUSR1).unwrap(); // received by `second`
        drop(second);
        raise(SIGUSR1).unwrap();
        panic!("still alive after SIGUSR1 with no Signals left");
    }
    let _serial = serial();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "dropping_the_last_signals_restores_the_default_action",
            "--exact",
            "--nocapture",
        ])
        .env(DEFAULT_CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(SIGUSR1),
        "{:?}\n{stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

const FAILED_NEW_CHILD: &str = "OURO_SIGNALS_FAILED_NEW_CHILD";

/// A `Signals::new` that fails because its relay thread cannot start
/// leaves the signal's default action: the child dies of `SIGUSR2` raised
/// after it. A seccomp filter makes thread creation fail (`EAGAIN`), as a
/// full `RLIMIT_NPROC` or cgroup `pids.max` would. Run in a child process,
/// which the filter holds and the signal ends.
#[cfg(target_os = "linux")]
#[test]
fn a_failed_signals_new_leaves_the_default_action() {
    if std::env::var_os(FAILED_NEW_CHILD).is_some() {
        forbid_threads();
        let err = Signals::new(&[SIGUSR2]).expect_err("no thread can start");
        assert_eq!(err.raw_os_error(), Some(libc::EAGAIN), "{err}");
        raise(SIGUSR2).unwrap();
        panic!("still alive after SIGUSR2 with no Signals made");
    }
    let _serial = serial();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_failed_signals_new_leaves_the_default_action",
            "--exact",
            "--nocapture",
        ])
        .env(FAILED_NEW_CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(SIGUSR2),
        "{:?}\n{stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Installs a seccomp filter that makes `clone` and `clone3` fail with
/// `EAGAIN` in this thread, so that it cannot start threads.
#[cfg(target_os = "linux")]
fn forbid_threads() {
    seccomp::fail_calls(&[libc::SYS_clone, libc::SYS_clone3], libc::EAGAIN);
}

/// This process's open fds (Linux: `/proc/self/fd`; elsewhere the check is
/// skipped: always 0).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}
