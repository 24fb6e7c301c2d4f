//! In the child (see `child.rs`), pointing fd 1 where the parent asked,
//! once libtest has written its own lines there: a closed stdout or a full
//! one cannot be given to the child from outside, as libtest's first line
//! would fail. (ouro-net's tests include this file too.)

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::child::Stdout;

/// Makes fd 1 `stdout`.
pub fn redirect(stdout: Stdout) {
    std::io::stdout().flush().unwrap();
    match stdout {
        Stdout::Piped => {}
        Stdout::Closed => onto_stdout(&pipe_without_reader()),
        Stdout::Full => onto_stdout(&File::options().write(true).open("/dev/full").unwrap()),
    }
}

/// The writing end of a pipe whose reading end is closed.
fn pipe_without_reader() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe made both fds, and nothing else owns them.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    writer
}

fn onto_stdout(fd: &impl AsRawFd) {
    // SAFETY: dup2 makes fd 1 a copy of an fd that stays open for the call.
    assert_eq!(unsafe { libc::dup2(fd.as_raw_fd(), 1) }, 1);
}
