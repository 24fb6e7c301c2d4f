//! The tls scenario's rustls configurations, made so that a seed replays:
//! rustls takes the time and its randomness from outside the ring, so
//! here the time is the world's clock (from a fixed date) and the random
//! bytes come from the world's seeded user stream. Both reach rustls
//! through a thread-local that holds the world for the length of a run
//! (rustls wants them `Send + Sync`, and a world is neither).
//!
//! The certificates are fixed (an Ed25519 CA and a leaf for `tls.sim`,
//! valid until 2126, in `ouro-sim/certs/`): Ed25519 signatures and X25519
//! key shares have fixed sizes, so every handshake message has the same
//! length under a seed even though ring draws the ephemeral key shares
//! from the system's random source, which no provider setting reaches.
//! These keys are for the simulator only.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use ouro::sim::World;
use ouro_tls::rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};
use ouro_tls::rustls::pki_types::UnixTime;
use ouro_tls::rustls::time_provider::TimeProvider;
use ouro_tls::rustls::{self, ClientConfig, NamedGroup, RootCertStore, ServerConfig};

/// The name the server's certificate is for.
pub const SERVER_NAME: &str = "tls.sim";

const CA_PEM: &str = include_str!("../certs/ca.pem");
const LEAF_PEM: &str = include_str!("../certs/leaf.pem");
const LEAF_KEY_PEM: &str = include_str!("../certs/leaf.key");

/// The wall-clock time at the world's start: 2030-01-01, inside the
/// certificates' validity.
const WORLD_EPOCH: Duration = Duration::from_secs(1_893_456_000);

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// Lends the world to rustls on this thread until dropped.
pub(crate) struct WorldLent(());

impl WorldLent {
    pub(crate) fn new(world: &World) -> WorldLent {
        WORLD.with(|w| *w.borrow_mut() = Some(world.clone()));
        WorldLent(())
    }
}

impl Drop for WorldLent {
    fn drop(&mut self) {
        WORLD.with(|w| w.borrow_mut().take());
    }
}

/// The world's clock as wall-clock time.
#[derive(Debug)]
struct WorldTime;

impl TimeProvider for WorldTime {
    fn current_time(&self) -> Option<UnixTime> {
        WORLD.with(|w| {
            let now = w.borrow().as_ref()?.now();
            Some(UnixTime::since_unix_epoch(WORLD_EPOCH + now))
        })
    }
}

/// Random bytes from the world's user stream: replayable, and for the
/// simulator only (a seed is no secret).
#[derive(Debug)]
struct WorldRandom;

impl SecureRandom for WorldRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        WORLD.with(|w| {
            let w = w.borrow();
            let world = w.as_ref().ok_or(GetRandomFailed)?;
            for chunk in buf.chunks_mut(8) {
                let bytes = world.random().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            Ok(())
        })
    }
}

static WORLD_RANDOM: WorldRandom = WorldRandom;

/// The crate's provider with the world's randomness, and X25519 alone
/// for key exchange: its key shares have a fixed size.
fn provider() -> Arc<CryptoProvider> {
    let base = ouro_tls::crypto_provider();
    let kx_groups = base
        .kx_groups
        .iter()
        .copied()
        .filter(|group| group.name() == NamedGroup::X25519)
        .collect();
    Arc::new(CryptoProvider {
        secure_random: &WORLD_RANDOM,
        kx_groups,
        ..(*base).clone()
    })
}

fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, err)
}

/// A client configuration trusting the scenario's CA, offering TLS 1.3
/// alone or TLS 1.2 alone.
pub(crate) fn client(tls13: bool) -> io::Result<Arc<ClientConfig>> {
    let version = if tls13 {
        &rustls::version::TLS13
    } else {
        &rustls::version::TLS12
    };
    let mut roots = RootCertStore::empty();
    for ca in ouro_tls::certificates_from_pem(CA_PEM.as_bytes())? {
        roots.add(ca).map_err(tls_error)?;
    }
    let config = ClientConfig::builder_with_details(provider(), Arc::new(WorldTime))
        .with_protocol_versions(&[version])
        .map_err(tls_error)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server's configuration: the leaf for [`SERVER_NAME`], TLS 1.2
/// and 1.3.
pub(crate) fn server() -> io::Result<Arc<ServerConfig>> {
    let chain = ouro_tls::certificates_from_pem(LEAF_PEM.as_bytes())?;
    let key = ouro_tls::private_key_from_pem(LEAF_KEY_PEM.as_bytes())?;
    let config = ServerConfig::builder_with_details(provider(), Arc::new(WorldTime))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_bytes() -> Result<[u8; 20], GetRandomFailed> {
        let mut bytes = [0; 20];
        WORLD_RANDOM.fill(&mut bytes)?;
        Ok(bytes)
    }

    #[test]
    fn rustls_reads_the_lent_worlds_clock_and_seeded_stream() {
        assert!(WorldTime.current_time().is_none());
        assert!(random_bytes().is_err());
        let first = {
            let world = World::new(7);
            let _lent = WorldLent::new(&world);
            let time = WorldTime.current_time().unwrap();
            assert_eq!(time.as_secs(), WORLD_EPOCH.as_secs());
            random_bytes().unwrap()
        };
        // Returned at the end of the run: nothing reads a stale world.
        assert!(WorldTime.current_time().is_none());
        let world = World::new(7);
        let _lent = WorldLent::new(&world);
        assert_eq!(
            random_bytes().unwrap(),
            first,
            "the same seed, the same bytes"
        );
        assert_ne!(random_bytes().unwrap(), first);
    }

    #[test]
    fn the_configurations_build() {
        let world = World::new(1);
        let _lent = WorldLent::new(&world);
        assert!(client(true).is_ok() && client(false).is_ok() && server().is_ok());
    }
}
