//! Choosing a ring's backend and options before building it.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::{Ring, RingHandle};
use crate::backend::{mock::Mock, Backend, BackendKind};
use crate::mailbox::Mailbox;
use crate::time::Clock;

/// Builds a [`Ring`] with a chosen backend: `Ring::builder().entries(64)
/// .backend(BackendKind::Uring).build()`.
#[derive(Clone, Debug)]
pub struct RingBuilder {
    entries: u32,
    backend: Option<BackendKind>,
    msg_ring: bool,
    pub(super) options: crate::backend::Options,
    /// The ring whose work queue the new one attaches to.
    parent: Option<Parent>,
}

/// A ring to attach to, as its handle knows it.
#[derive(Clone)]
struct Parent {
    mailbox: Arc<Mailbox>,
    backend: BackendKind,
}

impl fmt::Debug for Parent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parent")
            .field("backend", &self.backend)
            .field("gone", &self.mailbox.is_closed())
            .finish()
    }
}

impl Parent {
    /// A duplicate of the parent's io_uring fd for a ring on `backend`
    /// (`None` on other backends, where attaching has no effect): an error
    /// if the parent is gone or runs on another backend.
    fn work_queue(&self, backend: BackendKind) -> io::Result<Option<OwnedFd>> {
        if backend != self.backend {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "RingBuilder::attach_to: the parent ring runs on the {:?} backend, \
                     this one would run on {backend:?}; a ring attaches only to one of its kind",
                    self.backend
                ),
            ));
        }
        let gone = || {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "RingBuilder::attach_to: the parent ring is gone (dropped, or its thread stopped)",
            )
        };
        // Asked on every backend (it is `None` off io_uring), so that a gone
        // parent is an error whatever the backend.
        match self.mailbox.duplicate_ring_fd() {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Err(gone()),
            fd => fd,
        }
    }
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
    /// (the kernel's limit for the table) when the table is registered, up
    /// to 65536; 0
    /// keeps ring fds out of the table (they then work through their
    /// process fds). Other backends have no such table.
    /// [`Ring::spawn_thread`] passes the setting on.
    pub fn fixed_files(mut self, slots: u32) -> RingBuilder {
        self.options.fixed_files = Some(slots);
        self
    }

    /// Makes the ring share the kernel workers of the ring behind
    /// `parent`, as [`Ring::spawn_thread`] does for the rings it starts,
    /// for a ring built by hand on a thread of your own. The new ring runs
    /// on the parent's backend unless [`backend`](RingBuilder::backend)
    /// names one, which must then be the same.
    ///
    /// On io_uring the ring is set up with `IORING_SETUP_ATTACH_WQ` on the
    /// parent's ring (Linux 5.6), or on its own if the kernel refuses;
    /// [`Ring::backend_description`] lists `attach_wq` among the setup
    /// flags when it is attached. Since Linux 5.12 the kernel keeps async worker threads per
    /// thread, so what the rings share is the work hashing that serialises
    /// buffered writes to the same file across them. On the readiness
    /// backend it has no effect: each ring keeps its own pool of threads
    /// for calls that block.
    ///
    /// [`build`](RingBuilder::build) fails with `BrokenPipe` if the parent
    /// is gone (dropped, or its thread stopped), and with `InvalidInput`
    /// if the backends differ. Messages go both ways as between any rings:
    /// through `parent` one way, and through the new ring's
    /// [`handle`](Ring::handle), sent to the parent, the other.
    pub fn attach_to<T>(mut self, parent: &RingHandle<T>) -> RingBuilder {
        self.parent = Some(Parent {
            mailbox: parent.mailbox.clone(),
            backend: parent.backend,
        });
        self
    }

    /// Builds the ring; fails if the backend cannot be set up, with an
    /// error that says why, if `OURO_BACKEND` names no backend, or if the
    /// ring cannot [attach](RingBuilder::attach_to) to its parent.
    pub fn build<S>(mut self) -> io::Result<Ring<S>> {
        let kind = match (self.backend, &self.parent) {
            (Some(kind), _) => Some(kind),
            (None, Some(parent)) => Some(parent.backend),
            (None, None) => BackendKind::from_env()?,
        };
        // Kept open until the ring is set up, so that the fd it names is
        // the parent's, whatever the parent does meanwhile.
        let parent_fd = match (&self.parent, kind) {
            (Some(parent), Some(kind)) => parent.work_queue(kind)?,
            _ => None,
        };
        if let Some(fd) = &parent_fd {
            self.options.attach_wq = Some(fd.as_raw_fd());
        }
        let mut ring = if kind == Some(BackendKind::Mock) {
            if self.options.pollable {
                return Err(crate::backend::not_pollable());
            }
            Ring::with_backend(Backend::Mock(Mock::new()), Clock::virtual_clock(), 64)?
        } else {
            let (backend, fallback) = crate::backend::open(kind, self.entries, self.options)?;
            let mut ring = Ring::with_backend(backend, Clock::real(), self.entries)?;
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
            parent: None,
        }
    }
}
