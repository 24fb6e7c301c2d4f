//! Drives `examples/accept_and_dispatch.rs` — one ring accepting and handing
//! fds to worker threads round-robin — with many concurrent clients, each of
//! which checks every byte echoed back.

use std::io;
use std::net::TcpListener;

#[path = "../examples/accept_and_dispatch.rs"]
#[allow(dead_code)]
mod accept_and_dispatch;

fn serve_and_check(workers: usize, clients: usize, rounds: usize, size: usize) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || accept_and_dispatch::serve(listener, workers, clients));
    let checked = accept_and_dispatch::run_clients(addr, clients, rounds, size)?;
    let stats = server.join().expect("the server thread panicked")?;
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
