//! What the test binaries share, each helper written once: the backends
//! tests run on, real fds and their count, and watchdogs. A binary includes
//! it with `#[macro_use] #[path = "common/mod.rs"] mod common;` (the path
//! relative to the binary's file) and uses what it needs.

#[macro_use]
pub mod backends;
pub mod fds;
pub mod watchdog;
