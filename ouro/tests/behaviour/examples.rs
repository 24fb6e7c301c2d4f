//! The examples, run as written (their `run` is what their `main` calls).

use std::io::Read;
use std::os::fd::OwnedFd;

use ouro::BackendKind;

use crate::echo_example::{self, Options};
use crate::harness::{pipe, ring, temp_file};
use crate::multiwriter_example;
use crate::udp_echo_example;

backend_tests![
    echo_clients_all_finish_with_every_byte_verified,
    echo_with_two_receive_buffers_still_verifies_every_byte,
    multiwriter_writes_everything_to_both_fds,
    udp_echo_returns_every_datagram_to_its_sender,
    udp_echo_drops_a_datagram_whose_echo_would_loop,
];

fn echo_run(kind: BackendKind, buffers: u16) {
    let options = Options {
        serve: None,
        clients: 8,
        rounds: 25,
        size: 5000,
        backend: Some(kind),
        buffers,
    };
    let report = echo_example::run(&options).unwrap();
    assert_eq!(report.clients_done, 8);
    assert_eq!(report.round_trips, 8 * 25);
    assert_eq!(report.bytes_verified, 8 * 25 * 5000);
}

fn echo_clients_all_finish_with_every_byte_verified(kind: BackendKind) {
    echo_run(kind, 1024);
}

/// Eight connections share two receive buffers: receives keep running out
/// (`ENOBUFS`) and must be re-armed as sends give buffers back.
fn echo_with_two_receive_buffers_still_verifies_every_byte(kind: BackendKind) {
    echo_run(kind, 2);
}

/// 256 KiB to a pipe (four times what it holds, so the writes wait for the
/// reader and may come back partial) and to a file.
fn multiwriter_writes_everything_to_both_fds(kind: BackendKind) {
    let data: Vec<u8> = (0..256 * 1024).map(|i| (i % 253) as u8).collect();
    let (reader, writer) = pipe();
    let reading = std::thread::spawn(move || {
        let mut piped = Vec::new();
        std::fs::File::from(reader).read_to_end(&mut piped).unwrap();
        piped
    });
    let file = temp_file(b"");
    let file_fd = OwnedFd::from(file.try_clone().unwrap());
    let mut ring = ring(kind, 16);
    let chunks = [&data[..1000], &data[1000..]];
    let written = multiwriter_example::run(&mut ring, writer, file_fd, &chunks).unwrap();
    assert_eq!(written, [data.len(); 2]);
    // `run` dropped the writer, so the reader has reached end of file.
    let piped = reading.join().unwrap();
    assert!(
        piped == data,
        "the pipe got {} bytes, not the same",
        piped.len()
    );
    let mut stored = Vec::new();
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut stored)
        .unwrap();
    assert!(
        stored == data,
        "the file got {} bytes, not the same",
        stored.len()
    );
}

type EchoHandle = ouro::RingHandle<udp_echo_example::Echo>;
type EchoThread = std::thread::JoinHandle<std::io::Result<(u64, u64)>>;

/// The UDP echo example on its own thread, on loopback: its address, a
/// handle to stop it, and the thread, which returns its counts (echoed,
/// dropped).
fn udp_echo_server(kind: BackendKind) -> (std::net::SocketAddr, EchoHandle, EchoThread) {
    let socket = ouro::net::udp_socket(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = ouro::net::local_addr(&socket).unwrap();
    let (handles, handle) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut ring = ring(kind, 64);
        handles.send(ring.handle().unwrap()).unwrap();
        // The state holds its socket in an `Rc`: only the counts leave.
        udp_echo_example::serve(&mut ring, socket).map(|echo| (echo.echoed, echo.dropped))
    });
    (addr, handle.recv().unwrap(), server)
}

/// Four clients at once, each in lockstep (a datagram, then its echo),
/// with datagrams from empty to 9000 bytes; then one client with the
/// largest IPv4 payload, alone (four of those at once could overflow the
/// server socket's receive buffer, and UDP would drop one, rightly). Then
/// the server is stopped from this thread and reports every one echoed.
fn udp_echo_returns_every_datagram_to_its_sender(kind: BackendKind) {
    const ROUNDS: usize = 10;
    let sizes = [0, 1, 100, 1472, 9000];
    let (addr, handle, server) = udp_echo_server(kind);
    let clients: Vec<_> = (0..4)
        .map(|client| std::thread::spawn(move || udp_echo_client(addr, client, &sizes)))
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    udp_echo_client(addr, 4, &[65_507]);
    handle.stop().unwrap();
    let (echoed, dropped) = server.join().unwrap().unwrap();
    assert_eq!(echoed, (4 * ROUNDS * sizes.len() + ROUNDS) as u64);
    assert_eq!(dropped, 0);

    fn udp_echo_client(server: std::net::SocketAddr, client: usize, sizes: &[usize]) {
        let socket = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut echo = vec![0; 65_536];
        for round in 0..ROUNDS {
            for &size in sizes {
                let sent: Vec<u8> = (0..size).map(|i| (i + client + round) as u8).collect();
                socket.send_to(&sent, server).unwrap();
                let (n, from) = socket.recv_from(&mut echo).expect("an echo");
                assert_eq!(from, server);
                assert!(echo[..n] == sent[..], "client {client}: {size} bytes");
            }
        }
    }
}

/// A datagram from the server's own port (here from another loopback
/// address, as a forged source or another echo server on that port would
/// come) is dropped, not echoed: two such servers would echo one datagram
/// to each other for ever, and one with a forged source to itself.
fn udp_echo_drops_a_datagram_whose_echo_would_loop(kind: BackendKind) {
    let (addr, handle, server) = udp_echo_server(kind);
    let twin = std::net::UdpSocket::bind(("127.0.0.2", addr.port())).unwrap();
    twin.send_to(b"loop?", addr).unwrap();
    // Taken after the twin's: its echo, had it been sent, came first.
    let client = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    client.send_to(b"fine", addr).unwrap();
    let mut echo = [0; 16];
    let (n, _) = client.recv_from(&mut echo).expect("an echo");
    assert_eq!(&echo[..n], b"fine");
    handle.stop().unwrap();
    assert_eq!(server.join().unwrap().unwrap(), (1, 1), "(echoed, dropped)");
    twin.set_nonblocking(true).unwrap();
    let nothing = twin
        .recv_from(&mut echo)
        .map(|(n, from)| (echo[..n].to_vec(), from));
    assert!(nothing.is_err(), "the twin got {nothing:?}");
}
