//! Honest errors: the kernel's internal restart codes (`ERESTARTSYS` and
//! kin, 512 to 516) never reach an outcome — a task cancelled while the
//! kernel runs it fails with `ECANCELED` (`ETIME` past its deadline) and
//! its canceller hears `Ok`; offsets io_uring cannot take are rejected, not
//! turned into something else.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::time::Duration;

use ouro::{BackendKind, Ctx, Offset, Outcome, PollMask, Ring, RunMode, Task};

use crate::harness::unchecked;
use crate::harness::{
    complete, ctx, error_kind, pipe, position, ring, run_all, socket_pair, temp_file, Got,
};

backend_tests![
    cancelling_a_splice_the_kernel_runs_is_ecanceled,
    a_splice_the_kernel_runs_past_its_deadline_is_etime,
    cancelling_a_read_the_kernel_runs_is_ecanceled,
    a_read_the_kernel_runs_past_its_deadline_is_etime,
    cancelling_a_recv_the_kernel_runs_is_ecanceled,
    cancelling_an_accept_the_kernel_runs_is_ecanceled,
    an_accept_the_kernel_runs_past_its_deadline_is_etime,
    cancelling_a_poll_the_kernel_runs_is_ecanceled,
    an_offset_beyond_i64_max_is_invalid_input,
    an_offset_on_a_pipe_is_ignored_and_on_a_socket_must_be_zero,
    an_offset_whose_end_passes_i64_max_is_einval_on_a_pipe_and_a_socket,
    an_offsets_error_comes_at_once_on_an_fd_a_read_found_empty,
];

/// Key of the task under test.
const TARGET: u64 = 0;
/// Key of its canceller.
const CANCELLER: u64 = 1;
/// Key of the timer that lets the kernel start the target.
const SETTLE: u64 = 9;

/// How long the target runs in the kernel before it is cancelled: long
/// enough for io_uring to hand a blocking call to a worker thread that
/// starts it (the case that produced `ERESTARTSYS`); the test's result does
/// not depend on it.
const RUNNING: Duration = Duration::from_millis(20);

/// The OS error of an outcome that failed; panics on success or on an
/// outcome of another family.
fn error_of(outcome: &Outcome) -> i32 {
    let err = match outcome {
        Outcome::Splice(res) => res.as_ref().err(),
        Outcome::Read(res, _) | Outcome::Recv(res, _) => res.as_ref().err(),
        Outcome::Accept(res) => res.as_ref().err(),
        Outcome::Poll(res) => res.as_ref().err(),
        Outcome::Open(res) => res.as_ref().err(),
        other => panic!("unexpected outcome {other:?}"),
    };
    let err = err.unwrap_or_else(|| panic!("the operation should have failed: {outcome:?}"));
    err.raw_os_error()
        .unwrap_or_else(|| panic!("not an OS error: {err}"))
}

/// Schedules the target, lets the kernel run it for a while (it cannot
/// finish), then cancels it; returns the target's and the canceller's
/// outcomes, checking that they come in that order.
fn cancel_while_running(
    ring: &mut Ring<Got>,
    schedule: impl FnOnce(&mut Ring<Got>, Ctx<Got>) -> Task,
) -> (Outcome, Outcome) {
    let target = schedule(ring, ctx(TARGET));
    ring.timer(RUNNING, ctx(SETTLE));
    let mut got = Vec::new();
    while got.is_empty() {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    assert_eq!(got.len(), 1, "only the timer: the target waits: {got:?}");
    assert_eq!(got[0].key(), SETTLE, "{got:?}");
    ring.cancel(target, ctx(CANCELLER));
    let mut got = run_all(ring);
    assert_eq!(got.len(), 2, "{got:?}");
    let keys: Vec<u64> = got.iter().map(|c| c.key()).collect();
    assert_eq!(
        keys,
        [TARGET, CANCELLER],
        "the target's callback runs first"
    );
    let canceller = got.pop().unwrap().outcome;
    (got.pop().unwrap().outcome, canceller)
}

/// Checks the target failed with exactly `ECANCELED` and the canceller
/// heard that it was cancelled.
fn assert_cancelled(target: &Outcome, canceller: &Outcome) {
    assert_eq!(error_of(target), libc::ECANCELED, "{target:?}");
    expect!(canceller, Outcome::Cancel(Ok(())) => ());
}

/// Schedules the target with a deadline it cannot meet; its outcome, which
/// must be exactly `ETIME`.
fn assert_deadline_while_running(
    ring: &mut Ring<Got>,
    schedule: impl FnOnce(&mut Ring<Got>, Ctx<Got>) -> Task,
) {
    let target = schedule(ring, ctx(TARGET));
    ring.set_deadline(target, ring.now() + RUNNING).unwrap();
    let got = run_all(ring);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(error_of(&got[0].outcome), libc::ETIME, "{got:?}");
}

/// A splice from a pipe nobody writes to: io_uring runs it on a worker
/// thread, blocked in the kernel.
fn splice_from_an_empty_pipe<'a>(
    from: &'a OwnedFd,
    to: &'a OwnedFd,
) -> impl FnOnce(&mut Ring<Got>, Ctx<Got>) -> Task + 'a {
    move |r, c| r.splice(unchecked(from), None, unchecked(to), None, 64, c)
}

fn cancelling_a_splice_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let ((from, _writer), (_reader, to)) = (pipe(), pipe());
    let (target, canceller) =
        cancel_while_running(&mut ring, splice_from_an_empty_pipe(&from, &to));
    assert_cancelled(&target, &canceller);
}

fn a_splice_the_kernel_runs_past_its_deadline_is_etime(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let ((from, _writer), (_reader, to)) = (pipe(), pipe());
    assert_deadline_while_running(&mut ring, splice_from_an_empty_pipe(&from, &to));
}

fn cancelling_a_read_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, _writer) = pipe();
    let (target, canceller) = cancel_while_running(&mut ring, |r, c| {
        r.read(
            unchecked(&reader),
            Vec::with_capacity(8),
            Offset::Current,
            c,
        )
    });
    assert_cancelled(&target, &canceller);
}

fn a_read_the_kernel_runs_past_its_deadline_is_etime(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, _writer) = pipe();
    assert_deadline_while_running(&mut ring, |r, c| {
        r.read(
            unchecked(&reader),
            Vec::with_capacity(8),
            Offset::Current,
            c,
        )
    });
}

fn cancelling_a_recv_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let (target, canceller) = cancel_while_running(&mut ring, |r, c| {
        r.recv(unchecked(&a), Vec::with_capacity(8), c)
    });
    assert_cancelled(&target, &canceller);
}

fn cancelling_an_accept_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (target, canceller) =
        cancel_while_running(&mut ring, |r, c| r.accept(unchecked(&listener), c));
    assert_cancelled(&target, &canceller);
}

fn an_accept_the_kernel_runs_past_its_deadline_is_etime(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_deadline_while_running(&mut ring, |r, c| r.accept(unchecked(&listener), c));
}

fn cancelling_a_poll_the_kernel_runs_is_ecanceled(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let (target, canceller) = cancel_while_running(&mut ring, |r, c| {
        r.poll(unchecked(&a), PollMask::READABLE, c)
    });
    assert_cancelled(&target, &canceller);
}

/// `Offset::At(n)` with `n` beyond `i64::MAX` is no position (io_uring
/// would take `u64::MAX` as "the current position", and move it): every
/// positioned operation (splice too) rejects it, and the file position
/// stays.
fn an_offset_beyond_i64_max_is_invalid_input(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let file = temp_file(b"abcdef");
    (&file).seek(SeekFrom::Start(2)).unwrap();
    for bad in [u64::MAX, i64::MAX as u64 + 1] {
        let at = Offset::At(bad);
        let outcome = complete(&mut ring, |r, c| {
            r.write(unchecked(&file), &b"XY"[..], at, c)
        });
        let res = expect!(outcome, Outcome::Write(res, _) => res);
        assert_eq!(
            error_kind(res),
            io::ErrorKind::InvalidInput,
            "write at {bad}"
        );
        let outcome = complete(&mut ring, |r, c| {
            r.read(unchecked(&file), Vec::with_capacity(4), at, c)
        });
        let (res, buf) = expect!(outcome, Outcome::Read(res, buf) => (res, buf));
        assert_eq!(
            error_kind(res),
            io::ErrorKind::InvalidInput,
            "read at {bad}"
        );
        assert!(buf.is_empty(), "the buffer comes back");
        let outcome = complete(&mut ring, |r, c| {
            r.writev(unchecked(&file), vec![&b"XY"[..]], at, c)
        });
        let res = expect!(outcome, Outcome::Writev(res, _) => res);
        assert_eq!(
            error_kind(res),
            io::ErrorKind::InvalidInput,
            "writev at {bad}"
        );
        let bufs = vec![Vec::<u8>::with_capacity(4)];
        let outcome = complete(&mut ring, |r, c| r.readv(unchecked(&file), bufs, at, c));
        let res = expect!(outcome, Outcome::Readv(res, _) => res);
        assert_eq!(
            error_kind(res),
            io::ErrorKind::InvalidInput,
            "readv at {bad}"
        );
        let (reader, writer) = pipe();
        std::fs::File::from(writer.try_clone().unwrap())
            .write_all(b"pipe")
            .unwrap();
        for (off_in, off_out) in [(Some(bad), None), (None, Some(bad))] {
            let (source, sink) = match off_in {
                Some(_) => (unchecked(&file), unchecked(&writer)),
                None => (unchecked(&reader), unchecked(&file)),
            };
            let outcome = complete(&mut ring, |r, c| {
                r.splice(source, off_in, sink, off_out, 4, c)
            });
            let res = expect!(outcome, Outcome::Splice(res) => res);
            assert_eq!(
                error_kind(res),
                io::ErrorKind::InvalidInput,
                "splice at {off_in:?} -> {off_out:?}"
            );
        }
        assert_eq!(position(&file), 2, "the position stays (offset {bad})");
    }
    let outcome = complete(&mut ring, |r, c| {
        r.write(unchecked(&file), &b"ZZ"[..], Offset::Current, c)
    });
    expect!(outcome, Outcome::Write(Ok(2), _) => ());
    let mut contents = Vec::new();
    (&file).seek(SeekFrom::Start(0)).unwrap();
    (&file).read_to_end(&mut contents).unwrap();
    assert_eq!(contents, b"abZZef", "nothing else was written");
}

/// Pipes and sockets have no position, and `pread(2)` would fail with
/// `ESPIPE`; io_uring (checked on Linux 6.18) ignores an offset on a pipe,
/// and a socket takes offset 0 but fails with `ESPIPE` for any other. The
/// readiness backend does the same.
fn an_offset_on_a_pipe_is_ignored_and_on_a_socket_must_be_zero(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    let (a, b) = socket_pair();
    for (reader, writer, at) in [(&reader, &writer, 5), (&a, &b, 0)] {
        let outcome = complete(&mut ring, |r, c| {
            r.write(unchecked(writer), &b"data"[..], Offset::At(at), c)
        });
        expect!(outcome, Outcome::Write(Ok(4), _) => ());
        let outcome = complete(&mut ring, |r, c| {
            r.writev(
                unchecked(writer),
                vec![&b"more"[..]],
                Offset::At(at << 40),
                c,
            )
        });
        expect!(outcome, Outcome::Writev(Ok(4), _) => ());
        let outcome = complete(&mut ring, |r, c| {
            r.read(
                unchecked(reader),
                Vec::with_capacity(4),
                Offset::At(at * 2),
                c,
            )
        });
        let buf = expect!(outcome, Outcome::Read(Ok(4), buf) => buf);
        assert_eq!(&buf[..], b"data");
        let bufs = vec![Vec::<u8>::with_capacity(4)];
        let outcome = complete(&mut ring, |r, c| {
            r.readv(unchecked(reader), bufs, Offset::At(at + at), c)
        });
        let bufs = expect!(outcome, Outcome::Readv(Ok(4), bufs) => bufs);
        assert_eq!(bufs.downcast::<Vec<u8>>().unwrap().concat(), b"more");
    }
    (&std::fs::File::from(b.try_clone().unwrap()))
        .write_all(b"unread")
        .unwrap();
    let outcome = complete(&mut ring, |r, c| {
        r.write(unchecked(&b), &b"data"[..], Offset::At(5), c)
    });
    let res = expect!(outcome, Outcome::Write(res, _) => res);
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ESPIPE));
    let outcome = complete(&mut ring, |r, c| {
        r.read(unchecked(&a), Vec::with_capacity(8), Offset::At(5), c)
    });
    let res = expect!(outcome, Outcome::Read(res, _) => res);
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ESPIPE));
    let bufs = vec![Vec::<u8>::with_capacity(8)];
    let outcome = complete(&mut ring, |r, c| {
        r.readv(unchecked(&a), bufs, Offset::At(1), c)
    });
    let res = expect!(outcome, Outcome::Readv(res, _) => res);
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ESPIPE));
}

/// The kernel checks that offset plus length stays within `i64::MAX`
/// before it looks at whether the fd has a position: io_uring fails such a
/// read or write on a pipe or a socket with `EINVAL`, and so does the
/// readiness backend (where `pread(2)` says `ESPIPE` first). Nothing is
/// read or written.
fn an_offset_whose_end_passes_i64_max_is_einval_on_a_pipe_and_a_socket(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (reader, writer) = pipe();
    let (a, b) = socket_pair();
    let end = i64::MAX as u64;
    for (reader, writer) in [(&reader, &writer), (&a, &b)] {
        (&std::fs::File::from(writer.try_clone().unwrap()))
            .write_all(b"queued")
            .unwrap();
        let outcome = complete(&mut ring, |r, c| {
            r.write(unchecked(writer), &b"data"[..], Offset::At(end - 1), c)
        });
        let res = expect!(outcome, Outcome::Write(res, _) => res);
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        let outcome = complete(&mut ring, |r, c| {
            r.writev(unchecked(writer), vec![&b"more"[..]], Offset::At(end), c)
        });
        let res = expect!(outcome, Outcome::Writev(res, _) => res);
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        let outcome = complete(&mut ring, |r, c| {
            r.read(unchecked(reader), Vec::with_capacity(4), Offset::At(end), c)
        });
        let res = expect!(outcome, Outcome::Read(res, _) => res);
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        let bufs = vec![Vec::<u8>::with_capacity(2), Vec::with_capacity(2)];
        let outcome = complete(&mut ring, |r, c| {
            r.readv(unchecked(reader), bufs, Offset::At(end - 3), c)
        });
        let res = expect!(outcome, Outcome::Readv(res, _) => res);
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        // What was queued is still there, whole: nothing was taken.
        let outcome = complete(&mut ring, |r, c| {
            r.read(
                unchecked(reader),
                Vec::with_capacity(16),
                Offset::Current,
                c,
            )
        });
        let buf = expect!(outcome, Outcome::Read(Ok(6), buf) => buf);
        assert_eq!(&buf[..], b"queued");
    }
}

/// The readiness backend waits for readiness before it tries a read of an
/// fd whose last read found it empty; an error the offset alone causes
/// must still come at once, as on io_uring, not when data arrives.
fn an_offsets_error_comes_at_once_on_an_fd_a_read_found_empty(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let (reader, _writer) = pipe();
    let cases = [
        (&a, 5, libc::ESPIPE),
        (&reader, i64::MAX as u64, libc::EINVAL),
    ];
    for (fd, at, expected) in cases {
        let outcome = complete(&mut ring, |r, c| {
            let read = r.read(unchecked(fd), Vec::with_capacity(4), Offset::Current, c);
            r.set_timeout(read, Duration::from_millis(5)).unwrap();
            read
        });
        let res = expect!(outcome, Outcome::Read(res, _) => res);
        assert!(ouro::is_deadline(&res.unwrap_err()), "the fd is empty");
        let outcome = complete(&mut ring, |r, c| {
            let read = r.read(unchecked(fd), Vec::with_capacity(4), Offset::At(at), c);
            r.set_timeout(read, Duration::from_secs(30)).unwrap();
            read
        });
        let res = expect!(outcome, Outcome::Read(res, _) => res);
        assert_eq!(
            res.unwrap_err().raw_os_error(),
            Some(expected),
            "offset {at}"
        );
    }
}
