//! The servers under test, one per contestant, each run in a child process
//! (see `crate::server`): ouro's own examples (`ouro/examples/echo.rs`,
//! `ouro/examples/http_server.rs`, included as they are) on io_uring and on
//! the readiness backend, the raw io-uring echo loop, tokio and monoio.

// Both examples include `support/logging.rs`, as each must to build on its
// own.
#![allow(clippy::duplicate_mod)]

use std::io;
use std::os::fd::OwnedFd;

use clap::ValueEnum;
use ouro::{BackendKind, Ring};

mod peer_monoio;
mod peer_tokio;
mod raw_echo;

// Both examples include `support/accept_errors.rs`, as each must to build
// on its own.
#[allow(dead_code, clippy::duplicate_mod)] // its demo clients and command line
#[path = "../../../ouro/examples/echo.rs"]
mod echo;
#[allow(dead_code)] // its command line
#[path = "../../../ouro/examples/http_server.rs"]
pub mod http_server;

/// Each peer connection's read buffer in the echo servers, the size of
/// ouro's and raw's group buffers.
const ECHO_BUFFER: usize = 4096;
/// ouro's echo server's receive buffers (shared by all connections).
const ECHO_GROUP_BUFFERS: u16 = 1024;
/// Largest unparsed HTTP input the peers keep, as the example does.
const HTTP_MAX_INPUT: usize = 64 * 1024;

/// A server implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Contestant {
    /// ouro's example on io_uring.
    #[value(name = "ouro-uring")]
    OuroUring,
    /// ouro's example on the readiness backend (epoll).
    #[value(name = "ouro-poll")]
    OuroPoll,
    /// The raw io-uring loop (echo only).
    Raw,
    /// tokio, current-thread runtime.
    Tokio,
    /// monoio, io_uring driver.
    Monoio,
}

impl Contestant {
    pub fn name(self) -> &'static str {
        match self {
            Contestant::OuroUring => "ouro-uring",
            Contestant::OuroPoll => "ouro-poll",
            Contestant::Raw => "raw",
            Contestant::Tokio => "tokio",
            Contestant::Monoio => "monoio",
        }
    }
}

/// What a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Echo,
    Http,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Echo => "echo",
            Protocol::Http => "http",
        }
    }
}

/// Serves `protocol` on `listener` as `contestant` does, until the process
/// ends.
pub fn serve(protocol: Protocol, contestant: Contestant, listener: OwnedFd) -> io::Result<()> {
    let ouro = |kind| Ring::builder().backend(kind);
    match (protocol, contestant) {
        (Protocol::Echo, Contestant::OuroUring) => {
            echo::serve(listener, ouro(BackendKind::Uring), ECHO_GROUP_BUFFERS)
        }
        (Protocol::Echo, Contestant::OuroPoll) => {
            echo::serve(listener, ouro(BackendKind::Poll), ECHO_GROUP_BUFFERS)
        }
        (Protocol::Echo, Contestant::Raw) => raw_echo::serve(listener),
        (Protocol::Echo, Contestant::Tokio) => peer_tokio::echo(listener),
        (Protocol::Echo, Contestant::Monoio) => peer_monoio::echo(listener),
        (Protocol::Http, Contestant::OuroUring) => {
            http_server::serve(listener, ouro(BackendKind::Uring))
        }
        (Protocol::Http, Contestant::OuroPoll) => {
            http_server::serve(listener, ouro(BackendKind::Poll))
        }
        (Protocol::Http, Contestant::Tokio) => peer_tokio::http(listener),
        (Protocol::Http, Contestant::Monoio) => peer_monoio::http(listener),
        (Protocol::Http, Contestant::Raw) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "there is no raw HTTP server",
        )),
    }
}
