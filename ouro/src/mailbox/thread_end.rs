//! The end of a ring's thread, as the rings waiting for it see it: a
//! stop task lands in their mailboxes once the thread has ended.

use std::io;
use std::mem;
use std::sync::{Arc, PoisonError};

use super::{Envelope, Mailbox};
use crate::error::copy_error;
use crate::sync::Mutex;
use crate::task::Task;

/// What the thread and those waiting for it to stop share.
#[derive(Default)]
pub(crate) struct ThreadShared {
    state: Mutex<ThreadState>,
}

#[derive(Default)]
struct ThreadState {
    /// How the thread ended, once it has.
    ended: Option<io::Result<()>>,
    /// Stop tasks of other rings waiting for the end.
    waiters: Vec<(Arc<Mailbox>, Task)>,
}

impl ThreadShared {
    /// Registers a ring's stop task to hear when the thread has ended;
    /// `Some(result)` if it already has.
    pub(crate) fn add_waiter(&self, mailbox: &Arc<Mailbox>, task: Task) -> Option<io::Result<()>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &state.ended {
            Some(result) => Some(copy_result(result)),
            None => {
                state.waiters.push((mailbox.clone(), task));
                None
            }
        }
    }

    /// Forgets a stop task of the ring behind `mailbox` that no longer
    /// waits (cancelled, or past its deadline), so that the thread's end is
    /// not sent to it.
    pub(crate) fn remove_waiter(&self, mailbox: &Arc<Mailbox>, task: Task) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .waiters
            .retain(|(ring, waiting)| *waiting != task || !Arc::ptr_eq(ring, mailbox));
    }

    /// Records how the thread ended (the first call wins) and tells the
    /// waiting rings.
    pub(crate) fn end(&self, result: &io::Result<()>) {
        let waiters = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.ended.is_some() {
                return;
            }
            state.ended = Some(copy_result(result));
            mem::take(&mut state.waiters)
        };
        for (mailbox, task) in waiters {
            let result = copy_result(result);
            // A waiter whose ring is gone has nobody left to tell.
            let _ = mailbox.push(Envelope::Done { task, result });
        }
    }

    /// How the thread ended, if it has (a simulated thread's `join`
    /// reads it).
    #[cfg(target_os = "linux")]
    pub(crate) fn result(&self) -> Option<io::Result<()>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.ended.as_ref().map(copy_result)
    }

    pub(crate) fn has_ended(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.ended.is_some()
    }
}

fn copy_result(result: &io::Result<()>) -> io::Result<()> {
    result.as_ref().map(|_| ()).map_err(copy_error)
}
