//! Choosing a ring's backend and options before building it.

use std::io;

use super::Ring;
use crate::backend::{mock::Mock, BackendKind};
use crate::time::Clock;

/// Builds a [`Ring`] with a chosen backend: `Ring::builder().entries(64)
/// .backend(BackendKind::Uring).build()`.
#[derive(Clone, Copy, Debug)]
pub struct RingBuilder {
    entries: u32,
    backend: Option<BackendKind>,
    msg_ring: bool,
    pub(super) options: crate::backend::Options,
}

impl RingBuilder {
    /// Room for this many submissions per turn (default 256).
    pub fn entries(mut self, entries: u32) -> RingBuilder {
        self.entries = entries;
        self
    }

    /// The backend to use, whatever `OURO_BACKEND` says. Without it: the
    /// one `OURO_BACKEND` names, else io_uring if it works, else the
    /// readiness backend (see [`Ring::fallback_reason`]).
    pub fn backend(mut self, backend: BackendKind) -> RingBuilder {
        self.backend = Some(backend);
        self
    }

    /// Whether messages to and from this ring may use
    /// `IORING_OP_MSG_RING` as their wake-up (default: yes, where the
    /// kernel has it). With `false` they use the target's eventfd — the
    /// path every other backend and older kernels take — with the same
    /// API and guarantees. [`Ring::spawn_thread`] passes the setting on.
    pub fn msg_ring(mut self, enabled: bool) -> RingBuilder {
        self.msg_ring = enabled;
        self
    }

    /// Makes the ring pollable: [`Ring::pollable_fd`] is readable whenever
    /// it has something to deliver, so another ring on the same thread can
    /// [`poll`](Ring::poll) it and run it with [`RunMode::NoWait`](crate::RunMode::NoWait). On
    /// io_uring the fd is the ring's own (set up without DEFER_TASKRUN,
    /// whose completions wait as task work and never make it readable); on
    /// the Linux readiness backend it is the epoll fd, with a timerfd for
    /// the ring's timers. kqueue and mock rings cannot be made pollable yet
    /// (`Unsupported`).
    pub fn pollable(mut self, pollable: bool) -> RingBuilder {
        self.options.pollable = pollable;
        self
    }

    /// The size of the io_uring fixed file table that holds the ring fds
    /// (see [`Ring::register_fd`]), registered when first needed. By
    /// default as many files as `RLIMIT_NOFILE` allows a process to open
    /// (the kernel's limit for the table) at that moment, up to 65536; 0
    /// keeps ring fds out of the table (they then work through their
    /// process fds). Other backends have no such table.
    /// [`Ring::spawn_thread`] passes the setting on.
    pub fn fixed_files(mut self, slots: u32) -> RingBuilder {
        self.options.fixed_files = Some(slots);
        self
    }

    /// Builds the ring; fails if the backend cannot be set up, with an
    /// error that says why, or if `OURO_BACKEND` names no backend.
    pub fn build<S>(self) -> io::Result<Ring<S>> {
        let kind = match self.backend {
            Some(kind) => Some(kind),
            None => BackendKind::from_env()?,
        };
        let mut ring = if kind == Some(BackendKind::Mock) {
            if self.options.pollable {
                return Err(crate::backend::not_pollable());
            }
            Ring::mock(Mock::new())
        } else {
            let (backend, fallback) = crate::backend::open(kind, self.entries, self.options)?;
            let mut ring = Ring::with_backend(backend, Clock::real(), self.entries);
            ring.fallback = fallback;
            ring
        };
        ring.msg_ring = self.msg_ring;
        ring.fixed_files = self.options.fixed_files;
        Ok(ring)
    }
}

impl Ring {
    /// A builder, to choose the backend (the state type is chosen by
    /// [`RingBuilder::build`]).
    pub fn builder() -> RingBuilder {
        RingBuilder {
            entries: 256,
            backend: None,
            msg_ring: true,
            options: crate::backend::Options::default(),
        }
    }
}
