//! Setting up the ring: the best flags the kernel accepts, the doorbell
//! probe, and what a failed setup says.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, types, IoUring};

use super::{Options, DOORBELLS, PROBE};

/// Whether MSG_RING takes flags (6.3): one self-addressed message, once per
/// process. Its completions carry `PROBE` and are consumed here.
pub(super) fn probe_doorbells(ring: &mut IoUring) -> bool {
    if let Some(&known) = DOORBELLS.get() {
        return known;
    }
    let entry = opcode::MsgRingData::new(types::Fd(ring.as_raw_fd()), 0, PROBE, Some(0))
        .build()
        .user_data(PROBE);
    // SAFETY: a MSG_RING data request points to no memory.
    if unsafe { ring.submission().push(&entry) }.is_err() {
        return false;
    }
    let supported = match ring.submit_and_wait(1) {
        Ok(_) => {
            let results: Vec<i32> = ring.completion().map(|cqe| cqe.result()).collect();
            !results.is_empty() && results.iter().all(|&res| res >= 0)
        }
        Err(_) => false,
    };
    *DOORBELLS.get_or_init(|| supported)
}

/// A ring built, the setup flags the kernel took, and whether it shares
/// another ring's work queue.
pub(super) struct Built {
    pub(super) ring: IoUring,
    pub(super) setup: &'static str,
    pub(super) attached: bool,
}

/// Builds a ring with the best setup the kernel accepts; one that must
/// share a work queue and cannot is built without.
pub(super) fn build(entries: u32, options: Options) -> io::Result<Built> {
    let attached = options.attach_wq.is_some();
    let first = build_with(entries, options);
    let (ring, setup, attached) = match first {
        Ok((ring, setup)) => (ring, setup, attached),
        Err(err) if attached => {
            tracing::debug!(error = %err, "IORING_SETUP_ATTACH_WQ refused; setting up a ring of its own");
            let alone = Options {
                attach_wq: None,
                ..options
            };
            let (ring, setup) = build_with(entries, alone)?;
            (ring, setup, false)
        }
        Err(err) => return Err(err),
    };
    Ok(Built {
        ring,
        setup,
        attached,
    })
}

fn build_with(entries: u32, options: Options) -> io::Result<(IoUring, &'static str)> {
    type Setup = (&'static str, fn(&mut io_uring::Builder));
    const SETUPS: [Setup; 5] = [
        ("single_issuer+defer_taskrun+taskrun_flag+submit_all", |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all();
        }),
        // For a pollable ring (see the module docs).
        ("single_issuer+coop_taskrun+taskrun_flag+submit_all", |b| {
            b.setup_single_issuer()
                .setup_coop_taskrun()
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
        if options.pollable && name.contains("defer_taskrun") {
            continue;
        }
        let mut builder = IoUring::builder();
        builder.setup_clamp();
        configure(&mut builder);
        if let Some(fd) = options.attach_wq {
            builder.setup_attach_wq(fd);
        }
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

/// Why setting up the ring failed, in words, keeping the OS error. The
/// error comes from `io_uring_setup` or from mapping the rings it made
/// (the `io-uring` crate does both), which cannot be told apart here.
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
            "not enough memory for the ring: kernels before 5.12 charge it to locked \
             memory (raise RLIMIT_MEMLOCK, ulimit -l); mapping it needs address space \
             (RLIMIT_AS, ulimit -v) and memory; or use fewer entries"
        }
        Some(libc::EINVAL) => "the kernel rejected every io_uring setup ouro tried",
        _ => "io_uring_setup failed",
    };
    io::Error::new(e.kind(), SetupError { why, source: e })
}

/// A failure to set up an io_uring ring (`io_uring_setup`, or mapping
/// its rings) with its likely cause.
#[derive(Debug)]
pub struct SetupError {
    why: &'static str,
    source: io::Error,
}

impl SetupError {
    /// The OS error setting up the ring returned (`io_uring_setup`'s, or
    /// the mapping's).
    pub fn os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The setup error inside `err`, when `err` is what building an
    /// io_uring ring returned because `io_uring_setup` failed (or a ring's
    /// [`fallback_reason`](crate::Ring::fallback_reason)). The `io::Error`
    /// keeps the OS error's kind, not its code, so this is how to get at it.
    pub fn find(err: &io::Error) -> Option<&SetupError> {
        err.get_ref()?.downcast_ref()
    }

    /// Whether io_uring cannot be used on this host at all: the kernel or a
    /// sandbox lacks it (`ENOSYS`), or a seccomp filter or sysctl forbids it
    /// (`EPERM`). Other failures (e.g. `ENOMEM` from a low `RLIMIT_MEMLOCK`
    /// or `RLIMIT_AS`) may go away with a smaller ring or a higher limit.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.os_error(), Some(libc::ENOSYS | libc::EPERM))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `ENOMEM` may come from `io_uring_setup` (locked memory, before 5.12)
    /// or from mapping the rings (address space): the words name both.
    #[test]
    fn enomem_names_locked_memory_and_address_space() {
        let err = explain_setup_error(io::Error::from_raw_os_error(libc::ENOMEM));
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        let setup = SetupError::find(&err).expect("a SetupError");
        assert_eq!(setup.os_error(), Some(libc::ENOMEM));
        assert!(!setup.is_unavailable());
        let text = err.to_string();
        assert!(text.contains("RLIMIT_MEMLOCK"), "{text}");
        assert!(text.contains("before 5.12"), "{text}");
        assert!(text.contains("RLIMIT_AS"), "{text}");
        assert!(text.contains("address space"), "{text}");
    }
}
