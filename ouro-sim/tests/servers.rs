//! The http, resp and echo-example scenarios: the example servers' own code under the
//! simulator, with multishot accepts and receives ending early and buffer
//! groups found empty, passes over a few hundred seeds and replays
//! identically; the clients' checks catch a single wrong byte; and a
//! server that does not arm an ended multishot again fails.

use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use ouro::sim::{Config, World};
use ouro::{BufferGroup, Completion, Ctx, Outcome, Ring, RingFd};
use ouro_sim::stream::{self, Round};
use ouro_sim::{check, echo_example, http, resp, scenario, Load, Scenario};

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
/// `buffers_exhausted` fault classes are there to find.
struct Pongs<const REARM: bool> {
    listener: Rc<OwnedFd>,
    group: BufferGroup,
    conns: Vec<RingFd>,
}

impl<const REARM: bool> Pongs<REARM> {
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
