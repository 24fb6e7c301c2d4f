//! Turning a hung test into a failure, so that the suite ends.

// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::sync::mpsc::{self, RecvTimeoutError};
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
pub struct AbortAfter {
    disarm: Option<mpsc::Sender<()>>,
    watchdog: Option<thread::JoinHandle<()>>,
}

impl AbortAfter {
    pub fn new(limit: Duration) -> AbortAfter {
        let (disarm, armed) = mpsc::channel::<()>();
        let watchdog = thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = armed.recv_timeout(limit) {
                eprintln!("watchdog: a test hung for {limit:?}");
                std::process::abort();
            }
        });
        AbortAfter {
            disarm: Some(disarm),
            watchdog: Some(watchdog),
        }
    }
}

impl Drop for AbortAfter {
    /// Disarms the watchdog and waits for its thread, so that no thread
    /// outlives the test (Miri reports one that does).
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
    }
}
