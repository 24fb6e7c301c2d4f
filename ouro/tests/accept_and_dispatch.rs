//! Drives `examples/accept_and_dispatch.rs` — one ring accepting and handing
//! fds to worker threads round-robin — with many concurrent clients, each of
//! which checks every byte echoed back.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use ouro::{BackendKind, Ring};

#[path = "../examples/accept_and_dispatch.rs"]
#[allow(dead_code)]
mod accept_and_dispatch;

fn serve_and_check(workers: usize, clients: usize, rounds: usize, size: usize) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let builder = Ring::builder().entries(256);
    let server = accept_and_dispatch::Server::start(builder, listener, workers)?;
    let checked = accept_and_dispatch::run_clients(addr, clients, rounds, size)?;
    let stats = server.end()?;
    assert_eq!(checked, (clients * rounds * size) as u64);
    assert_eq!(stats.connections, clients);
    assert_eq!(
        stats.bytes_echoed, checked,
        "the workers echoed what the clients checked"
    );
    // Round-robin: every worker got its share, give or take one.
    let share = clients / workers;
    assert_eq!(stats.per_worker.iter().sum::<usize>(), clients);
    assert!(
        stats
            .per_worker
            .iter()
            .all(|&n| n == share || n == share + 1),
        "{:?}",
        stats.per_worker
    );
    Ok(())
}

#[test]
fn many_clients_are_echoed_by_workers_fed_round_robin() -> io::Result<()> {
    serve_and_check(4, 128, 20, 4096)
}

/// Each message spans several of a worker's 16 KiB receives (and stays
/// within what loopback buffers hold while the client is still writing).
#[test]
fn messages_larger_than_a_workers_buffer_are_echoed_whole() -> io::Result<()> {
    serve_and_check(3, 16, 8, 65_536)
}

#[test]
fn a_server_with_no_connections_stops_its_workers() -> io::Result<()> {
    serve_and_check(2, 0, 0, 0)
}

/// Whether a client's one round trip was served (echoed) or refused (the
/// connection ended unserved: closed, or reset as the server closed it
/// with the request unread).
fn round_trip(addr: std::net::SocketAddr) -> io::Result<(TcpStream, bool)> {
    let mut client = TcpStream::connect(addr)?;
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut echo = [0; 4];
    let served = client
        .write_all(b"ping")
        .and_then(|()| client.read_exact(&mut echo));
    match served {
        Ok(()) => {
            assert_eq!(&echo, b"ping");
            Ok((client, true))
        }
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            Ok((client, false))
        }
        Err(e) => Err(e),
    }
}

/// A worker whose fixed file table is full cannot take a connection: the
/// dispatcher closes it, counts it as ended, and goes on serving, the
/// connections it has and new ones once a slot is free. On io_uring the
/// worker rings take the main ring's table size (8 here); the readiness
/// backend has no such table, and serves every connection.
#[test]
fn a_connection_no_worker_has_room_for_is_closed_and_the_server_goes_on() -> io::Result<()> {
    const CONNECTIONS: usize = 40;
    let on_uring = Ring::<()>::new(4)?.backend() == BackendKind::Uring;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let builder = Ring::builder().entries(256).fixed_files(8);
    let server = accept_and_dispatch::Server::start(builder, listener, 1)?;
    let (mut made, mut refused) = (0, 0);
    let mut open = Vec::new();
    // One at a time, kept open, until the worker's table is full.
    while made < CONNECTIONS / 2 && refused == 0 {
        let (client, served) = round_trip(addr)?;
        made += 1;
        if served {
            open.push(client);
        } else {
            refused += 1;
        }
    }
    assert_eq!(
        refused > 0,
        on_uring,
        "{made} connections, {refused} refused"
    );
    // A slot freed: new connections are served again (once the worker
    // has closed the one that left).
    drop(open.pop());
    let mut served_again = false;
    while made < CONNECTIONS && !served_again {
        let (client, served) = round_trip(addr)?;
        made += 1;
        refused += usize::from(!served);
        served_again = served;
        open.push(client);
        if !served {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert!(served_again, "{made} connections, {refused} refused");
    // The ones kept open were served all along.
    for client in &mut open {
        let mut echo = [0; 4];
        if client.write_all(b"pong").is_ok() && client.read_exact(&mut echo).is_ok() {
            assert_eq!(&echo, b"pong");
        }
    }
    drop(open);
    while made < CONNECTIONS {
        let (_, served) = round_trip(addr)?;
        made += 1;
        refused += usize::from(!served);
    }
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || done.send(server.end()));
    let stats = ended
        .recv_timeout(Duration::from_secs(60))
        .expect("the server ends once told")?;
    assert_eq!(stats.connections, CONNECTIONS);
    assert_eq!(
        stats.refused, refused,
        "the server counts what the clients saw"
    );
    Ok(())
}

/// Whether the server has ended `stream`: the end of the stream or a
/// reset, after whatever was still on its way (a timeout is no end).
fn ended(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == ErrorKind::ConnectionReset,
        }
    }
}

/// Sends to `addr` without reading, until the server stops taking what it
/// sends (its echo is stuck in this socket's buffers).
fn sender_that_never_reads(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nonblocking(true)?;
    let chunk = vec![7; 64 * 1024];
    let started = std::time::Instant::now();
    let mut blocked = 0;
    // Blocked for a second on end, or 30 s in all (then it is stuck
    // enough).
    while blocked < 50 && started.elapsed() < Duration::from_secs(30) {
        match (&stream).write(&chunk) {
            Ok(_) => blocked = 0,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                blocked += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(stream)
}

/// A loopback port takes connections from any local process, not only
/// from the server's own clients: one that never sends and one that sends
/// without reading are served too, do not keep the server from ending,
/// and are closed when it ends.
#[test]
fn other_connections_are_closed_when_the_server_ends() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let builder = Ring::builder().entries(256);
    let server = accept_and_dispatch::Server::start(builder, listener, 2)?;
    let mut idle = TcpStream::connect(addr)?;
    let mut flooding = sender_that_never_reads(addr)?;
    let checked = accept_and_dispatch::run_clients(addr, 8, 10, 1000)?;
    let (done, ended_with) = mpsc::channel();
    std::thread::spawn(move || done.send(server.end()));
    let stats = ended_with
        .recv_timeout(Duration::from_secs(60))
        .expect("the server ends once told, whatever others do")?;
    assert_eq!(stats.connections, 10);
    assert!(stats.bytes_echoed > checked, "{stats:?}, {checked} checked");
    assert!(ended(&mut idle), "the idle connection is still open");
    assert!(
        ended(&mut flooding),
        "the flooding connection is still open"
    );
    Ok(())
}
