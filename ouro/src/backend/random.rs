//! Randomness for the ring's components on the real backends: the OS
//! CSPRNG, unpredictable to other hosts (DNS query IDs depend on it). The
//! simulator draws from its world's seeded stream instead, so that a run
//! replays.

use std::io;

/// A number from the OS CSPRNG.
// Why allowed: this is the one place the real backends take randomness
// from; the simulator's backend overrides it with its seeded stream.
#[allow(clippy::disallowed_methods)]
pub(crate) fn os_u64() -> io::Result<u64> {
    getrandom::u64().map_err(io::Error::other)
}
