//! What a ring is: its backend, its clock, its count of live tasks, and
//! the fd another ring polls it through.

use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Instant;

use super::Ring;
use crate::backend::{mock::Mock, BackendKind};

impl<S> Ring<S> {
    /// An fd that is readable while this ring has something to deliver, for
    /// another ring on the same thread to [`poll`](Ring::poll); run this
    /// ring with [`RunMode::NoWait`](super::RunMode::NoWait) when it is. Work scheduled on this ring
    /// from outside its own `run` reaches the kernel when it next runs.
    /// A `run` readies the fd as it returns, for the ring in its place
    /// then: a ring that one of its own callbacks swapped out
    /// (`mem::swap`) missed that, and may not become readable until it is
    /// run again (`NoWait` will do).
    ///
    /// It is a shared owner of a duplicate of the ring's own fd (the same
    /// file, so the same readiness), made on the first call: a `poll` on it
    /// keeps it open whatever happens to this ring, so the poll is sound
    /// even if this ring is dropped first. What such a poll then sees
    /// differs: on io_uring the dropped ring's last completions make it
    /// readable once, on the readiness backend it never becomes readable;
    /// cancel it when this ring goes.
    ///
    /// Fails with `InvalidInput` unless the ring was built
    /// [`pollable`](super::RingBuilder::pollable).
    pub fn pollable_fd(&self) -> io::Result<Rc<OwnedFd>> {
        if let Some(fd) = self.pollable.get() {
            return Ok(fd.clone());
        }
        let fd = self.backend.pollable_fd().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the ring was not built pollable (RingBuilder::pollable)",
            )
        })?;
        let fd = Rc::new(fd.try_clone_to_owned()?);
        Ok(self.pollable.get_or_init(|| fd).clone())
    }

    /// Which backend the ring runs on.
    pub fn backend(&self) -> BackendKind {
        self.backend.kind()
    }

    /// The backend and how it was set up, e.g.
    /// `io_uring (single_issuer+defer_taskrun+taskrun_flag+submit_all)`.
    pub fn backend_description(&self) -> String {
        self.backend.describe()
    }

    /// Why the ring runs on the readiness backend although no backend was
    /// asked for: io_uring's setup error (e.g. `EPERM` from a seccomp
    /// filter, see [`SetupError`](crate::SetupError)). `None` when io_uring
    /// is used or a backend was chosen.
    pub fn fallback_reason(&self) -> Option<&io::Error> {
        self.fallback.as_ref()
    }

    /// The mock backend, to script more replies or check for leaked fds;
    /// `None` on any other backend.
    pub fn mock_backend(&mut self) -> Option<&mut Mock> {
        self.backend.mock_mut()
    }

    /// The ring's current time: the monotonic clock, or the mock's virtual
    /// one. Deadlines should be computed from it (`ring.now() + timeout`).
    pub fn now(&self) -> Instant {
        self.clock.to_instant(self.clock.now())
    }

    /// A random number for components running on the ring (a DNS query's
    /// ID): from the OS CSPRNG on the real backends, unpredictable to other
    /// hosts; under the simulator from the world's seeded stream, so that
    /// a run replays from its seed. An error if the OS has no randomness
    /// to give.
    pub fn random_u64(&mut self) -> io::Result<u64> {
        self.backend.random_u64()
    }

    /// The local address the kernel would use to reach `dest`, for
    /// ordering a name's addresses (RFC 6724): on the real backends what
    /// [`net::route_source`](crate::net::route_source) finds, by system
    /// calls on the calling thread that send nothing, but on Linux with
    /// one UDP socket per family that the ring keeps for these probes
    /// (connected to `dest`, asked its local address, disconnected) and
    /// closes when dropped: a socket per probe would be freed by the
    /// kernel in batches that stall a busy CPU. Under the simulator `dest`
    /// itself, as every simulated address is reachable directly and the
    /// answer must not depend on the machine's routes.
    pub fn source_address(&mut self, dest: std::net::IpAddr) -> io::Result<std::net::IpAddr> {
        self.backend.source_address(&mut self.route_probe, dest)
    }

    /// The flags of the local IPv6 addresses that RFC 6724 rules 3 and 4
    /// read (deprecated, home address), for ordering a name's addresses
    /// with their [sources](Ring::source_address): on the real backends
    /// [`net::local_address_flags`](crate::net::local_address_flags), a
    /// netlink dump of the kernel's address table on the calling thread
    /// (Linux; an `Unsupported` error elsewhere); under the simulator an
    /// empty table, as the answer must not depend on the machine.
    pub fn local_address_flags(&mut self) -> io::Result<crate::net::LocalAddressFlags> {
        self.backend.local_address_flags()
    }

    /// How many tasks have not been delivered yet.
    pub fn live_tasks(&self) -> usize {
        self.slab.live() as usize
    }
}
