//! The connect scenario (connect by name with Happy Eyeballs v2 against
//! listening, refusing and blackholed addresses, AAAA answers held back,
//! the seed's faults): seeds pass and replay, the timing rules hold with
//! the faults off, a planted bug is found, and a blackholed host holds a
//! connect until it is cancelled.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::sim::{Bug, Config, World};
use ouro::{Completion, Ctx, Outcome, Ring, Task};
use ouro_sim::connect::{Does, Host, Name};
use ouro_sim::{check, connect, run_case, run_seed, scenario, Load};

#[test]
fn every_connect_ends_once_at_a_listening_address_over_two_hundred_seeds() {
    let summary = check(0..200, connect::run, None, 10);
    for failure in &summary.failures {
        eprintln!("{}: {:?}", failure.replay_line(), failure.violations);
    }
    assert!(summary.passed(), "{} failing seeds", summary.failures.len());
    assert_eq!(summary.rechecked, 20);
    for class in [
        "udp_loss",
        "udp_reorder",
        "faults/connect",
        "partition/held",
    ] {
        assert!(
            summary.faults.0.contains_key(class),
            "{class} injected: {:?}",
            summary.faults
        );
    }
}

#[test]
fn with_no_faults_at_all_every_name_keeps_its_timing_rule() {
    // A world without faults: every connect of every round, not only
    // the liveness ones, must keep its name's outcome and window.
    for seed in 0..5 {
        let world = World::with_config(seed, Config::calm());
        connect::run(&world, Load::default()).expect("the scenario runs");
        assert_eq!(world.finish(), Vec::<String>::new(), "seed {seed}");
    }
    let stagger = connect::NAMES
        .iter()
        .find(|n| n.name == "many.sim")
        .unwrap();
    assert_eq!(stagger.calm.1.start, Duration::from_millis(500));
}

const BLACKHOLE_V6: Host = Host {
    ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x33)),
    does: Does::Blackhole,
};
const LISTENS_V4: Host = Host {
    ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 33)),
    does: Does::Listens,
};

/// A table that claims the IPv4 attempt does not wait out the stagger
/// behind a blackholed IPv6 address: untrue, so the checker must say so.
static WRONG_STAGGER: &[Name] = &[Name {
    name: "stagger.sim",
    v6: &[BLACKHOLE_V6],
    v4: &[LISTENS_V4],
    aaaa_delay: Duration::ZERO,
    calm: (
        Some(LISTENS_V4.ip),
        Duration::ZERO..Duration::from_millis(50),
    ),
}];

#[test]
fn a_broken_timing_rule_is_reported() {
    let world = World::with_config(3, Config::calm());
    connect::run_with(&world, Load::default(), WRONG_STAGGER).expect("the scenario runs");
    let violations = world.finish();
    assert!(!violations.is_empty());
    for violation in &violations {
        assert!(
            violation.starts_with("connect: Happy Eyeballs with the faults off: stagger.sim")
                && violation.contains("192.0.2.33")
                && violation.contains("after 250"),
            "{violation}"
        );
    }
}

#[test]
fn a_seed_replays_its_connects_exactly() {
    let first = run_seed(8, connect::run, None);
    let again = run_seed(8, connect::run, None);
    assert_eq!(first.log_hash, again.log_hash);
    assert_ne!(first.log_hash, run_seed(9, connect::run, None).log_hash);
    assert!(scenario("connect").is_some());
}

#[test]
fn a_dropped_completion_is_found_and_replayed() {
    let bug = Some(Bug::DropCompletion);
    let summary = check(0..100, connect::run, bug, 0);
    let failure = summary
        .failures
        .first()
        .expect("the planted bug went unnoticed over 100 seeds");
    let replay = run_case(&failure.case, connect::run, bug);
    assert_eq!(replay.violations, failure.violations);
}

#[derive(Default)]
struct Attempt {
    connect: Option<Task>,
    ends: Vec<io::Result<()>>,
}

fn on_socket(state: &mut Attempt, ring: &mut Ring<Attempt>, c: Completion) -> io::Result<()> {
    if let Outcome::Socket(fd) = c.outcome {
        let to = SocketAddr::from(([192, 0, 2, 99], 80));
        // The connect owns the socket: it closes with the completion.
        state.connect = Some(ring.connect(Rc::new(fd?), to, Ctx::new(on_connect)));
    }
    Ok(())
}

fn on_connect(state: &mut Attempt, _: &mut Ring<Attempt>, c: Completion) -> io::Result<()> {
    if let Outcome::Connect(res) = c.outcome {
        state.ends.push(res);
    }
    Ok(())
}

#[test]
fn a_blackholed_host_holds_a_connect_through_a_heal_until_it_is_cancelled() {
    let world = World::with_config(1, Config::calm());
    world.blackhole(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)));
    let mut ring: Ring<Attempt> = Ring::simulated(&world);
    ring.socket(Domain::IPV4, Type::STREAM, None, Ctx::new(on_socket));
    let mut node = (ring, Attempt::default());
    world
        .run(&mut [&mut node], Duration::from_secs(120))
        .unwrap();
    assert!(
        node.1.ends.is_empty(),
        "no answer from a blackhole: {:?}",
        node.1.ends
    );
    // A configuration without partitions heals them: not a blackhole.
    world.set_config(Config::calm());
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    assert!(node.1.ends.is_empty());
    let (ring, state) = &mut node;
    let connect = state.connect.expect("the connect was started");
    ring.cancel(connect, Ctx::none());
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    let [Err(err)] = &node.1.ends[..] else {
        panic!("{:?}", node.1.ends)
    };
    assert!(ouro::is_canceled(err), "{err}");
    assert_eq!(world.finish(), Vec::<String>::new());
}
