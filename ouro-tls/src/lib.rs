//! TLS clients and servers on an [`ouro`] ring, over `rustls`.
//!
//! A [`TlsStream`] is a component in ouro's model: it schedules receives
//! and sends on the socket with the [`Ctx`](ouro::Ctx) it was given, the
//! user's callback hands each of their completions back to
//! [`TlsStream::on_completion`], and the stream reports what happened as
//! [`TlsEvent`]s: the handshake done (with the negotiated ALPN protocol and
//! TLS version), plaintext received, records written (with the bytes still
//! queued: the backpressure signal; a stream whose peer sends faster than
//! it reads is held back with [`TlsStream::pause_receiving`]), the peer's
//! clean close
//! (`close_notify`), or a failure — among them a connection cut without
//! `close_notify` ([`is_truncated`]), a certificate the configuration
//! refuses, and a handshake past its deadline.
//!
//! ```no_run
//! use ouro::{Completion, Ctx, Ring, RunMode};
//! use ouro_tls::{client_config, certificates_from_pem, TlsEvent, TlsStream, Versions};
//! use std::net::TcpStream;
//! use std::rc::Rc;
//!
//! type Client = TlsStream<State, Rc<TcpStream>>;
//! struct State { tls: Client, reply: Vec<u8> }
//!
//! fn on_tls(state: &mut State, ring: &mut Ring<State>, c: Completion) -> std::io::Result<()> {
//!     state.tls.on_completion(ring, c)?;
//!     while let Some(event) = state.tls.next_event() {
//!         match event {
//!             TlsEvent::HandshakeDone(_) => {
//!                 state.tls.write(ring, b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")?;
//!             }
//!             TlsEvent::Received(bytes) => state.reply.extend_from_slice(&bytes),
//!             TlsEvent::Closed => state.tls.shutdown(ring),
//!             TlsEvent::Failed(err) => return Err(err),
//!             TlsEvent::Written { .. } => {}
//!         }
//!     }
//!     Ok(())
//! }
//!
//! let roots = certificates_from_pem(&std::fs::read("ca.pem")?)?;
//! let config = client_config(&roots, &[b"http/1.1"], Versions::Both)?;
//! let socket = Rc::new(TcpStream::connect("127.0.0.1:8443")?);
//! let tls = TlsStream::client(socket, config, "example.test", Ctx::new(on_tls))?
//!     .with_handshake_timeout(std::time::Duration::from_secs(10));
//! let mut ring = Ring::new(64)?;
//! let mut state = State { tls, reply: Vec::new() };
//! state.tls.start(&mut ring);
//! ring.run(&mut state, RunMode::UntilDone)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! rustls stays behind the crate's own session type: the public API names
//! only what users give (configurations, certificates, keys), so moving to
//! a new rustls release changes this crate, not its users. The crypto
//! provider is `ring` by default (a short cold build), `aws-lc-rs` with
//! that feature, which wins when both are on (as they are when `aws-lc-rs`
//! is added without `default-features = false`). With `aws-lc-rs` a client
//! and a server of this crate agree on X25519MLKEM768 (post-quantum) over
//! TLS 1.3. Among the classical groups (all of `ring`'s; aws-lc-rs's over
//! TLS 1.2 and with peers without ML-KEM) both providers prefer X25519,
//! then P-256, then P-384 (rustls lists P-384 before X25519, which makes a
//! handshake several times as costly). [`Handshake::key_exchange`] says
//! what was agreed. CI lints and tests the crate on each provider, on both
//! of ouro's backends. The `webpki-roots` feature adds
//! `client_config_with_webpki_roots` (Mozilla's roots compiled in), the
//! `system-roots` feature `client_config_with_system_roots` (the
//! machine's certificate store, read at run time).

#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Time comes from the ring's clock and randomness from the simulated world's
// seeded streams, so a simulated run replays from its seed (clippy.toml).
#![cfg_attr(not(test), deny(clippy::disallowed_methods))]

mod config;
mod session;
mod stream;

use std::io;

/// The rustls crate this one is built on, for configurations beyond what
/// [`client_config`] and [`server_config`] make.
pub use rustls;
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use rustls::{ClientConfig, ServerConfig};

#[cfg(feature = "system-roots")]
pub use config::client_config_with_system_roots;
#[cfg(feature = "webpki-roots")]
pub use config::client_config_with_webpki_roots;
pub use config::{
    certificates_from_pem, client_config, crypto_provider, private_key_from_pem, server_config,
    Versions,
};
pub use stream::TlsStream;

/// What a [`TlsStream`] reports, in the order it happened.
#[derive(Debug)]
pub enum TlsEvent {
    /// The handshake finished: the peer is authenticated (a client has
    /// checked the server's certificate and name) and writes now go out.
    HandshakeDone(Handshake),
    /// Plaintext from the peer, in order; give the vector back with
    /// [`TlsStream::recycle`] to spare an allocation.
    Received(Vec<u8>),
    /// A send of records finished; `queued` bytes are still waiting (0:
    /// everything written so far is on the socket).
    Written {
        /// Bytes not yet sent, as [`TlsStream::queued`] counts them.
        queued: usize,
    },
    /// The peer closed cleanly (`close_notify`): every byte it sent has
    /// arrived. Nothing more is received; call
    /// [`shutdown`](TlsStream::shutdown) to close this side too.
    Closed,
    /// The session failed and receives no more: a TLS error
    /// (`InvalidData`, its message naming the cause, such as a refused
    /// certificate), a connection cut without `close_notify`
    /// (`UnexpectedEof`, see [`is_truncated`]), the handshake deadline
    /// (`TimedOut`), a cancellation ([`ouro::is_canceled`]) or the
    /// socket's error. Reported once.
    Failed(io::Error),
}

/// What the handshake negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The ALPN protocol both sides chose, if any.
    pub alpn: Option<Vec<u8>>,
    /// The TLS version.
    pub version: TlsVersion,
    /// The key exchange group the session's keys were agreed with (every
    /// suite rustls offers has one; `None` if it did not report it).
    pub key_exchange: Option<KeyExchange>,
}

/// A key exchange group (the IANA "TLS Supported Groups" registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExchange {
    /// X25519: the first choice among classical groups on either
    /// provider (over TLS 1.2, the default on both).
    X25519,
    /// NIST P-256 (secp256r1).
    Secp256r1,
    /// NIST P-384 (secp384r1).
    Secp384r1,
    /// X25519 combined with ML-KEM-768 (post-quantum, TLS 1.3 only; the
    /// aws-lc-rs provider's first choice).
    X25519MlKem768,
    /// Another group, by its registry number.
    Other(u16),
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// Whether `err` says the peer ended the connection without
/// `close_notify`, so the data received may have been cut short.
pub fn is_truncated(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::UnexpectedEof
}
