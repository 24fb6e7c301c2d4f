//! The shared owners (`Rc` or `Arc` clones of an fd's owner) that tasks
//! hold until their final completion, so that an operation's file stays
//! open under it (see `OpFd`).

use crate::fd::sealed::Keep;

/// The shared owners that live tasks hold, by task slot: at most two per
/// task (a splice names two fds). Grown with the slab, so steady state does
/// not allocate.
#[derive(Default)]
pub(crate) struct Keeps {
    held: Vec<[Option<Keep>; 2]>,
    /// Named by the operation being built, not yet given to its task.
    staged: [Option<Keep>; 2],
}

/// The shared owners one task holds.
pub(crate) type Owners = [Option<Keep>; 2];

impl Keeps {
    pub(crate) fn stage(&mut self, keep: Keep) {
        let free = self.staged.iter_mut().find(|k| k.is_none());
        // Operations name at most two fds, and whatever an operation that
        // never made its task left here is discarded before the next one
        // stages.
        debug_assert!(free.is_some(), "more than two shared fds staged");
        if let Some(free) = free {
            *free = Some(keep);
        }
    }

    /// Drops what an operation staged and never gave a task: user code it
    /// called between the stage and the task (an `as_fd`, an `into_buf`)
    /// panicked, so no task names those files. Left staged, they would go
    /// to the next task, and an owner staged after them would be lost.
    #[inline(always)]
    pub(crate) fn discard_staged(&mut self) {
        if self.has_staged() {
            drop(std::mem::take(&mut self.staged));
        }
    }

    #[inline(always)]
    pub(crate) fn has_staged(&self) -> bool {
        self.staged[0].is_some()
    }

    /// Task `task`, just made, takes what is staged.
    pub(crate) fn hold(&mut self, task: u32) {
        let i = task as usize;
        if i >= self.held.len() {
            self.held
                .resize_with((i + 1).next_power_of_two(), Default::default);
        }
        let slot = &mut self.held[i];
        debug_assert!(slot.iter().all(Option::is_none));
        *slot = std::mem::take(&mut self.staged);
    }

    /// Task `task` has finished: its owners are given back for the ring to
    /// drop (the file closes then if the caller let go of it meanwhile),
    /// one at a time, since dropping them runs user code that may panic.
    pub(crate) fn take(&mut self, task: u32) -> Owners {
        self.held
            .get_mut(task as usize)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// What an operation staged and never gave a task, for a dropped ring
    /// to drop one at a time.
    pub(crate) fn take_staged(&mut self) -> Owners {
        std::mem::take(&mut self.staged)
    }

    /// The ring is dropped with task `task` still in flight: its files
    /// stay open for good.
    pub(crate) fn leak(&mut self, task: u32) {
        if let Some(slot) = self.held.get_mut(task as usize) {
            std::mem::forget(std::mem::take(slot));
        }
    }
}
