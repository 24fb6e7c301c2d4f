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
        self.outcome.kind()
    }

    /// The byte count of a read, write, send, recv (vectored, multishot or
    /// not), splice, sendmsg, recvmsg, send_to or recv_from, or its error. For any other operation an
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
            | Outcome::SendTo(res, _)
            | Outcome::Splice(res) => res,
            Outcome::RecvFrom(res, _) => {
                return res
                    .as_ref()
                    .map(|datagram| datagram.len)
                    .map_err(copy_error)
            }
            Outcome::RecvMsg(res, _) => {
                return res.as_ref().map(|meta| meta.len).map_err(copy_error)
            }
            Outcome::RecvMulti(res) => {
                return res.as_ref().map(|buf| buf.len()).map_err(copy_error)
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{:?} does not count bytes", other.kind().name()),
                ))
            }
        };
        res.as_ref().map(|&n| n).map_err(copy_error)
    }

    /// Whether the task succeeded, dropping what it produced; its error if
    /// not.
    pub fn result(&self) -> io::Result<()> {
        match self.outcome.error() {
            Some(e) => Err(copy_error(e)),
            None => Ok(()),
        }
    }

    /// The single buffer the operation owned or filled (read, write, send,
    /// recv, send_to, recv_from, madvise, a multishot receive that
    /// succeeded).
    pub fn into_buf(self) -> Option<Buf> {
        match self.outcome {
            Outcome::Send(_, buf)
            | Outcome::Recv(_, buf)
            | Outcome::Read(_, buf)
            | Outcome::Write(_, buf)
            | Outcome::SendTo(_, buf)
            | Outcome::RecvFrom(_, buf)
            | Outcome::Madvise(_, buf)
            | Outcome::RecvMulti(Ok(buf)) => Some(buf),
            _ => None,
        }
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
