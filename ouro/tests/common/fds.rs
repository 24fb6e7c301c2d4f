//! Real fds for the tests, and counting them: pipes, socket pairs, loopback
//! TCP pairs, temporary files, the process's open fd count, and the lock
//! that keeps fd-counting tests apart from the others of their binary.

// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A pipe: (read end, write end), both blocking and close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    let res = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(res, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: pipe2 succeeded: both are new fds that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A [`pipe`] as files, to read and write with `std::io` (as
/// `std::io::pipe` makes it, which needs a newer Rust than ouro's minimum).
pub fn pipe_files() -> (File, File) {
    let (read, write) = pipe();
    (File::from(read), File::from(write))
}

/// A connected pair of Unix stream sockets.
pub fn socket_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::STREAM, None)
        .expect("socketpair");
    (a.into(), b.into())
}

/// A connected pair of loopback TCP sockets: (client, server side).
pub fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// An unnamed temporary file holding `bytes`, positioned at its start.
pub fn temp_file(bytes: &[u8]) -> File {
    let mut file = tempfile::tempfile().expect("temporary file");
    file.write_all(bytes).expect("writing the temporary file");
    file.rewind().unwrap();
    file
}

/// Whether `fd` is close-on-exec.
pub fn is_cloexec(fd: impl AsFd) -> bool {
    // SAFETY: F_GETFD on a valid fd only reads its flags.
    let flags = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & libc::FD_CLOEXEC != 0
}

/// The file behind an fd number, if it is open: (device, inode).
pub fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes into `st`; on a closed number it fails
    // with EBADF and touches nothing.
    let res = unsafe { libc::fstat(fd, &mut st) };
    #[allow(clippy::unnecessary_cast)] // dev_t and ino_t differ by platform
    (res == 0).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// How many fds the process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("listing /proc/self/fd")
        .count()
        // The listing itself holds one while it is read.
        - 1
}

/// Held shared by every test, exclusively by those that count open fds.
static FD_COUNTING: RwLock<()> = RwLock::new(());

/// Held while a test runs that may open fds alongside other tests.
pub fn beside_other_tests() -> RwLockReadGuard<'static, ()> {
    FD_COUNTING.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held while a test counts [`open_fds`]: no test holding
/// [`beside_other_tests`] runs meanwhile.
pub fn apart_from_other_tests() -> RwLockWriteGuard<'static, ()> {
    FD_COUNTING.write().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` with `RLIMIT_NOFILE` at 0, so that no new fd can be made (fds
/// already open stay usable), and restores the limit before returning
/// what `f` gave. Only for a test that runs apart from the others: the
/// limit is the whole process's while it is lowered.
pub fn with_no_new_fds<T>(f: impl FnOnce() -> T) -> T {
    with_fd_limit(0, f)
}

/// Runs `f` with `RLIMIT_NOFILE` at `max` (new fds only below it; fds
/// already open stay usable), as [`with_no_new_fds`] does at 0.
pub fn with_fd_limit<T>(max: libc::rlim_t, f: impl FnOnce() -> T) -> T {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let lowered = libc::rlimit {
        rlim_cur: max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    let result = f();
    // SAFETY: as above; restores the limit before anything can fail.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    result
}
