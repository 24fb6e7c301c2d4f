//! File and pipe operations: read, write, readv, writev (at an offset and at
//! the current position), close, poll, open, stat, lstat, fsync, fdatasync,
//! splice — and their errors.

use std::ffi::OsStr;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;

use ouro::fs::OpenOptions;
use std::time::Duration;

use ouro::{BackendKind, Buf, Offset, Outcome, PollMask, RunMode};

use crate::harness::{
    bad_fd, complete, ctx, error_kind, is_cloexec, os_error, pipe, position, ring, run_all,
    temp_file,
};

backend_tests![
    read_file_at_offset,
    read_file_at_current_position,
    read_at_end_of_file_is_zero,
    a_read_of_a_partly_cached_file_is_whole,
    read_appends_to_what_the_vec_holds,
    read_write_pipe,
    write_file_at_offset,
    write_file_at_current_position,
    readv_file_at_offset_and_current_position,
    writev_file_at_offset_and_current_position,
    readv_writev_pipe,
    read_without_room_is_invalid_input,
    readv_without_room_is_invalid_input,
    file_ops_on_a_bad_fd_fail_with_ebadf,
    write_to_a_pipe_without_reader_is_epipe,
    close_closes,
    poll_reports_the_ready_bits,
    open_creates_and_opens,
    open_errors,
    open_options_agree_with_std_on_every_combination,
    stat_and_lstat,
    stat_errors,
    fsync_and_fdatasync,
    splice_file_to_pipe_and_back,
    splice_without_a_pipe_is_einval,
];

const DIGITS: &[u8] = b"0123456789";

fn read_file_at_offset(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(DIGITS));
    let outcome = complete(&mut ring, |r, c| {
        r.read(&file, Vec::with_capacity(4), Offset::At(3), c)
    });
    let (n, buf) = expect!(outcome, Outcome::Read(Ok(n), buf) => (n, buf));
    assert_eq!((n, &buf[..]), (4, &b"3456"[..]));
    assert_eq!(
        position(&file),
        0,
        "an explicit offset leaves the position alone"
    );
}

fn read_file_at_current_position(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(DIGITS));
    for expected in [&b"0123"[..], b"4567", b"89"] {
        let outcome = complete(&mut ring, |r, c| {
            r.read(&file, Vec::with_capacity(4), Offset::Current, c)
        });
        let buf = expect!(outcome, Outcome::Read(Ok(_), buf) => buf);
        assert_eq!(&buf[..], expected);
    }
    assert_eq!(position(&file), 10);
}

fn read_at_end_of_file_is_zero(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(DIGITS));
    let outcome = complete(&mut ring, |r, c| {
        r.read(&file, Vec::with_capacity(4), Offset::At(10), c)
    });
    let buf = expect!(outcome, Outcome::Read(Ok(0), buf) => buf);
    assert!(buf.is_empty());
}

/// A read of a file whose pages are not all cached: the readiness
/// backend's attempt that must not block stops at the first that is not,
/// and the rest is read on its pool (io_uring's worker does the same), at
/// an offset, at the current position and into several buffers. A file
/// of 8 KiB of data and then an allocated range ending within a page is
/// one (its last page is read only by a call that may block, on ext4), in
/// the target directory: on disk, not in memory.
fn a_read_of_a_partly_cached_file_is_whole(kind: BackendKind) {
    const DATA: usize = 8192;
    const SIZE: usize = DATA + 30_001;
    let mut ring = ring(kind, 8);
    let mut expected = vec![0u8; SIZE];
    expected[..DATA]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i % 251) as u8);
    let fresh_file = || {
        let mut file = tempfile::tempfile_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        file.write_all(&expected[..DATA]).unwrap();
        let (start, len) = (DATA as libc::off_t, (SIZE - DATA) as libc::off_t);
        // SAFETY: fallocate of an fd the test owns; no memory is involved.
        let res = unsafe { libc::fallocate(file.as_raw_fd(), 0, start, len) };
        assert_eq!(res, 0, "fallocate: {}", std::io::Error::last_os_error());
        file.rewind().unwrap();
        Rc::new(file)
    };
    for offset in [Offset::At(0), Offset::Current] {
        let file = fresh_file();
        let outcome = complete(&mut ring, |r, c| {
            r.read(&file, Vec::with_capacity(2 * SIZE), offset, c)
        });
        let buf = expect!(outcome, Outcome::Read(Ok(SIZE), buf) => buf);
        assert!(buf[..] == expected[..], "{offset:?}: the bytes differ");
        assert_eq!(
            position(&*file),
            if offset == Offset::Current {
                SIZE as u64
            } else {
                0
            }
        );
    }
    // The first buffer not cached whole, then one that ends where the
    // cached pages do.
    for sizes in [[4096, 30_000, 30_000], [20_000, 16_864, 30_000]] {
        let file = fresh_file();
        let bufs = Vec::from(sizes.map(Vec::<u8>::with_capacity));
        let outcome = complete(&mut ring, |r, c| r.readv(&file, bufs, Offset::At(0), c));
        let bufs = expect!(outcome, Outcome::Readv(Ok(SIZE), bufs) => bufs);
        let got = bufs.downcast::<Vec<u8>>().unwrap().concat();
        assert!(got == expected, "readv into {sizes:?}: the bytes differ");
    }
}

fn read_appends_to_what_the_vec_holds(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(DIGITS));
    let mut vec = Vec::with_capacity(6);
    vec.extend_from_slice(b"ab");
    let outcome = complete(&mut ring, |r, c| r.read(&file, vec, Offset::At(0), c));
    let buf = expect!(outcome, Outcome::Read(Ok(4), buf) => buf);
    assert_eq!(buf.downcast::<Vec<u8>>().unwrap(), b"ab0123");
}

fn read_write_pipe(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    let (reader, writer) = (Rc::new(reader), Rc::new(writer));
    let outcome = complete(&mut ring, |r, c| {
        r.write(&writer, &b"hello"[..], Offset::Current, c)
    });
    expect!(outcome, Outcome::Write(Ok(5), _) => ());
    let outcome = complete(&mut ring, |r, c| {
        r.read(&reader, Vec::with_capacity(16), Offset::Current, c)
    });
    let buf = expect!(outcome, Outcome::Read(Ok(5), buf) => buf);
    assert_eq!(&buf[..], b"hello");
}

fn write_file_at_offset(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(b"aaaaaaaaaa"));
    let outcome = complete(&mut ring, |r, c| {
        r.write(&file, &b"XY"[..], Offset::At(4), c)
    });
    let buf = expect!(outcome, Outcome::Write(Ok(2), buf) => buf);
    assert_eq!(&buf[..], b"XY", "the buffer comes back");
    assert_eq!(position(&file), 0);
    let mut contents = Vec::new();
    (&*file).read_to_end(&mut contents).unwrap();
    assert_eq!(contents, b"aaaaXYaaaa");
}

fn write_file_at_current_position(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(b""));
    for part in [&b"ab"[..], b"cde"] {
        let outcome = complete(&mut ring, |r, c| r.write(&file, part, Offset::Current, c));
        expect!(outcome, Outcome::Write(Ok(n), _) if n == part.len() => ());
    }
    assert_eq!(position(&file), 5);
    assert_eq!(
        std::fs::read(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap(),
        b"abcde"
    );
}

fn readv_file_at_offset_and_current_position(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(DIGITS));
    let bufs = vec![Vec::with_capacity(2), Vec::with_capacity(3)];
    let outcome = complete(&mut ring, |r, c| r.readv(&file, bufs, Offset::At(1), c));
    let bufs = expect!(outcome, Outcome::Readv(Ok(5), bufs) => bufs);
    assert_eq!(bufs.downcast::<Vec<u8>>().unwrap(), [&b"12"[..], b"345"]);
    assert_eq!(position(&file), 0);

    let bufs = vec![Vec::with_capacity(3), Vec::with_capacity(4)];
    let outcome = complete(&mut ring, |r, c| r.readv(&file, bufs, Offset::Current, c));
    let bufs = expect!(outcome, Outcome::Readv(Ok(7), bufs) => bufs);
    assert_eq!(bufs.downcast::<Vec<u8>>().unwrap(), [&b"012"[..], b"3456"]);
    assert_eq!(position(&file), 7);
}

fn writev_file_at_offset_and_current_position(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(b".........."));
    let outcome = complete(&mut ring, |r, c| {
        r.writev(&file, vec![&b"ab"[..], b"cde"], Offset::At(3), c)
    });
    let bufs = expect!(outcome, Outcome::Writev(Ok(5), bufs) => bufs);
    assert_eq!(bufs.total_len(), 5);
    assert_eq!(position(&file), 0);
    let outcome = complete(&mut ring, |r, c| {
        r.writev(&file, vec![&b"X"[..], b"YZ"], Offset::Current, c)
    });
    expect!(outcome, Outcome::Writev(Ok(3), _) => ());
    assert_eq!(position(&file), 3);
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    assert_eq!(std::fs::read(path).unwrap(), b"XYZabcde..");
}

fn readv_writev_pipe(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    let (reader, writer) = (Rc::new(reader), Rc::new(writer));
    let outcome = complete(&mut ring, |r, c| {
        r.writev(
            &writer,
            vec![&b"one "[..], b"two ", b"three"],
            Offset::Current,
            c,
        )
    });
    expect!(outcome, Outcome::Writev(Ok(13), _) => ());
    let bufs = vec![Vec::with_capacity(6), Vec::with_capacity(20)];
    let outcome = complete(&mut ring, |r, c| r.readv(&reader, bufs, Offset::Current, c));
    let bufs = expect!(outcome, Outcome::Readv(Ok(13), bufs) => bufs);
    assert_eq!(
        bufs.downcast::<Vec<u8>>().unwrap(),
        [&b"one tw"[..], b"o three"]
    );
}

/// A read that could only read 0 bytes would look like end of file.
fn read_without_room_is_invalid_input(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, _writer) = pipe();
    let reader = Rc::new(reader);
    let outcome = complete(&mut ring, |r, c| {
        r.read(&reader, Vec::new(), Offset::Current, c)
    });
    let (res, buf) = expect!(outcome, Outcome::Read(res, buf) => (res, buf));
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    assert!(buf.downcast::<Vec<u8>>().is_ok(), "the buffer comes back");

    let full = Vec::from(*b"full");
    let outcome = complete(&mut ring, |r, c| r.read(&reader, full, Offset::Current, c));
    let res = expect!(outcome, Outcome::Read(res, _) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);

    let read_only = Buf::new(&b"static"[..]);
    let outcome = complete(&mut ring, |r, c| {
        r.read(&reader, read_only, Offset::Current, c)
    });
    let res = expect!(outcome, Outcome::Read(res, _) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

/// As for `read`: buffers without room could only read 0 bytes, which
/// would look like end of file.
fn readv_without_room_is_invalid_input(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(DIGITS));
    let no_room = vec![Vec::new(), Vec::from(*b"full")];
    let outcome = complete(&mut ring, |r, c| r.readv(&file, no_room, Offset::At(0), c));
    let (res, bufs) = expect!(outcome, Outcome::Readv(res, bufs) => (res, bufs));
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    assert_eq!(
        bufs.downcast::<Vec<u8>>().unwrap(),
        [&b""[..], b"full"],
        "the buffers come back"
    );
    let outcome = complete(&mut ring, |r, c| {
        r.readv(&file, Vec::<Vec<u8>>::new(), Offset::At(0), c)
    });
    let res = expect!(outcome, Outcome::Readv(res, _) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

fn file_ops_on_a_bad_fd_fail_with_ebadf(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let bad = Rc::new(bad_fd());
    let (reader, writer) = pipe();
    let (reader, writer) = (Rc::new(reader), Rc::new(writer));
    let outcome = complete(&mut ring, |r, c| {
        r.read(&bad, Vec::with_capacity(4), Offset::Current, c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Read(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| {
        r.read(&bad, Vec::with_capacity(4), Offset::At(0), c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Read(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| {
        r.write(&bad, &b"x"[..], Offset::Current, c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Write(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| {
        r.readv(&bad, vec![Vec::with_capacity(4)], Offset::Current, c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Readv(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| {
        r.writev(&bad, vec![&b"x"[..]], Offset::At(0), c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Writev(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.fsync(&bad, c));
    assert_eq!(
        expect!(outcome, Outcome::Fsync(res) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.fdatasync(&bad, c));
    assert_eq!(
        expect!(outcome, Outcome::Fsync(res) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.splice(&bad, None, &writer, None, 4, c));
    assert_eq!(
        expect!(outcome, Outcome::Splice(res) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| r.poll(&bad, PollMask::READABLE, c));
    assert_eq!(
        expect!(outcome, Outcome::Poll(res) => os_error(res)),
        libc::EBADF
    );

    // Reading from a write end and writing to a read end: EBADF too.
    let outcome = complete(&mut ring, |r, c| {
        r.read(&writer, Vec::with_capacity(4), Offset::Current, c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Read(res, _) => os_error(res)),
        libc::EBADF
    );
    let outcome = complete(&mut ring, |r, c| {
        r.write(&reader, &b"x"[..], Offset::Current, c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Write(res, _) => os_error(res)),
        libc::EBADF
    );
}

/// A write to a pipe whose read end is closed fails with `EPIPE` (ouro's
/// tests run with `SIGPIPE` ignored, as Rust programs do).
fn write_to_a_pipe_without_reader_is_epipe(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    drop(reader);
    let writer = Rc::new(writer);
    let outcome = complete(&mut ring, |r, c| {
        r.write(&writer, &b"x"[..], Offset::Current, c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Write(res, _) => os_error(res)),
        libc::EPIPE
    );
}

fn close_closes(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    expect!(complete(&mut ring, |r, c| r.close(writer, c)), Outcome::Close(Ok(())) => ());
    // The only write end is closed: the reader sees end of file.
    let mut rest = Vec::new();
    let read = std::fs::File::from(reader).read_to_end(&mut rest).unwrap();
    assert_eq!(read, 0);
}

fn poll_reports_the_ready_bits(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    let (reader, writer) = (Rc::new(reader), Rc::new(writer));
    let outcome = complete(&mut ring, |r, c| r.poll(&writer, PollMask::WRITABLE, c));
    let mask = expect!(outcome, Outcome::Poll(Ok(mask)) => mask);
    assert!(mask.contains(PollMask::WRITABLE), "{mask:?}");
    assert!(!mask.contains(PollMask::READABLE), "{mask:?}");

    std::fs::File::from(writer.try_clone().unwrap())
        .write_all(b"x")
        .unwrap();
    let outcome = complete(&mut ring, |r, c| r.poll(&reader, PollMask::READABLE, c));
    let mask = expect!(outcome, Outcome::Poll(Ok(mask)) => mask);
    assert!(mask.contains(PollMask::READABLE), "{mask:?}");

    // A poll waits for readiness: here until the other end closes.
    let (reader, writer) = pipe();
    let reader = Rc::new(reader);
    ring.poll(&reader, PollMask::READABLE, ctx(0));
    ring.timer(Duration::from_millis(5), ctx(1));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::Once).unwrap();
    let keys: Vec<u64> = got.iter().map(|c| c.key()).collect();
    assert_eq!(keys, [1], "the poll is still waiting");
    drop(writer);
    let mut got = run_all(&mut ring);
    let mask = expect!(got.pop().map(|c| c.outcome), Some(Outcome::Poll(Ok(mask))) => mask);
    assert!(mask.contains(PollMask::HANGUP), "{mask:?}");
}

fn open_creates_and_opens(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.txt");
    let options = OpenOptions::new().write(true).create_new(true).mode(0o640);
    let outcome = complete(&mut ring, |r, c| r.open(&path, &options, c));
    let fd: OwnedFd = expect!(outcome, Outcome::Open(Ok(fd)) => fd);
    let fd = Rc::new(fd);
    assert!(is_cloexec(&fd), "opened close-on-exec");
    let outcome = complete(&mut ring, |r, c| {
        r.write(&fd, &b"written"[..], Offset::Current, c)
    });
    expect!(outcome, Outcome::Write(Ok(7), _) => ());
    assert_eq!(std::fs::read(&path).unwrap(), b"written");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777 & !0o022, 0o640 & !0o022, "mode {mode:o}");

    let options = OpenOptions::new().read(true);
    let outcome = complete(&mut ring, |r, c| r.open(&path, &options, c));
    let fd = expect!(outcome, Outcome::Open(Ok(fd)) => fd);
    let mut contents = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut contents)
        .unwrap();
    assert_eq!(contents, "written");
}

/// Every combination of the six switches, on a file that exists and on one
/// that does not: the ring's open succeeds or fails (with the same OS code,
/// or none and the same kind) exactly as `std::fs::OpenOptions` does,
/// with the same status flags on the fd (access mode, append, blocking),
/// and leaves the file as std leaves it (std refuses `read + truncate`,
/// for one, without truncating).
fn open_options_agree_with_std_on_every_combination(kind: BackendKind) {
    use std::os::fd::AsRawFd;
    let mut ring = ring(kind, 8);
    let code_and_kind = |e: std::io::Error| (e.raw_os_error(), e.kind());
    let status = |fd: &dyn AsRawFd| {
        // SAFETY: F_GETFL on an open fd reads its flags.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        flags & (libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK)
    };
    for bits in 0..64u32 {
        let on = |bit: u32| bits & (1 << bit) != 0;
        let ours = OpenOptions::new()
            .read(on(0))
            .write(on(1))
            .append(on(2))
            .truncate(on(3))
            .create(on(4))
            .create_new(on(5));
        let mut std_options = std::fs::OpenOptions::new();
        std_options
            .read(on(0))
            .write(on(1))
            .append(on(2))
            .truncate(on(3))
            .create(on(4))
            .create_new(on(5));
        for exists in [true, false] {
            let (std_dir, our_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let (std_path, our_path) = (std_dir.path().join("f"), our_dir.path().join("f"));
            if exists {
                std::fs::write(&std_path, b"data").unwrap();
                std::fs::write(&our_path, b"data").unwrap();
            }
            let expected = (std_options.open(&std_path))
                .map(|file| status(&file))
                .map_err(code_and_kind);
            let outcome = complete(&mut ring, |r, c| r.open(&our_path, &ours, c));
            let got = expect!(outcome, Outcome::Open(res) => res.map(|fd| status(&fd)).map_err(code_and_kind));
            let case = format!("{ours:?}, file exists: {exists}");
            assert_eq!(got, expected, "{case}");
            assert_eq!(
                std::fs::read(&our_path).ok(),
                std::fs::read(&std_path).ok(),
                "{case}"
            );
        }
    }
}

fn open_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let read = OpenOptions::new().read(true);
    let missing = dir.path().join("missing");
    let outcome = complete(&mut ring, |r, c| r.open(&missing, &read, c));
    assert_eq!(
        expect!(outcome, Outcome::Open(res) => os_error(res)),
        libc::ENOENT
    );

    let exists = dir.path().join("exists");
    std::fs::write(&exists, b"").unwrap();
    let create_new = OpenOptions::new().write(true).create_new(true);
    let outcome = complete(&mut ring, |r, c| r.open(&exists, &create_new, c));
    assert_eq!(
        expect!(outcome, Outcome::Open(res) => os_error(res)),
        libc::EEXIST
    );

    let nul = OsStr::from_bytes(b"bad\0name");
    let outcome = complete(&mut ring, |r, c| r.open(nul, &read, c));
    let res = expect!(outcome, Outcome::Open(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

fn stat_and_lstat(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, DIGITS).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let expected = std::fs::metadata(&file).unwrap();

    let outcome = complete(&mut ring, |r, c| r.stat(&file, c));
    let meta = expect!(outcome, Outcome::Stat(Ok(meta)) => meta);
    assert!(meta.is_file() && !meta.is_dir() && !meta.is_symlink());
    assert_eq!(meta.size, 10);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.ino, meta.nlink, meta.uid),
        (expected.ino(), 1, expected.uid())
    );
    assert_eq!(meta.permissions(), expected.mode() & 0o7777);
    assert_eq!(meta.modified(), expected.modified().unwrap());

    let outcome = complete(&mut ring, |r, c| r.stat(&link, c));
    let meta = expect!(outcome, Outcome::Stat(Ok(meta)) => meta);
    assert!(meta.is_file(), "stat follows the link");
    assert_eq!(meta.ino, expected.ino());

    let outcome = complete(&mut ring, |r, c| r.lstat(&link, c));
    let meta = expect!(outcome, Outcome::Stat(Ok(meta)) => meta);
    assert!(meta.is_symlink(), "lstat reports the link itself");
    assert_ne!(meta.ino, expected.ino());

    let outcome = complete(&mut ring, |r, c| r.stat(dir.path(), c));
    assert!(expect!(outcome, Outcome::Stat(Ok(meta)) => meta).is_dir());
}

fn stat_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let outcome = complete(&mut ring, |r, c| r.stat(&missing, c));
    assert_eq!(
        expect!(outcome, Outcome::Stat(res) => os_error(res)),
        libc::ENOENT
    );
    let outcome = complete(&mut ring, |r, c| r.lstat(&missing, c));
    assert_eq!(
        expect!(outcome, Outcome::Stat(res) => os_error(res)),
        libc::ENOENT
    );
    // A dangling link: lstat finds it, stat does not.
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(&missing, &dangling).unwrap();
    let outcome = complete(&mut ring, |r, c| r.stat(&dangling, c));
    assert_eq!(
        expect!(outcome, Outcome::Stat(res) => os_error(res)),
        libc::ENOENT
    );
    let outcome = complete(&mut ring, |r, c| r.lstat(&dangling, c));
    assert!(expect!(outcome, Outcome::Stat(Ok(meta)) => meta).is_symlink());

    let nul = OsStr::from_bytes(b"bad\0name");
    let outcome = complete(&mut ring, |r, c| r.stat(nul, c));
    let res = expect!(outcome, Outcome::Stat(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    let outcome = complete(&mut ring, |r, c| r.lstat(nul, c));
    let res = expect!(outcome, Outcome::Stat(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

fn fsync_and_fdatasync(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("synced")).unwrap();
    file.write_all(b"data").unwrap();
    let file = Rc::new(file);
    expect!(complete(&mut ring, |r, c| r.fsync(&file, c)), Outcome::Fsync(Ok(())) => ());
    expect!(complete(&mut ring, |r, c| r.fdatasync(&file, c)), Outcome::Fsync(Ok(())) => ());
    // A pipe cannot be synced.
    let (_reader, writer) = pipe();
    let writer = Rc::new(writer);
    let outcome = complete(&mut ring, |r, c| r.fsync(&writer, c));
    assert_eq!(
        expect!(outcome, Outcome::Fsync(res) => os_error(res)),
        libc::EINVAL
    );
}

fn splice_file_to_pipe_and_back(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let source = Rc::new(temp_file(DIGITS));
    let (reader, writer) = pipe();
    let (reader, writer) = (Rc::new(reader), Rc::new(writer));
    let outcome = complete(&mut ring, |r, c| {
        r.splice(&source, Some(2), &writer, None, 5, c)
    });
    expect!(outcome, Outcome::Splice(Ok(5)) => ());
    assert_eq!(
        position(&source),
        0,
        "an explicit offset leaves the position alone"
    );

    let target = Rc::new(temp_file(b""));
    let outcome = complete(&mut ring, |r, c| {
        r.splice(&reader, None, &target, None, 3, c)
    });
    expect!(outcome, Outcome::Splice(Ok(3)) => ());
    assert_eq!(
        position(&target),
        3,
        "no offset: the current position advances"
    );
    let outcome = complete(&mut ring, |r, c| {
        r.splice(&reader, None, &target, Some(10), 64, c)
    });
    expect!(outcome, Outcome::Splice(Ok(2)) => ());
    let path = format!("/proc/self/fd/{}", target.as_raw_fd());
    let mut expected = b"234".to_vec();
    expected.resize(10, 0);
    expected.extend_from_slice(b"56");
    assert_eq!(std::fs::read(path).unwrap(), expected);
}

fn splice_without_a_pipe_is_einval(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let source = Rc::new(temp_file(DIGITS));
    let target = Rc::new(temp_file(b""));
    let outcome = complete(&mut ring, |r, c| {
        r.splice(&source, Some(0), &target, Some(0), 4, c)
    });
    assert_eq!(
        expect!(outcome, Outcome::Splice(res) => os_error(res)),
        libc::EINVAL
    );
}
