//! A small pool of threads for calls that block without ever being "not
//! ready" (open, stat, fsync, reads and writes of regular files): the loop
//! hands them over and gets their results back as completions, with a
//! wake-up of its poller.
//!
//! Threads start on demand (when a job finds none free), up to a limit, and
//! live until the ring is dropped. A job still queued can be cancelled; one
//! that a thread has begun finishes with its own result (io_uring, unlike
//! this, interrupts a worker blocked in a call). Jobs with the same order key (reads and writes at an
//! fd's current position) run one at a time, in the order given.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use super::call::Call;
use crate::backend::RawCompletion;

/// At most this many calls block at once; more wait in the queue.
const MAX_THREADS: usize = 16;

/// Pool threads run plain system calls: a small stack suffices.
const STACK_SIZE: usize = 128 * 1024;

pub(super) struct Pool {
    shared: Arc<Shared>,
    /// Jobs handed over whose completion has not been taken back yet.
    in_flight: usize,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

struct Job {
    user_data: u64,
    call: Call,
    /// Jobs with the same key run one after another, in order.
    order: Option<i32>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    done: Vec<RawCompletion>,
    /// The fds among `done`'s results (of opens), which whoever takes
    /// `done` owns; closed if the ring never does.
    done_fds: Vec<RawFd>,
    /// Order keys of the jobs running now.
    running: Vec<i32>,
    /// Wakes the ring's poller when results are ready; taken away when the
    /// pool is dropped, so that threads still blocked in a job do not keep
    /// the poller's wake-up fd open.
    wake: Option<Box<dyn Fn() + Send + Sync>>,
    threads: usize,
    /// Threads running a job.
    busy: usize,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic cannot happen while the lock is held (plain pushes and
        // pops), but if it did the state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pool {
    pub(super) fn new(wake: Box<dyn Fn() + Send + Sync>) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    wake: Some(wake),
                    ..State::default()
                }),
                work: Condvar::new(),
            }),
            in_flight: 0,
        }
    }

    /// Hands `call` to a thread; fails (with `-errno`) only if no thread
    /// exists and none can be started.
    pub(super) fn submit(
        &mut self,
        user_data: u64,
        call: Call,
        order: Option<i32>,
    ) -> Result<(), i32> {
        let mut state = self.shared.lock();
        // Every queued job needs a thread of its own: one of them may block
        // for long (opening a FIFO waits for a writer). Threads not busy
        // with a job (idle, or about to look for one) count as free.
        let free = state.threads - state.busy;
        if state.jobs.len() >= free && state.threads < MAX_THREADS {
            match self.spawn() {
                Ok(()) => state.threads += 1,
                Err(err) if state.threads == 0 => {
                    tracing::error!(error = %err, "cannot start a pool thread");
                    return Err(-err.raw_os_error().unwrap_or(libc::EAGAIN));
                }
                Err(err) => tracing::warn!(error = %err, "cannot start another pool thread"),
            }
        }
        state.jobs.push_back(Job {
            user_data,
            call,
            order,
        });
        self.in_flight += 1;
        drop(state);
        self.shared.work.notify_one();
        Ok(())
    }

    fn spawn(&self) -> std::io::Result<()> {
        let shared = self.shared.clone();
        thread::Builder::new()
            .name("ouro-pool".into())
            .stack_size(STACK_SIZE)
            .spawn(move || work(&shared))
            .map(drop)
    }

    /// Takes back a job no thread has begun; `false` if it is running.
    pub(super) fn cancel(&mut self, user_data: u64) -> bool {
        let mut state = self.shared.lock();
        let Some(i) = state.jobs.iter().position(|j| j.user_data == user_data) else {
            return false;
        };
        state.jobs.remove(i);
        self.in_flight -= 1;
        true
    }

    /// Moves finished jobs' completions to `out`.
    pub(super) fn take_done(&mut self, out: &mut Vec<RawCompletion>) {
        if self.in_flight == 0 {
            return;
        }
        let mut state = self.shared.lock();
        self.in_flight -= state.done.len();
        out.append(&mut state.done);
        state.done_fds.clear();
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for Pool {
    /// Threads finish what they are doing and exit; nobody waits for them
    /// (the ring waited for every job it cared about, up to a limit). Jobs
    /// are abandoned: queued ones never run, and an fd that a finished or
    /// running one opens is closed here or by its thread (a FIFO's open may
    /// finish long after the ring is gone), since no completion will carry
    /// it to an owner.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closing = true;
        state.jobs.clear();
        let wake = state.wake.take();
        for fd in state.done_fds.drain(..) {
            // SAFETY: the fd came from a job's open and was never handed
            // out: nothing else owns it.
            unsafe { libc::close(fd) };
        }
        drop(state);
        drop(wake);
        self.shared.work.notify_all();
    }
}

/// The fd a job's result holds, if the job makes one (an open).
fn opened_fd(call: &Call, res: i32) -> Option<RawFd> {
    (call.makes_fd && res >= 0).then_some(res)
}

impl State {
    /// The first queued job whose order key is not running.
    fn next_job(&mut self) -> Option<Job> {
        let running = &self.running;
        let i = self
            .jobs
            .iter()
            .position(|job| job.order.is_none_or(|key| !running.contains(&key)))?;
        let job = self.jobs.remove(i)?;
        if let Some(key) = job.order {
            self.running.push(key);
        }
        self.busy += 1;
        Some(job)
    }
}

fn work(shared: &Shared) {
    loop {
        let mut state = shared.lock();
        let mut job = loop {
            if let Some(job) = state.next_job() {
                break job;
            }
            if state.closing {
                state.threads -= 1;
                return;
            }
            state = shared
                .work
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(state);
        let res = job.call.block();
        let mut state = shared.lock();
        state.busy -= 1;
        if let Some(key) = job.order {
            state.running.retain(|&k| k != key);
            // A job of the same key may be waiting for this one.
            shared.work.notify_all();
        }
        let opened = opened_fd(&job.call, res);
        if state.closing {
            // Abandoned: no ring will take the result.
            if let Some(fd) = opened {
                // SAFETY: the job's open made this fd; nobody else has it.
                unsafe { libc::close(fd) };
            }
            continue;
        }
        state.done_fds.extend(opened);
        let first = state.done.is_empty();
        state.done.push(RawCompletion {
            user_data: job.user_data,
            res,
            flags: 0,
        });
        if first {
            // One wake-up per batch: the loop takes every result at once.
            if let Some(wake) = &state.wake {
                wake();
            }
        }
    }
}
