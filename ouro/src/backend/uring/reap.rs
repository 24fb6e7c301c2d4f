//! Reaping completions: into the ring's batch or one at a time, the
//! kernel's pending work, files arriving as parcels, and the buffer rings
//! of groups.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use io_uring::{opcode, types};

use super::{is_busy, RawCompletion, Started, Uring, INSTALL, WAKE_READ};
use crate::buffers::group::GroupInner;
use crate::task::user_data;

impl Uring {
    pub(crate) fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        loop {
            self.take_completions(out);
            // Completions that did not fit the queue wait in the kernel's
            // overflow list; entering with GETEVENTS moves them over.
            if !self.settle_queue() {
                return;
            }
        }
    }

    /// How many completions wait in the completion queue now.
    pub(crate) fn queued(&mut self) -> usize {
        self.ring.completion().len()
    }

    /// Takes the next completion straight off the queue, with no copy into
    /// a batch: the head moves on before the completion is delivered, so a
    /// callback that panics loses none (the rest stay queued for the
    /// ring's drop to drain). The waker's reads are settled here.
    #[inline(always)]
    pub(crate) fn next_completion(&mut self) -> Option<RawCompletion> {
        loop {
            let cqe = self.ring.completion().next()?;
            let user_data = cqe.user_data();
            // One test keeps ouro's own completions (the waker's reads,
            // cancel requests, wait timeouts; only `install` waits for one,
            // and it takes its own) away from the ring.
            if user_data::kind(user_data) != user_data::INTERNAL {
                return Some(RawCompletion {
                    user_data,
                    res: cqe.result(),
                    flags: cqe.flags(),
                });
            }
            if user_data == WAKE_READ {
                self.wake_read_armed = false;
            }
        }
    }

    /// After the queue has been taken: re-arms the waker's read and, when
    /// completions overflowed into the kernel's list, moves them over, or
    /// runs completion work the kernel still flags (the queue was full);
    /// `true` when there may be more to take now.
    pub(crate) fn settle_queue(&mut self) -> bool {
        self.arm_wake_read();
        if !self.ring.submission().cq_overflow() {
            return self.enter_for_work();
        }
        if let Err(e) = self.ring.submit_and_wait(0) {
            tracing::warn!(error = %e, "flushing overflowed completions failed");
            return false;
        }
        true
    }

    /// Moves the completion queue's entries to `out`, but the waker's own
    /// reads and the result of an install (returned).
    fn take_completions(&mut self, out: &mut Vec<RawCompletion>) -> Option<i32> {
        let mut installed = None;
        for cqe in self.ring.completion() {
            match cqe.user_data() {
                WAKE_READ => self.wake_read_armed = false,
                INSTALL => installed = Some(cqe.result()),
                user_data => out.push(RawCompletion {
                    user_data,
                    res: cqe.result(),
                    flags: cqe.flags(),
                }),
            }
        }
        installed
    }

    /// Makes fixed-table slot `slot` a process fd too, waiting for it
    /// (`IORING_OP_FIXED_FD_INSTALL`, 6.8: done at submission); the other
    /// completions that arrive meanwhile go to `stash`.
    pub(super) fn install(
        &mut self,
        slot: u32,
        stash: &mut Vec<RawCompletion>,
    ) -> io::Result<OwnedFd> {
        if !self.opcodes.supports(opcode::FixedFdInstall::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this ring fd is a direct descriptor (io_uring accepted it straight into its \
                 fixed file table), and making it a process fd needs \
                 IORING_OP_FIXED_FD_INSTALL (Linux 6.8)",
            ));
        }
        // Close-on-exec, as every fd ouro makes.
        let entry = opcode::FixedFdInstall::new(types::Fixed(slot), 0)
            .build()
            .user_data(INSTALL);
        while matches!(self.push(&entry), Started::Full) {
            if !self.flush()? {
                // The kernel is busy until completions are taken.
                self.take_completions(stash);
            }
        }
        let res = loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR)) || is_busy(&e) => {}
                Err(e) => return Err(e),
            }
            if let Some(res) = self.take_completions(stash) {
                break res;
            }
        };
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        // SAFETY: a successful install returns a new fd that nothing else
        // owns.
        Ok(unsafe { OwnedFd::from_raw_fd(res) })
    }

    /// Shares `group` with the kernel as a provided buffer ring (5.19);
    /// on failure it stays a free list that `start` takes from.
    pub(crate) fn register_group(&mut self, group: &GroupInner) {
        if !self.opcodes.has_multishot_accept() {
            return;
        }
        let Some(ring) = group.kernel_ring() else {
            tracing::warn!("no memory for a provided buffer ring; using a free list");
            return;
        };
        // SAFETY: the ring's memory is page aligned, holds `count` entries
        // and stays allocated until `unregister_group` (or, if operations
        // are leaked, forever).
        let registered = unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                GroupInner::ring_address(&ring),
                group.count(),
                group.id,
                0,
            )
        };
        match registered {
            Ok(()) => group.set_kernel_ring(ring),
            Err(e) => {
                tracing::warn!(error = %e, "provided buffer ring refused; using a free list");
                group.discard_kernel_ring(ring);
            }
        }
    }

    pub(crate) fn unregister_group(&mut self, group: &GroupInner) {
        if group.is_kernel_ring() {
            if let Err(e) = self.ring.submitter().unregister_buf_ring(group.id) {
                tracing::warn!(error = %e, "unregistering a buffer ring failed");
            }
        }
    }
}
