//! A process stopped and continued (job control, `SIGSTOP` then
//! `SIGCONT`) goes on as if nothing happened: a blocking call io_uring runs
//! on a worker thread is interrupted by the stop, and the ring starts it
//! again, as the kernel restarts a system call. The stop pauses every
//! thread of the process, so these tests have a binary of their own.

use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use ouro::{BackendKind, Completion, Ctx, Outcome, Ring, RunMode};

#[macro_use]
#[path = "common/backends.rs"]
mod backends;

macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::backends::unless_skipped, $name);)+
    };
}

backend_tests![
    a_splice_waiting_in_the_kernel_outlives_a_stop_and_continue,
    an_open_waiting_in_the_kernel_outlives_a_stop_and_continue,
];

/// How long the call waits in the kernel before the stop: long enough for
/// io_uring to hand it to a worker thread that blocks in it.
const BLOCKED: Duration = Duration::from_millis(50);

type Got = Vec<Completion>;

fn keep(got: &mut Got, _: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    got.push(c);
    Ok(())
}

fn ring(kind: BackendKind) -> Ring<Got> {
    Ring::builder().backend(kind).entries(8).build().unwrap()
}

/// Runs `ring` for `BLOCKED`: its call must still wait.
fn let_it_block(ring: &mut Ring<Got>) {
    let mut got = Vec::new();
    ring.timer(BLOCKED, Ctx::new(keep));
    ring.run(&mut got, RunMode::Once).unwrap();
    while got.is_empty() {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    assert!(
        matches!(
            got[..],
            [Completion {
                outcome: Outcome::Timer(Ok(())),
                ..
            }]
        ),
        "only the timer ends: {got:?}"
    );
}

/// Stops this process and continues it, from a shell (a thread of ours
/// would be stopped too).
fn stop_and_continue() {
    let pid = std::process::id();
    let script = format!("kill -STOP {pid}; sleep 0.1; kill -CONT {pid}");
    let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "{status}");
}

/// A pipe whose ends block (`ouro::pipe` makes them non-blocking).
fn blocking_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds `pipe2` writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: `pipe2` made both fds, which nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A splice from an empty pipe, which io_uring runs on a worker thread,
/// moves what is written after the stop.
fn a_splice_waiting_in_the_kernel_outlives_a_stop_and_continue(kind: BackendKind) {
    let mut ring = ring(kind);
    let (from, mut to_from) = {
        let (reader, writer) = blocking_pipe();
        (reader, std::fs::File::from(writer))
    };
    let (mut out, into) = {
        let (reader, writer) = blocking_pipe();
        (std::fs::File::from(reader), writer)
    };
    let (from, into) = (Rc::new(from), Rc::new(into));
    ring.splice(&from, None, &into, None, 64, Ctx::new(keep));
    let_it_block(&mut ring);
    stop_and_continue();
    to_from.write_all(b"hello").unwrap();
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert!(
        matches!(
            got[..],
            [Completion {
                outcome: Outcome::Splice(Ok(5)),
                ..
            }]
        ),
        "{got:?}"
    );
    let mut moved = [0; 5];
    io::Read::read_exact(&mut out, &mut moved).unwrap();
    assert_eq!(&moved, b"hello");
}

/// An open of a FIFO that may create it waits for a reader (on a worker
/// thread of io_uring's, or of the readiness backend's pool), and opens
/// once one comes after the stop.
fn an_open_waiting_in_the_kernel_outlives_a_stop_and_continue(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let mut ring = ring(kind);
    let options = ouro::fs::OpenOptions::new().write(true).create(true);
    ring.open(&path, &options, Ctx::new(keep));
    let_it_block(&mut ring);
    stop_and_continue();
    // Without waiting for a writer: the ring's open, started again, is
    // that writer.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .unwrap();
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let Some(Completion {
        outcome: Outcome::Open(opened),
        ..
    }) = got.pop()
    else {
        panic!("an open's outcome");
    };
    let mut writer = std::fs::File::from(opened.unwrap());
    writer.write_all(b"x").unwrap();
    drop(reader);
}
