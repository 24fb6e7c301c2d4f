//! ouro: a completion-based, message-passing IO runtime built around
//! io_uring.
//!
//! A [`Ring`] per thread runs every IO operation as a *task*. Scheduling one
//! returns a [`Task`] handle that can [cancel](Ring::cancel) it or give it a
//! [deadline](Ring::set_deadline). When the task finishes, its callback gets
//! the state the ring runs with, the ring (to schedule more), and a
//! [`Completion`]: the `u16` message and key from the task's [`Ctx`], the
//! typed [`Outcome`], and back every buffer or fd the operation owned. One
//! callback per component serves all its operations by matching on the
//! message:
//!
//! ```no_run
//! use ouro::{Completion, Ctx, Offset, Ring, RunMode};
//! use std::io;
//!
//! ouro::messages! { enum Msg { Greeting, Farewell } }
//!
//! #[derive(Default)]
//! struct Greeter { written: usize }
//!
//! impl Greeter {
//!     fn on_completion(&mut self, ring: &mut Ring<Greeter>, c: Completion) -> io::Result<()> {
//!         self.written += c.bytes()?;
//!         if c.message::<Msg>()? == Msg::Greeting {
//!             let ctx = Ctx::new(Greeter::on_completion).msg(Msg::Farewell);
//!             ring.write(&io::stdout(), &b"bye\n"[..], Offset::Current, ctx);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut ring = Ring::new(16)?;
//! let ctx = Ctx::new(Greeter::on_completion).msg(Msg::Greeting);
//! ring.write(&io::stdout(), &b"hello\n"[..], Offset::Current, ctx);
//! let mut greeter = Greeter::default();
//! ring.run(&mut greeter, RunMode::UntilDone)?;
//! assert_eq!(greeter.written, 10);
//! # Ok::<(), io::Error>(())
//! ```
//!
//! Rings on different threads hand each other work as messages: a message
//! is a task whose callback the target ring runs, with a [`Payload`] (a
//! number, an fd, any owned `Send` value); [`Ring::spawn_thread`] starts a
//! thread with its own ring (see the [`message`] module for the design and
//! the guarantees):
//!
//! ```
//! use ouro::{Completion, Ctx, Outcome, Payload, Ring, RunMode};
//! use std::os::unix::net::UnixStream;
//! use std::rc::Rc;
//! use std::time::{Duration, Instant};
//!
//! struct Worker;
//!
//! fn on_connection(_: &mut Worker, ring: &mut Ring<Worker>, c: Completion) -> std::io::Result<()> {
//!     if let Outcome::Message(Payload::Fd(fd)) = c.outcome {
//!         // The send holds the only owner: the fd closes once it is done.
//!         ring.send(Rc::new(fd), &b"hello\n"[..], Ctx::none());
//!     }
//!     Ok(())
//! }
//!
//! let mut ring: Ring<()> = Ring::new(64)?;
//! let worker = ring.spawn_thread(64, |_| Ok(Worker))?;
//! let (connection, mut peer) = UnixStream::pair()?;
//! let fd = Payload::Fd(connection.into());
//! ring.msg_ring(worker.handle(), Ctx::new(on_connection), fd, Ctx::none());
//! ring.run(&mut (), RunMode::UntilDone)?; // sends it
//! // Delivers what it accepted and waits for the work that started (the
//! // send); a plain `join` would cancel a send still in flight.
//! worker.handle().drain(Instant::now() + Duration::from_secs(10))?;
//! worker.join()?;
//! let mut greeting = String::new();
//! std::io::Read::read_to_string(&mut peer, &mut greeting)?; // closed: ends
//! assert_eq!(greeting, "hello\n");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Every way an operation names its fd keeps the file open until the
//! operation's final completion, so an operation never acts on another file
//! that reused the number (see [`OpFd`]): a [`RingFd`], a file handed to
//! the ring for good ([`Ring::register_fd`], or a connection from
//! [`Ring::accept_multishot_direct`]), which the ring keeps open while
//! tasks name it ([closing](Ring::close) it cancels them and closes the
//! file after the last one); a shared owner (`Rc<T>`/`Arc<T>` of any
//! `T: AsFd`), a clone of which the operation holds; or a standard stream.
//! On io_uring ring fds sit in the fixed file table (no fd lookup per
//! operation); on the readiness backend they stay registered.
//!
//! ```
//! use ouro::{Completion, Ctx, Ring, RingFd, RunMode};
//! use std::os::unix::net::UnixStream;
//!
//! fn sent(fd: &mut RingFd, ring: &mut Ring<RingFd>, c: Completion) -> std::io::Result<()> {
//!     assert_eq!(c.bytes()?, 5);
//!     ring.close(*fd, Ctx::none());
//!     Ok(())
//! }
//!
//! let mut ring: Ring<RingFd> = Ring::new(16)?;
//! let (ours, mut theirs) = UnixStream::pair()?;
//! let mut fd = ring.register_fd(ours.into()); // the ring's now
//! ring.send(fd, &b"hello"[..], Ctx::new(sent));
//! ring.run(&mut fd, RunMode::UntilDone)?;
//! let mut got = String::new();
//! std::io::Read::read_to_string(&mut theirs, &mut got)?; // closed: ends
//! assert_eq!(got, "hello");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Guarantees, on every backend: each task's callback runs exactly once
//! (also when the submission queue is full, the completion queue overflows,
//! the task is cancelled or its deadline passes, or another callback fails);
//! the memory an operation lends the kernel lives until its final
//! completion, also when the ring is dropped; fds the kernel creates arrive
//! as [`OwnedFd`](std::os::fd::OwnedFd); stale handles are harmless; steady
//! state does not allocate; errors are [`std::io::Error`]s with the OS code.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Time comes from the ring's clock and randomness from the simulated world's
// seeded streams, so a simulated run replays from its seed (clippy.toml).
#![cfg_attr(not(test), deny(clippy::disallowed_methods))]

mod backend;
mod buffers;
mod completion;
mod conns;
mod error;
mod fd;
mod fd_table;
pub mod fs;
mod mailbox;
pub mod message;
pub mod net;
mod op;
mod pipe;
mod ring;
#[cfg(target_os = "linux")]
mod send_file;
pub mod signal;
mod sync;
mod syscall;
mod task;
mod time;
mod write_queue;

pub use backend::mock;
#[cfg(target_os = "linux")]
pub use backend::sim;
#[cfg(target_os = "linux")]
pub use backend::uring::SetupError;
pub use backend::BackendKind;
pub use buffers::group::BufferGroup;
pub use buffers::{Buf, BufVec, IntoBuf, IntoBufMut, IoBuf, IoBufMut, Limit, SendBuf, Slice};
pub use completion::Completion;
pub use conns::ConnTable;
pub use error::{canceled_error, deadline_error, is_canceled, is_deadline};
pub use fd::{CloseFd, OpFd, RingFd, UncheckedFd};
pub use fd_table::{is_fd_table_full, FdTableFull};
pub use message::{Payload, RingHandle, SendAny, SendError, WrongValue};
pub use op::{Datagram, Offset, OpKind, Outcome, PollMask, RecvMeta};
pub use pipe::{pipe, Pipe, RingPipe};
pub use ring::{Callback, Ctx, Ring, RingBuilder, RingThread, RunMode};
#[cfg(target_os = "linux")]
pub use send_file::{SendFile, Sent};
pub use task::Task;
pub use write_queue::{WriteProgress, WriteQueue};

/// `docs/helpers.md`, whose examples the doc tests compile and run.
#[cfg(doctest)]
#[doc = include_str!("../../docs/helpers.md")]
pub struct HelpersGuide;

/// `docs/writing-a-server.md`, whose examples the doc tests compile (and
/// run, where they end by themselves).
#[cfg(doctest)]
#[doc = include_str!("../../docs/writing-a-server.md")]
pub struct WritingAServerGuide;

/// `docs/messages.md`, whose example the doc tests compile and run.
#[cfg(doctest)]
#[doc = include_str!("../../docs/messages.md")]
pub struct MessagesGuide;
