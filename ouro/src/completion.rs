//! What a callback receives when its task finishes, and the error codes that
//! are ouro's own.

use std::io;

use crate::buffers::Buf;
use crate::error::copy_error;
use crate::op::{OpKind, Outcome};
use crate::task::Task;

/// A finished task: its message and key, its typed [`Outcome`], and any
/// buffer or fd the operation owned.
#[derive(Debug)]
pub struct Completion {
    pub(crate) task: Task,
    pub(crate) msg: u16,
    pub(crate) key: u64,
    pub(crate) more: bool,
    /// The typed result, holding back what the operation owned.
    pub outcome: Outcome,
}

impl Completion {
    /// The task's handle (now stale, unless more completions follow). A
    /// message from another ring names no task of this ring: its handle is
    /// always stale.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The message the task was scheduled with.
    pub fn msg(&self) -> u16 {
        self.msg
    }

    /// The message as the caller's enum; an `InvalidData` error for a value
    /// that is not one of its variants.
    pub fn message<M: TryFrom<u16>>(&self) -> io::Result<M> {
        M::try_from(self.msg).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown message {}", self.msg),
            )
        })
    }

    /// Takes the completion apart into its message (as the caller's enum,
    /// or `u16`), key and outcome, so that the outcome's buffers and fds can
    /// be moved out while the message and key stay at hand. Read
    /// [`task`](Completion::task) and [`is_final`](Completion::is_final)
    /// first if you need them.
    ///
    /// A message that is not one of `M`'s variants is the `InvalidData`
    /// error of [`message`](Completion::message); the outcome is dropped
    /// then (its buffers freed, its fds closed).
    ///
    /// ```
    /// use ouro::{Completion, Outcome};
    /// use std::io;
    ///
    /// ouro::messages! { enum Msg { Request, Reply } }
    ///
    /// fn on_completion(c: Completion) -> io::Result<()> {
    ///     match c.into_parts()? {
    ///         (Msg::Request, key, Outcome::Recv(res, buf)) => println!("{key}: {} of {buf:?}", res?),
    ///         (Msg::Reply, key, Outcome::Send(res, _buf)) => println!("{key}: sent {}", res?),
    ///         (msg, key, outcome) => println!("{key}: {msg:?} ended with {outcome:?}"),
    ///     }
    ///     Ok(())
    /// }
    /// ```
    ///
    /// It saves what moving the outcome out of the completion would cost:
    /// the completion can no longer be asked for its message afterwards.
    ///
    /// ```compile_fail,E0382
    /// # use ouro::{Completion, Outcome};
    /// # ouro::messages! { enum Msg { Request } }
    /// fn on_completion(c: Completion) {
    ///     let outcome = c.outcome;
    ///     let msg = c.message::<Msg>(); // E0382: borrow of partially moved value
    ///     # drop((outcome, msg));
    /// }
    /// ```
    pub fn into_parts<M: TryFrom<u16>>(self) -> io::Result<(M, u64, Outcome)> {
        let msg = self.message::<M>()?;
        Ok((msg, self.key, self.outcome))
    }

    /// The key the task was scheduled with.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// Whether this is the task's last completion (multishot operations
    /// deliver several; every other operation exactly one).
    pub fn is_final(&self) -> bool {
        !self.more
    }

    /// Which operation finished.
    pub fn op(&self) -> OpKind {
        match &self.outcome {
            Outcome::Noop(_) => OpKind::Noop,
            Outcome::Timer(_) => OpKind::Timer,
            Outcome::Cancel(_) => OpKind::Cancel,
            Outcome::CancelAll(_) => OpKind::CancelAll,
            Outcome::Accept(_) => OpKind::Accept,
            Outcome::Connect(_) => OpKind::Connect,
            Outcome::Bind(_) => OpKind::Bind,
            Outcome::Listen(_) => OpKind::Listen,
            Outcome::Socket(_) => OpKind::Socket,
            Outcome::Send(..) => OpKind::Send,
            Outcome::Recv(..) => OpKind::Recv,
            Outcome::Read(..) => OpKind::Read,
            Outcome::Write(..) => OpKind::Write,
            Outcome::Readv(..) => OpKind::Readv,
            Outcome::Writev(..) => OpKind::Writev,
            Outcome::Close(_) => OpKind::Close,
            Outcome::Poll(_) => OpKind::Poll,
            Outcome::Open(_) => OpKind::Open,
            Outcome::Stat(_) => OpKind::Stat,
            Outcome::Fsync(_) => OpKind::Fsync,
            Outcome::Splice(_) => OpKind::Splice,
            Outcome::Shutdown(_) => OpKind::Shutdown,
            Outcome::SendMsg(..) => OpKind::SendMsg,
            Outcome::RecvMsg(..) => OpKind::RecvMsg,
            Outcome::AcceptMulti(_) => OpKind::AcceptMulti,
            Outcome::AcceptDirect(_) => OpKind::AcceptDirect,
            Outcome::SocketDirect(_) => OpKind::SocketDirect,
            Outcome::OpenDirect(_) => OpKind::OpenDirect,
            Outcome::RecvMulti(_) => OpKind::RecvMulti,
            Outcome::MsgRing(..) => OpKind::MsgRing,
            Outcome::Message(_) => OpKind::Message,
            Outcome::ThreadStopped(_) => OpKind::StopThread,
        }
    }

    /// The byte count of a read, write, send, recv (vectored, multishot or
    /// not), splice, sendmsg or recvmsg, or its error. For any other operation an
    /// `InvalidInput` error saying so.
    pub fn bytes(&self) -> io::Result<usize> {
        let res = match &self.outcome {
            Outcome::Send(res, _)
            | Outcome::Recv(res, _)
            | Outcome::Read(res, _)
            | Outcome::Write(res, _)
            | Outcome::Readv(res, _)
            | Outcome::Writev(res, _)
            | Outcome::SendMsg(res, _)
            | Outcome::Splice(res) => res,
            Outcome::RecvMsg(res, _) => {
                return res.as_ref().map(|meta| meta.len).map_err(copy_error)
            }
            Outcome::RecvMulti(res) => {
                return res.as_ref().map(|buf| buf.len()).map_err(copy_error)
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{:?} does not count bytes", kind_name(other)),
                ))
            }
        };
        res.as_ref().map(|&n| n).map_err(copy_error)
    }

    /// Whether the task succeeded, dropping what it produced; its error if
    /// not.
    pub fn result(&self) -> io::Result<()> {
        let err = match &self.outcome {
            Outcome::Noop(r)
            | Outcome::Timer(r)
            | Outcome::Cancel(r)
            | Outcome::Connect(r)
            | Outcome::Bind(r)
            | Outcome::Listen(r)
            | Outcome::Close(r)
            | Outcome::Fsync(r)
            | Outcome::Shutdown(r)
            | Outcome::MsgRing(r, _)
            | Outcome::ThreadStopped(r) => r.as_ref().err(),
            Outcome::Message(_) => None,
            Outcome::CancelAll(r) => r.as_ref().err(),
            Outcome::Accept(r) => r.as_ref().err(),
            Outcome::Socket(r) | Outcome::Open(r) | Outcome::AcceptMulti(r) => r.as_ref().err(),
            Outcome::RecvMulti(r) => r.as_ref().err(),
            Outcome::AcceptDirect(r) | Outcome::SocketDirect(r) | Outcome::OpenDirect(r) => {
                r.as_ref().err()
            }
            Outcome::Send(r, _)
            | Outcome::Recv(r, _)
            | Outcome::Read(r, _)
            | Outcome::Write(r, _)
            | Outcome::Readv(r, _)
            | Outcome::Writev(r, _)
            | Outcome::SendMsg(r, _)
            | Outcome::Splice(r) => r.as_ref().err(),
            Outcome::Poll(r) => r.as_ref().err(),
            Outcome::Stat(r) => r.as_ref().err(),
            Outcome::RecvMsg(r, _) => r.as_ref().err(),
        };
        match err {
            Some(e) => Err(copy_error(e)),
            None => Ok(()),
        }
    }

    /// The single buffer the operation owned or filled (read, write, send,
    /// recv, a multishot receive that succeeded).
    pub fn into_buf(self) -> Option<Buf> {
        match self.outcome {
            Outcome::Send(_, buf)
            | Outcome::Recv(_, buf)
            | Outcome::Read(_, buf)
            | Outcome::Write(_, buf)
            | Outcome::RecvMulti(Ok(buf)) => Some(buf),
            _ => None,
        }
    }
}

fn kind_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Noop(_) => "noop",
        Outcome::Timer(_) => "timer",
        Outcome::Cancel(_) => "cancel",
        Outcome::CancelAll(_) => "cancel_all",
        Outcome::Accept(_) => "accept",
        Outcome::Connect(_) => "connect",
        Outcome::Bind(_) => "bind",
        Outcome::Listen(_) => "listen",
        Outcome::Socket(_) => "socket",
        Outcome::Close(_) => "close",
        Outcome::Poll(_) => "poll",
        Outcome::Open(_) => "open",
        Outcome::Stat(_) => "stat",
        Outcome::Fsync(_) => "fsync",
        Outcome::Shutdown(_) => "shutdown",
        Outcome::MsgRing(..) => "msg_ring",
        Outcome::Message(_) => "message",
        Outcome::ThreadStopped(_) => "thread stop",
        _ => "operation",
    }
}

/// Declares a `#[repr(u16)]` message enum with the conversions a [`Ctx`]
/// and [`Completion::message`] use.
///
/// ```
/// ouro::messages! {
///     /// What a writer's tasks are for.
///     pub enum Msg { Fd1, Fd2 }
/// }
/// assert_eq!(u16::from(Msg::Fd2), 1);
/// assert_eq!(Msg::try_from(0u16), Ok(Msg::Fd1));
/// assert!(Msg::try_from(7u16).is_err());
/// ```
///
/// [`Ctx`]: crate::Ctx
#[macro_export]
macro_rules! messages {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl ::core::convert::From<$name> for u16 {
            fn from(msg: $name) -> u16 {
                msg as u16
            }
        }

        impl ::core::convert::TryFrom<u16> for $name {
            type Error = u16;
            fn try_from(value: u16) -> ::core::result::Result<$name, u16> {
                $(if value == $name::$variant as u16 {
                    return ::core::result::Result::Ok($name::$variant);
                })+
                ::core::result::Result::Err(value)
            }
        }
    };
}
