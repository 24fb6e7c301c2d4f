//! Naming a full fixed file table. io_uring reports a direct accept,
//! socket or open that found no free slot in the ring's table as `ENFILE`,
//! whose text ("Too many open files in system") sends the reader to the
//! system's file limit; the ring, which knows the table, says which it is.

use std::fmt;
use std::io;

/// The error of a direct accept, socket or open (one whose file goes
/// straight into the ring's io_uring fixed file table) that found every
/// slot of the table taken. The kernel's code for it is `ENFILE`, which
/// also means that the whole system is out of files; this error tells the
/// two apart and says how to make the table larger.
///
/// It reaches the caller inside an [`io::Error`] (test for it with
/// [`is_fd_table_full`]) of the same [`kind`](io::Error::kind) as `ENFILE`;
/// the `ENFILE` itself is its [`source`](std::error::Error::source) and
/// [`os_error`](FdTableFull::os_error).
#[derive(Debug)]
pub struct FdTableFull {
    used: u32,
    size: u32,
    source: io::Error,
}

impl FdTableFull {
    /// The OS error the kernel returned (`ENFILE`).
    pub fn os_error(&self) -> i32 {
        libc::ENFILE
    }

    /// Slots in use when the error was seen.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// The table's size ([`RingBuilder::fixed_files`](crate::RingBuilder::fixed_files)).
    pub fn size(&self) -> u32 {
        self.size
    }
}

impl fmt::Display for FdTableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the ring's fixed file table is full ({} of {} slots in use; \
             RingBuilder::fixed_files raises it) (os error {})",
            self.used,
            self.size,
            self.os_error()
        )
    }
}

impl std::error::Error for FdTableFull {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether `err` says that a direct accept, socket or open found the ring's
/// fixed file table full ([`FdTableFull`]), rather than the process or the
/// system out of files (`EMFILE`, `ENFILE`).
pub fn is_fd_table_full(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<FdTableFull>())
}

/// The error a direct operation (`into_table`: it asked the kernel for a
/// slot) ends with: its `ENFILE` becomes [`FdTableFull`] when the slots
/// the kernel picks from are all taken (`full`: the table's used slots and
/// size); any other error, or an `ENFILE` with slots free (the system's
/// limit), is left as the kernel gave it.
pub(crate) fn name_full_table(
    err: io::Error,
    into_table: bool,
    full: impl FnOnce() -> Option<(u32, u32)>,
) -> io::Error {
    if !into_table || err.raw_os_error() != Some(libc::ENFILE) {
        return err;
    }
    match full() {
        Some((used, size)) => io::Error::new(
            err.kind(),
            FdTableFull {
                used,
                size,
                source: err,
            },
        ),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enfile_from_a_full_table_names_the_table_and_keeps_its_code() {
        let err = name_full_table(io::Error::from_raw_os_error(libc::ENFILE), true, || {
            Some((4, 4))
        });
        assert!(is_fd_table_full(&err));
        let text = err.to_string();
        assert!(
            text.contains("fixed file table is full (4 of 4 slots"),
            "{text}"
        );
        assert!(text.contains("RingBuilder::fixed_files"), "{text}");
        let inner = err.get_ref().unwrap().downcast_ref::<FdTableFull>();
        assert_eq!(inner.map(FdTableFull::os_error), Some(libc::ENFILE));
        assert_eq!(
            err.kind(),
            io::Error::from_raw_os_error(libc::ENFILE).kind()
        );
    }

    #[test]
    fn enfile_with_slots_free_or_outside_the_table_stays_the_systems() {
        let system = || io::Error::from_raw_os_error(libc::ENFILE);
        for err in [
            name_full_table(system(), true, || None),
            name_full_table(system(), false, || Some((4, 4))),
        ] {
            assert!(!is_fd_table_full(&err));
            assert_eq!(err.raw_os_error(), Some(libc::ENFILE));
        }
        let other = name_full_table(io::Error::from_raw_os_error(libc::EMFILE), true, || {
            Some((4, 4))
        });
        assert_eq!(other.raw_os_error(), Some(libc::EMFILE));
    }
}
