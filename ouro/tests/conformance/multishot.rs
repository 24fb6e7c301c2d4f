//! Conformance of the multishot operations: a multishot accept that takes
//! one connection per completion, and a multishot receive into a buffer
//! group: the "more" flag on every completion but the last, bytes cut to
//! the group's buffer size, `ENOBUFS` ending the receive when every buffer
//! is held, the end of the stream and a cancel ending it.

use std::io;

use ouro::{Completion, Ctx, Outcome, Ring, RingFd};

use super::env::{self, Done, Env, Step};
use super::scenarios::{close, listener, socket};

/// Added to a key for a task's final completion.
const FINAL: u64 = 1 << 40;
const ACCEPTS: u64 = 1000;
const RECEIVES: u64 = 2000;

/// Records a multishot task's completions in order, the final one under
/// its key plus `FINAL`.
fn record_shot(done: &mut Done, _: &mut Ring<Done>, c: Completion) -> io::Result<()> {
    let key = if c.is_final() {
        c.key() + FINAL
    } else {
        c.key()
    };
    done.push((key, c.outcome));
    Ok(())
}

/// The next completion of the multishot task `key`, and whether it was
/// its last.
fn next_shot(env: &mut Env, key: u64) -> (Outcome, bool) {
    loop {
        if let Some(outcome) = env.take(key) {
            return (outcome, false);
        }
        if let Some(outcome) = env.take(key + FINAL) {
            return (outcome, true);
        }
        env.turn();
    }
}

fn more(last: bool) -> Step {
    Step::Fact(format!("more follow: {}", !last))
}

/// Bytes that show where they were cut: no two stretches alike.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ 0x5a)
        .collect()
}

fn send(env: &mut Env, fd: RingFd, data: Vec<u8>, step: &'static str) {
    let sent = env.op(|ring, ctx| ring.send(fd, data, ctx));
    env.note_outcome(step, sent);
}

pub fn multishot_accept_and_recv_into_a_group(env: &mut Env) {
    let (listener, addr) = listener(env);
    let accept = env
        .ring
        .accept_multishot(listener, Ctx::new(record_shot).key(ACCEPTS));
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..3 {
        let client = socket(env, "client socket");
        let connected = env.op(|ring, ctx| ring.connect(client, addr, ctx));
        env.note_outcome("connect", connected);
        let (accepted, last) = next_shot(env, ACCEPTS);
        let fd = match accepted {
            Outcome::AcceptMulti(Ok(fd)) => Some(env.ring.register_fd(fd)),
            Outcome::AcceptMulti(Err(err)) => {
                env.note("accept a connection", env::error(&err));
                None
            }
            other => panic!("not a multishot accept: {other:?}"),
        };
        env.note("accept a connection", more(last));
        clients.push(client);
        servers.extend(fd);
    }
    env.ring.cancel(accept, Ctx::none());
    let (ended, last) = next_shot(env, ACCEPTS);
    env.note_outcome_shot("cancel the multishot accept", ended, last);

    let group = env.ring.buffer_group(4, 64).expect("a buffer group");
    let (client, server) = (clients[0], servers[0]);
    let ctx = Ctx::new(record_shot).key(RECEIVES);
    env.ring.recv_multishot(server, &group, ctx);
    // 256 bytes fill the four buffers, which are all held.
    let data = pattern(257);
    send(env, client, data[..256].to_vec(), "send 256 bytes");
    let mut held = Vec::new();
    let mut got = Vec::new();
    let mut fit = true;
    while got.len() < 256 {
        match next_shot(env, RECEIVES) {
            (Outcome::RecvMulti(Ok(buf)), false) if !buf.is_empty() => {
                fit &= buf.len() <= 64;
                got.extend_from_slice(&buf);
                held.push(buf);
            }
            other => panic!("a shot of the receive: {other:?}"),
        }
    }
    env.note("receive 256 bytes", Step::Bytes(got.len()));
    env.note(
        "receive 256 bytes",
        Step::Fact(format!("in order: {}", got == data[..256])),
    );
    env.note(
        "receive 256 bytes",
        Step::Fact(format!("each fits a buffer: {fit}")),
    );
    env.note(
        "every buffer held",
        Step::Fact(format!("available: {}", group.available())),
    );
    send(env, client, data[256..].to_vec(), "send one more byte");
    let (ended, last) = next_shot(env, RECEIVES);
    env.note_outcome_shot("no buffer for it", ended, last);
    drop(held);
    env.note(
        "buffers given back",
        Step::Fact(format!("available: {}", group.available())),
    );
    let ctx = Ctx::new(record_shot).key(RECEIVES + 1);
    let receive = env.ring.recv_multishot(server, &group, ctx);
    let (byte, last) = next_shot(env, RECEIVES + 1);
    env.note_outcome_shot("re-armed, the byte arrives", byte, last);
    env.ring.cancel(receive, Ctx::none());
    let (ended, last) = next_shot(env, RECEIVES + 1);
    env.note_outcome_shot("cancel the multishot receive", ended, last);

    // The end of the stream ends a multishot receive.
    let ctx = Ctx::new(record_shot).key(RECEIVES + 2);
    env.ring.recv_multishot(servers[1], &group, ctx);
    close(env, clients[1], "close a client");
    let (end, last) = next_shot(env, RECEIVES + 2);
    env.note_outcome_shot("the peer's close ends the receive", end, last);

    for (i, (client, server)) in clients.into_iter().zip(servers).enumerate() {
        if i != 1 {
            close(env, client, "close client");
        }
        close(env, server, "close server");
    }
    close(env, listener, "close listener");
    env.note(
        "every buffer back",
        Step::Fact(format!("available: {}", group.available())),
    );
}

impl Env {
    /// Writes one completion of a multishot task into the transcript:
    /// what it came to and whether more follow.
    fn note_outcome_shot(&mut self, step: &'static str, outcome: Outcome, last: bool) {
        let what = match outcome {
            Outcome::AcceptMulti(Ok(_)) => Step::Fd,
            Outcome::RecvMulti(Ok(buf)) => Step::Bytes(buf.len()),
            Outcome::AcceptMulti(Err(err)) | Outcome::RecvMulti(Err(err)) => env::error(&err),
            other => panic!("not a multishot operation: {other:?}"),
        };
        self.note(step, what);
        self.note(step, more(last));
    }
}
