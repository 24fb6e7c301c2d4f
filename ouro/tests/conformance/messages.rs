//! Messages between two rings of one kind: a number delivered, a
//! connection's ring fd moved to the other ring and used there, and, once
//! that ring is dropped, a message and an fd refused with `EPIPE` and
//! their payloads handed back.

use ouro::{Ctx, Outcome, Payload, Ring, RunMode};

use crate::env::{self, Done, Env, Step};
use crate::scenarios::{close, pair, recv};

/// Turns `ring` until it has delivered the completion `key`.
fn delivered(ring: &mut Ring<Done>, done: &mut Done, key: u64) -> Outcome {
    for _ in 0..1000 {
        if let Some(i) = done.iter().position(|&(k, _)| k == key) {
            return done.remove(i).1;
        }
        let mode = if ring.live_tasks() > 0 {
            RunMode::Once
        } else {
            RunMode::NoWait
        };
        ring.run(done, mode).expect("running the other ring");
        std::thread::yield_now();
    }
    panic!("the other ring never delivered {key}")
}

pub fn messages_and_moved_fds_between_rings(env: &mut Env) {
    let mut other = env.another_ring();
    let mut other_done = Done::new();
    let handle = other.handle().expect("a handle");
    let message = || Ctx::new(env::record);
    let sent = env.op(|ring, ctx| ring.msg_ring(&handle, message().key(1), Payload::U64(7), ctx));
    env.note_outcome("msg_ring", sent);
    let got = delivered(&mut other, &mut other_done, 1);
    env.note("delivered", payload(got));

    let pair = pair(env);
    let moved = env.op(|ring, ctx| ring.send_fd(&handle, pair.server, message().key(2), ctx));
    env.note_outcome("send_fd", moved);
    let Outcome::Message(Payload::RingFd(fd)) = delivered(&mut other, &mut other_done, 2) else {
        panic!("the moved connection did not arrive as a ring fd");
    };
    other.send(fd, b"pong".to_vec(), message().key(3));
    let sent = delivered(&mut other, &mut other_done, 3);
    env.note_outcome("send on the moved fd", sent);
    let answer = recv(env, pair.client, 64);
    env.note_outcome("receive its bytes", answer);
    other.close(fd, message().key(4));
    let closed = delivered(&mut other, &mut other_done, 4);
    env.note_outcome("close the moved fd", closed);
    let end = recv(env, pair.client, 64);
    env.note_outcome("receive its end", end);

    drop(other);
    let refused = env.op(|ring, ctx| ring.msg_ring(&handle, message(), Payload::U64(9), ctx));
    let Outcome::MsgRing(result, back) = refused else {
        panic!("not a message's outcome");
    };
    env.note(
        "msg_ring to the dropped ring",
        result.map_or_else(|e| env::error(&e), |()| Step::Ok),
    );
    env.note(
        "its payload back",
        Step::Fact(format!("{:?}", back.as_u64())),
    );
    let refused = env.op(|ring, ctx| ring.send_fd(&handle, pair.client, message(), ctx));
    let Outcome::MsgRing(result, back) = refused else {
        panic!("not a message's outcome");
    };
    env.note(
        "send_fd to the dropped ring",
        result.map_or_else(|e| env::error(&e), |()| Step::Ok),
    );
    let still_ours = back.ring_fd() == Some(pair.client);
    env.note(
        "the fd back",
        Step::Fact(format!("still ours: {still_ours}")),
    );
    close(env, pair.client, "close client");
    close(env, pair.listener, "close listener");
}

/// What a delivered message carried.
fn payload(outcome: Outcome) -> Step {
    match outcome {
        Outcome::Message(payload) => Step::Fact(format!("{payload:?}")),
        other => panic!("not a message: {other:?}"),
    }
}
