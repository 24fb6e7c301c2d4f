//! What several of the simulator's test files share.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::sim::World;
use ouro::{Completion, Ctx, Outcome, Ring};

/// An IPv4 socket of `world` (`Type::STREAM` or `Type::DGRAM`), made on
/// a ring of its own.
pub fn socket(world: &World, ty: Type) -> OwnedFd {
    fn keep(
        slot: &mut Option<OwnedFd>,
        _: &mut Ring<Option<OwnedFd>>,
        c: Completion,
    ) -> io::Result<()> {
        match c.outcome {
            Outcome::Socket(Ok(fd)) => *slot = Some(fd),
            other => panic!("making a socket: {other:?}"),
        }
        Ok(())
    }
    let mut ring = Ring::simulated(world);
    ring.socket(Domain::IPV4, ty, None, Ctx::new(keep));
    let mut node = (ring, None);
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    node.1.expect("a socket")
}
