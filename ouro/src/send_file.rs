//! Sending part of a file to a socket without copying it through user
//! space: file → pipe → socket with `splice`, through a pipe the component
//! owns and reuses.
//!
//! Linux only: `splice` is Linux's, and the component is built on it. A
//! read-and-send fallback for the kqueue platforms would be another
//! component (a buffer per transfer instead of a pipe) with nothing of this
//! one's zero-copy path; a program there reads and sends with a
//! [`WriteQueue`](crate::WriteQueue) instead.

use std::collections::HashMap;
use std::io;
use std::time::Instant;

use crate::completion::Completion;
use crate::conns::ConnTable;
use crate::fd::{OpFd, RingFd};
use crate::op::{Outcome, PollMask};
use crate::pipe::{pipe, RingPipe};
use crate::ring::{Ctx, Ring};
use crate::task::Task;

/// The most a transfer moves into its pipe at a time: the default capacity
/// of a Linux pipe, so that filling an empty pipe never waits for room (a
/// pipe made smaller by `pipe-user-pages-soft` takes less, and the rest
/// goes in the next round).
const CHUNK: u64 = 64 * 1024;

/// Idle pipes kept for reuse unless [`SendFile::keep_idle_pipes`] says
/// otherwise.
const DEFAULT_IDLE_PIPES: usize = 16;

/// Sends byte ranges of open files to sockets: file → pipe → socket with
/// [`Ring::splice`], one pipe per transfer in flight. Linux only (kernel
/// 5.7: `IORING_OP_SPLICE`; the readiness backend calls `splice` itself).
///
/// Every task of the component carries the `ctx` it was made with (its
/// callback and message; the key names the transfer), and every completion
/// of those tasks goes back to [`on_completion`](SendFile::on_completion),
/// which answers [`Sent`] once per transfer, when it has ended.
///
/// What a transfer guarantees:
/// - **Partial splices** are continued until `len` bytes are sent; a file
///   that ends earlier fails the transfer with `UnexpectedEof`.
/// - **A peer that stops reading** holds at most one pipe's worth of the
///   file (64 KiB) in the transfer: before each splice into the socket the
///   transfer waits (a [`Ring::poll`]) until the socket is writable, so no
///   call waits for the peer — neither the readiness backend's loop nor an
///   io_uring worker. Other tasks of the ring go on meanwhile.
/// - **Errors** (the peer reset, a deadline, a cancel) end the transfer
///   with the error, reported once; its pipe is closed (it may hold
///   unsent bytes), so no fd is left behind.
/// - **Cancellation and deadlines**: [`cancel`](SendFile::cancel) ends a
///   transfer with `ECANCELED`, [`set_deadline`](SendFile::set_deadline)
///   with `ETIME` if it has not finished by then.
/// - **Pipes are reused**: a transfer that succeeds hands its (empty) pipe
///   to the next one; up to [`keep_idle_pipes`](SendFile::keep_idle_pipes)
///   idle pipes are kept, the others closed, so a server does not make two
///   fds per request.
/// - **A pipe can be had first**: [`reserve_pipe`](SendFile::reserve_pipe)
///   takes (or makes) the pipe of a transfer about to start, so that a
///   caller that must commit before the transfer starts (a server sending
///   a head that announces the body) learns then that it cannot have one.
///
/// The file and the socket stay the caller's (a clone of each, such as a
/// [`RingFd`] or an `Rc`, is held while the transfer runs). One transfer
/// per socket at a time, and nothing else written to it meanwhile: the
/// bytes would interleave. The socket may be blocking or not: the wait
/// for room is the poll either way, and a splice moves what fits (the
/// socket being writable means some room, not a pipe's worth), the rest
/// waiting for the next poll. On the readiness backend a blocking socket is
/// made non-blocking for the length of each splice call, as for a
/// `connect`, and blocking again after it (another thread making a
/// blocking call on it just then would get `EAGAIN`); on io_uring its flags
/// are left alone, and a cancel interrupts a splice waiting in the kernel.
/// [`close`](SendFile::close) ends the component with its pipes; dropping
/// it instead leaves its pipes (idle, reserved, and those of transfers in
/// flight) to the ring, which closes them when it is dropped.
///
/// ```
/// use ouro::{Completion, Ctx, Ring, RunMode, SendFile};
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use std::rc::Rc;
///
/// type Sender = SendFile<Done, Rc<std::fs::File>, Rc<UnixStream>>;
/// struct Done { sender: Sender, sent: u64 }
///
/// fn on_completion(done: &mut Done, ring: &mut Ring<Done>, c: Completion) -> std::io::Result<()> {
///     if let Some(sent) = done.sender.on_completion(ring, c)? {
///         sent.result?;
///         done.sent = sent.sent;
///     }
///     Ok(())
/// }
///
/// let mut file = tempfile::tempfile()?;
/// file.write_all(b"hello, world")?;
/// let (ours, mut theirs) = UnixStream::pair()?;
/// let mut ring: Ring<Done> = Ring::new(8)?;
/// let mut done = Done { sender: SendFile::new(Ctx::new(on_completion)), sent: 0 };
/// done.sender.start(&mut ring, Rc::new(file), 7, 5, Rc::new(ours), 0)?;
/// ring.run(&mut done, RunMode::UntilDone)?;
/// assert_eq!(done.sent, 5);
/// drop(done); // the socket with it
/// let mut got = String::new();
/// theirs.read_to_string(&mut got)?;
/// assert_eq!(got, "world");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SendFile<S, F = RingFd, T = RingFd> {
    ctx: Ctx<S>,
    transfers: ConnTable<Transfer<F, T>>,
    idle: Vec<RingPipe>,
    keep_idle: usize,
    /// Pipes kept for the next transfer started with their key.
    reserved: HashMap<u64, RingPipe>,
}

/// How a transfer ended, from [`SendFile::on_completion`].
#[derive(Debug)]
pub struct Sent {
    /// The key given to [`SendFile::start`].
    pub key: u64,
    /// Bytes that reached the socket.
    pub sent: u64,
    /// `Ok` once all `len` bytes are sent; else what ended the transfer.
    pub result: io::Result<()>,
}

/// What the transfer's task in flight does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Moves the next chunk of the file into the empty pipe.
    Fill,
    /// Waits until the socket can take more.
    AwaitWritable,
    /// Moves what the pipe holds into the socket.
    Drain,
    /// Nothing to send: a no-op reports the end.
    Empty,
}

struct Transfer<F, T> {
    key: u64,
    file: F,
    socket: T,
    pipe: RingPipe,
    /// Where the next fill reads the file.
    offset: u64,
    /// Bytes of the range not yet in the pipe.
    unread: u64,
    /// Bytes in the pipe, not yet in the socket.
    in_pipe: u64,
    sent: u64,
    step: Step,
    /// The task in flight (`None` only while the first is being made).
    task: Option<Task>,
    deadline: Option<Instant>,
    cancelled: bool,
}

impl<S, F: OpFd + Clone, T: OpFd + Clone> SendFile<S, F, T> {
    /// A component whose tasks carry `ctx` (its callback and message; the
    /// key is the transfer's).
    pub fn new(ctx: Ctx<S>) -> SendFile<S, F, T> {
        SendFile {
            ctx,
            transfers: ConnTable::new(),
            idle: Vec::new(),
            keep_idle: DEFAULT_IDLE_PIPES,
            reserved: HashMap::new(),
        }
    }

    /// Keeps at most `pipes` idle pipes for reuse (16 unless set).
    pub fn keep_idle_pipes(mut self, pipes: usize) -> SendFile<S, F, T> {
        self.keep_idle = pipes;
        self
    }

    /// Starts sending the `len` bytes of `file` from `offset` to `socket`
    /// (the file's own position is neither used nor moved). `key` comes
    /// back in the transfer's [`Sent`]. Returns the transfer's id, for
    /// [`cancel`](SendFile::cancel) and
    /// [`set_deadline`](SendFile::set_deadline).
    ///
    /// The transfer goes through the pipe reserved for `key`
    /// ([`reserve_pipe`](SendFile::reserve_pipe)) if there is one, else an
    /// idle pipe or a new one.
    ///
    /// Fails, and starts nothing, with `InvalidInput` if the range ends
    /// beyond `i64::MAX` (a pipe reserved for `key` stays reserved), or
    /// with the OS error if no pipe can be made (`EMFILE`: out of fds).
    pub fn start(
        &mut self,
        ring: &mut Ring<S>,
        file: F,
        offset: u64,
        len: u64,
        socket: T,
        key: u64,
    ) -> io::Result<u64> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= i64::MAX as u64);
        if end.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a file range from {offset} of {len} bytes ends beyond i64::MAX"),
            ));
        }
        let pipe = match self.reserved.remove(&key) {
            Some(pipe) => pipe,
            None => self.take_pipe(ring)?,
        };
        let id = self.transfers.insert(Transfer {
            key,
            file,
            socket,
            pipe,
            offset,
            unread: len,
            in_pipe: 0,
            sent: 0,
            step: Step::Empty,
            task: None,
            deadline: None,
            cancelled: false,
        });
        let first = if len == 0 { Step::Empty } else { Step::Fill };
        self.submit(ring, id, first);
        Ok(id)
    }

    /// Makes sure that the next [`start`](SendFile::start) with `key`
    /// cannot fail for want of a pipe: takes an idle pipe, or makes one,
    /// and keeps it for that transfer (a key that has one keeps it). For a
    /// caller that commits to a transfer before it starts — a server that
    /// sends a head announcing the body's length, then the body — and
    /// would rather refuse before committing than break its word after.
    /// A reservation not used is given back with
    /// [`release_pipe`](SendFile::release_pipe).
    ///
    /// Fails with the OS error if no pipe can be made (`EMFILE`: out of
    /// fds), reserving nothing.
    pub fn reserve_pipe(&mut self, ring: &mut Ring<S>, key: u64) -> io::Result<()> {
        if !self.reserved.contains_key(&key) {
            let pipe = self.take_pipe(ring)?;
            self.reserved.insert(key, pipe);
        }
        Ok(())
    }

    /// Gives back the pipe reserved for `key` and not used: it is kept
    /// idle if there is room, else closed. Returns whether `key` had one.
    pub fn release_pipe(&mut self, ring: &mut Ring<S>, key: u64) -> bool {
        let Some(pipe) = self.reserved.remove(&key) else {
            return false;
        };
        self.keep_or_close(ring, pipe);
        true
    }

    /// Ends transfer `id` with `ECANCELED` (see [`is_canceled`](crate::is_canceled)):
    /// its task in flight is cancelled, and [`Sent`] comes with that task's
    /// completion (`Ok` if that task had sent the last bytes anyway).
    /// Returns whether `id` was a transfer in progress.
    pub fn cancel(&mut self, ring: &mut Ring<S>, id: u64) -> bool {
        let Some(transfer) = self.transfers.get_mut(id) else {
            return false;
        };
        // Its task may finish on its own before the cancel reaches it: the
        // flag ends the transfer there too.
        transfer.cancelled = true;
        if let Some(task) = transfer.task {
            ring.cancel(task, Ctx::none());
        }
        true
    }

    /// Ends transfer `id` with `ETIME` (see [`is_deadline`](crate::is_deadline))
    /// if it has not finished by `at` (replacing an earlier deadline).
    /// Fails with `NotFound` if `id` is not a transfer in progress.
    pub fn set_deadline(&mut self, ring: &mut Ring<S>, id: u64, at: Instant) -> io::Result<()> {
        let Some(transfer) = self.transfers.get_mut(id) else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        transfer.deadline = Some(at);
        match transfer.task {
            Some(task) => ring.set_deadline(task, at),
            None => Ok(()),
        }
    }

    /// Takes a completion of one of the component's tasks and carries its
    /// transfer on; returns how it ended once it has (`None` while it goes
    /// on, and for a transfer that has already ended).
    ///
    /// A completion of another kind of operation, or of a task that is not
    /// the transfer's (one of another component carrying the same key), is
    /// an `InvalidInput` error and changes nothing.
    pub fn on_completion(&mut self, ring: &mut Ring<S>, c: Completion) -> io::Result<Option<Sent>> {
        let (id, task) = (c.key(), c.task());
        let moved = match c.outcome {
            Outcome::Splice(result) => result.map(|n| n as u64),
            Outcome::Poll(result) => result.map(|_| 0),
            Outcome::Noop(result) => result.map(|()| 0),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a completion of a SendFile: {other:?}"),
                ))
            }
        };
        let Some(transfer) = self.transfers.get_mut(id) else {
            return Ok(None);
        };
        if transfer.task != Some(task) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not the completion of this transfer's task",
            ));
        }
        let next = match moved {
            Ok(moved) => transfer.advance(moved),
            Err(err) => Err(err),
        };
        // Its task may have finished on its own before the cancel reached
        // it: what it moved is counted, and a transfer it completed has
        // succeeded.
        let next = match next {
            Ok(Some(_)) if transfer.cancelled => Err(crate::error::canceled_error()),
            other => other,
        };
        match next {
            Ok(Some(step)) => {
                self.submit(ring, id, step);
                Ok(None)
            }
            Ok(None) => Ok(Some(self.finish(ring, id, Ok(())))),
            Err(err) => Ok(Some(self.finish(ring, id, Err(err)))),
        }
    }

    /// Transfers in progress.
    pub fn in_flight(&self) -> usize {
        self.transfers.len()
    }

    /// Pipes kept for the next transfers (not counting reserved ones).
    pub fn idle_pipes(&self) -> usize {
        self.idle.len()
    }

    /// Pipes reserved and not yet used or released.
    pub fn reserved_pipes(&self) -> usize {
        self.reserved.len()
    }

    /// An idle pipe, or a new one.
    fn take_pipe(&mut self, ring: &mut Ring<S>) -> io::Result<RingPipe> {
        match self.idle.pop() {
            Some(pipe) => Ok(pipe),
            None => Ok(pipe()?.register(ring)),
        }
    }

    /// Keeps an empty `pipe` idle if there is room, else closes it.
    fn keep_or_close(&mut self, ring: &mut Ring<S>, pipe: RingPipe) {
        if self.idle.len() < self.keep_idle {
            self.idle.push(pipe);
        } else {
            pipe.close(ring);
        }
    }

    /// Closes the idle pipes (transfers started later make new ones).
    pub fn close_idle_pipes(&mut self, ring: &mut Ring<S>) {
        for pipe in self.idle.drain(..) {
            pipe.close(ring);
        }
    }

    /// Ends the component, closing every pipe it holds: idle, reserved,
    /// and those of transfers in flight, whose tasks are cancelled (their
    /// completions still reach the callback, with nothing to give them
    /// to: ignore them). A component dropped instead leaves its pipes
    /// open in the ring until the ring is dropped.
    pub fn close(mut self, ring: &mut Ring<S>) {
        self.close_idle_pipes(ring);
        for (_, pipe) in self.reserved.drain() {
            pipe.close(ring);
        }
        for (_, transfer) in self.transfers.iter() {
            transfer.pipe.close(ring);
        }
    }

    fn submit(&mut self, ring: &mut Ring<S>, id: u64, step: Step) {
        let ctx = self.ctx.key(id);
        let t = &mut self.transfers[id];
        t.step = step;
        let task = match step {
            Step::Fill => {
                let len = t.unread.min(CHUNK) as u32;
                let (file, pipe) = (t.file.clone(), t.pipe.writer);
                ring.splice(file, Some(t.offset), pipe, None, len, ctx)
            }
            Step::AwaitWritable => ring.poll(t.socket.clone(), PollMask::WRITABLE, ctx),
            Step::Drain => {
                let len = t.in_pipe as u32;
                ring.splice(t.pipe.reader, None, t.socket.clone(), None, len, ctx)
            }
            Step::Empty => ring.noop(ctx),
        };
        t.task = Some(task);
        if let Some(at) = t.deadline {
            // The task was just scheduled, so it is live: this cannot fail.
            let _ = ring.set_deadline(task, at);
        }
    }

    /// Ends transfer `id`: its pipe goes back to the idle ones if it is
    /// empty and there is room, else is closed.
    fn finish(&mut self, ring: &mut Ring<S>, id: u64, result: io::Result<()>) -> Sent {
        let t = self.transfers.remove(id).expect("a transfer in progress");
        if result.is_ok() {
            self.keep_or_close(ring, t.pipe);
        } else {
            // It may hold bytes never sent.
            t.pipe.close(ring);
        }
        Sent {
            key: t.key,
            sent: t.sent,
            result,
        }
    }
}

impl<F, T> Transfer<F, T> {
    /// Takes the `moved` bytes of the step that finished; the next step,
    /// or `None` when everything is sent.
    fn advance(&mut self, moved: u64) -> io::Result<Option<Step>> {
        match self.step {
            Step::Fill if moved == 0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended {} bytes before the range", self.unread),
            )),
            Step::Fill => {
                self.offset += moved;
                self.unread -= moved;
                self.in_pipe = moved;
                Ok(Some(Step::AwaitWritable))
            }
            Step::AwaitWritable => Ok(Some(Step::Drain)),
            Step::Drain if moved == 0 => Err(io::ErrorKind::WriteZero.into()),
            Step::Drain => {
                self.in_pipe -= moved;
                self.sent += moved;
                if self.in_pipe > 0 {
                    Ok(Some(Step::AwaitWritable))
                } else if self.unread > 0 {
                    Ok(Some(Step::Fill))
                } else {
                    Ok(None)
                }
            }
            Step::Empty => Ok(None),
        }
    }
}
