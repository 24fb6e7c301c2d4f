//! Turning a hung test into a failure, so that the suite ends.

// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Runs `f` on its own thread and fails if it has not finished within
/// `limit`; a panic in `f` is passed on.
pub fn run_within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (finished, wait) = mpsc::channel::<()>();
    let name = thread::current().name().unwrap_or("test").to_string();
    let worker = thread::Builder::new()
        .name(name)
        .spawn(move || {
            // Dropped when `f` returns or unwinds: either ends the wait.
            let _finished = finished;
            f()
        })
        .expect("spawning the test thread");
    match wait.recv_timeout(limit) {
        Err(RecvTimeoutError::Timeout) => panic!("hung: not finished after {limit:?}"),
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        },
    }
}

/// Aborts the test process unless dropped within `limit`: for tests that
/// must run on their own thread (a ring is not `Send`), where
/// [`run_within`] cannot move them.
#[must_use = "the watchdog is disarmed when dropped"]
pub struct AbortAfter(Arc<AtomicBool>);

impl AbortAfter {
    pub fn new(limit: Duration) -> AbortAfter {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        thread::spawn(move || {
            let tick = Duration::from_millis(100);
            for _ in 0..limit.as_millis().div_ceil(tick.as_millis()) {
                thread::sleep(tick);
                if flag.load(Ordering::SeqCst) {
                    return;
                }
            }
            eprintln!("watchdog: a test hung for {limit:?}");
            std::process::abort();
        });
        AbortAfter(done)
    }
}

impl Drop for AbortAfter {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
