//! File-system operations on real temporary files and directories:
//! ftruncate, unlink and remove_dir, rename, mkdir, symlink, hard_link,
//! fallocate, fstat — each with its errors.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;

use ouro::{BackendKind, Outcome, RunMode};

use crate::harness::{bad_fd, complete, ctx, error_kind, os_error, pipe, ring, run_all, temp_file};

backend_tests![
    ftruncate_cuts_and_extends_a_file,
    ftruncate_errors,
    unlink_removes_files_and_remove_dir_directories,
    unlink_errors,
    rename_moves_and_replaces,
    rename_errors,
    mkdir_makes_a_directory_with_its_mode,
    mkdir_errors,
    symlink_makes_a_link_to_its_target,
    symlink_errors,
    hard_link_gives_a_file_a_second_name,
    hard_link_errors,
    fallocate_allocates_with_and_without_growing_the_file,
    fallocate_errors,
    fstat_reports_the_open_file_with_the_statx_extras,
    fstat_errors,
    a_cancelled_unlink_says_whether_it_ran,
    a_ring_dropped_with_file_system_ops_in_flight_frees_them,
    a_fifo_opens_without_waiting_for_its_other_end
];

fn ftruncate_cuts_and_extends_a_file(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(b"0123456789"));
    let outcome = complete(&mut ring, |r, c| r.ftruncate(&file, 4, c));
    expect!(outcome, Outcome::Ftruncate(Ok(())) => ());
    assert_eq!(contents(&file), b"0123");

    let outcome = complete(&mut ring, |r, c| r.ftruncate(&file, 6, c));
    expect!(outcome, Outcome::Ftruncate(Ok(())) => ());
    assert_eq!(contents(&file), b"0123\0\0", "extended with zeros");
}

fn ftruncate_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, b"0123").unwrap();
    let read_only = Rc::new(std::fs::File::open(&path).unwrap());
    let outcome = complete(&mut ring, |r, c| r.ftruncate(&read_only, 0, c));
    let res = expect!(outcome, Outcome::Ftruncate(res) => res);
    assert_eq!(os_error(res), libc::EINVAL, "not open for writing");
    assert_eq!(std::fs::read(&path).unwrap(), b"0123", "left alone");

    let (read, _write) = pipe();
    let read = Rc::new(read);
    let outcome = complete(&mut ring, |r, c| r.ftruncate(&read, 0, c));
    let res = expect!(outcome, Outcome::Ftruncate(res) => res);
    assert_eq!(os_error(res), libc::EINVAL, "a pipe has no length");

    let bad = Rc::new(bad_fd());
    let outcome = complete(&mut ring, |r, c| r.ftruncate(&bad, 0, c));
    let res = expect!(outcome, Outcome::Ftruncate(res) => res);
    assert_eq!(os_error(res), libc::EBADF);

    let file = Rc::new(temp_file(b"0123"));
    let too_long = u64::MAX;
    let outcome = complete(&mut ring, |r, c| r.ftruncate(&file, too_long, c));
    let res = expect!(outcome, Outcome::Ftruncate(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    let largest = i64::MAX as u64;
    let outcome = complete(&mut ring, |r, c| r.ftruncate(&file, largest, c));
    let res = expect!(outcome, Outcome::Ftruncate(res) => res);
    assert_eq!(
        os_error(res),
        libc::EFBIG,
        "longer than the file system allows"
    );
    assert_eq!(contents(&file), b"0123");
}

/// What a file holds now, read through its path-less fd.
fn contents(file: &std::fs::File) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; 64];
    let n = file.read_at(&mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

fn unlink_removes_files_and_remove_dir_directories(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let outcome = complete(&mut ring, |r, c| r.unlink(&file, c));
    expect!(outcome, Outcome::Unlink(Ok(())) => ());
    assert!(!file.exists());

    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let outcome = complete(&mut ring, |r, c| r.remove_dir(&sub, c));
    expect!(outcome, Outcome::Unlink(Ok(())) => ());
    assert!(!sub.exists());
}

fn unlink_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let outcome = complete(&mut ring, |r, c| r.unlink(&missing, c));
    assert_eq!(
        expect!(outcome, Outcome::Unlink(res) => os_error(res)),
        libc::ENOENT
    );

    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("inside"), b"x").unwrap();
    let outcome = complete(&mut ring, |r, c| r.unlink(&sub, c));
    assert_eq!(
        expect!(outcome, Outcome::Unlink(res) => os_error(res)),
        libc::EISDIR
    );
    let outcome = complete(&mut ring, |r, c| r.remove_dir(&sub, c));
    assert_eq!(
        expect!(outcome, Outcome::Unlink(res) => os_error(res)),
        libc::ENOTEMPTY
    );
    let outcome = complete(&mut ring, |r, c| r.remove_dir(sub.join("inside"), c));
    assert_eq!(
        expect!(outcome, Outcome::Unlink(res) => os_error(res)),
        libc::ENOTDIR
    );
    assert!(sub.join("inside").exists(), "nothing removed");

    let outcome = complete(&mut ring, |r, c| {
        r.unlink(OsStr::from_bytes(b"bad\0name"), c)
    });
    let res = expect!(outcome, Outcome::Unlink(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

fn rename_moves_and_replaces(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("from"), dir.path().join("to"));
    std::fs::write(&from, b"moved").unwrap();
    let outcome = complete(&mut ring, |r, c| r.rename(&from, &to, c));
    expect!(outcome, Outcome::Rename(Ok(())) => ());
    assert!(!from.exists());
    assert_eq!(std::fs::read(&to).unwrap(), b"moved");

    std::fs::write(&from, b"newer").unwrap();
    let outcome = complete(&mut ring, |r, c| r.rename(&from, &to, c));
    expect!(outcome, Outcome::Rename(Ok(())) => ());
    assert_eq!(
        std::fs::read(&to).unwrap(),
        b"newer",
        "the old file replaced"
    );
}

fn rename_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let (missing, to) = (dir.path().join("missing"), dir.path().join("to"));
    let outcome = complete(&mut ring, |r, c| r.rename(&missing, &to, c));
    assert_eq!(
        expect!(outcome, Outcome::Rename(res) => os_error(res)),
        libc::ENOENT
    );

    let (sub, file) = (dir.path().join("sub"), dir.path().join("file"));
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(&file, b"x").unwrap();
    let outcome = complete(&mut ring, |r, c| r.rename(&sub, &file, c));
    assert_eq!(
        expect!(outcome, Outcome::Rename(res) => os_error(res)),
        libc::ENOTDIR
    );
    let outcome = complete(&mut ring, |r, c| r.rename(&file, &sub, c));
    assert_eq!(
        expect!(outcome, Outcome::Rename(res) => os_error(res)),
        libc::EISDIR
    );

    let nul = OsStr::from_bytes(b"bad\0name");
    let outcome = complete(&mut ring, |r, c| r.rename(&file, nul, c));
    let res = expect!(outcome, Outcome::Rename(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    let outcome = complete(&mut ring, |r, c| r.rename(nul, &file, c));
    let res = expect!(outcome, Outcome::Rename(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    assert!(file.exists() && sub.is_dir(), "nothing moved");
}

fn mkdir_makes_a_directory_with_its_mode(kind: BackendKind) {
    use std::os::unix::fs::PermissionsExt;
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    let outcome = complete(&mut ring, |r, c| r.mkdir(&sub, 0o700, c));
    expect!(outcome, Outcome::Mkdir(Ok(())) => ());
    let meta = std::fs::metadata(&sub).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
}

fn mkdir_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let outcome = complete(&mut ring, |r, c| r.mkdir(dir.path(), 0o755, c));
    assert_eq!(
        expect!(outcome, Outcome::Mkdir(res) => os_error(res)),
        libc::EEXIST
    );
    let orphan = dir.path().join("missing").join("sub");
    let outcome = complete(&mut ring, |r, c| r.mkdir(&orphan, 0o755, c));
    assert_eq!(
        expect!(outcome, Outcome::Mkdir(res) => os_error(res)),
        libc::ENOENT
    );
    let nul = OsStr::from_bytes(b"bad\0name");
    let outcome = complete(&mut ring, |r, c| r.mkdir(nul, 0o755, c));
    let res = expect!(outcome, Outcome::Mkdir(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

fn symlink_makes_a_link_to_its_target(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("link");
    let outcome = complete(&mut ring, |r, c| r.symlink("no/such/target", &link, c));
    expect!(outcome, Outcome::Symlink(Ok(())) => ());
    let target = std::fs::read_link(&link).unwrap();
    assert_eq!(
        target,
        std::path::Path::new("no/such/target"),
        "kept as given"
    );
}

fn symlink_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let taken = dir.path().join("taken");
    std::fs::write(&taken, b"x").unwrap();
    let outcome = complete(&mut ring, |r, c| r.symlink("target", &taken, c));
    assert_eq!(
        expect!(outcome, Outcome::Symlink(res) => os_error(res)),
        libc::EEXIST
    );
    let orphan = dir.path().join("missing").join("link");
    let outcome = complete(&mut ring, |r, c| r.symlink("target", &orphan, c));
    assert_eq!(
        expect!(outcome, Outcome::Symlink(res) => os_error(res)),
        libc::ENOENT
    );
    let nul = OsStr::from_bytes(b"bad\0name");
    let outcome = complete(&mut ring, |r, c| r.symlink(nul, dir.path().join("l"), c));
    let res = expect!(outcome, Outcome::Symlink(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    assert!(!dir.path().join("l").exists());
}

fn hard_link_gives_a_file_a_second_name(kind: BackendKind) {
    use std::os::unix::fs::MetadataExt;
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let (original, link) = (dir.path().join("original"), dir.path().join("link"));
    std::fs::write(&original, b"shared").unwrap();
    let outcome = complete(&mut ring, |r, c| r.hard_link(&original, &link, c));
    expect!(outcome, Outcome::HardLink(Ok(())) => ());
    let (a, b) = (
        std::fs::metadata(&original).unwrap(),
        std::fs::metadata(&link).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "one file, two names");
}

fn hard_link_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let (missing, link) = (dir.path().join("missing"), dir.path().join("link"));
    let outcome = complete(&mut ring, |r, c| r.hard_link(&missing, &link, c));
    assert_eq!(
        expect!(outcome, Outcome::HardLink(res) => os_error(res)),
        libc::ENOENT
    );
    let original = dir.path().join("original");
    std::fs::write(&original, b"x").unwrap();
    std::fs::write(&link, b"taken").unwrap();
    let outcome = complete(&mut ring, |r, c| r.hard_link(&original, &link, c));
    assert_eq!(
        expect!(outcome, Outcome::HardLink(res) => os_error(res)),
        libc::EEXIST
    );
    assert_eq!(std::fs::read(&link).unwrap(), b"taken", "left alone");
    let nul = OsStr::from_bytes(b"bad\0name");
    let outcome = complete(&mut ring, |r, c| r.hard_link(&original, nul, c));
    let res = expect!(outcome, Outcome::HardLink(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
}

fn fallocate_allocates_with_and_without_growing_the_file(kind: BackendKind) {
    use std::os::unix::fs::MetadataExt;
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(b""));
    let outcome = complete(&mut ring, |r, c| r.fallocate(&file, 0, 0, 8192, c));
    expect!(outcome, Outcome::Fallocate(Ok(())) => ());
    let meta = file.metadata().unwrap();
    assert_eq!(meta.len(), 8192, "mode 0 grows the file");
    assert!(meta.blocks() * 512 >= 8192, "the space is allocated");

    let keep = libc::FALLOC_FL_KEEP_SIZE;
    let outcome = complete(&mut ring, |r, c| r.fallocate(&file, keep, 8192, 8192, c));
    expect!(outcome, Outcome::Fallocate(Ok(())) => ());
    let meta = file.metadata().unwrap();
    assert_eq!(meta.len(), 8192, "KEEP_SIZE leaves the length");
    assert!(
        meta.blocks() * 512 >= 16384,
        "the space past the end is allocated"
    );
}

fn fallocate_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = Rc::new(temp_file(b""));
    let outcome = complete(&mut ring, |r, c| r.fallocate(&file, 0, 0, 0, c));
    let res = expect!(outcome, Outcome::Fallocate(res) => res);
    assert_eq!(os_error(res), libc::EINVAL, "an empty range");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, b"").unwrap();
    let read_only = Rc::new(std::fs::File::open(&path).unwrap());
    let outcome = complete(&mut ring, |r, c| r.fallocate(&read_only, 0, 0, 4096, c));
    let res = expect!(outcome, Outcome::Fallocate(res) => res);
    assert_eq!(os_error(res), libc::EBADF, "not open for writing");

    let (_read, write) = pipe();
    let write = Rc::new(write);
    let outcome = complete(&mut ring, |r, c| r.fallocate(&write, 0, 0, 4096, c));
    let res = expect!(outcome, Outcome::Fallocate(res) => res);
    assert_eq!(
        os_error(res),
        libc::ESPIPE,
        "a pipe has no space to allocate"
    );

    let huge = u64::MAX;
    let outcome = complete(&mut ring, |r, c| r.fallocate(&file, 0, huge, 1, c));
    let res = expect!(outcome, Outcome::Fallocate(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    let outcome = complete(&mut ring, |r, c| r.fallocate(&file, 0, 0, huge, c));
    let res = expect!(outcome, Outcome::Fallocate(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    let end = i64::MAX as u64;
    let outcome = complete(&mut ring, |r, c| r.fallocate(&file, 0, end, 1, c));
    let res = expect!(outcome, Outcome::Fallocate(res) => res);
    assert_eq!(os_error(res), libc::EFBIG, "a range past the largest file");
    assert_eq!(file.metadata().unwrap().len(), 0);
}

fn fstat_reports_the_open_file_with_the_statx_extras(kind: BackendKind) {
    use std::os::unix::fs::MetadataExt;
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, b"0123456789").unwrap();
    let file = Rc::new(std::fs::File::open(&path).unwrap());
    let expected = file.metadata().unwrap();

    let outcome = complete(&mut ring, |r, c| r.fstat(&file, c));
    let meta = expect!(outcome, Outcome::Stat(Ok(meta)) => meta);
    assert!(meta.is_file());
    assert_eq!((meta.size, meta.ino), (10, expected.ino()));
    let basic = libc::STATX_BASIC_STATS;
    assert_eq!(meta.mask & basic, basic, "the basic fields are filled");
    assert_eq!(
        meta.attributes & !meta.attributes_mask,
        0,
        "only known attributes"
    );
    assert!(meta.mount_id.is_some(), "Linux 5.8 reports the mount");
    if let Some(btime) = meta.btime {
        let created = expected.created().unwrap();
        let since = created.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(btime, (since.as_secs() as i64, since.subsec_nanos()));
    }
    let outcome = complete(&mut ring, |r, c| r.stat(&path, c));
    let by_path = expect!(outcome, Outcome::Stat(Ok(meta)) => meta);
    assert_eq!(meta, by_path, "the fd and its path: one file");

    // A ring fd, and a pipe (no path at all).
    let ring_fd = ring.register_fd(std::fs::File::open(&path).unwrap().into());
    let outcome = complete(&mut ring, |r, c| r.fstat(ring_fd, c));
    assert_eq!(
        expect!(outcome, Outcome::Stat(Ok(meta)) => meta.ino),
        expected.ino()
    );
    let (read, _write) = pipe();
    let read = Rc::new(read);
    let outcome = complete(&mut ring, |r, c| r.fstat(&read, c));
    let meta = expect!(outcome, Outcome::Stat(Ok(meta)) => meta);
    assert_eq!(meta.mode & libc::S_IFMT, libc::S_IFIFO);
}

fn fstat_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = ring.register_fd(temp_file(b"x").into());
    let outcome = complete(&mut ring, |r, c| r.close(file, c));
    expect!(outcome, Outcome::Close(Ok(())) => ());
    let outcome = complete(&mut ring, |r, c| r.fstat(file, c));
    let res = expect!(outcome, Outcome::Stat(res) => res);
    assert_eq!(os_error(res), libc::EBADF, "a closed ring fd");
}

fn a_cancelled_unlink_says_whether_it_ran(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let task = ring.unlink(&file, ctx(0));
    ring.cancel(task, ctx(1));
    let got = run_all(&mut ring);
    let unlink = got
        .iter()
        .find(|c| c.key() == 0)
        .expect("the unlink completed");
    let cancel = got
        .iter()
        .find(|c| c.key() == 1)
        .expect("the cancel completed");
    match &unlink.outcome {
        Outcome::Unlink(Ok(())) => {
            assert!(!file.exists(), "it ran: the file is gone");
            let res = expect!(&cancel.outcome, Outcome::Cancel(res) => res);
            assert_eq!(
                res.as_ref().unwrap_err().raw_os_error(),
                Some(libc::EALREADY)
            );
        }
        Outcome::Unlink(Err(e)) if ouro::is_canceled(e) => {
            assert!(file.exists(), "cancelled: the file is still there");
            expect!(&cancel.outcome, Outcome::Cancel(Ok(())) => ());
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn a_ring_dropped_with_file_system_ops_in_flight_frees_them(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("from"), dir.path().join("to"));
    std::fs::write(&from, b"x").unwrap();
    let file = Rc::new(temp_file(b"0123"));
    {
        let mut ring = ring(kind, 8);
        ring.rename(&from, &to, ctx(0));
        ring.mkdir(dir.path().join("sub"), 0o755, ctx(1));
        ring.fstat(&file, ctx(2));
        ring.ftruncate(&file, 1, ctx(3));
        // Submitted (to the kernel or the pool), then dropped unfinished.
        ring.run(&mut Vec::new(), RunMode::NoWait).unwrap();
    }
    assert!(
        from.exists() != to.exists(),
        "the rename ran whole or not at all"
    );
    assert_eq!(Rc::strong_count(&file), 1, "the ring let go of the file");
}

/// An open is tried without blocking first, as io_uring tries it: a FIFO
/// opens at once for reading (its fd blocking, as asked), fails with
/// `ENXIO` for writing while nobody reads, and opens for writing once a
/// reader is there. On the readiness backend the open used to wait on a
/// pool thread for the other end, which no cancel or deadline could end.
fn a_fifo_opens_without_waiting_for_its_other_end(kind: BackendKind) {
    use ouro::fs::OpenOptions;
    // An open that waits for the other end would wait for ever.
    let _watchdog = crate::common::watchdog::AbortAfter::new(std::time::Duration::from_secs(30));
    let mut ring = ring(kind, 8);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let nonblocking = |fd: &std::os::fd::OwnedFd| {
        use std::os::fd::AsRawFd;
        // SAFETY: F_GETFL on an open fd reads its flags.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        flags & libc::O_NONBLOCK != 0
    };

    let write = OpenOptions::new().write(true);
    let outcome = complete(&mut ring, |r, c| r.open(&fifo, &write, c));
    assert_eq!(
        expect!(outcome, Outcome::Open(res) => os_error(res)),
        libc::ENXIO
    );

    let read = OpenOptions::new().read(true);
    let outcome = complete(&mut ring, |r, c| r.open(&fifo, &read, c));
    let reader = expect!(outcome, Outcome::Open(Ok(fd)) => fd);
    assert!(
        !nonblocking(&reader),
        "the reader blocks, as it was asked to"
    );
    let read_nonblocking = read.custom_flags(libc::O_NONBLOCK);
    let outcome = complete(&mut ring, |r, c| r.open(&fifo, &read_nonblocking, c));
    let second = expect!(outcome, Outcome::Open(Ok(fd)) => fd);
    assert!(nonblocking(&second), "asked for O_NONBLOCK, it keeps it");

    let outcome = complete(&mut ring, |r, c| r.open(&fifo, &write, c));
    let writer = expect!(outcome, Outcome::Open(Ok(fd)) => fd);
    assert!(!nonblocking(&writer));
    std::fs::File::from(writer).write_all(b"through").unwrap();
    let mut got = String::new();
    std::fs::File::from(reader)
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, "through");
}
