//! The examples' logging: ouro's warnings and errors on stderr — among them
//! why a ring runs on the readiness backend when io_uring was refused (a
//! seccomp profile that forbids it, as Docker's default does, or a kernel
//! without it) — and more with `RUST_LOG`.
//!
//! `RUST_LOG` is a list of `target=level` (or bare `level`) directives, as
//! `tracing_subscriber::filter::Targets` reads them: `debug`,
//! `ouro=trace`, `warn,ouro=debug`. (`Targets` rather than `EnvFilter`:
//! the examples need nothing it lacks, such as span or field filters, and it
//! adds no dependencies.)

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Prints tracing events on stderr at the levels `RUST_LOG` sets (warnings
/// and errors when it is unset, empty or unreadable). Keeps a subscriber
/// that is already installed.
pub fn init() {
    let (filter, unreadable) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match spec.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(err) => (warnings(), Some(format!("RUST_LOG={spec:?}: {err}"))),
        },
        _ => (warnings(), None),
    };
    // The builder's own limit (INFO unless raised) would cap `RUST_LOG`.
    let installed = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(LevelFilter::TRACE)
        .finish()
        .with(filter)
        .try_init();
    if let (Ok(()), Some(why)) = (installed, unreadable) {
        tracing::warn!("{why}; logging warnings and errors only");
    }
}

fn warnings() -> Targets {
    Targets::new().with_default(LevelFilter::WARN)
}
