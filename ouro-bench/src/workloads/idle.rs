//! `idle`: many idle connections to each echo server (the same servers as
//! the `echo` workload: ouro's example on io_uring and on the readiness
//! backend, raw io-uring, tokio, monoio), and what they cost it in memory.
//!
//! The server runs in a child process (see `crate::server`); this process
//! opens `--conns` connections (default 50,000) from eight source addresses
//! (127.0.0.2 to 127.0.0.9, so that no address runs out of ports), in
//! batches of 1,000: connect every one, then send one byte on each and read
//! its echo, so that every connection has been accepted and has served a
//! request before the next batch (and the accept queue never overflows).
//! Then every connection is idle, and the server's resident memory is read
//! (`VmRSS`).
//!
//! Both processes need an fd per connection: the program raises
//! `RLIMIT_NOFILE` to what it needs, which raising the hard limit allows
//! only with `CAP_SYS_RESOURCE`. Without it, it measures as many
//! connections as the hard limit allows, says so, and reports that count.
//!
//! Params `{"conns": N}`; metrics `rss_mb` (the server's resident memory
//! with N idle connections) and `rss_kb_per_conn` (its growth per
//! connection over the second half of them, so that one-time costs, such as
//! the first use of a receive buffer group, do not count); compared with
//! `tokio`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use clap::Args;
use serde_json::json;
use socket2::{Domain, Socket, Type};

use super::echo::CONTESTANTS;
use super::Settings;
use crate::progress::Progress;
use crate::record::{params, Results, Sample};
use crate::server::{self, ServerProcess};
use crate::servers::{Contestant, Protocol};

const WORKLOAD: &str = "idle";

/// Connections made (and checked) at a time.
const BATCH: usize = 1000;
/// Source addresses: 127.0.0.2 and the next seven.
const SOURCES: u8 = 8;
/// fds a process needs besides the connections.
const SPARE_FDS: u64 = 64;

/// Options of the `idle` workload.
#[derive(Debug, Args)]
pub struct Options {
    /// Idle connections to hold open (fewer where the fd limit cannot be
    /// raised enough; the count measured is reported).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub conns: u32,
}

/// Measurements made, for the progress bar.
pub fn steps(_options: &Options, settings: &Settings) -> u64 {
    u64::from(settings.runs) * super::included(settings, &CONTESTANTS, Contestant::name)
}

/// Measures every contestant `runs` times.
pub fn measure(
    options: &Options,
    settings: &Settings,
    results: &mut Results,
    progress: &Progress,
) -> io::Result<()> {
    let conns = feasible_conns(options.conns, progress)?;
    results.compare_against(WORKLOAD, Contestant::Tokio.name());
    for run in 0..settings.runs {
        for contestant in settings.order(&CONTESTANTS, Contestant::name, run) {
            progress.step(format!("idle {} conns={conns}", contestant.name()));
            let (rss_kb, per_conn_kb) = measure_once(contestant, conns).map_err(|e| {
                io::Error::new(e.kind(), format!("idle {}: {e}", contestant.name()))
            })?;
            progress.done();
            let sample = |metric, value| Sample {
                workload: WORKLOAD,
                contestant: contestant.name(),
                params: params([("conns", json!(conns))]),
                metric,
                value,
            };
            results.record(sample("rss_mb", rss_kb as f64 / 1024.0));
            results.record(sample("rss_kb_per_conn", per_conn_kb));
        }
    }
    Ok(())
}

/// `wanted`, or as many connections as the fd limit allows (said in a
/// note): both this process and the server's need an fd for each.
fn feasible_conns(wanted: u32, progress: &Progress) -> io::Result<usize> {
    let needed = u64::from(wanted) + SPARE_FDS;
    let limit = server::raise_fd_limit(needed)?;
    if limit >= needed {
        return Ok(wanted as usize);
    }
    let conns = limit.saturating_sub(SPARE_FDS).max(1);
    progress.note(&format!(
        "idle: the open-file limit is {limit} and cannot be raised to {needed} here \
         (raising RLIMIT_NOFILE's hard limit needs CAP_SYS_RESOURCE): \
         measuring {conns} connections instead of {wanted}"
    ));
    Ok(conns as usize)
}

/// The server's resident memory with `conns` idle connections, in KiB, and
/// its growth per connection over the second half of them.
fn measure_once(contestant: Contestant, conns: usize) -> io::Result<(u64, f64)> {
    let mut server = ServerProcess::start(Protocol::Echo, contestant)?;
    let mut streams = Vec::with_capacity(conns);
    let (half, full) = server::on_client_cpu(|| -> io::Result<_> {
        connect(&mut streams, server.addr, conns / 2)?;
        let half = server.usage()?;
        connect(&mut streams, server.addr, conns)?;
        Ok((half, server.usage()?))
    })?;
    // Reset, not closed: no TIME_WAIT left to hold ports for the next run.
    drop(streams);
    server.stop()?;
    let growth = full.rss_kb.saturating_sub(half.rss_kb) as f64;
    Ok((full.rss_kb, growth / (conns - conns / 2) as f64))
}

/// Adds connections to `server` until there are `count`, each of which has
/// had one byte echoed.
fn connect(streams: &mut Vec<TcpStream>, server: SocketAddr, count: usize) -> io::Result<()> {
    while streams.len() < count {
        let first = streams.len();
        for i in first..count.min(first + BATCH) {
            streams.push(connect_from(source(i), server)?);
        }
        for stream in &mut streams[first..] {
            stream.write_all(b"!")?;
        }
        for stream in &mut streams[first..] {
            let mut echo = [0u8; 1];
            stream.read_exact(&mut echo)?;
        }
    }
    Ok(())
}

/// The source address of connection `i`.
fn source(i: usize) -> SocketAddr {
    let host = 2 + (i % usize::from(SOURCES)) as u8;
    SocketAddr::from(([127, 0, 0, host], 0))
}

/// A connection from `source` (any port) to `server`, which resets when
/// dropped, and fails a read that waits over 10 s.
fn connect_from(source: SocketAddr, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_linger(Some(Duration::ZERO))?;
    socket.bind(&source.into())?;
    socket.connect(&server.into())?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(socket.into())
}
