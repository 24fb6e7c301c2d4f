//! `tls`: TLS over loopback — ouro-tls's `TlsStream` against tokio-rustls,
//! both on the same rustls with the same provider (ring) and the same
//! configurations, client and server on one thread.
//!
//! - **handshake**: `handshakes` full TLS 1.3 handshakes one after the
//!   other (resumption off), each on a new loopback connection (made with
//!   the standard library, the same for both). Metrics:
//!   `handshakes_per_sec` and `cpu_us_per_handshake`.
//! - **bulk**: one connection; the client writes `mib` MiB of plaintext in
//!   16 KiB writes (one record each), the server reads it all. Metrics:
//!   `mb_per_sec` (MB = 10^6 bytes of plaintext) and `cpu_us_per_mb`.
//!
//! CPU is the process's (`getrusage`, user + system) over the measured
//! part; both contestants run on the calling thread (ouro's ring on
//! io_uring whatever `OURO_BACKEND` says; tokio's current-thread runtime),
//! so it is the CPU both ends of the connection cost. The contestants are
//! compared with `tokio-rustls`; one unmeasured run of a tenth of the work
//! warms each up, and their order rotates from run to run.

mod ouro_side;
mod tokio_side;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use ouro_tls::rustls::client::Resumption;
use ouro_tls::{ClientConfig, PrivateKeyDer, ServerConfig, Versions};
use serde_json::json;

use super::Settings;
use crate::progress::Progress;
use crate::record::{params, Results, Sample};
use crate::server::cpu_micros;

const WORKLOAD: &str = "tls";
/// Plaintext per write in the bulk pattern: one full record.
pub const RECORD: usize = 16 * 1024;
/// Bytes of records the ouro client lets queue before it waits.
pub const HIGH_WATER: usize = 256 * 1024;

/// Options of the `tls` workload.
#[derive(Debug, Args)]
pub struct Options {
    /// Handshakes per handshake run.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub handshakes: u64,
    /// MiB of plaintext per bulk run.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub mib: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contestant {
    Ouro,
    TokioRustls,
}

impl Contestant {
    const ALL: [Contestant; 2] = [Contestant::Ouro, Contestant::TokioRustls];

    fn name(self) -> &'static str {
        match self {
            Contestant::Ouro => "ouro",
            Contestant::TokioRustls => "tokio-rustls",
        }
    }

    fn handshakes(self, configs: &Configs, count: u64) -> io::Result<()> {
        match self {
            Contestant::Ouro => ouro_side::handshakes(configs, count),
            Contestant::TokioRustls => tokio_side::handshakes(configs, count),
        }
    }

    fn bulk(self, configs: &Configs, bytes: u64) -> io::Result<()> {
        match self {
            Contestant::Ouro => ouro_side::bulk(configs, bytes),
            Contestant::TokioRustls => tokio_side::bulk(configs, bytes),
        }
    }
}

/// The configurations both contestants use.
#[derive(Clone)]
pub struct Configs {
    pub client: Arc<ClientConfig>,
    pub server: Arc<ServerConfig>,
}

/// The name the server's certificate carries.
pub const SERVER_NAME: &str = "localhost";

impl Configs {
    fn new() -> io::Result<Configs> {
        let bad = |err: rcgen::Error| io::Error::other(err.to_string());
        let ca_key = rcgen::KeyPair::generate().map_err(bad)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).map_err(bad)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().map_err(bad)?;
        let leaf = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .map_err(bad)?
            .signed_by(&key, &issuer)
            .map_err(bad)?;
        let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(io::Error::other)?;
        let server = ouro_tls::server_config(vec![leaf.der().clone()], key, &[], Versions::Tls13)?;
        let client = ouro_tls::client_config(std::slice::from_ref(ca.der()), &[], Versions::Tls13)?;
        // Every handshake a full one, for both contestants.
        let mut client = Arc::unwrap_or_clone(client);
        client.resumption = Resumption::disabled();
        Ok(Configs {
            client: Arc::new(client),
            server,
        })
    }
}

/// A connected loopback pair (client, server), no delay, non-blocking.
pub fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    for socket in [&client, &server] {
        socket.set_nodelay(true)?;
        socket.set_nonblocking(true)?;
    }
    Ok((client, server))
}

/// Measurements made, for the progress bar.
pub fn steps(_options: &Options, settings: &Settings) -> u64 {
    2 * u64::from(settings.runs) * super::included(settings, &Contestant::ALL, Contestant::name)
}

/// Wall time and CPU time of `f`.
fn timed(f: impl FnOnce() -> io::Result<()>) -> io::Result<(Duration, f64)> {
    let cpu = cpu_micros();
    let start = Instant::now();
    f()?;
    let elapsed = start.elapsed();
    Ok((elapsed, (cpu_micros() - cpu) as f64))
}

/// Measures both patterns `runs` times, interleaving the contestants.
pub fn measure(
    options: &Options,
    settings: &Settings,
    results: &mut Results,
    progress: &Progress,
) -> io::Result<()> {
    results.compare_against(WORKLOAD, Contestant::TokioRustls.name());
    let configs = Configs::new()?;
    let bytes = options.mib << 20;
    for contestant in settings.order(&Contestant::ALL, Contestant::name, 0) {
        contestant.handshakes(&configs, (options.handshakes / 10).max(1))?;
        contestant.bulk(&configs, (bytes / 10).max(RECORD as u64))?;
    }
    for run in 0..settings.runs {
        for contestant in settings.order(&Contestant::ALL, Contestant::name, run) {
            progress.step(format!("tls {} handshakes", contestant.name()));
            let (elapsed, cpu_us) = timed(|| contestant.handshakes(&configs, options.handshakes))?;
            progress.done();
            let count = options.handshakes as f64;
            let sample = |metric, value| Sample {
                workload: WORKLOAD,
                contestant: contestant.name(),
                params: params([("pattern", json!("handshake"))]),
                metric,
                value,
            };
            results.record(sample("handshakes_per_sec", count / elapsed.as_secs_f64()));
            results.record(sample("cpu_us_per_handshake", cpu_us / count));
        }
        for contestant in settings.order(&Contestant::ALL, Contestant::name, run) {
            progress.step(format!("tls {} bulk", contestant.name()));
            let (elapsed, cpu_us) = timed(|| contestant.bulk(&configs, bytes))?;
            progress.done();
            let mb = bytes as f64 / 1e6;
            let sample = |metric, value| Sample {
                workload: WORKLOAD,
                contestant: contestant.name(),
                params: params([("pattern", json!("bulk")), ("record", json!(RECORD))]),
                metric,
                value,
            };
            results.record(sample("mb_per_sec", mb / elapsed.as_secs_f64()));
            results.record(sample("cpu_us_per_mb", cpu_us / mb));
        }
    }
    Ok(())
}
