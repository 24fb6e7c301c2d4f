//! Scenarios of operations the kernel refuses: fds that are closed or
//! another ring's, sockets in the wrong state, an address in use.

use std::net::Shutdown;
use std::os::fd::AsFd;

use crate::env::Env;
use crate::scenarios::{close, close_pair, listener, pair, recv, socket, Pair};

pub fn ops_on_closed_and_foreign_ring_fds(env: &mut Env) {
    let pair = pair(env);
    let client = pair.client;
    close(env, client, "close client");
    let closed = recv(env, client, 64);
    env.note_outcome("receive on the closed ring fd", closed);
    let sent = env.op(|ring, ctx| ring.send(client, b"x".to_vec(), ctx));
    env.note_outcome("send on the closed ring fd", sent);
    let mut other = env.another_ring();
    let foreign = other.register_fd(std::io::stdin().as_fd().try_clone_to_owned().expect("dup"));
    env.keep(other);
    let refused = recv(env, foreign, 64);
    env.note_outcome("receive on another ring's fd", refused);
    close(env, pair.server, "close server");
    close(env, pair.listener, "close listener");
}

pub fn sockets_in_the_wrong_state(env: &mut Env) {
    let fresh = socket(env, "unconnected socket");
    let got = recv(env, fresh, 64);
    env.note_outcome("receive on it", got);
    let sent = env.op(|ring, ctx| ring.send(fresh, b"x".to_vec(), ctx));
    env.note_outcome("send on it", sent);
    let shut = env.op(|ring, ctx| ring.shutdown(fresh, Shutdown::Write, ctx));
    env.note_outcome("shut it down", shut);
    let accepted = env.op(|ring, ctx| ring.accept(fresh, ctx));
    env.note_outcome("accept on it", accepted);
    close(env, fresh, "close it");
}

pub fn listen_without_bind(env: &mut Env) {
    let unbound = socket(env, "socket");
    let listening = env.op(|ring, ctx| ring.listen(unbound, 16, ctx));
    env.note_outcome("listen without bind", listening);
    let asked = env.listen_addr();
    let bound = env.op(|ring, ctx| ring.bind(unbound, asked, ctx));
    env.note_outcome("bind once listening", bound);
    close(env, unbound, "close it");
}

/// A socket is bound once, and an address bound is in use even before
/// anyone listens on it.
pub fn bind_twice_and_to_an_address_bound(env: &mut Env) {
    let first = socket(env, "first socket");
    let asked = env.listen_addr();
    let bound = env.op(|ring, ctx| ring.bind(first, asked, ctx));
    env.note_outcome("bind", bound);
    let addr = env.bound_addr(first, asked);
    let again = env.op(|ring, ctx| ring.bind(first, asked, ctx));
    env.note_outcome("bind it again", again);
    let second = socket(env, "second socket");
    let taken = env.op(|ring, ctx| ring.bind(second, addr, ctx));
    env.note_outcome("bind the first's address, neither listening", taken);
    // The first socket is still where it was bound first.
    let listening = env.op(|ring, ctx| ring.listen(first, 16, ctx));
    env.note_outcome("listen", listening);
    let (accept, _) = env.start(|ring, ctx| ring.accept(first, ctx));
    let connected = env.op(|ring, ctx| ring.connect(second, addr, ctx));
    env.note_outcome("connect to the address bound first", connected);
    let accepted = env.wait(accept);
    let server = env.note_outcome("accept", accepted).expect("a connection");
    let rebound = env.op(|ring, ctx| ring.bind(second, asked, ctx));
    env.note_outcome("bind the connected socket", rebound);
    let pair = Pair {
        listener: first,
        addr,
        client: second,
        server,
    };
    close_pair(env, pair);
}

pub fn bind_an_address_in_use(env: &mut Env) {
    let (listener, addr) = listener(env);
    let second = socket(env, "second socket");
    let bound = env.op(|ring, ctx| ring.bind(second, addr, ctx));
    env.note_outcome("bind the listener's address", bound);
    close(env, second, "close second");
    close(env, listener, "close listener");
}

pub fn noop(env: &mut Env) {
    let done = env.op(|ring, ctx| ring.noop(ctx));
    env.note_outcome("noop", done);
    let pair = pair(env);
    close_pair(env, pair);
}

pub fn shutdown_read_then_recv(env: &mut Env) {
    let pair = pair(env);
    let shut = env.op(|ring, ctx| ring.shutdown(pair.client, Shutdown::Read, ctx));
    env.note_outcome("client shuts its reading side", shut);
    let got = recv(env, pair.client, 64);
    env.note_outcome("client receives", got);
    close_pair(env, pair);
}

pub fn two_pending_receives_see_the_end(env: &mut Env) {
    let pair = pair(env);
    let server = pair.server;
    let (first, _) = env.start(|ring, ctx| ring.recv(server, Vec::with_capacity(64), ctx));
    let (second, _) = env.start(|ring, ctx| ring.recv(server, Vec::with_capacity(64), ctx));
    let shut = env.op(|ring, ctx| ring.shutdown(pair.client, Shutdown::Write, ctx));
    env.note_outcome("client shuts its writing side", shut);
    let ended = env.wait(first);
    env.note_outcome("first pending receive", ended);
    let ended = env.wait(second);
    env.note_outcome("second pending receive", ended);
    close_pair(env, pair);
}

pub fn cancel_a_pending_accept(env: &mut Env) {
    let (listener, addr) = listener(env);
    let (accept, task) = env.start(|ring, ctx| ring.accept(listener, ctx));
    let cancel = env.op(|ring, ctx| ring.cancel(task, ctx));
    env.note_outcome("cancel", cancel);
    let canceled = env.wait(accept);
    env.note_outcome("the accept", canceled);
    // The listener still accepts.
    let client = socket(env, "client socket");
    let (accept, _) = env.start(|ring, ctx| ring.accept(listener, ctx));
    let connected = env.op(|ring, ctx| ring.connect(client, addr, ctx));
    env.note_outcome("connect", connected);
    let accepted = env.wait(accept);
    let server = env.note_outcome("accept", accepted).expect("a connection");
    close_pair(
        env,
        crate::scenarios::Pair {
            listener,
            addr,
            client,
            server,
        },
    );
}
