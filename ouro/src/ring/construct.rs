//! Making a ring: on a real backend (through [`RingBuilder`]) or the mock,
//! and the builder of the rings its threads run.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::marker::PhantomData;
use std::rc::Rc;

use super::keeps::Keeps;
use super::messages::Messaging;
use super::slab::{Slab, Waiters};
use super::{Ring, RingBuilder};
use crate::backend::{mock::Mock, Backend};
use crate::fd::FdTable;
use crate::op::Pools;
use crate::time::{Clock, TimerHeap};

impl<S> Ring<S> {
    /// A ring with room for `entries` submissions per turn (1 to 32768;
    /// more can be queued, they go out over several calls), on io_uring
    /// where it works and otherwise on the readiness backend: see
    /// [`fallback_reason`](Ring::fallback_reason). The environment variable
    /// `OURO_BACKEND` (`uring` or `poll`) forces one; an unknown value is
    /// an `InvalidInput` error.
    pub fn new(entries: u32) -> io::Result<Ring<S>> {
        Ring::builder().entries(entries).build()
    }

    /// A ring on the [mock backend](crate::mock), on a virtual clock.
    ///
    /// # Panics
    ///
    /// If the process has made 2^32 - 1 rings: ring ids are never reused
    /// ([`RingBuilder::build`] returns that as an error).
    pub fn mock(mock: Mock) -> Ring<S> {
        Ring::with_backend(Backend::Mock(mock), Clock::virtual_clock(), 64)
            .expect("a ring id for the mock ring")
    }

    /// Fails only when the process has used up its ring ids.
    pub(super) fn with_backend(
        backend: Backend,
        clock: Clock,
        entries: u32,
    ) -> io::Result<Ring<S>> {
        let capacity = (entries as usize * 2).max(64);
        let files = FdTable::new()?;
        Ok(Ring {
            backend,
            slab: Slab::with_capacity(capacity, files.ring_id()),
            timers: TimerHeap::with_capacity(capacity),
            clock,
            pending: VecDeque::new(),
            cancels: VecDeque::new(),
            ready: VecDeque::with_capacity(capacity),
            batch: Vec::with_capacity(capacity),
            batch_pos: 0,
            waiters: Waiters::default(),
            pools: Pools::default(),
            rejections: Vec::new(),
            groups: Vec::new(),
            files,
            keeps: Keeps::default(),
            unsettled: Vec::new(),
            first_error: None,
            running: Rc::new(Cell::new(false)),
            stopped: false,
            drain: None,
            fallback: None,
            messaging: Messaging::default(),
            msg_ring: true,
            fixed_files: None,
            pollable: std::cell::OnceCell::new(),
            poll_timer: None,
            route_probe: crate::net::RouteProbe::default(),
            _not_send: PhantomData,
        })
    }

    /// How a thread spawned from this ring builds its own: same backend,
    /// message settings and fixed table size, sharing this ring's kernel
    /// work queue.
    pub(super) fn child_builder(&self, entries: u32) -> RingBuilder {
        let mut builder = Ring::builder()
            .entries(entries)
            .backend(self.backend.kind())
            .msg_ring(self.msg_ring);
        builder.options.attach_wq = self.backend.uring_fd();
        builder.options.fixed_files = self.fixed_files;
        builder
    }
}
