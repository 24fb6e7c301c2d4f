//! Promises the readiness backend once broke, checked on every backend:
//! nothing blocks the loop on a user's fd, an end of stream that arrives
//! with the last bytes is delivered, a connect cut short leaves its
//! socket's flags as they were, an abandoned open leaks no fd, and an fd's
//! number costs no memory.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ouro::fs::OpenOptions;
use ouro::{BackendKind, Outcome, Ring, RingFd, RunMode, Task};

use crate::echo_example;
use crate::harness::unchecked;
use crate::harness::{ctx, os_error, pipe, ring, socket_pair, Got};

backend_tests![
    a_splice_to_a_stalled_blocking_peer_does_not_block_the_loop,
    sockets_the_ring_makes_are_nonblocking_on_the_readiness_backend_only,
    every_echo_client_that_shuts_down_gets_its_echo_and_end_of_stream,
    end_of_stream_follows_the_last_bytes_on_ring_fds_multishot,
    end_of_stream_follows_the_last_bytes_on_ring_fds_recv,
    end_of_stream_follows_the_last_bytes_on_borrowed_fds_recv,
    a_connect_cut_by_its_deadline_leaves_a_blocking_socket_blocking,
];

exclusive_backend_tests![
    an_fd_numbered_near_the_limit_costs_no_memory_by_its_number,
    a_fifo_open_abandoned_by_a_dropped_ring_leaks_no_fd,
];

fn is_nonblocking(fd: &impl AsRawFd) -> bool {
    // SAFETY: F_GETFL on a valid fd only reads its flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & libc::O_NONBLOCK != 0
}

/// Runs the ring until the completion keyed `key` has come; every
/// completion, in order.
fn run_until_key(ring: &mut Ring<Got>, key: u64) -> Got {
    let mut got = Got::new();
    while !got.iter().any(|c| c.key() == key) {
        ring.run(&mut got, RunMode::Once).expect("run");
    }
    got
}

/// Lets the ring attempt what it was given (so that operations wait), by
/// running it until a short timer fires; what completed meanwhile.
fn settle(ring: &mut Ring<Got>) -> Got {
    const SETTLED: u64 = u64::MAX;
    ring.timer(Duration::from_millis(20), ctx(SETTLED));
    let mut got = run_until_key(ring, SETTLED);
    got.retain(|c| c.key() != SETTLED);
    got
}

/// A splice from a pipe full of data to a blocking socket whose peer never
/// reads must not block the loop (`SPLICE_F_NONBLOCK` covers only the
/// pipe): a timer scheduled alongside fires while the splice waits.
fn a_splice_to_a_stalled_blocking_peer_does_not_block_the_loop(kind: BackendKind) {
    let (ours, theirs) = socket_pair();
    assert!(!is_nonblocking(&ours));
    // Fill our end's send buffer: the next byte waits for the peer.
    let chunk = [7u8; 65536];
    loop {
        // SAFETY: sends from a live buffer of that length.
        let n = unsafe {
            libc::send(
                ours.as_raw_fd(),
                chunk.as_ptr().cast(),
                chunk.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            assert_eq!(
                io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN)
            );
            break;
        }
    }
    let (pipe_out, pipe_in) = pipe();
    std::fs::File::from(pipe_in)
        .write_all(&[1u8; 4096])
        .unwrap();
    let mut ring = ring(kind, 16);
    let splice = ring.splice(
        unchecked(&pipe_out),
        None,
        unchecked(&ours),
        None,
        4096,
        ctx(1),
    );
    ring.timer(Duration::from_millis(50), ctx(2));
    let got = run_until_key(&mut ring, 2);
    assert!(
        !got.iter().any(|c| c.key() == 1),
        "the splice finished, though the peer reads nothing: {got:?}"
    );
    // Cancel, then let the peer read so that a splice already running
    // (which a cancel does not stop on the readiness backend) finishes.
    ring.cancel(splice, ctx(3));
    let theirs = std::fs::File::from(theirs);
    // SAFETY: F_SETFL on a valid fd.
    unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut got = Got::new();
    let mut sink = vec![0u8; 65536];
    while got.iter().filter(|c| c.key() == 1 || c.key() == 3).count() < 2 {
        while (&theirs).read(&mut sink).is_ok_and(|n| n > 0) {}
        ring.timer(Duration::from_millis(10), ctx(4));
        ring.run(&mut got, RunMode::Once).expect("run");
    }
    let splice = got.iter().find(|c| c.key() == 1).unwrap();
    match &splice.outcome {
        Outcome::Splice(Ok(n)) => assert!(*n <= 4096),
        Outcome::Splice(Err(e)) => assert!(
            matches!(e.raw_os_error(), Some(libc::ECANCELED | libc::EINTR)),
            "{e}"
        ),
        other => panic!("unexpected {other:?}"),
    }
}

/// The readiness backend makes the sockets it creates and accepts
/// non-blocking (so that nothing it later does with them can block its
/// loop); io_uring leaves them blocking.
fn sockets_the_ring_makes_are_nonblocking_on_the_readiness_backend_only(kind: BackendKind) {
    let nonblocking = kind == BackendKind::Poll;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mut ring = ring(kind, 8);
    ring.accept(unchecked(&listener), ctx(1));
    ring.socket(socket2::Domain::IPV4, socket2::Type::STREAM, None, ctx(2));
    let mut got = crate::harness::run_all(&mut ring);
    got.sort_by_key(|c| c.key());
    let accepted = expect!(got.remove(0).outcome, Outcome::Accept(Ok((fd, _))) => fd);
    let created = expect!(got.remove(0).outcome, Outcome::Socket(Ok(fd)) => fd);
    assert_eq!(is_nonblocking(&accepted), nonblocking, "accepted");
    assert_eq!(is_nonblocking(&created), nonblocking, "created");
}

/// 2,000 clients (200 at a time) of the echo example's server each send,
/// shut down their sending side and read until end of stream: every one
/// gets its bytes back and then the end of stream (a peer's FIN that came
/// with its last bytes is not lost).
fn every_echo_client_that_shuts_down_gets_its_echo_and_end_of_stream(kind: BackendKind) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The server runs until the process ends.
    std::thread::spawn(move || {
        let builder = Ring::builder().backend(kind);
        echo_example::serve(listener.into(), builder, 1024)
    });
    let mut hung = 0;
    for batch in 0..10 {
        let clients: Vec<_> = (0..200)
            .map(|i| {
                std::thread::spawn(move || -> io::Result<()> {
                    let message: Vec<u8> = (0..100 + (batch * 200 + i) % 900)
                        .map(|b| (b % 251) as u8)
                        .collect();
                    let mut stream = TcpStream::connect(addr)?;
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    stream.write_all(&message)?;
                    stream.shutdown(Shutdown::Write)?;
                    let mut echoed = Vec::new();
                    stream.read_to_end(&mut echoed)?;
                    assert_eq!(echoed, message, "the echo differs");
                    Ok(())
                })
            })
            .collect();
        for client in clients {
            if let Err(e) = client.join().unwrap() {
                eprintln!("client: {e}");
                hung += 1;
            }
        }
        if hung > 0 {
            break;
        }
    }
    assert_eq!(hung, 0, "clients left waiting for their end of stream");
}

const CONNECTIONS: usize = 200;
const LAST_BYTES: usize = 1000;

/// `CONNECTIONS` loopback connections: the client sides, and the server
/// sides.
fn connections() -> (Vec<TcpStream>, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(TcpStream::connect(addr).unwrap());
        servers.push(listener.accept().unwrap().0);
    }
    (clients, servers)
}

/// `CONNECTIONS` loopback connections, the server sides as ring fds: the
/// client sides, and the ring fds.
fn ring_fd_connections(ring: &mut Ring<Got>) -> (Vec<TcpStream>, Vec<RingFd>) {
    let (clients, servers) = connections();
    let fds = servers
        .into_iter()
        .map(|server_side| ring.register_fd(server_side.into()))
        .collect();
    (clients, fds)
}

/// Each client writes its last bytes and closes at once, while the ring's
/// receives wait; then the ring runs until every connection has reached
/// end of stream or 20 s pass. `rearm` starts connection `i`'s receive
/// again; `take` reads a completion: (connection, bytes, end of stream,
/// final).
fn last_bytes_then_end_of_stream(
    ring: &mut Ring<Got>,
    clients: Vec<TcpStream>,
    mut rearm: impl FnMut(&mut Ring<Got>, usize),
    take: impl Fn(ouro::Completion) -> (usize, usize, bool, bool),
) {
    for i in 0..CONNECTIONS {
        rearm(ring, i);
    }
    assert!(settle(ring).is_empty(), "receives finished with no data");
    for mut client in clients {
        client.write_all(&[5u8; LAST_BYTES]).unwrap();
    }
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut bytes = [0; CONNECTIONS];
    let mut ended = [false; CONNECTIONS];
    const TICK: u64 = u64::MAX - 1;
    let mut tick: Option<Task> = None;
    while ended.iter().any(|e| !e) && Instant::now() < give_up {
        if tick.is_none() {
            tick = Some(ring.timer(Duration::from_millis(100), ctx(TICK)));
        }
        let mut got = Got::new();
        ring.run(&mut got, RunMode::Once).expect("run");
        for c in got {
            if c.key() == TICK {
                tick = None;
                continue;
            }
            let (i, n, end, last) = take(c);
            assert!(
                !ended[i],
                "connection {i}: a completion after its end of stream"
            );
            bytes[i] += n;
            ended[i] = end;
            if last && !end {
                rearm(ring, i);
            }
        }
    }
    let missing: Vec<usize> = (0..CONNECTIONS).filter(|&i| !ended[i]).collect();
    assert!(
        missing.is_empty(),
        "{} connections never got their end of stream: {missing:?}",
        missing.len()
    );
    assert!(
        bytes.iter().all(|&n| n == LAST_BYTES),
        "bytes lost: {bytes:?}"
    );
}

/// Multishot receives on ring fds deliver every byte, then an empty final
/// completion, when the peer's last bytes and its close arrive together.
fn end_of_stream_follows_the_last_bytes_on_ring_fds_multishot(kind: BackendKind) {
    let mut ring = ring(kind, 512);
    let group = ring.buffer_group(256, 4096).unwrap();
    let (clients, fds) = ring_fd_connections(&mut ring);
    let rearm = |ring: &mut Ring<Got>, i: usize| {
        ring.recv_multishot(fds[i], &group, ctx(i as u64));
    };
    let take = |c: ouro::Completion| {
        let i = c.key() as usize;
        let last = c.is_final();
        match c.outcome {
            Outcome::RecvMulti(Ok(buf)) => (i, buf.len(), buf.is_empty(), last),
            Outcome::RecvMulti(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                (i, 0, false, last)
            }
            other => panic!("connection {i}: unexpected {other:?}"),
        }
    };
    last_bytes_then_end_of_stream(&mut ring, clients, rearm, take);
}

/// Plain receives on ring fds, each re-armed when it completes, deliver
/// every byte, then 0 bytes, when the peer's last bytes and its close
/// arrive together.
fn end_of_stream_follows_the_last_bytes_on_ring_fds_recv(kind: BackendKind) {
    let mut ring = ring(kind, 512);
    let (clients, fds) = ring_fd_connections(&mut ring);
    let rearm = |ring: &mut Ring<Got>, i: usize| {
        ring.recv(fds[i], Vec::with_capacity(4096), ctx(i as u64));
    };
    let take = |c: ouro::Completion| {
        let i = c.key() as usize;
        match c.outcome {
            Outcome::Recv(Ok(n), _) => (i, n, n == 0, true),
            other => panic!("connection {i}: unexpected {other:?}"),
        }
    };
    last_bytes_then_end_of_stream(&mut ring, clients, rearm, take);
}

/// The same with the user's own (borrowed) sockets, which the backend
/// re-arms at each wait rather than keeping registered.
fn end_of_stream_follows_the_last_bytes_on_borrowed_fds_recv(kind: BackendKind) {
    let mut ring = ring(kind, 512);
    let (clients, servers) = connections();
    let rearm = |ring: &mut Ring<Got>, i: usize| {
        ring.recv(
            unchecked(&servers[i]),
            Vec::with_capacity(4096),
            ctx(i as u64),
        );
    };
    let take = |c: ouro::Completion| {
        let i = c.key() as usize;
        match c.outcome {
            Outcome::Recv(Ok(n), _) => (i, n, n == 0, true),
            other => panic!("connection {i}: unexpected {other:?}"),
        }
    };
    last_bytes_then_end_of_stream(&mut ring, clients, rearm, take);
}

/// A listener whose accept queue is full, so that a connect to it waits
/// for good (its SYNs are dropped): the listener and the connection that
/// fills the queue.
fn unanswering_listener() -> (socket2::Socket, TcpStream) {
    let listener = crate::harness::loopback_socket();
    // Backlog 0: one connection fills the queue.
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    (listener, filler)
}

/// A connect on a blocking socket cut by its deadline fails with `ETIME`
/// and leaves the socket blocking (the readiness backend makes it
/// non-blocking only while it connects; io_uring never changes it).
fn a_connect_cut_by_its_deadline_leaves_a_blocking_socket_blocking(kind: BackendKind) {
    let (listener, _filler) = unanswering_listener();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let socket: OwnedFd = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .unwrap()
        .into();
    assert!(!is_nonblocking(&socket));
    let mut ring = ring(kind, 8);
    let connect = ring.connect(unchecked(&socket), addr, ctx(0));
    ring.set_deadline(connect, ring.now() + Duration::from_millis(50))
        .unwrap();
    let mut got = crate::harness::run_all(&mut ring);
    let result = expect!(got.pop().unwrap().outcome, Outcome::Connect(r) => r);
    assert_eq!(os_error(result), libc::ETIME);
    assert!(
        !is_nonblocking(&socket),
        "the connect left the socket non-blocking"
    );
}

/// How many of the process's fds are open on `path`.
fn fds_open_on(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

/// An open of a FIFO for reading that may create it (`O_CREAT`: never
/// tried without blocking) waits for a writer. If the ring is dropped
/// meanwhile (io_uring interrupts the open; the readiness backend gives up
/// on its pool job once the drain limit passes), the ring's own fds are
/// closed at once (the blocked pool thread held the poller's wake-up fd),
/// and the fd the open makes later is closed, not leaked.
fn a_fifo_open_abandoned_by_a_dropped_ring_leaks_no_fd(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let before = crate::harness::open_fds();
    let mut ring = ring(kind, 8);
    let waits = OpenOptions::new().read(true).custom_flags(libc::O_CREAT);
    ring.open(&path, &waits, ctx(0));
    let got = settle(&mut ring);
    assert!(got.is_empty(), "the open waits for a writer: {got:?}");
    drop(ring);
    assert_eq!(
        crate::harness::open_fds(),
        before,
        "the dropped ring's fds are closed"
    );
    // The open, if it still waits, completes now.
    // SAFETY: opens a NUL-terminated path; the fd is owned below.
    let writer = unsafe { libc::open(c_path.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
    if writer < 0 {
        // No reader is left: the dropped ring's open was interrupted.
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::ENXIO));
        return;
    }
    // SAFETY: the fd was just opened and nothing else owns it.
    let writer = unsafe { OwnedFd::from_raw_fd(writer) };
    // The writer's end reports an error once no reader is left: when the
    // fd the open made is closed.
    let mut pfd = libc::pollfd {
        fd: writer.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert_eq!(ready, 1, "the abandoned open's fd is still open after 10 s");
    assert_ne!(pfd.revents & libc::POLLERR, 0);
    drop(writer);
    assert_eq!(fds_open_on(&path), 0, "an fd on the FIFO is still open");
}

/// The process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A receive on an fd numbered near the process's fd limit (raised as far
/// as allowed) works, and the backend's memory does not grow with the
/// number.
fn an_fd_numbered_near_the_limit_costs_no_memory_by_its_number(kind: BackendKind) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `limit`.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    // Root may raise the hard limit up to the system's maximum.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let raised = libc::rlimit {
        rlim_cur: nr_open.max(limit.rlim_max),
        rlim_max: nr_open.max(limit.rlim_max),
    };
    // SAFETY: setrlimit reads `raised`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        let soft = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) }, 0);
    }
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    if limit.rlim_cur < 1 << 20 {
        eprintln!(
            "skipped: the fd limit ({}) is too low for a table sized by fd number to show",
            limit.rlim_cur
        );
        return;
    }
    let (ours, theirs) = socket_pair();
    let high = (limit.rlim_cur - 16).min(i32::MAX as u64) as i32;
    // SAFETY: F_DUPFD_CLOEXEC makes a new fd numbered `high` or above.
    let fd = unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_DUPFD_CLOEXEC, high) };
    assert!(fd >= high, "F_DUPFD: {}", io::Error::last_os_error());
    // SAFETY: the fd was just made and nothing else owns it.
    let high_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ring = ring(kind, 8);
    let before = rss_kib();
    ring.recv(unchecked(&high_fd), Vec::with_capacity(16), ctx(0));
    assert!(settle(&mut ring).is_empty(), "the receive did not wait");
    std::fs::File::from(theirs).write_all(b"high").unwrap();
    let mut got = crate::harness::run_all(&mut ring);
    let after = rss_kib();
    let (n, buf) = expect!(got.pop().unwrap().outcome, Outcome::Recv(Ok(n), buf) => (n, buf));
    assert_eq!(n, 4);
    assert_eq!(&buf[..], b"high");
    let grown = after.saturating_sub(before);
    assert!(
        grown < 4 * 1024,
        "an operation on fd {fd} grew the process by {grown} KiB"
    );
}
