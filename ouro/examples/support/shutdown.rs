//! The example servers' graceful shutdown: on `SIGINT` (Ctrl-C) or
//! `SIGTERM` the server's ring stops, after saying why on stdout. The
//! server's `run` then returns, and dropping the server and its ring closes
//! the listener (no more connections are accepted) and every connection;
//! `main` returns `Ok`, so the process exits with status 0.
//!
//! Its includer has the examples' `cli` module beside it (`super::cli`),
//! whose stdout it writes to.

use std::io;

use ouro::signal::{self, Signals, SIGINT, SIGTERM};
use ouro::{Completion, Ctx, Ring};

/// Makes `ring` stop when `SIGINT` or `SIGTERM` arrives. Keep what it
/// returns until the ring's `run` has returned: dropping it gives the
/// signals their default action back (the process would end at once).
pub fn stop_on_signals<S>(ring: &mut Ring<S>) -> io::Result<Signals> {
    let signals = Signals::new(&[SIGINT, SIGTERM])?;
    signals.wait(ring, Ctx::new(stop::<S>));
    Ok(signals)
}

fn stop<S>(_: &mut S, ring: &mut Ring<S>, c: Completion) -> io::Result<()> {
    let received = signal::received(&c)?;
    // Stopped first: a stdout that cannot be written to must not keep the
    // server running.
    ring.stop();
    super::cli::line(format_args!(
        "stopping on {received}: closing the listener and every connection"
    ))
}
