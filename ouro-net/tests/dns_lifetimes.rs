//! The resolver's lookups cancelled, past their deadline, and dropped
//! from a callback: each ends once, and no fd is left open; a resolver
//! dropped or replaced leaves nothing behind that acts on its successor.
//! The tests run one at a time (`FD_COUNTING`), so that fd counts are
//! their own.

mod support;

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ouro::{Ctx, Ring, RunMode};
use ouro_net::dns::{Config, Hosts, RecordType, Resolver};
use support::*;

const GOOD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

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

#[test]
fn a_stale_lookup_id_stays_stale_after_65536_lookups_in_its_slot() {
    let _one_at_a_time = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let server = silent_server();
    let mut ring = Ring::new(64).unwrap();
    let mut state = new_state(&mut ring, server.config(), Hosts::default());
    let resolver = state.resolver.as_mut().unwrap();
    // Answered locally: each frees its slot at once, for the next to take.
    let stale = resolver.lookup(&mut ring, "localhost", RecordType::A, Ctx::new(on_answer));
    for _ in 0..u16::MAX {
        resolver.lookup(&mut ring, "localhost", RecordType::A, Ctx::new(on_answer));
    }
    let victim = resolver.lookup(&mut ring, "www.test", RecordType::A, Ctx::new(on_answer));
    assert!(resolver.is_live(victim));
    assert!(!resolver.is_live(stale), "a stale id names a new lookup");
    assert!(
        !resolver.cancel(&mut ring, stale),
        "a stale id cancelled a new lookup"
    );
    assert!(resolver.is_live(victim));
    resolver.cancel(&mut ring, victim);
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    assert_eq!(state.answers.len(), 65_537);
}

/// How long the ring stays busy once the resolver is dropped (by
/// `drop_resolver`, from a callback, or between runs) with a lookup whose
/// try and deadline are both far away.
fn busy_after_dropping(from_a_callback: bool) -> Duration {
    let server = silent_server();
    let before = open_fds();
    let mut config = server.config();
    config.timeout = Duration::from_secs(5);
    let mut ring = Ring::new(64).unwrap();
    let mut state = new_state(&mut ring, config, Hosts::default());
    let resolver = state.resolver.as_mut().unwrap();
    let id = resolver.lookup_ip(&mut ring, "www.test", Ctx::new(on_answer));
    let far = ring.now() + Duration::from_secs(10);
    resolver.set_deadline(&mut ring, id, far).unwrap();
    let start = ring.now();
    if from_a_callback {
        let drop_then = Ctx::new(drop_resolver);
        resolver.lookup(&mut ring, "localhost", RecordType::A, drop_then);
    } else {
        ring.run(&mut state, RunMode::NoWait).unwrap();
        state.resolver = None;
    }
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    let busy = ring.now() - start;
    let canceled = state.answers.last().unwrap().as_ref().unwrap_err();
    assert!(ouro::is_canceled(canceled), "{canceled}");
    drop(state);
    drop(ring);
    assert_eq!(open_fds(), before);
    busy
}

#[test]
fn dropping_the_resolver_cancels_its_tries_and_deadlines_at_once() {
    let _one_at_a_time = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    for from_a_callback in [true, false] {
        let busy = busy_after_dropping(from_a_callback);
        assert!(
            busy < Duration::from_secs(2),
            "busy {busy:?} after the drop (from a callback: {from_a_callback})"
        );
    }
}

/// A server that answers every A question with `GOOD`, 800 ms after it.
fn slow_server() -> ScriptedServer {
    ScriptedServer::start(
        Box::new(|_, q| {
            std::thread::sleep(Duration::from_millis(800));
            vec![Send::Reply(a_reply(q, &[GOOD]))]
        }),
        None,
    )
}

/// Puts a resolver asking `config` in place of the one in `state` (as a
/// caller does when the configuration changes) and looks `www.test` up
/// through it; returns the old resolver, kept alive so that its tasks'
/// completions come while the new one's lookup is under way (the caller's
/// `to_resolver` forwards them to the new one).
fn replace_and_look_up(
    ring: &mut Ring<State>,
    state: &mut State,
    config: Config,
) -> Resolver<State> {
    let new = Resolver::new(ring, config, Hosts::default(), Ctx::new(to_resolver)).unwrap();
    let old = state.resolver.replace(new).unwrap();
    let resolver = state.resolver.as_mut().unwrap();
    resolver.lookup(ring, "www.test", RecordType::A, Ctx::new(on_answer));
    old
}

/// The new resolver's answer: the old one's lookup ends only with it.
fn new_resolvers_answer(ring: &mut Ring<State>, state: &mut State, old: Resolver<State>) {
    ring.run(state, RunMode::UntilDone).unwrap();
    drop(old);
    ring.run(state, RunMode::UntilDone).unwrap();
    let answer = state.answers.remove(0).expect("the new resolver's answer");
    assert_eq!(answer.addresses(), [IpAddr::V4(GOOD)]);
}

#[test]
fn a_replaced_resolvers_deadline_does_not_end_the_new_ones_lookup() {
    let _one_at_a_time = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let (silent, slow) = (silent_server(), slow_server());
    let mut ring = Ring::new(64).unwrap();
    let mut old_config = silent.config();
    old_config.timeout = Duration::from_secs(1);
    let mut state = new_state(&mut ring, old_config, Hosts::default());
    let resolver = state.resolver.as_mut().unwrap();
    let id = resolver.lookup(&mut ring, "www.test", RecordType::A, Ctx::new(on_answer));
    let soon = ring.now() + Duration::from_millis(300);
    resolver.set_deadline(&mut ring, id, soon).unwrap();
    let mut config = slow.config();
    config.timeout = Duration::from_secs(3);
    let old = replace_and_look_up(&mut ring, &mut state, config);
    new_resolvers_answer(&mut ring, &mut state, old);
}

#[test]
fn a_replaced_resolvers_try_timeout_does_not_fail_the_new_ones_try() {
    let _one_at_a_time = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let (silent, slow) = (silent_server(), slow_server());
    let mut ring = Ring::new(64).unwrap();
    let mut state = new_state(&mut ring, silent.config(), Hosts::default());
    let resolver = state.resolver.as_mut().unwrap();
    resolver.lookup(&mut ring, "www.test", RecordType::A, Ctx::new(on_answer));
    // Until the old lookup waits for its answer (socket, connect, send).
    for _ in 0..5 {
        ring.run(&mut state, RunMode::NoWait).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut config = slow.config();
    config.timeout = Duration::from_secs(3);
    let old = replace_and_look_up(&mut ring, &mut state, config);
    new_resolvers_answer(&mut ring, &mut state, old);
}

/// A server that reads queries and never answers.
fn silent_server() -> ScriptedServer {
    ScriptedServer::start(Box::new(|_, _| Vec::new()), None)
}
