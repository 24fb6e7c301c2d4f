//! What an operation's prep arm gives the readiness backend: a [`Call`],
//! the functions that make its system call and the arguments they make it
//! with (like an io_uring submission entry, the opcode being the function),
//! and what the backend must know to wait for it. Every operation takes
//! this one path: op → prep arm → `Call` → its function → system call.

use std::os::fd::RawFd;

use mio::Interest;

/// What became of one attempt at a call.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Attempt {
    /// Finished with this result (a count, fd or mask, or `-errno`).
    Done(i32),
    /// Not possible yet: try again when the fd is ready for this.
    Wait(RawFd, Interest),
    /// It may block (a regular file): run it on a pool thread.
    Pool,
    /// One result of a multishot call (with its completion flags); more
    /// may follow at once.
    Shot(i32, u32),
}

/// The buffers of a read or write, a send or receive: one (stored here) or
/// an iovec array in memory the operation owns.
#[derive(Clone, Copy)]
pub(super) enum IoVecs {
    One(libc::iovec),
    Many(*const libc::iovec, usize),
}

impl IoVecs {
    const NONE: IoVecs = IoVecs::Many(std::ptr::null(), 0);

    pub(super) fn one(ptr: *const u8, len: usize) -> IoVecs {
        IoVecs::One(libc::iovec {
            iov_base: ptr as *mut libc::c_void,
            iov_len: len,
        })
    }

    pub(super) fn as_slice(&self) -> &[libc::iovec] {
        match self {
            IoVecs::One(iov) => std::slice::from_ref(iov),
            IoVecs::Many(_, 0) => &[],
            // SAFETY: the array lives in the operation's own `Vec`, which
            // is neither touched nor freed until the operation completes.
            IoVecs::Many(ptr, len) => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }

    pub(super) fn count(&self) -> libc::c_int {
        libc::c_int::try_from(self.as_slice().len()).unwrap_or(libc::c_int::MAX)
    }

    /// How many bytes the buffers hold in all, as the kernel counts them
    /// for a range check (at most `i64::MAX`).
    pub(super) fn total_len(&self) -> i64 {
        let total = self
            .as_slice()
            .iter()
            .fold(0usize, |sum, v| sum.saturating_add(v.iov_len));
        i64::try_from(total).unwrap_or(i64::MAX)
    }

    /// The buffers past their first `skip` bytes, or `None` if no byte is
    /// left: a buffer begun is given alone, else the rest of the array.
    #[cfg(target_os = "linux")]
    pub(super) fn after(&self, mut skip: usize) -> Option<IoVecs> {
        if skip == 0 {
            return Some(*self);
        }
        let vecs = self.as_slice();
        for (i, v) in vecs.iter().enumerate() {
            if skip == 0 {
                // Past the first buffer: an array's, which outlives `self`.
                let rest = &vecs[i..];
                return Some(IoVecs::Many(rest.as_ptr(), rest.len()));
            }
            if skip < v.iov_len {
                let start = v.iov_base.cast::<u8>().wrapping_add(skip);
                return Some(IoVecs::one(start, v.iov_len - skip));
            }
            skip -= v.iov_len;
        }
        None
    }

    /// The buffers, or if they hold more than `max` bytes, the first that
    /// is not empty, cut to `max`.
    #[cfg(target_os = "linux")]
    pub(super) fn capped(&self, max: usize) -> IoVecs {
        if self.total_len() <= i64::try_from(max).unwrap_or(i64::MAX) {
            return *self;
        }
        match self.as_slice().iter().find(|v| v.iov_len > 0) {
            Some(v) => IoVecs::one(v.iov_base.cast(), v.iov_len.min(max)),
            None => *self,
        }
    }

    /// The one buffer's start and length (null and 0 for an array).
    pub(super) fn single(&self) -> (*mut libc::c_void, usize) {
        match self {
            IoVecs::One(iov) => (iov.iov_base, iov.iov_len),
            IoVecs::Many(..) => (std::ptr::null_mut(), 0),
        }
    }
}

/// How far a call has come, kept between its attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// Nothing known yet.
    Start,
    /// A read or write on an fd that cannot be tried without blocking (on
    /// Linux one refusing `RWF_NOWAIT`, elsewhere anything but a file):
    /// wait for readiness, then make the plain call.
    AfterReadiness,
    /// A read or write of a regular file moved this many bytes without
    /// blocking (its other pages were not cached, or not writable at
    /// once): the pool moves the rest, and the result counts both.
    #[cfg(target_os = "linux")]
    Partial(i32),
    /// `connect` said `EINPROGRESS`; `restore_blocking` if ouro made the
    /// socket non-blocking for it.
    Connecting { restore_blocking: bool },
    /// A splice's next wait is for its output side: splice cannot say
    /// which side was not ready, so its waits alternate.
    SpliceWaitsOut,
}

/// A call's arguments: plain values, and pointers into memory the
/// operation owns (heap blocks that stay put until its completion).
#[derive(Clone, Copy)]
pub(super) struct SysArgs {
    /// The fds the call is made on (`-1`: none); a wait is on `fds[0]`.
    pub(super) fds: [RawFd; 2],
    /// NUL-terminated paths.
    pub(super) paths: [*const libc::c_char; 2],
    /// The buffers bytes move through.
    pub(super) iov: IoVecs,
    /// Other memory the call reads or writes: a socket address (and where
    /// its length goes), a message header, a buffer group, a metadata
    /// block.
    pub(super) ptrs: [*mut libc::c_void; 2],
    pub(super) flags: i32,
    /// Offsets (`-1`: the fd's position), lengths, modes.
    pub(super) nums: [i64; 3],
    pub(super) progress: Progress,
}

impl SysArgs {
    /// No arguments: what a call's own fill in.
    pub(super) const NONE: SysArgs = SysArgs {
        fds: [-1, -1],
        paths: [std::ptr::null(), std::ptr::null()],
        iov: IoVecs::NONE,
        ptrs: [std::ptr::null_mut(), std::ptr::null_mut()],
        flags: 0,
        nums: [0, 0, 0],
        progress: Progress::Start,
    };
}

/// What becomes of a call whose fd the poller refuses (`EPERM`: a regular
/// file or directory, always "ready", whose calls may block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unpollable {
    /// It fails with the poller's error.
    Fails,
    /// It runs on the pool (a read or write of a file).
    ToPool,
    /// It waits on its other end, which must be a pipe (a splice).
    OtherEnd,
    /// It waits until cancelled, as io_uring's poll of such an fd does.
    WaitsForever,
}

/// An operation's system call, as its prep arm gives it.
#[derive(Clone, Copy)]
pub(super) struct Call {
    /// One attempt on the ring's thread, which must not block.
    pub(super) nonblocking: fn(&mut SysArgs) -> Attempt,
    /// The call on a pool thread, where it may block: for calls whose
    /// attempt may say [`Attempt::Pool`] or whose fd may be a file.
    pub(super) blocking: Option<fn(&mut SysArgs) -> i32>,
    pub(super) args: SysArgs,
    /// The readiness of `fds[0]` the call needs (it fails with `EAGAIN`
    /// until then).
    pub(super) needs: Option<Interest>,
    /// Bytes it asks to move through one buffer (0: none): fewer moved on
    /// a TCP ring fd mean its queue is empty, or full.
    pub(super) asked: usize,
    /// A read or write at the fd's current position, whose order matters.
    pub(super) ordered: bool,
    /// A read that keeps the per-fd hint "the last read found it empty".
    pub(super) read_hint: bool,
    pub(super) unpollable: Unpollable,
    /// It closes `fds[0]`, which the backend must forget first.
    pub(super) closes_fd: bool,
    /// Its result is a new fd (which a pool job abandoned must close).
    pub(super) makes_fd: bool,
}

// SAFETY: a `Call` is plain arguments; the memory its pointers reach is
// owned by the operation, which lends it to whichever thread performs the
// call (the ring's, or one pool thread) and does not touch it until the
// completion comes back, exactly as it lends it to the kernel for io_uring.
unsafe impl Send for Call {}

impl Call {
    /// Nothing to do.
    pub(super) const NOOP: Call = Call {
        nonblocking: |_| Attempt::Done(0),
        blocking: None,
        args: SysArgs::NONE,
        needs: None,
        asked: 0,
        ordered: false,
        read_hint: false,
        unpollable: Unpollable::Fails,
        closes_fd: false,
        makes_fd: false,
    };

    /// A call the ring's thread makes: `attempt` on `args`.
    pub(super) fn new(attempt: fn(&mut SysArgs) -> Attempt, args: SysArgs) -> Call {
        Call {
            nonblocking: attempt,
            args,
            ..Call::NOOP
        }
    }

    /// A call that may block (a file-system call): `run` on `args`, on a
    /// pool thread.
    pub(super) fn on_pool(run: fn(&mut SysArgs) -> i32, args: SysArgs) -> Call {
        Call {
            nonblocking: |_| Attempt::Pool,
            blocking: Some(run),
            args,
            ..Call::NOOP
        }
    }

    /// How a pool thread makes the call, if an attempt sends it there.
    pub(super) fn or_on_pool(self, run: fn(&mut SysArgs) -> i32) -> Call {
        Call {
            blocking: Some(run),
            ..self
        }
    }

    /// It waits on `fds[0]` for `interest`.
    pub(super) fn needs(self, interest: Interest) -> Call {
        Call {
            needs: Some(interest),
            ..self
        }
    }

    /// A read or write at `offset`: `-1`, the fd's position, orders it.
    pub(super) fn at_offset(self, offset: i64) -> Call {
        Call {
            ordered: offset < 0,
            ..self
        }
    }

    /// One attempt, on the ring's thread.
    pub(super) fn attempt(&mut self) -> Attempt {
        (self.nonblocking)(&mut self.args)
    }

    /// The call on a pool thread.
    pub(super) fn block(&mut self) -> i32 {
        match self.blocking {
            Some(run) => run(&mut self.args),
            None => match self.attempt() {
                Attempt::Done(res) | Attempt::Shot(res, _) => res,
                Attempt::Wait(..) | Attempt::Pool => -libc::EAGAIN,
            },
        }
    }

    /// The fd and readiness the call needs, if it fails with `EAGAIN`
    /// until then.
    pub(super) fn waits_on(&self) -> Option<(RawFd, Interest)> {
        let fd = self.args.fds[0];
        self.needs
            .filter(|_| fd >= 0)
            .map(|interest| (fd, interest))
    }

    /// The fd of a read or write at the fd's current position.
    pub(super) fn at_position(&self) -> Option<RawFd> {
        let fd = self.args.fds[0];
        (self.ordered && fd >= 0).then_some(fd)
    }

    /// The fd of a read that keeps the per-fd "was empty" hint.
    pub(super) fn read_hint(&self) -> Option<RawFd> {
        let fd = self.args.fds[0];
        (self.read_hint && fd >= 0).then_some(fd)
    }

    /// Whether a wait is surely for `fds[0]`: a splice cannot say which of
    /// its ends was not ready.
    pub(super) fn knows_its_wait(&self) -> bool {
        self.unpollable != Unpollable::OtherEnd
    }
}
