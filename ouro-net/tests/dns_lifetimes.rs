//! The resolver's lookups cancelled, past their deadline, and dropped
//! from a callback: each ends once, and no fd is left open. The tests
//! run one at a time (`FD_COUNTING`), so that fd counts are their own.

mod support;

use std::io;
use std::time::Duration;

use ouro::{Ctx, Ring, RunMode};
use ouro_net::dns::{Hosts, RecordType};
use support::*;

#[test]
fn a_cancelled_lookup_ends_once_with_ecanceled_and_closes_its_socket() {
    let _one_at_a_time = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let server = silent_server();
    let before = open_fds();
    let mut ring = Ring::new(64).unwrap();
    let mut state = new_state(&mut ring, server.config(), Hosts::default());
    let resolver = state.resolver.as_mut().unwrap();
    let id = resolver.lookup(&mut ring, "www.test", RecordType::A, Ctx::new(on_answer));
    ring.run(&mut state, RunMode::Once).unwrap();
    assert!(state.resolver.as_mut().unwrap().cancel(&mut ring, id));
    assert!(
        !state.resolver.as_mut().unwrap().cancel(&mut ring, id),
        "a stale id does nothing"
    );
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    assert_eq!(state.answers.len(), 1);
    assert!(ouro::is_canceled(state.answers[0].as_ref().unwrap_err()));
    drop(state);
    drop(ring);
    assert_eq!(open_fds(), before);
}

#[test]
fn a_lookup_past_its_deadline_ends_with_etime() {
    let _one_at_a_time = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let server = silent_server();
    let mut config = server.config();
    config.timeout = Duration::from_secs(30);
    let mut ring = Ring::new(64).unwrap();
    let mut state = new_state(&mut ring, config, Hosts::default());
    let resolver = state.resolver.as_mut().unwrap();
    let id = resolver.lookup_ip(&mut ring, "www.test", Ctx::new(on_answer));
    let at = ring.now() + Duration::from_millis(50);
    resolver.set_deadline(&mut ring, id, at).unwrap();
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    assert_eq!(state.answers.len(), 1);
    assert!(ouro::is_deadline(state.answers[0].as_ref().unwrap_err()));
}

fn drop_resolver(state: &mut State, _: &mut Ring<State>, c: ouro::Completion) -> io::Result<()> {
    state.answers.push(ouro_net::dns::answer(c));
    state.resolver = None; // from inside a callback, with a lookup in flight
    Ok(())
}

#[test]
fn dropping_the_resolver_from_a_callback_ends_its_other_lookups_with_ecanceled() {
    let _one_at_a_time = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let server = silent_server();
    let before = open_fds();
    let mut ring = Ring::new(64).unwrap();
    let mut state = new_state(&mut ring, server.config(), Hosts::default());
    let resolver = state.resolver.as_mut().unwrap();
    resolver.lookup(
        &mut ring,
        "localhost",
        RecordType::A,
        Ctx::new(drop_resolver),
    );
    resolver.lookup_ip(&mut ring, "www.test", Ctx::new(on_answer));
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    assert_eq!(state.answers.len(), 2);
    assert!(state.answers[0].is_ok());
    assert!(ouro::is_canceled(state.answers[1].as_ref().unwrap_err()));
    drop(state);
    drop(ring);
    assert_eq!(open_fds(), before);
}

/// A server that reads queries and never answers.
fn silent_server() -> ScriptedServer {
    ScriptedServer::start(Box::new(|_, _| Vec::new()), None)
}
