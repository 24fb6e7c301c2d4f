//! What the TLS tests share.
#![allow(dead_code)]

pub mod certs;
pub mod pair;

#[path = "../../../ouro/tests/common/watchdog.rs"]
pub mod watchdog;
