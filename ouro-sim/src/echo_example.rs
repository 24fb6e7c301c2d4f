//! The echo-example scenario: the `echo` example's own server
//! (`ouro/examples/echo.rs`: multishot accept, multishot receive into a
//! shared buffer group, buffers sent back as they are, connections paused
//! and starved ones re-armed as buffers come back) on a simulated ring,
//! with a group of 8 buffers so that connections compete for them, and
//! the stream clients (`stream.rs`) sending rounds of up to 6,000 random
//! bytes in pieces and checking every byte that comes back.

use std::io;
use std::os::fd::OwnedFd;

use ouro::sim::World;
use ouro::Ring;

use crate::stream::{self, Round};
use crate::Load;

// Includes `support/accept_errors.rs` and `logging.rs`, as the http and
// resp scenarios' servers do.
#[allow(dead_code, clippy::duplicate_mod)] // the scenario uses the server, not the demo
#[path = "../../ouro/examples/echo.rs"]
mod echo;

/// Few buffers, so that six connections sending up to 6,000 bytes each
/// run the group dry.
const BUFFERS: u16 = 8;

/// Runs the echo-example scenario in `world` (see [`stream::run`]).
pub fn run(world: &World, load: Load) -> io::Result<()> {
    stream::run(world, load, "echo-example", 7000, start, script)
}

fn start(ring: &mut Ring<echo::Server>, listener: OwnedFd) -> io::Result<echo::Server> {
    echo::start(ring, listener, BUFFERS)
}

/// A round: up to 6,000 random bytes, which must all come back.
pub fn script(world: &World, _: u64, round: &mut Round) {
    let len = 1 + world.random() % 6000;
    let seed = world.random();
    round
        .request
        .extend((0..len).map(|i| (seed >> (i % 57)) as u8 ^ (i as u8).wrapping_mul(31)));
    round.answer.extend_from_slice(&round.request);
}
