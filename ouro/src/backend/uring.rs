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

use std::io;
use std::os::fd::IntoRawFd;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::{RawCompletion, Started};
use crate::buffers::group::GroupInner;
use crate::op::Op;
use crate::task::user_data;
use crate::time::Clock;

pub(crate) struct Uring {
    ring: IoUring,
    opcodes: Opcodes,
    setup: &'static str,
}

/// The opcodes this kernel supports, one bit each; turns operations into
/// submission entries.
struct Opcodes([u64; 4]);

impl Uring {
    pub(crate) fn new(entries: u32) -> io::Result<Uring> {
        super::check_entries(entries)?;
        let (ring, setup) = build(entries)?;
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
        tracing::debug!(entries, setup, "io_uring ready");
        Ok(Uring {
            ring,
            opcodes: Opcodes(supported),
            setup,
        })
    }

    /// The setup flags the kernel accepted, for diagnostics.
    pub(crate) fn setup(&self) -> &'static str {
        self.setup
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
        // alive until this submission's final completion has been reaped.
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
        let result = match timeout {
            Some(0) => self.poll(),
            None => self.ring.submit_and_wait(1),
            Some(ns) => {
                let ts = types::Timespec::new()
                    .sec(ns / 1_000_000_000)
                    .nsec((ns % 1_000_000_000) as u32);
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
            out.extend(self.ring.completion().map(|cqe| RawCompletion {
                user_data: cqe.user_data(),
                res: cqe.result(),
                flags: cqe.flags(),
            }));
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
            Op::Timer { .. } | Op::Cancel { .. } | Op::CancelAll { .. } => {
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

/// Builds a ring with the best setup the kernel accepts.
fn build(entries: u32) -> io::Result<(IoUring, &'static str)> {
    type Setup = (&'static str, fn(&mut io_uring::Builder));
    const SETUPS: [Setup; 4] = [
        ("single_issuer+defer_taskrun+taskrun_flag+submit_all", |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
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
        let mut builder = IoUring::builder();
        builder.setup_clamp();
        configure(&mut builder);
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
