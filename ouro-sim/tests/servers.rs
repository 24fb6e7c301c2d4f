//! The http, resp and echo-example scenarios: the example servers' own code under the
//! simulator, with multishot accepts and receives ending early and buffer
//! groups found empty, passes over a few hundred seeds and replays
//! identically; the clients' checks catch a single wrong byte; a server
//! that does not arm an ended multishot again fails; and one that keeps a
//! buffer past the end fails under the seeds whose receives end early,
//! and replays.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use ouro::sim::{Config, World};
use ouro::{Buf, BufferGroup, Completion, Ctx, Outcome, Ring, RingFd};
use ouro_sim::stream::{self, Round};
use ouro_sim::{
    check, check_with_progress, echo_example, http, resp, run_case, scenario, Case, FaultClass,
    Load, Scenario,
};

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
fn the_echo_example_server_sends_every_byte_back_over_two_hundred_seeds() {
    passes(echo_example::run, 200);
}

#[test]
fn the_scenarios_are_found_by_name() {
    assert!(scenario("http").is_some());
    assert!(scenario("resp").is_some());
    assert!(scenario("echo-example").is_some());
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

/// A PING server written for this test: one multishot accept, one
/// multishot receive per connection, `+PONG` for every line. With
/// `REARM` it arms an operation again when it ends with a success or
/// `ENOBUFS`; without, it has the bug the `multishot_end` and
/// `buffers_exhausted` fault classes are there to find. With `KEEP` it
/// keeps the buffer of a receive that ended early, in [`KEPT`], past the
/// end of the run: the leak the end check on buffer groups is there to
/// find.
struct Pongs<const REARM: bool, const KEEP: bool = false> {
    listener: Rc<OwnedFd>,
    group: BufferGroup,
    conns: Vec<RingFd>,
}

thread_local! {
    /// Buffers a `Pongs` with `KEEP` held on to, out of the rings' reach.
    static KEPT: RefCell<Vec<Buf>> = const { RefCell::new(Vec::new()) };
}

impl<const REARM: bool, const KEEP: bool> Pongs<REARM, KEEP> {
    fn start(ring: &mut Ring<Self>, listener: OwnedFd) -> io::Result<Self> {
        let server = Pongs {
            listener: Rc::new(listener),
            group: ring.buffer_group(64, 512)?,
            conns: Vec::new(),
        };
        server.accept(ring);
        Ok(server)
    }

    fn accept(&self, ring: &mut Ring<Self>) {
        ring.accept_multishot_direct(&self.listener, Ctx::new(Self::on_accept));
    }

    fn recv(&self, ring: &mut Ring<Self>, key: u64) {
        let ctx = Ctx::new(Self::on_recv).key(key);
        ring.recv_multishot(self.conns[key as usize], &self.group, ctx);
    }

    fn on_accept(&mut self, ring: &mut Ring<Self>, c: Completion) -> io::Result<()> {
        let last = c.is_final();
        if let Outcome::AcceptDirect(Ok(fd)) = c.outcome {
            self.conns.push(fd);
            self.recv(ring, self.conns.len() as u64 - 1);
        }
        if last && REARM {
            self.accept(ring);
        }
        Ok(())
    }

    fn on_recv(&mut self, ring: &mut Ring<Self>, c: Completion) -> io::Result<()> {
        let (last, key) = (c.is_final(), c.key());
        let fd = self.conns[key as usize];
        match c.outcome {
            Outcome::RecvMulti(Ok(buf)) if !buf.is_empty() => {
                let lines = buf.iter().filter(|&&b| b == b'\n').count();
                ring.send(fd, b"+PONG\r\n".repeat(lines), Ctx::none());
                if last && REARM {
                    self.recv(ring, key);
                }
                if last && KEEP {
                    KEPT.with(|kept| kept.borrow_mut().push(buf));
                }
            }
            Outcome::RecvMulti(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) && REARM => {
                self.recv(ring, key)
            }
            // Without REARM, the connection is left without a receive.
            Outcome::RecvMulti(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            _ if last => {
                ring.close(fd, Ctx::none());
            }
            _ => {}
        }
        Ok(())
    }
}

/// Rounds of one to eight inline PINGs.
fn pings(world: &World, _: u64, round: &mut Round) {
    for _ in 0..1 + world.random() % 8 {
        round.request.extend_from_slice(b"PING\r\n");
        round.answer.extend_from_slice(b"+PONG\r\n");
    }
}

#[test]
fn a_server_that_does_not_arm_an_ended_multishot_again_is_a_liveness_violation() {
    let faults = Config {
        multishot_end: 0.3,
        buffers_exhausted: 0.05,
        ..Config::calm()
    };
    let load = Load::default();
    for seed in 0..5 {
        let world = World::with_config(seed, faults.clone());
        stream::run(&world, load, "pongs", 7001, Pongs::<false>::start, pings)
            .expect("the scenario runs");
        let found = world.finish();
        assert!(
            found.iter().any(|v| v.starts_with("liveness")),
            "seed {seed}: {found:?}"
        );
        let world = World::with_config(seed, faults.clone());
        stream::run(&world, load, "pongs", 7001, Pongs::<true>::start, pings)
            .expect("the scenario runs");
        assert!(world.faults().0.contains_key("multishot_end"));
        let found = world.finish();
        assert!(found.is_empty(), "seed {seed}: {found:?}");
    }
}

fn keeps_a_buffer(world: &World, load: Load) -> io::Result<()> {
    stream::run(
        world,
        load,
        "pongs",
        7001,
        Pongs::<true, true>::start,
        pings,
    )
}

#[test]
fn a_buffer_kept_past_the_end_is_found_by_the_runner_and_replays() {
    // Only receives ending early: `Pongs` is a test's server, not one
    // written for every fault.
    let mut off: Vec<FaultClass> = FaultClass::ALL.to_vec();
    off.retain(|&class| class != FaultClass::MultishotEnd);
    off.sort_unstable();
    let cases = (0..100).map(|seed| Case {
        off: off.clone(),
        ..Case::new(seed)
    });
    let summary = check_with_progress(cases, keeps_a_buffer, None, 10, |_| {});
    assert!(summary.nondeterministic.is_empty());
    let failure = summary
        .failures
        .first()
        .expect("the kept buffer went unnoticed over 100 seeds");
    assert!(summary.failures.len() < 100, "only early ends keep one");
    for failure in &summary.failures {
        assert!(
            (failure.violations.iter()).all(|v| v.contains("not returned at the end")),
            "{}: {:?}",
            failure.replay_line(),
            failure.violations
        );
    }
    let replay = run_case(&failure.case, keeps_a_buffer, None);
    assert_eq!(replay.violations, failure.violations);
    assert_eq!(replay.log_hash, failure.log_hash);
    let mut without = failure.case.clone();
    without.off = FaultClass::ALL.to_vec();
    let found = run_case(&without, keeps_a_buffer, None).violations;
    assert!(found.is_empty(), "{found:?}");
    KEPT.with(|kept| kept.borrow_mut().clear());
}
