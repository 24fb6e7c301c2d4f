//! The macro that turns the table of operations (`table.rs`) into the
//! types and functions every operation needs: [`OpKind`](super::OpKind),
//! its name and kernel; the `Op` each task owns, the fds and paths it
//! names; the [`Outcome`](super::Outcome) and the conversion from a raw
//! result to it.
//!
//! A row of the table:
//!
//! ```text
//! /// docs of the OpKind variant
//! Kind "name" kernel "5.6"
//! /// docs of the Outcome variant
//! => OutcomeVariant(its types)
//! {
//!     /// docs of the Op variant
//!     OpVariant { field: Type, .. } fds(fd fields) paths(path fields) plain|owns
//!         => conversion from (res, flags, pools, files) and the fields;
//! }
//! ```
//!
//! `plain` marks an op whose fields are all `Copy`: its outcome is built
//! in place, without moving the op out of its slot (the completion fast
//! path); the compiler refuses a `plain` op with a field that is not
//! `Copy`. `owns` ops are moved out first, so the conversion can take
//! their buffers and give pooled memory back.

/// `Op::fds`' answer from the fields that name fds.
macro_rules! fd_pair {
    () => {
        [None, None]
    };
    ($a:ident) => {
        [Some($a), None]
    };
    ($a:ident, $b:ident) => {
        [Some($a), Some($b)]
    };
}

/// `Op::paths`' answer from the fields that hold paths (NUL-terminated).
macro_rules! path_pair {
    () => {
        [None, None]
    };
    ($a:ident) => {
        [Some(&$a[..]), None]
    };
    ($a:ident, $b:ident) => {
        [Some(&$a[..]), Some(&$b[..])]
    };
}

/// `take_outcome`'s match: an arm for each plain op, which converts it in
/// place, and one arm that moves every other op out to `into_outcome` (one
/// arm, not one per op: the fast path then stays as short as hand-written).
/// Munches the ops one at a time, keeping the plain ones' arms.
macro_rules! take_match {
    (($place:expr, $move_out:expr) [$($arms:tt)*]) => {
        match $place {
            $($arms)*
            _ => return $move_out,
        }
    };
    (($place:expr, $move_out:expr) [$($arms:tt)*]
        (plain $op:ident $({ $($fields:tt)* })?; $convert:expr) $($rest:tt)*) => {
        take_match!(($place, $move_out) [$($arms)* Op::$op $({ $($fields)* })? => $convert,] $($rest)*)
    };
    (($place:expr, $move_out:expr) [$($arms:tt)*]
        (owns $op:ident $({ $($fields:tt)* })?; $convert:expr) $($rest:tt)*) => {
        take_match!(($place, $move_out) [$($arms)*] $($rest)*)
    };
}

macro_rules! define_ops {
    (
        |$res:ident, $flags:ident, $pools:ident, $files:ident|
        $(
            $(#[$kind_doc:meta])*
            $kind:ident $name:literal kernel $kernel:literal
            $(#[$outcome_doc:meta])*
            => $outcome:ident ( $($outcome_ty:ty),+ )
            {
                $(
                    $(#[$op_doc:meta])*
                    $op:ident $({ $( $(#[$field_meta:meta])* $field:ident : $field_ty:ty ),* $(,)? })?
                    fds($($fd:ident),*) paths($($path:ident),*) $mode:ident
                    => $convert:expr;
                )*
            }
        )*
    ) => {
        /// Which operation a task performs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum OpKind {
            $(
                $(#[$kind_doc])*
                #[doc = concat!("\n\nOn io_uring: ", $kernel, ".")]
                $kind,
            )*
        }

        impl OpKind {
            /// The operation's name, as its `Ring` method is called.
            pub const fn name(self) -> &'static str {
                match self {
                    $(OpKind::$kind => $name,)*
                }
            }

            /// The Linux release whose io_uring has the operation (or how
            /// it is done without one).
            pub const fn io_uring_kernel(self) -> &'static str {
                match self {
                    $(OpKind::$kind => $kernel,)*
                }
            }
        }

        /// The typed result of a finished task, with everything the
        /// operation owned.
        ///
        /// Errors are [`io::Error`]s carrying the OS error. Two codes are
        /// ouro's own: a task cancelled through
        /// [`Ring::cancel`](crate::Ring::cancel) fails with `ECANCELED`
        /// ([`crate::is_canceled`]), one whose deadline passed with `ETIME`
        /// ([`crate::is_deadline`]).
        #[derive(Debug)]
        pub enum Outcome {
            $(
                $(#[$outcome_doc])*
                $outcome($($outcome_ty),+),
            )*
        }

        impl Outcome {
            /// Which operation it is the outcome of.
            pub(crate) fn kind(&self) -> OpKind {
                match self {
                    $(Outcome::$outcome(..) => OpKind::$kind,)*
                }
            }

            /// The operation's error, if it failed.
            pub(crate) fn error(&self) -> Option<&io::Error> {
                match self {
                    $(Outcome::$outcome(first, ..) => ErrorOf::error(first),)*
                }
            }
        }

        /// What an operation owns while in flight.
        pub(crate) enum Op {
            $($(
                $(#[$op_doc])*
                $op $({ $( $(#[$field_meta])* $field: $field_ty ),* })?,
            )*)*
        }

        impl Op {
            /// Which operation it is.
            pub(crate) fn kind(&self) -> OpKind {
                match self {
                    $($(Op::$op { .. } => OpKind::$kind,)*)*
                }
            }

            /// The fds the operation names (only a splice names two).
            #[inline]
            pub(crate) fn fds(&self) -> [Option<Fd>; 2] {
                match *self {
                    $($(Op::$op { $($fd,)* .. } => fd_pair!($($fd),*),)*)*
                }
            }

            /// The paths the operation names, NUL-terminated.
            pub(crate) fn paths(&self) -> [Option<&[u8]>; 2] {
                match self {
                    $($(Op::$op { $($path,)* .. } => path_pair!($($path),*),)*)*
                }
            }

            /// Builds the outcome of a finished task and leaves `Op::Noop`
            /// behind. Plain operations are answered in place; the others
            /// are moved out and taken apart by `into_outcome`. For a
            /// direct accept, the ring has made `res` a slot of `files`.
            #[inline(always)]
            #[allow(unused_variables)]
            pub(crate) fn take_outcome(
                &mut self,
                $res: io::Result<u32>,
                $flags: u32,
                $pools: &mut Pools,
                $files: &FdTable,
            ) -> Outcome {
                let outcome = take_match!(
                    (
                        *self,
                        std::mem::replace(self, Op::Noop).into_outcome($res, $flags, $pools, $files)
                    )
                    []
                    $($( ($mode $op $({ $($field),* })?; $convert) )*)*
                );
                // SAFETY: only plain variants get here, and those hold only
                // `Copy` data (their pattern binds every field by copy), so
                // overwriting one without dropping it loses nothing.
                unsafe { std::ptr::write(self, Op::Noop) };
                outcome
            }

            /// Builds the outcome from the backend's result (a count, fd or
            /// mask when `Ok`; a slot of `files` for a direct accept),
            /// giving pooled memory back to `pools`.
            #[allow(unused_variables, unused_mut)]
            pub(crate) fn into_outcome(
                self,
                $res: io::Result<u32>,
                $flags: u32,
                $pools: &mut Pools,
                $files: &FdTable,
            ) -> Outcome {
                match self {
                    $($(
                        Op::$op $({ $(mut $field),* })? => $convert,
                    )*)*
                }
            }
        }
    };
}

/// The error in an outcome's first field: an `io::Result`, or a payload
/// (a message, which cannot fail).
pub(crate) trait ErrorOf {
    fn error(&self) -> Option<&std::io::Error>;
}

impl<T> ErrorOf for std::io::Result<T> {
    fn error(&self) -> Option<&std::io::Error> {
        self.as_ref().err()
    }
}

impl ErrorOf for crate::mailbox::Payload {
    fn error(&self) -> Option<&std::io::Error> {
        None
    }
}
