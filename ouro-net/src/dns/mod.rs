//! An asynchronous stub resolver on the ring: [`Resolver`] with its
//! [`Config`] and [`Hosts`].
//!
//! The wire format is `simple-dns`: its encoding and decoding work on byte
//! slices with no IO (so the reply-acceptance path in [`wire`] is a pure
//! function, property-tested), it is fuzzed upstream and builds in seconds
//! (`hickory-proto` would do too, at a much longer build).

pub mod config;
mod exchange;
pub mod hosts;
pub mod literal;
mod local;
pub mod reload;
pub(crate) mod resolver;
pub mod search;
pub mod sort;
pub mod wire;

pub use config::Config;
pub use hosts::Hosts;
pub(crate) use resolver::lookup_answer;
pub use resolver::{answer, Answer, LookupId, Resolver};
pub use wire::{Record, RecordType};
