//! Conformance: each scenario is one function of an [`Env`], run on the
//! simulator (faults off), on io_uring and on the readiness backend (over
//! loopback), each run writing a transcript of what every step ended with;
//! the transcripts must be equal, so the simulator cannot drift from what
//! kernels do. Where kernels may legitimately answer in more than one way,
//! the scenario names the set of answers as one step (see
//! `send_after_the_peer_closed`). A host without io_uring skips that leg.

#![cfg(target_os = "linux")]

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod env;
mod errors;
mod files;
mod messages;
mod multishot;
mod queues;
mod udp;

use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::{BackendKind, Outcome, RingFd};

use common::backends::skipped;
use common::watchdog::run_within;
use env::{Env, Leg, Step, LEG_LIMIT};

/// Runs `scenario` on every leg and checks the transcripts are equal.
fn conform(scenario: fn(&mut Env)) {
    let expected = run_leg(scenario, Leg::Simulated);
    for kind in [BackendKind::Uring, BackendKind::Poll] {
        if skipped(kind) {
            continue;
        }
        let real = run_within(LEG_LIMIT, move || run_leg(scenario, Leg::Real(kind)));
        assert_eq!(
            expected, real,
            "the simulator's transcript (left) differs from {kind:?}'s (right)"
        );
    }
}

fn run_leg(scenario: fn(&mut Env), leg: Leg) -> Vec<(&'static str, Step)> {
    let mut env = Env::new(leg);
    scenario(&mut env);
    env.finish()
}

/// One test per scenario, each comparing the three legs.
macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        $(#[test] fn $name() { conform(scenarios::$name) })+
    };
}

conformance!(
    connect_and_accept,
    bytes_both_ways,
    recv_after_the_peers_shutdown,
    close_with_unread_data_resets_the_peer,
    send_after_the_peer_closed,
    dropping_the_fd_closes_the_connection,
    connect_to_a_closed_port,
    cancel_a_pending_recv,
    deadline_on_a_pending_recv,
    timers_fire_in_order,
    ops_on_closed_and_foreign_ring_fds,
    sockets_in_the_wrong_state,
    listen_without_bind,
    bind_an_address_in_use,
    bind_twice_and_to_an_address_bound,
    noop,
    shutdown_read_then_recv,
    two_pending_receives_see_the_end,
    cancel_a_pending_accept,
    udp_datagrams_keep_their_boundaries,
    udp_long_datagrams_are_cut_to_the_room,
    udp_connected_socket_takes_its_peer_only,
    udp_sends_the_kernel_refuses,
    udp_connected_send_to_a_closed_port,
    udp_cancel_a_pending_recv_from,
    udp_sendmsg_gathers_and_recvmsg_scatters,
    udp_shutdown,
    udp_to_and_from_the_unspecified_address,
    listen_on_the_wildcard,
    a_burst_beyond_the_queues_completes_every_operation_once,
    files_write_read_and_sync,
    files_the_kernel_refuses,
    files_append_truncate_rename_unlink,
    files_directories_renamed_and_removed,
    files_paths_the_kernel_refuses,
    files_positional_write_on_an_append_fd,
    files_rename_between_links_of_one_file,
    files_link_and_rename_check_the_paths_in_order,
    multishot_accept_and_recv_into_a_group,
    messages_and_moved_fds_between_rings,
);

mod scenarios {
    pub use super::errors::*;
    pub use super::files::*;
    pub use super::messages::*;
    pub use super::multishot::*;
    pub use super::queues::*;
    pub use super::udp::*;
    use super::{env, Domain, Duration, Env, Outcome, RingFd, Shutdown, SocketAddr, Step, Type};

    /// A listener, a client connected to it and the accepted end.
    pub struct Pair {
        pub listener: RingFd,
        pub addr: SocketAddr,
        pub client: RingFd,
        pub server: RingFd,
    }

    /// A socket made and noted as `step`.
    pub fn socket(env: &mut Env, step: &'static str) -> RingFd {
        let made = env.op(|ring, ctx| ring.socket(Domain::IPV4, Type::STREAM, None, ctx));
        env.note_outcome(step, made).expect("a socket")
    }

    /// A listening socket and the address to connect to.
    pub fn listener(env: &mut Env) -> (RingFd, SocketAddr) {
        let listener = socket(env, "listener socket");
        let asked = env.listen_addr();
        let bound = env.op(|ring, ctx| ring.bind(listener, asked, ctx));
        env.note_outcome("bind", bound);
        let listening = env.op(|ring, ctx| ring.listen(listener, 16, ctx));
        env.note_outcome("listen", listening);
        (listener, env.bound_addr(listener, asked))
    }

    /// A connection, its accept pending while the client connects.
    pub fn pair(env: &mut Env) -> Pair {
        let (listener, addr) = listener(env);
        let client = socket(env, "client socket");
        let (accept, _) = env.start(|ring, ctx| ring.accept(listener, ctx));
        let connected = env.op(|ring, ctx| ring.connect(client, addr, ctx));
        env.note_outcome("connect", connected);
        let accepted = env.wait(accept);
        let server = env.note_outcome("accept", accepted).expect("a connection");
        Pair {
            listener,
            addr,
            client,
            server,
        }
    }

    pub fn close(env: &mut Env, fd: RingFd, step: &'static str) {
        let closed = env.op(|ring, ctx| ring.close(fd, ctx));
        env.note_outcome(step, closed);
    }

    pub fn close_pair(env: &mut Env, pair: Pair) {
        close(env, pair.client, "close client");
        close(env, pair.server, "close server");
        close(env, pair.listener, "close listener");
    }

    /// Receives on `fd` into a buffer of `room` bytes.
    pub fn recv(env: &mut Env, fd: RingFd, room: usize) -> Outcome {
        env.op(|ring, ctx| ring.recv(fd, Vec::with_capacity(room), ctx))
    }

    /// A receive's bytes, or its error as a step.
    fn received(outcome: Outcome) -> Result<Vec<u8>, Step> {
        match outcome {
            Outcome::Recv(Ok(_), buf) => Ok(buf.into_vec()),
            Outcome::Recv(Err(err), _) => Err(env::error(&err)),
            other => panic!("not a receive: {other:?}"),
        }
    }

    /// Sends `data` from `from` while receiving it on `to`, one send and
    /// one receive in flight, however the bytes are cut; notes how many
    /// arrived and whether they are `data`, in order.
    fn transfer(env: &mut Env, from: RingFd, to: RingFd, data: &[u8], step: &'static str) {
        let mut sent = 0;
        let mut got = Vec::with_capacity(data.len());
        let mut sending = None;
        let mut receiving = None;
        while got.len() < data.len() {
            if sending.is_none() && sent < data.len() {
                let chunk = data[sent..].to_vec();
                sending = Some(env.start(|ring, ctx| ring.send(from, chunk, ctx)).0);
            }
            if receiving.is_none() {
                let buf = Vec::with_capacity(16 * 1024);
                receiving = Some(env.start(|ring, ctx| ring.recv(to, buf, ctx)).0);
            }
            env.turn();
            if let Some(outcome) = sending.and_then(|key| env.take(key)) {
                sending = None;
                match outcome {
                    Outcome::Send(Ok(n), _) => sent += n,
                    other => panic!("{step}: a send ended with {other:?}"),
                }
            }
            if let Some(outcome) = receiving.and_then(|key| env.take(key)) {
                receiving = None;
                match received(outcome) {
                    Ok(bytes) if !bytes.is_empty() => got.extend_from_slice(&bytes),
                    other => panic!("{step}: a receive ended with {other:?}"),
                }
            }
        }
        if let Some(key) = sending {
            env.wait(key);
        }
        env.note(step, Step::Bytes(got.len()));
        env.note(step, Step::Fact(format!("in order: {}", got == data)));
    }

    /// Recognisable bytes: no shifted or repeated stretch matches.
    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ ((i >> 8) as u8) ^ salt)
            .collect()
    }

    pub fn connect_and_accept(env: &mut Env) {
        let pair = pair(env);
        let again = env.op(|ring, ctx| ring.connect(pair.client, pair.addr, ctx));
        env.note_outcome("connect the connected socket again", again);
        let twice = env.op(|ring, ctx| ring.listen(pair.listener, 16, ctx));
        env.note_outcome("listen again", twice);
        close_pair(env, pair);
    }

    pub fn bytes_both_ways(env: &mut Env) {
        let pair = pair(env);
        transfer(
            env,
            pair.client,
            pair.server,
            &pattern(300_000, 1),
            "client to server",
        );
        transfer(
            env,
            pair.server,
            pair.client,
            &pattern(200_000, 2),
            "server to client",
        );
        close_pair(env, pair);
    }

    pub fn recv_after_the_peers_shutdown(env: &mut Env) {
        let pair = pair(env);
        let sent = env.op(|ring, ctx| ring.send(pair.client, b"bye!".to_vec(), ctx));
        env.note_outcome("client sends", sent);
        let shut = env.op(|ring, ctx| ring.shutdown(pair.client, Shutdown::Write, ctx));
        env.note_outcome("client shuts its writing side", shut);
        let mut got = Vec::new();
        loop {
            match received(recv(env, pair.server, 64)) {
                Ok(bytes) if bytes.is_empty() => break,
                Ok(bytes) => got.extend_from_slice(&bytes),
                Err(err) => panic!("server's receive: {err:?}"),
            }
        }
        env.note("server receives, to the end", Step::Bytes(got.len()));
        let end = recv(env, pair.server, 64);
        env.note_outcome("server receives after the end", end);
        // Half-closed: the other way still carries bytes.
        let back = env.op(|ring, ctx| ring.send(pair.server, b"ok".to_vec(), ctx));
        env.note_outcome("server sends back", back);
        let answer = recv(env, pair.client, 64);
        env.note_outcome("client receives", answer);
        let again = env.op(|ring, ctx| ring.send(pair.client, b"x".to_vec(), ctx));
        env.note_outcome("client sends after its shutdown", again);
        close_pair(env, pair);
    }

    pub fn close_with_unread_data_resets_the_peer(env: &mut Env) {
        let pair = pair(env);
        let sent = env.op(|ring, ctx| ring.send(pair.server, b"0123456789".to_vec(), ctx));
        env.note_outcome("server sends", sent);
        // One byte read: the rest has arrived and stays unread.
        let first = recv(env, pair.client, 1);
        env.note_outcome("client receives one byte", first);
        close(env, pair.client, "client closes with 9 bytes unread");
        let reset = recv(env, pair.server, 64);
        env.note_outcome("server receives", reset);
        // The reset's error is reported once; then the connection is gone.
        let sent = env.op(|ring, ctx| ring.send(pair.server, b"late".to_vec(), ctx));
        env.note_outcome("server sends after the reset", sent);
        let after = recv(env, pair.server, 64);
        env.note_outcome("server receives after the reset", after);
        close(env, pair.server, "close server");
        close(env, pair.listener, "close listener");
    }

    /// After the peer closed, sends go on succeeding until its reset
    /// arrives: how many do depends on when it does, so only the first
    /// error is noted. The peer's FIN came first, so the reset's error is
    /// `EPIPE`, not `ECONNRESET` (Linux's `tcp_reset` in `CLOSE_WAIT`).
    pub fn send_after_the_peer_closed(env: &mut Env) {
        let pair = pair(env);
        close(env, pair.client, "client closes");
        let end = recv(env, pair.server, 64);
        env.note_outcome("server receives the end", end);
        sends_until_the_reset(env, pair);
    }

    /// A program that drops a connection's fd instead of closing it
    /// through the ring closes it all the same: the peer's pending
    /// receive sees the end, then its sends fail.
    pub fn dropping_the_fd_closes_the_connection(env: &mut Env) {
        let pair = pair(env);
        let (pending, _) =
            env.start(|ring, ctx| ring.recv(pair.server, Vec::with_capacity(64), ctx));
        let client = env.ring.take_fd(pair.client).expect("the client's fd");
        drop(client);
        let end = env.wait(pending);
        env.note_outcome("server receives the end", end);
        sends_until_the_reset(env, pair);
    }

    /// Sends on the server's end until one fails (the peer is gone), notes
    /// that error and what a receive then gives, and closes what is left.
    fn sends_until_the_reset(env: &mut Env, pair: Pair) {
        let first_error = (0..100)
            .find_map(|_| {
                match env.op(|ring, ctx| ring.send(pair.server, b"anyone?".to_vec(), ctx)) {
                    Outcome::Send(Ok(_), _) => None,
                    Outcome::Send(Err(err), _) => Some(env::error(&err)),
                    other => panic!("not a send: {other:?}"),
                }
            })
            .expect("a send fails once the peer is gone");
        env.note("server sends until one fails", first_error);
        let after = recv(env, pair.server, 64);
        env.note_outcome("server receives after the reset", after);
        close(env, pair.server, "close server");
        close(env, pair.listener, "close listener");
    }

    /// A listener on the wildcard takes connects to loopback, and to the
    /// unspecified address, which is this host.
    pub fn listen_on_the_wildcard(env: &mut Env) {
        let listener = socket(env, "listener socket");
        let asked = SocketAddr::from(([0, 0, 0, 0], if env.simulated() { 7005 } else { 0 }));
        let bound = env.op(|ring, ctx| ring.bind(listener, asked, ctx));
        env.note_outcome("bind the wildcard", bound);
        let listening = env.op(|ring, ctx| ring.listen(listener, 16, ctx));
        env.note_outcome("listen", listening);
        let port = env.bound_addr(listener, asked).port();
        for (to, step) in [
            ([127, 0, 0, 1], "connect to loopback"),
            ([0, 0, 0, 0], "connect to 0.0.0.0"),
        ] {
            let client = socket(env, "client socket");
            let (accept, _) = env.start(|ring, ctx| ring.accept(listener, ctx));
            let connected =
                env.op(|ring, ctx| ring.connect(client, SocketAddr::from((to, port)), ctx));
            env.note_outcome(step, connected);
            let accepted = env.wait(accept);
            let server = env.note_outcome("accept", accepted).expect("a connection");
            transfer(env, client, server, b"over the wildcard", "bytes");
            close(env, client, "close client");
            close(env, server, "close server");
        }
        close(env, listener, "close listener");
    }

    pub fn connect_to_a_closed_port(env: &mut Env) {
        let client = socket(env, "client socket");
        let addr = env.refused_addr();
        let refused = env.op(|ring, ctx| ring.connect(client, addr, ctx));
        env.note_outcome("connect", refused);
        close(env, client, "close client");
    }

    pub fn cancel_a_pending_recv(env: &mut Env) {
        let pair = pair(env);
        let (pending, task) =
            env.start(|ring, ctx| ring.recv(pair.client, Vec::with_capacity(64), ctx));
        let cancel = env.op(|ring, ctx| ring.cancel(task, ctx));
        env.note_outcome("cancel", cancel);
        let canceled = env.wait(pending);
        env.note_outcome("the receive", canceled);
        // The connection is still usable.
        let sent = env.op(|ring, ctx| ring.send(pair.server, b"still here".to_vec(), ctx));
        env.note_outcome("server sends", sent);
        let got = recv(env, pair.client, 64);
        env.note_outcome("client receives", got);
        close_pair(env, pair);
    }

    pub fn deadline_on_a_pending_recv(env: &mut Env) {
        let pair = pair(env);
        let (pending, task) =
            env.start(|ring, ctx| ring.recv(pair.client, Vec::with_capacity(64), ctx));
        env.ring
            .set_timeout(task, Duration::from_millis(20))
            .expect("a deadline on a live task");
        let late = env.wait(pending);
        env.note_outcome("the receive", late);
        close_pair(env, pair);
    }

    pub fn timers_fire_in_order(env: &mut Env) {
        let mut keys = Vec::new();
        for ms in [30, 10, 20, 0] {
            let after = Duration::from_millis(ms);
            keys.push(env.start(|ring, ctx| ring.timer(after, ctx)).0);
        }
        while env.ring.live_tasks() > 0 {
            env.turn();
        }
        let order: Vec<usize> = env
            .delivered()
            .iter()
            .map(|key| keys.iter().position(|k| k == key).expect("a timer's key"))
            .collect();
        env.note(
            "timers of 30, 10, 20, 0 ms fire",
            Step::Fact(format!("as {order:?}")),
        );
        for key in keys {
            let fired = env.wait(key);
            env.note_outcome("a timer", fired);
        }
    }
}
