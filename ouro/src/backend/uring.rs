//! The io_uring backend, on the `io-uring` crate.
//!
//! Setup asks for the best the kernel offers — SINGLE_ISSUER with
//! DEFER_TASKRUN (6.1), else COOP_TASKRUN (5.19), with TASKRUN_FLAG (5.19:
//! the kernel flags pending completion work, so a turn with nothing to
//! submit or wait for skips the system call), and SUBMIT_ALL (5.18) — and
//! settles for less on older kernels; it needs EXT_ARG waits (5.11).
//! Each opcode is probed once; an operation the kernel lacks fails with a
//! clear `Unsupported` error, except socket, bind, listen and shutdown,
//! which never block and fall back to the plain system call.
//!
//! For messages between rings (see `message.rs`) the backend offers a waker
//! (an eventfd that an internal read request drains, so a wake-up costs the
//! ring no system call of its own) and MSG_RING doorbells, used when the
//! kernel accepts `IORING_MSG_RING_FLAGS_PASS` (6.3): MSG_RING exists since
//! 5.18, but posting into a SINGLE_ISSUER/DEFER_TASKRUN ring from another
//! thread was only made safe in the 6.2 cycle, and a flag is what can be
//! probed. Doorbells complete on the sender only when they fail
//! (`IOSQE_CQE_SKIP_SUCCESS`, 5.17). A ring meant to be polled by another
//! is set up without DEFER_TASKRUN: with it, completions wait as task work
//! until the owner enters the ring, and the ring fd does not become
//! readable.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::{Options, RawCompletion, Started, Wake};
use crate::buffers::group::GroupInner;
use crate::op::Op;
use crate::task::user_data;
use crate::time::Clock;

/// `user_data` of the internal read that drains the waker's eventfd.
const WAKE_READ: u64 = (user_data::INTERNAL as u64) << 56 | 1;
/// `user_data` of what `prepare_poll` submits to make the ring readable.
const POLL_WAKE: u64 = (user_data::INTERNAL as u64) << 56 | 2;
/// `user_data` of the start-up probe of MSG_RING's flags.
const PROBE: u64 = (user_data::INTERNAL as u64) << 56 | 3;

/// Where the waker's internal reads put the eventfd's counter: the value
/// is never looked at, and a `static` outlives every request that names it.
static WAKE_SINK: AtomicU64 = AtomicU64::new(0);

/// Whether this kernel takes MSG_RING doorbells (probed once per process).
static DOORBELLS: OnceLock<bool> = OnceLock::new();

pub(crate) struct Uring {
    ring: IoUring,
    opcodes: Opcodes,
    setup: &'static str,
    pollable: bool,
    doorbells: bool,
    waker: Option<Arc<EventfdWaker>>,
    /// Whether the read that drains the waker's eventfd is in the kernel.
    wake_read_armed: bool,
    /// The delay `prepare_poll` hands a timeout request (copied by the
    /// kernel when it is submitted).
    poll_timeout: Box<types::Timespec>,
}

/// The opcodes this kernel supports, one bit each; turns operations into
/// submission entries.
struct Opcodes([u64; 4]);

impl Uring {
    pub(crate) fn new(entries: u32, options: Options) -> io::Result<Uring> {
        super::check_entries(entries)?;
        let (mut ring, setup) = build(entries, options)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "ouro's io_uring backend needs IORING_FEAT_EXT_ARG (Linux 5.11 or later)",
            ));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        let mut supported = [0u64; 4];
        for code in 0..=u8::MAX {
            if probe.is_supported(code) {
                supported[usize::from(code / 64)] |= 1 << (code % 64);
            }
        }
        let opcodes = Opcodes(supported);
        let doorbells = opcodes.supports(opcode::MsgRingData::CODE) && probe_doorbells(&mut ring);
        tracing::debug!(entries, setup, doorbells, "io_uring ready");
        Ok(Uring {
            ring,
            opcodes,
            setup,
            pollable: options.pollable,
            doorbells,
            waker: None,
            wake_read_armed: false,
            poll_timeout: Box::new(types::Timespec::new()),
        })
    }

    /// The setup flags the kernel accepted, for diagnostics.
    pub(crate) fn setup(&self) -> &'static str {
        self.setup
    }

    /// The ring's own fd.
    pub(crate) fn fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    pub(crate) fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        if let Some(waker) = &self.waker {
            return Ok(waker.clone());
        }
        // Blocking on purpose: for an O_NONBLOCK file io_uring returns
        // EAGAIN instead of waiting for it to become readable.
        // SAFETY: plain system call on integers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd returned a new fd that nothing else owns.
        let waker = Arc::new(EventfdWaker(unsafe { OwnedFd::from_raw_fd(fd) }));
        self.waker = Some(waker.clone());
        self.arm_wake_read();
        Ok(waker)
    }

    /// Queues the read that drains the waker's eventfd, if it is not in the
    /// kernel yet and there is room.
    fn arm_wake_read(&mut self) {
        let Some(waker) = &self.waker else {
            return;
        };
        if self.wake_read_armed {
            return;
        }
        let sink = WAKE_SINK.as_ptr().cast::<u8>();
        let entry = opcode::Read::new(types::Fd(waker.0.as_raw_fd()), sink, 8)
            .build()
            .user_data(WAKE_READ);
        self.wake_read_armed = matches!(self.push(&entry), Started::Yes);
    }

    /// Makes sure the waker's read is in the submission queue before the
    /// ring sleeps, flushing a full queue to make room.
    fn ensure_wake_read(&mut self) -> io::Result<()> {
        if self.waker.is_none() || self.wake_read_armed {
            return Ok(());
        }
        self.arm_wake_read();
        if !self.wake_read_armed {
            self.flush()?;
            self.arm_wake_read();
        }
        Ok(())
    }

    pub(crate) fn doorbell_target(&self) -> Option<RawFd> {
        self.doorbells.then(|| self.ring.as_raw_fd())
    }

    pub(crate) fn ring_doorbell(&mut self, target: RawFd, user_data: u64) -> bool {
        if !self.doorbells {
            return false;
        }
        let arrival = user_data::with_kind(user_data::MESSAGE, 0);
        // Only a failure is worth a completion here: one for success would
        // end the sender's next wait at once, costing it a system call.
        let entry = opcode::MsgRingData::new(types::Fd(target), 0, arrival, None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(user_data);
        matches!(self.push(&entry), Started::Yes)
    }

    /// Whether submissions wait in the queue, not yet taken by the kernel.
    pub(crate) fn has_unsubmitted(&mut self) -> bool {
        !self.ring.submission().is_empty()
    }

    pub(crate) fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: the ring fd lives as long as `self.ring`, which the
        // borrow does not outlive.
        self.pollable
            .then(|| unsafe { BorrowedFd::borrow_raw(self.ring.as_raw_fd()) })
    }

    pub(crate) fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<()> {
        if now {
            self.push_internal(&opcode::Nop::new().build().user_data(POLL_WAKE))?;
        } else if let Some(ns) = after_ns {
            *self.poll_timeout = timespec(ns);
            let entry = opcode::Timeout::new(&*self.poll_timeout)
                .build()
                .user_data(POLL_WAKE);
            self.push_internal(&entry)?;
        }
        self.ensure_wake_read()?;
        self.flush().map(|_| ())
    }

    /// Pushes an internal request, flushing a full queue to make room.
    fn push_internal(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        if matches!(self.push(entry), Started::Full) {
            self.flush()?;
            // Still full (the kernel is busy): the readiness this request
            // would give comes with the next completion instead.
            let _ = self.push(entry);
        }
        Ok(())
    }

    // Inlined into each operation's method, where the op's variant is
    // known, so that only its own submission is built there.
    #[inline(always)]
    pub(crate) fn start(&mut self, user_data: u64, op: &mut Op, _clock: &Clock) -> Started {
        // One queue handle for the check and the push: each handle reads
        // the kernel's head and publishes the tail when dropped.
        let mut sq = self.ring.submission();
        if sq.is_full() {
            return Started::Full;
        }
        let entry = match self.opcodes.prepare(op) {
            Prepared::Entry(entry) => entry.user_data(user_data),
            Prepared::Done(res) => return Started::Done(res),
            Prepared::Failed(err) => return Started::Failed(err),
        };
        // SAFETY: as in `push`.
        match unsafe { sq.push(&entry) } {
            Ok(()) => Started::Yes,
            Err(_) => Started::Full,
        }
    }

    pub(crate) fn cancel(&mut self, target: u64) -> bool {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data::with_kind(user_data::INTERNAL, 0));
        matches!(self.push(&entry), Started::Yes)
    }

    fn push(&mut self, entry: &squeue::Entry) -> Started {
        // SAFETY: every pointer in `entry` points into memory owned by the
        // task's `Op` (heap blocks that do not move), which the ring keeps
        // alive until this submission's final completion has been reaped;
        // or, for internal requests, into `WAKE_SINK` (static) or
        // `poll_timeout` (read by the kernel at submission, and owned by
        // this backend, which outlives its queue).
        match unsafe { self.ring.submission().push(entry) } {
            Ok(()) => Started::Yes,
            Err(_) => Started::Full,
        }
    }

    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        loop {
            return match self.ring.submit() {
                Ok(_) => Ok(true),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if is_busy(&e) => Ok(false),
                Err(e) => Err(e),
            };
        }
    }

    pub(crate) fn wait(&mut self, timeout: Option<u64>, _clock: &mut Clock) -> io::Result<()> {
        self.ensure_wake_read()?;
        let result = match timeout {
            Some(0) => self.poll(),
            None => self.ring.submit_and_wait(1),
            Some(ns) => {
                let ts = timespec(ns);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Ok(()),
            Err(e) if is_busy(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submits what is queued and brings in what has completed, without
    /// waiting; enters the kernel only when there is something to submit or
    /// the kernel flagged completion work to run (IORING_SQ_TASKRUN, or an
    /// overflow) — a turn that only delivers user-space results (zero-delay
    /// timers) costs no system call.
    fn poll(&mut self) -> io::Result<usize> {
        let sq = self.ring.submission();
        if sq.is_empty() && !sq.taskrun() && !sq.cq_overflow() {
            return Ok(0);
        }
        drop(sq);
        // Enters with GETEVENTS when the kernel flagged work (see above).
        self.ring.submit()
    }

    pub(crate) fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        loop {
            for cqe in self.ring.completion() {
                if cqe.user_data() == WAKE_READ {
                    self.wake_read_armed = false;
                    continue;
                }
                out.push(RawCompletion {
                    user_data: cqe.user_data(),
                    res: cqe.result(),
                    flags: cqe.flags(),
                });
            }
            self.arm_wake_read();
            // Completions that did not fit the queue wait in the kernel's
            // overflow list; entering with GETEVENTS moves them over.
            if !self.ring.submission().cq_overflow() {
                return;
            }
            if let Err(e) = self.ring.submit_and_wait(0) {
                tracing::warn!(error = %e, "flushing overflowed completions failed");
                return;
            }
        }
    }

    /// Shares `group` with the kernel as a provided buffer ring (5.19);
    /// on failure it stays a free list that `start` takes from.
    pub(crate) fn register_group(&mut self, group: &GroupInner) {
        if !self.opcodes.has_multishot_accept() {
            return;
        }
        let ring = group.kernel_ring();
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

impl Opcodes {
    /// Multishot accept and provided buffer rings came with Linux 5.19,
    /// which also brought `IORING_OP_SOCKET`: the probe shows the release.
    fn has_multishot_accept(&self) -> bool {
        self.supports(opcode::Socket::CODE)
    }

    /// Multishot receive came with Linux 6.0, as did `IORING_OP_SEND_ZC`.
    fn has_multishot_recv(&self) -> bool {
        self.supports(opcode::SendZc::CODE)
    }

    fn supports(&self, code: u8) -> bool {
        self.0[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }

    fn require(&self, code: u8, name: &str, kernel: &str) -> Result<(), Prepared> {
        if self.supports(code) {
            return Ok(());
        }
        Err(Prepared::Failed(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this kernel's io_uring lacks {name} (it needs Linux {kernel})"),
        )))
    }

    #[inline(always)]
    fn prepare(&self, op: &mut Op) -> Prepared {
        match self.try_prepare(op) {
            Ok(prepared) | Err(prepared) => prepared,
        }
    }

    #[inline(always)]
    fn try_prepare(&self, op: &mut Op) -> Result<Prepared, Prepared> {
        use types::Fd;
        let entry = match op {
            Op::Noop => opcode::Nop::new().build(),
            Op::Accept { fd, addr } => {
                addr.clear();
                opcode::Accept::new(Fd(*fd), addr.as_mut_ptr(), &mut addr.len)
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            }
            Op::Connect { fd, addr } => {
                opcode::Connect::new(Fd(*fd), addr.as_ptr(), addr.len).build()
            }
            Op::Bind { fd, addr } => {
                if !self.supports(opcode::Bind::CODE) {
                    // SAFETY: `addr` holds `len` bytes of a valid sockaddr.
                    let res = unsafe { libc::bind(*fd, addr.as_ptr(), addr.len) };
                    return Ok(Prepared::Done(syscall_result(res)));
                }
                opcode::Bind::new(Fd(*fd), addr.as_ptr(), addr.len).build()
            }
            Op::Listen { fd, backlog } => {
                if !self.supports(opcode::Listen::CODE) {
                    // SAFETY: plain system call on integers.
                    let res = unsafe { libc::listen(*fd, *backlog) };
                    return Ok(Prepared::Done(syscall_result(res)));
                }
                opcode::Listen::new(Fd(*fd), *backlog).build()
            }
            Op::Socket {
                domain,
                ty,
                protocol,
            } => {
                let ty = *ty | libc::SOCK_CLOEXEC;
                if !self.supports(opcode::Socket::CODE) {
                    // SAFETY: plain system call on integers.
                    let res = unsafe { libc::socket(*domain, ty, *protocol) };
                    return Ok(Prepared::Done(syscall_result(res)));
                }
                opcode::Socket::new(*domain, ty, *protocol).build()
            }
            Op::Send { fd, buf, flags } => {
                let (ptr, len) = buf.raw_parts();
                opcode::Send::new(Fd(*fd), ptr, clamp_len(len))
                    .flags(*flags)
                    .build()
            }
            Op::Recv { fd, buf, flags } => {
                let (ptr, len) = buf.spare_parts();
                opcode::Recv::new(Fd(*fd), ptr, clamp_len(len))
                    .flags(*flags)
                    .build()
            }
            Op::Read { fd, buf, offset } => {
                let (ptr, len) = buf.spare_parts();
                opcode::Read::new(Fd(*fd), ptr, clamp_len(len))
                    .offset(*offset)
                    .build()
            }
            Op::Write { fd, buf, offset } => {
                let (ptr, len) = buf.raw_parts();
                opcode::Write::new(Fd(*fd), ptr, clamp_len(len))
                    .offset(*offset)
                    .build()
            }
            Op::Readv {
                fd,
                bufs,
                iov,
                offset,
            } => {
                bufs.fill_iovecs(iov, true);
                opcode::Readv::new(Fd(*fd), iov.as_ptr(), clamp_len(iov.len()))
                    .offset(*offset)
                    .build()
            }
            Op::Writev {
                fd,
                bufs,
                iov,
                offset,
            } => {
                bufs.fill_iovecs(iov, false);
                opcode::Writev::new(Fd(*fd), iov.as_ptr(), clamp_len(iov.len()))
                    .offset(*offset)
                    .build()
            }
            Op::Close { fd } => {
                let Some(owned) = fd.take() else {
                    return Ok(Prepared::Done(-libc::EBADF));
                };
                opcode::Close::new(Fd(owned.into_raw_fd())).build()
            }
            Op::Poll { fd, mask } => opcode::PollAdd::new(Fd(*fd), *mask).build(),
            Op::Open {
                dir,
                path,
                flags,
                mode,
            } => opcode::OpenAt::new(Fd(*dir), path.as_ptr().cast())
                .flags(*flags)
                .mode(*mode)
                .build(),
            Op::Stat {
                dir,
                path,
                flags,
                out,
            } => {
                let out: *mut libc::statx = &mut **out;
                opcode::Statx::new(Fd(*dir), path.as_ptr().cast(), out.cast())
                    .flags(*flags)
                    .mask(libc::STATX_BASIC_STATS | libc::STATX_BTIME)
                    .build()
            }
            Op::Fsync { fd, datasync } => {
                let flags = if *datasync {
                    types::FsyncFlags::DATASYNC
                } else {
                    types::FsyncFlags::empty()
                };
                opcode::Fsync::new(Fd(*fd)).flags(flags).build()
            }
            Op::Splice {
                fd_in,
                off_in,
                fd_out,
                off_out,
                len,
                flags,
            } => {
                self.require(opcode::Splice::CODE, "IORING_OP_SPLICE", "5.7")?;
                opcode::Splice::new(Fd(*fd_in), *off_in, Fd(*fd_out), *off_out, *len)
                    .flags(*flags)
                    .build()
            }
            Op::Shutdown { fd, how } => {
                if !self.supports(opcode::Shutdown::CODE) {
                    // SAFETY: plain system call on integers.
                    let res = unsafe { libc::shutdown(*fd, *how) };
                    return Ok(Prepared::Done(syscall_result(res)));
                }
                opcode::Shutdown::new(Fd(*fd), *how).build()
            }
            Op::SendMsg {
                fd,
                bufs,
                msg,
                flags,
            } => {
                bufs.fill_iovecs(&mut msg.iov, false);
                msg.prepare(false);
                opcode::SendMsg::new(Fd(*fd), &msg.hdr)
                    .flags(*flags as u32)
                    .build()
            }
            Op::RecvMsg {
                fd,
                bufs,
                msg,
                flags,
            } => {
                bufs.fill_iovecs(&mut msg.iov, true);
                msg.prepare(true);
                opcode::RecvMsg::new(Fd(*fd), &mut msg.hdr)
                    .flags(*flags as u32)
                    .build()
            }
            Op::AcceptMulti { fd } => {
                if self.has_multishot_accept() {
                    opcode::AcceptMulti::new(Fd(*fd))
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                } else {
                    opcode::Accept::new(Fd(*fd), std::ptr::null_mut(), std::ptr::null_mut())
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                }
            }
            Op::RecvMulti { fd, group, held } => {
                if group.is_kernel_ring() && self.has_multishot_recv() {
                    opcode::RecvMulti::new(Fd(*fd), group.id).build()
                } else if group.is_kernel_ring() {
                    opcode::Recv::new(Fd(*fd), std::ptr::null_mut(), group.size() as u32)
                        .buf_group(group.id)
                        .build()
                        .flags(squeue::Flags::BUFFER_SELECT)
                } else {
                    let Some(bid) = group.take_free() else {
                        return Ok(Prepared::Done(-libc::ENOBUFS));
                    };
                    *held = Some(bid);
                    opcode::Recv::new(Fd(*fd), group.buffer_ptr(bid), clamp_len(group.size()))
                        .build()
                }
            }
            Op::Timer { .. }
            | Op::Cancel { .. }
            | Op::CancelAll { .. }
            | Op::MsgRing { .. }
            | Op::StopThread { .. } => {
                return Ok(Prepared::Done(-libc::EINVAL));
            }
        };
        Ok(Prepared::Entry(entry))
    }
}

enum Prepared {
    Entry(squeue::Entry),
    Done(i32),
    Failed(io::Error),
}

/// Wakes a ring from any thread by adding to its eventfd.
struct EventfdWaker(OwnedFd);

impl Wake for EventfdWaker {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an fd we own.
        let res = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if res < 0 {
            // Only a counter at its maximum can refuse, and then the ring
            // is awake already.
            tracing::debug!(error = %io::Error::last_os_error(), "eventfd wake-up refused");
        }
    }
}

/// Whether MSG_RING takes flags (6.3): one self-addressed message, once per
/// process. Its completions carry `PROBE` and are consumed here.
fn probe_doorbells(ring: &mut IoUring) -> bool {
    if let Some(&known) = DOORBELLS.get() {
        return known;
    }
    let entry = opcode::MsgRingData::new(types::Fd(ring.as_raw_fd()), 0, PROBE, Some(0))
        .build()
        .user_data(PROBE);
    // SAFETY: a MSG_RING data request points to no memory.
    if unsafe { ring.submission().push(&entry) }.is_err() {
        return false;
    }
    let supported = match ring.submit_and_wait(1) {
        Ok(_) => {
            let results: Vec<i32> = ring.completion().map(|cqe| cqe.result()).collect();
            !results.is_empty() && results.iter().all(|&res| res >= 0)
        }
        Err(_) => false,
    };
    *DOORBELLS.get_or_init(|| supported)
}

fn timespec(ns: u64) -> types::Timespec {
    types::Timespec::new()
        .sec(ns / 1_000_000_000)
        .nsec((ns % 1_000_000_000) as u32)
}

fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn syscall_result(res: libc::c_int) -> i32 {
    if res < 0 {
        -io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        res
    }
}

fn is_busy(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN))
}

/// Builds a ring with the best setup the kernel accepts; one that must
/// share a work queue and cannot is built without.
fn build(entries: u32, options: Options) -> io::Result<(IoUring, &'static str)> {
    if options.attach_wq.is_none() {
        return build_with(entries, options);
    }
    build_with(entries, options).or_else(|err| {
        tracing::debug!(error = %err, "IORING_SETUP_ATTACH_WQ refused; setting up a ring of its own");
        build_with(
            entries,
            Options {
                attach_wq: None,
                ..options
            },
        )
    })
}

fn build_with(entries: u32, options: Options) -> io::Result<(IoUring, &'static str)> {
    type Setup = (&'static str, fn(&mut io_uring::Builder));
    const SETUPS: [Setup; 5] = [
        ("single_issuer+defer_taskrun+taskrun_flag+submit_all", |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all();
        }),
        // For a pollable ring (see the module docs).
        ("single_issuer+coop_taskrun+taskrun_flag+submit_all", |b| {
            b.setup_single_issuer()
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all();
        }),
        ("coop_taskrun+taskrun_flag+submit_all", |b| {
            b.setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all();
        }),
        ("coop_taskrun+taskrun_flag", |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        ("plain", |_| {}),
    ];
    let mut last = None;
    for (name, configure) in SETUPS {
        if options.pollable && name.contains("defer_taskrun") {
            continue;
        }
        let mut builder = IoUring::builder();
        builder.setup_clamp();
        configure(&mut builder);
        if let Some(fd) = options.attach_wq {
            builder.setup_attach_wq(fd);
        }
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            // EINVAL: this kernel does not know a flag; try fewer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(explain_setup_error(e)),
        }
    }
    Err(explain_setup_error(last.unwrap_or_else(|| {
        io::Error::from_raw_os_error(libc::EINVAL)
    })))
}

/// Why `io_uring_setup` failed, in words, keeping the OS error.
pub(crate) fn explain_setup_error(e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            "the kernel has no io_uring (older than 5.1, built without CONFIG_IO_URING, \
             or a sandbox such as gVisor that does not offer it)"
        }
        Some(libc::EPERM) => {
            "io_uring is not permitted: a seccomp filter blocks it (Docker's default \
             profile does since 25.0), or sysctl kernel.io_uring_disabled is 2 \
             (or 1 and this process is not in kernel.io_uring_group)"
        }
        Some(libc::ENOMEM) => {
            "not enough locked memory for the ring: raise RLIMIT_MEMLOCK (ulimit -l) \
             or use fewer entries (kernels before 5.12 charge rings to it)"
        }
        Some(libc::EINVAL) => "the kernel rejected every io_uring setup ouro tried",
        _ => "io_uring_setup failed",
    };
    io::Error::new(e.kind(), SetupError { why, source: e })
}

/// An `io_uring_setup` failure with its likely cause.
#[derive(Debug)]
pub struct SetupError {
    why: &'static str,
    source: io::Error,
}

impl SetupError {
    /// The OS error `io_uring_setup` returned.
    pub fn os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "io_uring setup failed ({}): {}", self.source, self.why)
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
