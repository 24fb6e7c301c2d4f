//! Networking components on ouro's ring: [`dns`], an asynchronous stub
//! resolver that does its own IO on the ring, and [`connect`], connect by
//! host name with Happy Eyeballs v2 (RFC 8305).

#![deny(missing_docs)]
// Time comes from the ring's clock and randomness from the simulated world's
// seeded streams, so a simulated run replays from its seed (clippy.toml).
#![cfg_attr(not(test), deny(clippy::disallowed_methods))]

pub mod connect;
pub mod dns;
