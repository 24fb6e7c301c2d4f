//! An asynchronous stub resolver on the ring.

pub mod config;
pub mod hosts;
pub mod search;
pub mod sort;
