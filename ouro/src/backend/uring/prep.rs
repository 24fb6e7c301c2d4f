//! From an operation to its submission queue entry (or to an immediate
//! result, for the few done without one).

use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use io_uring::squeue::SubmissionQueue;
use io_uring::{opcode, squeue, types};

use super::files::Files;
use super::{clamp_len, Immediate, Opcodes, Started};
use crate::op::{Op, OpKind};
use crate::syscall;
use crate::task::user_data;

/// `user_data` of the completion a parcel's file posts on arrival.
fn parcel_arrival(token: u32) -> u64 {
    user_data::with_kind(user_data::PARCEL, u64::from(token))
}

/// What an operation's fd is to the kernel: a plain fd or a fixed file.
#[derive(Clone, Copy)]
pub(super) enum Target {
    Fd(RawFd),
    Fixed(u32),
}

impl Target {
    /// The number an entry names, and the flag that makes it a fixed-table
    /// slot: what the `io-uring` crate sets for a `types::Fixed` in every
    /// opcode but close and splice's input.
    #[inline(always)]
    fn parts(self) -> (types::Fd, squeue::Flags) {
        match self {
            Target::Fd(fd) => (types::Fd(fd), squeue::Flags::empty()),
            Target::Fixed(slot) => (types::Fd(slot as RawFd), squeue::Flags::FIXED_FILE),
        }
    }
}

/// Builds an entry for a [`Target`]: once, with the target's number, then
/// flagged fixed if it is one — not once per kind of target, which doubles
/// every arm of the submission path and leaves the compiler copying
/// entries between them.
macro_rules! with_target {
    ($target:expr, |$t:ident| $build:expr) => {{
        let ($t, fixed) = $target.parts();
        $build.flags(fixed)
    }};
}

/// Builds an entry with a [`Target`] as the `io-uring` crate's type for
/// it, for the opcodes that name a fixed file otherwise than with
/// `FIXED_FILE` (close, splice's input).
macro_rules! with_typed_target {
    ($target:expr, |$t:ident| $build:expr) => {
        match $target {
            Target::Fd(fd) => {
                let $t = types::Fd(fd);
                $build
            }
            Target::Fixed(slot) => {
                let $t = types::Fixed(slot);
                $build
            }
        }
    };
}
impl Opcodes {
    /// Multishot accept and provided buffer rings came with Linux 5.19,
    /// which also brought `IORING_OP_SOCKET`: the probe shows the release.
    pub(super) fn has_multishot_accept(&self) -> bool {
        self.supports(opcode::Socket::CODE)
    }

    /// Multishot receive came with Linux 6.0, as did `IORING_OP_SEND_ZC`.
    fn has_multishot_recv(&self) -> bool {
        self.supports(opcode::SendZc::CODE)
    }

    pub(super) fn supports(&self, code: u8) -> bool {
        self.0[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }

    /// A close-on-exec socket's submission, or the system call made in its
    /// place on kernels without `IORING_OP_SOCKET` (before 5.19).
    fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<squeue::Entry, Immediate> {
        let ty = ty | libc::SOCK_CLOEXEC;
        if !self.supports(opcode::Socket::CODE) {
            return Err(Immediate::Done(syscall::socket(domain, ty, protocol)));
        }
        Ok(opcode::Socket::new(domain, ty, protocol).build())
    }

    /// `Unsupported` unless the kernel has opcode `code`, naming the
    /// release `kind` needs (from the table of operations).
    fn require(&self, code: u8, kind: OpKind) -> Result<(), Immediate> {
        if self.supports(code) {
            return Ok(());
        }
        Err(Immediate::Failed(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "this kernel's io_uring lacks {} (it needs Linux {})",
                kind.name(),
                kind.io_uring_kernel()
            ),
        )))
    }

    /// Pushes the submission for `op` onto `sq`, or gives the result `op`
    /// comes to without one (a system call made in its place, or bad input).
    #[inline(always)]
    pub(super) fn prepare(
        &self,
        op: &mut Op,
        files: &mut Files,
        sq: &mut SubmissionQueue<'_>,
        user_data: u64,
    ) -> Result<Started, Immediate> {
        // Each arm pushes its own entry. Arms that joined on one entry value
        // made the compiler carry each of its fields through the join apart
        // (some twenty moves per submission, 10 % of a noop's instructions).
        macro_rules! submit {
            ($entry:expr) => {
                return Ok(push_to(sq, $entry.user_data(user_data)))
            };
        }
        let entry = match op {
            Op::Noop => submit!(opcode::Nop::new().build()),
            Op::Accept { fd, addr } => {
                addr.clear();
                let (addr, len) = (addr.as_mut_ptr(), &mut addr.len as *mut _);
                submit!(with_target!(files.target(*fd), |t| opcode::Accept::new(
                    t, addr, len
                )
                .flags(libc::SOCK_CLOEXEC)
                .build()))
            }
            Op::Connect { fd, addr } => {
                submit!(with_target!(files.target(*fd), |t| opcode::Connect::new(
                    t,
                    addr.as_ptr(),
                    addr.len
                )
                .build()))
            }
            Op::Bind { fd, addr } => {
                if !self.supports(opcode::Bind::CODE) {
                    let fd = files.process_fd(*fd)?;
                    // SAFETY: `addr` holds `len` bytes of a valid sockaddr.
                    let res = unsafe { syscall::bind(fd, addr.as_ptr(), addr.len) };
                    return Err(Immediate::Done(res));
                }
                submit!(with_target!(files.target(*fd), |t| opcode::Bind::new(
                    t,
                    addr.as_ptr(),
                    addr.len
                )
                .build()))
            }
            Op::Listen { fd, backlog } => {
                if !self.supports(opcode::Listen::CODE) {
                    let fd = files.process_fd(*fd)?;
                    return Err(Immediate::Done(syscall::listen(fd, *backlog)));
                }
                submit!(with_target!(files.target(*fd), |t| opcode::Listen::new(
                    t, *backlog
                )
                .build()))
            }
            Op::Socket {
                domain,
                ty,
                protocol,
            } => self.socket(*domain, *ty, *protocol)?,
            Op::SocketDirect {
                domain,
                ty,
                protocol,
                into_table,
            } => {
                *into_table = self.supports(opcode::Socket::CODE) && files.claim_slot();
                if !*into_table {
                    self.socket(*domain, *ty, *protocol)?
                } else {
                    // No SOCK_CLOEXEC: a direct descriptor has no process
                    // fd, and the kernel refuses the flag with a slot.
                    opcode::Socket::new(*domain, *ty & !libc::SOCK_CLOEXEC, *protocol)
                        .file_index(Some(types::DestinationSlot::auto_target()))
                        .build()
                }
            }
            Op::Send { fd, buf, flags } => {
                let (ptr, len) = buf.raw_parts();
                submit!(with_target!(files.target(*fd), |t| opcode::Send::new(
                    t,
                    ptr,
                    clamp_len(len)
                )
                .flags(*flags)
                .build()))
            }
            Op::Recv { fd, buf, flags } => {
                let (ptr, len) = buf.spare_parts();
                submit!(with_target!(files.target(*fd), |t| opcode::Recv::new(
                    t,
                    ptr,
                    clamp_len(len)
                )
                .flags(*flags)
                .build()))
            }
            Op::Read { fd, buf, offset } => {
                let (ptr, len) = buf.spare_parts();
                submit!(with_target!(files.target(*fd), |t| opcode::Read::new(
                    t,
                    ptr,
                    clamp_len(len)
                )
                .offset(*offset)
                .build()))
            }
            Op::Write { fd, buf, offset } => {
                let (ptr, len) = buf.raw_parts();
                submit!(with_target!(files.target(*fd), |t| opcode::Write::new(
                    t,
                    ptr,
                    clamp_len(len)
                )
                .offset(*offset)
                .build()))
            }
            Op::Readv {
                fd,
                bufs,
                iov,
                offset,
            } => {
                bufs.fill_iovecs(iov, true);
                let (ptr, len) = (iov.as_ptr(), clamp_len(iov.len()));
                submit!(with_target!(files.target(*fd), |t| opcode::Readv::new(
                    t, ptr, len
                )
                .offset(*offset)
                .build()))
            }
            Op::Writev {
                fd,
                bufs,
                iov,
                offset,
            } => {
                bufs.fill_iovecs(iov, false);
                let (ptr, len) = (iov.as_ptr(), clamp_len(iov.len()));
                submit!(with_target!(files.target(*fd), |t| opcode::Writev::new(
                    t, ptr, len
                )
                .offset(*offset)
                .build()))
            }
            Op::Close { fd } => {
                let Some(owned) = fd.take() else {
                    return Err(Immediate::Done(-libc::EBADF));
                };
                opcode::Close::new(types::Fd(owned.into_raw_fd())).build()
            }
            Op::CloseRing { file } => match files.begin_close(*file) {
                Some(target) => {
                    submit!(with_typed_target!(target, |t| opcode::Close::new(t).build()))
                }
                None => return Err(Immediate::Done(-libc::EBADF)),
            },
            Op::Poll { fd, mask } => {
                submit!(with_target!(files.target(*fd), |t| opcode::PollAdd::new(
                    t, *mask
                )
                .build()))
            }
            Op::Open {
                dir,
                path,
                flags,
                mode,
            } => opcode::OpenAt::new(types::Fd(*dir), path.as_ptr().cast())
                .flags(*flags)
                .mode(*mode)
                .build(),
            Op::OpenDirect {
                dir,
                path,
                flags,
                mode,
                into_table,
            } => {
                *into_table = files.claim_slot();
                let open = opcode::OpenAt::new(types::Fd(*dir), path.as_ptr().cast()).mode(*mode);
                if !*into_table {
                    open.flags(*flags).build()
                } else {
                    // No O_CLOEXEC: a direct descriptor has no process fd,
                    // and the kernel refuses the flag with a slot.
                    open.flags(*flags & !libc::O_CLOEXEC)
                        .file_index(Some(types::DestinationSlot::auto_target()))
                        .build()
                }
            }
            Op::Stat {
                dir,
                path,
                flags,
                out,
            } => {
                let out: *mut libc::statx = &mut **out;
                opcode::Statx::new(types::Fd(*dir), path.as_ptr().cast(), out.cast())
                    .flags(*flags)
                    .mask(crate::fs::STATX_MASK)
                    .build()
            }
            Op::Fsync { fd, datasync } => {
                let flags = if *datasync {
                    types::FsyncFlags::DATASYNC
                } else {
                    types::FsyncFlags::empty()
                };
                submit!(with_target!(files.target(*fd), |t| opcode::Fsync::new(t)
                    .flags(flags)
                    .build()))
            }
            Op::Ftruncate { fd, len } => {
                self.require(opcode::Ftruncate::CODE, OpKind::Ftruncate)?;
                submit!(with_target!(files.target(*fd), |t| opcode::Ftruncate::new(
                    t, *len
                )
                .build()))
            }
            Op::Unlink { path, flags } => {
                opcode::UnlinkAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr().cast())
                    .flags(*flags)
                    .build()
            }
            Op::Rename { from, to } => {
                let cwd = types::Fd(libc::AT_FDCWD);
                opcode::RenameAt::new(cwd, from.as_ptr().cast(), cwd, to.as_ptr().cast()).build()
            }
            Op::Mkdir { path, mode } => {
                let (path, mode) = (path.as_ptr().cast(), *mode as libc::mode_t);
                self.require(opcode::MkDirAt::CODE, OpKind::Mkdir)?;
                opcode::MkDirAt::new(types::Fd(libc::AT_FDCWD), path)
                    .mode(mode)
                    .build()
            }
            Op::Symlink { target, link } => {
                let (target, link) = (target.as_ptr().cast(), link.as_ptr().cast());
                self.require(opcode::SymlinkAt::CODE, OpKind::Symlink)?;
                opcode::SymlinkAt::new(types::Fd(libc::AT_FDCWD), target, link).build()
            }
            Op::HardLink { original, link } => {
                let (original, link) = (original.as_ptr().cast(), link.as_ptr().cast());
                let cwd = libc::AT_FDCWD;
                self.require(opcode::LinkAt::CODE, OpKind::HardLink)?;
                opcode::LinkAt::new(types::Fd(cwd), original, types::Fd(cwd), link).build()
            }
            Op::Fallocate {
                fd,
                mode,
                offset,
                len,
            } => {
                submit!(with_target!(files.target(*fd), |t| opcode::Fallocate::new(
                    t, *len
                )
                .offset(*offset)
                .mode(*mode)
                .build()))
            }
            Op::Fadvise {
                fd,
                offset,
                len,
                advice,
            } => {
                // `len` fits the entry's 32 bits: `Ring::fadvise` checks it.
                let (len, advice) = (*len as libc::off_t, advice.raw());
                submit!(with_target!(files.target(*fd), |t| opcode::Fadvise::new(
                    t, len, advice
                )
                .offset(*offset)
                .build()))
            }
            Op::Madvise { buf, advice } => {
                let (ptr, len) = buf.raw_parts();
                let (start, len) = crate::backend::whole_pages(ptr, len);
                // `len` fits the entry's 32 bits: `Ring::madvise` checks it.
                opcode::Madvise::new(start.cast(), len as libc::off_t, advice.raw()).build()
            }
            Op::StatFd { fd, out } => {
                let fd = files.process_fd(*fd)?;
                let out: *mut libc::statx = &mut **out;
                opcode::Statx::new(types::Fd(fd), c"".as_ptr(), out.cast())
                    .flags(libc::AT_EMPTY_PATH)
                    .mask(crate::fs::STATX_MASK)
                    .build()
            }
            Op::Splice {
                fd_in,
                off_in,
                fd_out,
                off_out,
                len,
                flags,
            } => {
                self.require(opcode::Splice::CODE, OpKind::Splice)?;
                let (off_in, off_out, len, flags) = (*off_in, *off_out, *len, *flags);
                let (fd_in, fd_out) = (files.target(*fd_in), files.target(*fd_out));
                submit!(with_typed_target!(fd_in, |input| with_typed_target!(
                    fd_out,
                    |output| {
                        opcode::Splice::new(input, off_in, output, off_out, len)
                            .flags(flags)
                            .build()
                    }
                )))
            }
            Op::Shutdown { fd, how } => {
                if !self.supports(opcode::Shutdown::CODE) {
                    let fd = files.process_fd(*fd)?;
                    return Err(Immediate::Done(syscall::shutdown(fd, *how)));
                }
                submit!(with_target!(files.target(*fd), |t| opcode::Shutdown::new(
                    t, *how
                )
                .build()))
            }
            Op::SendMsg {
                fd,
                bufs,
                msg,
                flags,
            } => {
                bufs.fill_iovecs(&mut msg.iov, false);
                msg.prepare(false);
                let hdr: *const libc::msghdr = &msg.hdr;
                submit!(with_target!(files.target(*fd), |t| opcode::SendMsg::new(
                    t, hdr
                )
                .flags(*flags as u32)
                .build()))
            }
            Op::RecvMsg {
                fd,
                bufs,
                msg,
                flags,
            } => {
                bufs.fill_iovecs(&mut msg.iov, true);
                msg.prepare(true);
                let hdr: *mut libc::msghdr = &mut msg.hdr;
                submit!(with_target!(files.target(*fd), |t| opcode::RecvMsg::new(
                    t, hdr
                )
                .flags(*flags as u32)
                .build()))
            }
            Op::SendTo { fd, buf, msg } => {
                let (ptr, len) = buf.raw_parts();
                msg.prepare_one(ptr.cast_mut(), len, false);
                let hdr: *const libc::msghdr = &msg.hdr;
                submit!(with_target!(files.target(*fd), |t| opcode::SendMsg::new(
                    t, hdr
                )
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()))
            }
            Op::RecvFrom { fd, buf, msg } => {
                let (ptr, len) = buf.spare_parts();
                msg.prepare_one(ptr, len, true);
                let hdr: *mut libc::msghdr = &mut msg.hdr;
                submit!(with_target!(files.target(*fd), |t| opcode::RecvMsg::new(
                    t, hdr
                )
                .build()))
            }
            Op::AcceptMulti { fd } => self.accept_multi(files.target(*fd)),
            Op::AcceptDirect { fd, into_table } => {
                let target = files.target(*fd);
                *into_table = self.has_multishot_accept() && files.claim_for_accept();
                if !*into_table {
                    self.accept_multi(target)
                } else {
                    // No SOCK_CLOEXEC: a direct descriptor has no process
                    // fd, and the kernel refuses the flag with a slot.
                    submit!(with_target!(target, |t| opcode::AcceptMulti::new(t)
                        .allocate_file_index(true)
                        .build()))
                }
            }
            Op::RecvMulti { fd, group, held } => {
                let target = files.target(*fd);
                if group.is_kernel_ring() && self.has_multishot_recv() {
                    // Without IORING_RECVSEND_POLL_FIRST, which would wait
                    // for data before a buffer is taken: on Linux 6.18 such
                    // a receive, armed once the peer's data and reset have
                    // both arrived, gives the data and never ends.
                    submit!(with_target!(target, |t| opcode::RecvMulti::new(
                        t, group.id
                    )
                    .build()))
                } else if group.is_kernel_ring() {
                    let size = group.size() as u32;
                    submit!(with_target!(target, |t| opcode::Recv::new(
                        t,
                        std::ptr::null_mut(),
                        size
                    )
                    .buf_group(group.id)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)))
                } else {
                    let Some(bid) = group.take_free() else {
                        return Err(Immediate::Done(-libc::ENOBUFS));
                    };
                    *held = Some(bid);
                    let (ptr, size) = (group.buffer_ptr(bid), clamp_len(group.size()));
                    submit!(with_target!(target, |t| opcode::Recv::new(t, ptr, size).build()))
                }
            }
            Op::SendFd {
                fd, token, target, ..
            } => {
                let Target::Fixed(slot) = files.target(*fd) else {
                    // `send_fd` sends only ring fds that have a slot.
                    return Err(Immediate::Done(-libc::EBADF));
                };
                submit!(opcode::MsgRingSendFd::new(
                    types::Fd(target.as_raw_fd()),
                    types::Fixed(slot),
                    types::DestinationSlot::auto_target(),
                    parcel_arrival(*token),
                )
                .build())
            }
            Op::Timer { .. }
            | Op::Cancel
            | Op::CancelAll { .. }
            | Op::MsgRing { .. }
            | Op::StopThread { .. } => {
                return Err(Immediate::Done(-libc::EINVAL));
            }
        };
        submit!(entry)
    }

    /// A multishot accept of plain fds; on kernels without multishot
    /// accept, a single accept.
    fn accept_multi(&self, target: Target) -> squeue::Entry {
        if self.has_multishot_accept() {
            with_target!(target, |t| opcode::AcceptMulti::new(t)
                .flags(libc::SOCK_CLOEXEC)
                .build())
        } else {
            with_target!(target, |t| opcode::Accept::new(
                t,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            )
            .flags(libc::SOCK_CLOEXEC)
            .build())
        }
    }
}

/// Pushes a task's entry onto a queue that has room.
#[inline(always)]
fn push_to(sq: &mut SubmissionQueue<'_>, entry: squeue::Entry) -> Started {
    // SAFETY: as in `Uring::push`.
    match unsafe { sq.push(&entry) } {
        Ok(()) => Started::Yes,
        Err(_) => Started::Full,
    }
}
