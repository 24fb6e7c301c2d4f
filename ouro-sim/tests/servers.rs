//! The http and resp scenarios: the example servers' own code under the
//! simulator, with multishot accepts and receives ending early and buffer
//! groups found empty, passes over a few hundred seeds and replays
//! identically; and the clients' checks catch a single wrong byte.

use ouro::sim::{Config, World};
use ouro_sim::stream::Round;
use ouro_sim::{check, http, resp, scenario, Load, Scenario};

fn passes(scenario: Scenario, seeds: u64) {
    let summary = check(0..seeds, scenario, None, 10);
    for failure in &summary.failures {
        eprintln!("{}: {:?}", failure.replay_line(), failure.violations);
    }
    assert!(summary.passed(), "{} failing seeds", summary.failures.len());
    assert_eq!(summary.rechecked, seeds / 10);
    for class in [
        "multishot_end",
        "buffers_exhausted",
        "segment",
        "short_read",
    ] {
        assert!(
            summary.faults.0.contains_key(class),
            "{class} injected: {:?}",
            summary.faults
        );
    }
    assert!(summary.ops > 50 * seeds, "only {} operations", summary.ops);
}

#[test]
fn the_http_example_server_answers_every_request_over_two_hundred_seeds() {
    passes(http::run, 200);
}

#[test]
fn the_resp_example_server_answers_every_command_over_two_hundred_seeds() {
    passes(resp::run, 200);
}

#[test]
fn both_scenarios_are_found_by_name() {
    assert!(scenario("http").is_some());
    assert!(scenario("resp").is_some());
}

/// Expects the last byte of every round's answer to be another.
fn flip_last(round: &mut Round) {
    if let Some(byte) = round.answer.last_mut() {
        *byte ^= 1;
    }
}

fn wrong_http(world: &World, client: u64, round: &mut Round) {
    http::script(world, client, round);
    flip_last(round);
}

fn wrong_resp(world: &World, client: u64, round: &mut Round) {
    resp::script(world, client, round);
    flip_last(round);
}

#[test]
fn a_single_wrong_byte_in_an_answer_is_a_violation() {
    let load = Load::default();
    for seed in 0..5 {
        let world = World::with_config(seed, Config::calm());
        http::run_with(&world, load, wrong_http).expect("the scenario runs");
        let found = world.finish();
        assert!(
            found
                .iter()
                .any(|v| v.contains("not what the server must send")),
            "http, seed {seed}: {found:?}"
        );
        let world = World::with_config(seed, Config::calm());
        resp::run_with(&world, load, wrong_resp).expect("the scenario runs");
        let found = world.finish();
        assert!(
            found
                .iter()
                .any(|v| v.contains("not what the server must send")),
            "resp, seed {seed}: {found:?}"
        );
    }
    // The scripts as they are pass the same seeds.
    for seed in 0..5 {
        let world = World::with_config(seed, Config::calm());
        http::run(&world, load).expect("the scenario runs");
        assert!(world.finish().is_empty());
    }
}
