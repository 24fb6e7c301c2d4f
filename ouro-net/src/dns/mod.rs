//! An asynchronous stub resolver on the ring.

pub mod config;
mod exchange;
pub mod hosts;
pub(crate) mod resolver;
pub mod search;
pub mod sort;
pub mod wire;

pub use config::Config;
pub use hosts::Hosts;
pub use resolver::{answer, Answer, LookupId, Resolver};
pub use wire::{Record, RecordType};
