//! Writing everything, in order, on one connection: a queue of owned
//! buffers with one send in flight that re-submits what a partial send
//! left.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use crate::buffers::{Buf, IntoBuf};
use crate::completion::Completion;
use crate::fd::{OpFd, RingFd};
use crate::op::{Offset, Outcome};
use crate::ring::Ctx;
use crate::ring::Ring;

/// Writes every buffer pushed to it to one fd, whole and in order.
///
/// One send (or write) is in flight at a time; a partial one is re-submitted
/// with the rest of its buffer, and the next buffer goes out when it is all
/// written. [`queued`](WriteQueue::queued) is the backpressure signal: the
/// bytes pushed and not yet written (stop producing while it is high).
///
/// Every completion of the queue's tasks (they carry the queue's `ctx`)
/// goes back to [`on_sent`](WriteQueue::on_sent). The first error is
/// reported once, by `on_sent`; the queue then drops what it still held
/// (nothing is left waiting) and refuses further pushes with
/// `BrokenPipe`.
///
/// Buffers are any owned bytes ([`IntoBuf`]: `Vec<u8>`, `Rc<[u8]>`,
/// `bytes::Bytes`, a [`Buf`] from a receive, ...) and move into the queue:
/// nothing is copied, and once the queue's `VecDeque` has grown to its peak
/// nothing is allocated per write. A written buffer comes back in
/// [`WriteProgress::finished`] to be reused.
///
/// ```
/// use ouro::{Completion, Ctx, Ring, RunMode, WriteQueue};
/// use std::io::Read;
/// use std::os::unix::net::UnixStream;
/// use std::rc::Rc;
///
/// type Writer = Option<WriteQueue<Out, Rc<UnixStream>>>;
/// struct Out(Writer);
///
/// fn sent(out: &mut Out, ring: &mut Ring<Out>, c: Completion) -> std::io::Result<()> {
///     let queue = out.0.as_mut().expect("the queue");
///     let progress = queue.on_sent(ring, c)?;
///     if progress.queued == 0 {
///         out.0 = None; // all written: drop the queue and its fd
///     }
///     Ok(())
/// }
///
/// let mut ring: Ring<Out> = Ring::new(8)?;
/// let (ours, mut theirs) = UnixStream::pair()?;
/// let mut queue = WriteQueue::new(Rc::new(ours), Ctx::new(sent));
/// queue.push(&mut ring, &b"hello, "[..])?;
/// queue.push(&mut ring, b"world".to_vec())?;
/// assert_eq!(queue.queued(), 12);
/// let mut out = Out(Some(queue));
/// ring.run(&mut out, RunMode::UntilDone)?;
/// let mut got = String::new();
/// theirs.read_to_string(&mut got)?;
/// assert_eq!(got, "hello, world");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct WriteQueue<S, F = RingFd> {
    fd: F,
    ctx: Ctx<S>,
    /// Buffers not yet handed to an operation, in order.
    waiting: VecDeque<Buf>,
    /// Bytes pushed and not yet written, including the one in flight.
    queued: usize,
    in_flight: bool,
    failed: bool,
    via_write: bool,
    stall_timeout: Option<Duration>,
}

/// What one completion of a [`WriteQueue`] did.
#[derive(Debug)]
pub struct WriteProgress {
    /// Bytes this completion wrote.
    pub written: usize,
    /// Bytes still queued (0: everything pushed so far is written).
    pub queued: usize,
    /// The buffer that is now written in full, to reuse.
    pub finished: Option<Buf>,
}

impl<S, F: OpFd + Clone> WriteQueue<S, F> {
    /// A queue sending to the socket `fd` (with `MSG_NOSIGNAL`, as
    /// [`Ring::send`] does); its tasks carry `ctx`.
    pub fn new(fd: F, ctx: Ctx<S>) -> WriteQueue<S, F> {
        WriteQueue {
            fd,
            ctx,
            waiting: VecDeque::new(),
            queued: 0,
            in_flight: false,
            failed: false,
            via_write: false,
            stall_timeout: None,
        }
    }

    /// The same queue writing with [`Ring::write`] instead of sending: for
    /// pipes, terminals and files (at the file's current offset).
    pub fn using_write(mut self) -> WriteQueue<S, F> {
        self.via_write = true;
        self
    }

    /// The same queue giving each write it starts a deadline `after` from
    /// then: a write that moves nothing for that long (a peer that stopped
    /// reading, its socket buffer full) fails with `ETIME`
    /// ([`is_deadline`](crate::is_deadline)), reported by
    /// [`on_sent`](WriteQueue::on_sent) as any failure, so such a peer
    /// cannot hold the queue's buffers, and the connection, for ever. Each
    /// write has a deadline of its own, partial ones too: the bound is on a
    /// stall, not on the whole transfer.
    pub fn stall_timeout(mut self, after: Duration) -> WriteQueue<S, F> {
        self.stall_timeout = Some(after);
        self
    }

    /// Queues `buf` to be written after everything pushed before it, and
    /// starts writing if nothing is in flight. Returns the bytes now
    /// queued. An empty buffer is ignored.
    ///
    /// Fails with `BrokenPipe` once a write has failed (the failure itself
    /// was reported by [`on_sent`](WriteQueue::on_sent)); `buf` is dropped.
    pub fn push(&mut self, ring: &mut Ring<S>, buf: impl IntoBuf) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write on this queue failed",
            ));
        }
        let buf = buf.into_buf();
        if buf.is_empty() {
            return Ok(self.queued);
        }
        self.queued += buf.len();
        if self.in_flight {
            self.waiting.push_back(buf);
        } else {
            self.submit(ring, buf)?;
        }
        Ok(self.queued)
    }

    /// Takes a completion of the queue's task: re-submits the rest of a
    /// partial write, or starts the next buffer.
    ///
    /// On a failed write (the peer reset, say) returns its error, once, and
    /// drops every buffer still queued. A completion that is not a send or
    /// write is an `InvalidInput` error and changes nothing.
    pub fn on_sent(&mut self, ring: &mut Ring<S>, c: Completion) -> io::Result<WriteProgress> {
        let (result, mut buf) = match c.outcome {
            Outcome::Send(result, buf) | Outcome::Write(result, buf) => (result, buf),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a completion of a write queue: {other:?}"),
                ))
            }
        };
        self.in_flight = false;
        let written = match result {
            Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WriteZero.into()),
            other => other,
        };
        let written = match written {
            Ok(n) => n,
            Err(err) => {
                self.fail();
                return Err(err);
            }
        };
        self.queued -= written.min(self.queued);
        buf.consume(written);
        if !buf.is_empty() {
            self.submit(ring, buf)?;
            return Ok(self.progress(written, None));
        }
        if let Some(next) = self.waiting.pop_front() {
            self.submit(ring, next)?;
        }
        Ok(self.progress(written, Some(buf)))
    }

    /// Bytes pushed and not yet written: the backpressure signal.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Whether everything pushed has been written (or dropped after a
    /// failure) and no operation is in flight.
    pub fn is_idle(&self) -> bool {
        !self.in_flight && self.waiting.is_empty()
    }

    /// Whether a write failed (the queue is empty and refuses pushes).
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// The fd the queue writes to.
    pub fn fd(&self) -> &F {
        &self.fd
    }

    fn submit(&mut self, ring: &mut Ring<S>, buf: Buf) -> io::Result<()> {
        self.in_flight = true;
        let fd = self.fd.clone();
        let task = if self.via_write {
            ring.write(fd, buf, Offset::Current, self.ctx)
        } else {
            ring.send(fd, buf, self.ctx)
        };
        match self.stall_timeout {
            Some(after) => ring.set_timeout(task, after),
            None => Ok(()),
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.queued = 0;
        self.waiting.clear();
    }

    fn progress(&self, written: usize, finished: Option<Buf>) -> WriteProgress {
        WriteProgress {
            written,
            queued: self.queued,
            finished,
        }
    }
}
