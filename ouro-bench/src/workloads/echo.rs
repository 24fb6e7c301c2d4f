//! `echo`: a TCP echo server over loopback in each contestant — ouro's
//! echo example (`ouro/examples/echo.rs`: multishot accept, multishot
//! receive into a shared buffer group, each received buffer sent back as it
//! is) on io_uring (`ouro-uring`) and on the readiness backend
//! (`ouro-poll`), the same design written directly on the io-uring crate
//! (`raw`, the practical limit), tokio's current-thread runtime (`tokio`,
//! the reference) and monoio's io_uring runtime (`monoio`), the last two
//! with the idiomatic task per connection that reads into its own 4 KiB
//! buffer and writes back — against one load client.
//!
//! Each server runs in a child process pinned to CPU 0 (see
//! `crate::server`); the client, an ouro ring on io_uring (the same for every
//! contestant), runs in this process on CPU 1. It keeps `conns` connections
//! busy: each sends `size` bytes, reads the echo back in full, and repeats.
//! After 0.3 s of warm-up it measures a window of `--secs` (default 1):
//! round trips, each round trip's latency, and the server's CPU time
//! (`getrusage(RUSAGE_SELF)` of the server process: user + system) and
//! memory at both ends.
//!
//! Params `{"conns": N, "size": B}` (`--conns`, `--size`: comma-separated
//! lists; default 1, 16, 128 connections × 64 B, 4 KiB). Metrics: `rps`
//! (round trips per second), `server_cpu_us_per_req`, `p50_us` and `p99_us`
//! (round-trip latency seen by the client), `rss_mb` (the server's resident
//! memory at the end); compared with `tokio`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use ouro::{BackendKind, Completion, Ctx, Outcome, Ring, RunMode};
use serde_json::json;

use super::Settings;
use crate::progress::Progress;
use crate::record::{params, Results, Sample};
use crate::server::{on_client_cpu, ServerProcess, Usage};
use crate::servers::{Contestant, Protocol};

const WORKLOAD: &str = "echo";

/// The contestants, in the order measured in the first run.
pub const CONTESTANTS: [Contestant; 5] = [
    Contestant::OuroUring,
    Contestant::OuroPoll,
    Contestant::Raw,
    Contestant::Tokio,
    Contestant::Monoio,
];

/// Options of the `echo` workload.
#[derive(Debug, Args)]
pub struct Options {
    /// Connections kept busy by the client (a comma-separated list, one
    /// comparison per value).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 128], value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub conns: Vec<u32>,
    /// Bytes per request, echoed back (a comma-separated list).
    #[arg(long, value_delimiter = ',', default_values_t = [64, 4096], value_parser = clap::value_parser!(u32).range(1..=1048576))]
    pub size: Vec<u32>,
    /// Seconds measured per run (after 0.3 s of warm-up).
    #[arg(long, default_value_t = 1.0)]
    pub secs: f64,
}

/// Measurements made, for the progress bar.
pub fn steps(options: &Options, settings: &Settings) -> u64 {
    let contestants = super::included(settings, &CONTESTANTS, Contestant::name);
    u64::from(settings.runs) * (options.conns.len() * options.size.len()) as u64 * contestants
}

/// Measures every contestant for each (conns, size), `runs` times.
pub fn measure(
    options: &Options,
    settings: &Settings,
    results: &mut Results,
    progress: &Progress,
) -> io::Result<()> {
    let timing = Timing {
        warmup: Duration::from_millis(300),
        window: super::check_secs(options.secs)?,
    };
    results.compare_against(WORKLOAD, Contestant::Tokio.name());
    for run in 0..settings.runs {
        for &conns in &options.conns {
            for &size in &options.size {
                for contestant in settings.order(&CONTESTANTS, Contestant::name, run) {
                    progress.step(format!(
                        "echo {} conns={conns} size={size}",
                        contestant.name()
                    ));
                    let measured = measure_once(contestant, conns as usize, size as usize, timing)
                        .map_err(|e| {
                            io::Error::new(e.kind(), format!("echo {}: {e}", contestant.name()))
                        })?;
                    progress.done();
                    let params = params([("conns", json!(conns)), ("size", json!(size))]);
                    for (metric, value) in measured.metrics() {
                        results.record(Sample {
                            workload: WORKLOAD,
                            contestant: contestant.name(),
                            params: params.clone(),
                            metric,
                            value,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    pub rps: f64,
    pub server_cpu_us_per_req: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub rss_mb: f64,
}

impl Measurement {
    fn metrics(&self) -> [(&'static str, f64); 5] {
        [
            ("rps", self.rps),
            ("server_cpu_us_per_req", self.server_cpu_us_per_req),
            ("p50_us", self.p50_us),
            ("p99_us", self.p99_us),
            ("rss_mb", self.rss_mb),
        ]
    }
}

/// How long to warm up and to measure.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub warmup: Duration,
    pub window: Duration,
}

/// Runs `contestant`'s server and the load client once.
pub fn measure_once(
    contestant: Contestant,
    conns: usize,
    size: usize,
    timing: Timing,
) -> io::Result<Measurement> {
    let server = ServerProcess::start(Protocol::Echo, contestant)?;
    let (server, window) = on_client_cpu(|| run_client(server, conns, size, timing))?;
    server.stop()?;
    window.measurement()
}

/// The value at quantile `q` (0 to 1) of sorted `values`.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or(0)
}

// -- the load client --------------------------------------------------------

ouro::messages! { enum ClientMsg { Connected, Sent, Received, WarmedUp, Done } }

/// The window's counts, and the server's usage at both ends.
struct Window {
    round_trips: u64,
    elapsed: Duration,
    start: Usage,
    end: Usage,
    /// Every round trip's latency in the window, in nanoseconds, sorted.
    latencies: Vec<u64>,
}

impl Window {
    fn measurement(&self) -> io::Result<Measurement> {
        if self.round_trips == 0 {
            return Err(io::Error::other("no round trip completed"));
        }
        let cpu = self.end.cpu.saturating_sub(self.start.cpu);
        Ok(Measurement {
            rps: self.round_trips as f64 / self.elapsed.as_secs_f64(),
            server_cpu_us_per_req: cpu.as_secs_f64() * 1e6 / self.round_trips as f64,
            p50_us: quantile(&self.latencies, 0.50) as f64 / 1e3,
            p99_us: quantile(&self.latencies, 0.99) as f64 / 1e3,
            rss_mb: self.end.rss_kb as f64 / 1024.0,
        })
    }
}

struct Client {
    server: ServerProcess,
    conns: Vec<Rc<OwnedFd>>,
    size: usize,
    /// The request every connection sends (shared, never copied).
    request: std::rc::Rc<[u8]>,
    /// Bytes of the current echo still to come back, and when its request
    /// was sent, per connection.
    pending: Vec<(usize, Instant)>,
    round_trips: u64,
    /// While measuring: round trips, time and server usage at the start.
    start: Option<(u64, Instant, Usage)>,
    window: Option<Window>,
    latencies: Vec<u64>,
    length: Duration,
}

impl Client {
    fn ctx(msg: ClientMsg, key: usize) -> Ctx<Client> {
        Ctx::new(Client::on_completion).msg(msg).key(key as u64)
    }

    fn on_completion(&mut self, ring: &mut Ring<Client>, c: Completion) -> io::Result<()> {
        let key = c.key() as usize;
        match (c.message::<ClientMsg>()?, c.outcome) {
            (ClientMsg::Connected, Outcome::Connect(result)) => {
                result?;
                self.send_request(ring, key, Vec::with_capacity(self.size));
            }
            (ClientMsg::Sent, Outcome::Send(result, buf)) => {
                let n = result?;
                if n < buf.len() {
                    let mut buf = buf;
                    buf.consume(n);
                    ring.send(&self.conns[key], buf, Client::ctx(ClientMsg::Sent, key));
                }
            }
            (ClientMsg::Received, Outcome::Recv(result, buf)) => {
                let n = result?;
                if n == 0 {
                    return Err(io::Error::other("the server closed a connection"));
                }
                let (left, sent) = &mut self.pending[key];
                let mut vec: Vec<u8> = buf.downcast().map_err(|_| io::Error::other("buffer"))?;
                // Every contestant's echo is checked, byte for byte.
                let offset = self.size - *left;
                if n > *left || vec[..n] != self.request[offset..offset + n] {
                    return Err(io::Error::other("the echo differs from what was sent"));
                }
                *left -= n;
                vec.clear();
                if *left > 0 {
                    ring.recv(&self.conns[key], vec, Client::ctx(ClientMsg::Received, key));
                    return Ok(());
                }
                if self.start.is_some() {
                    self.latencies.push(sent.elapsed().as_nanos() as u64);
                }
                self.round_trips += 1;
                self.send_request(ring, key, vec);
            }
            (ClientMsg::WarmedUp, Outcome::Timer(result)) => {
                result?;
                let usage = self.server.usage()?;
                self.start = Some((self.round_trips, Instant::now(), usage));
                ring.timer(self.length, Client::ctx(ClientMsg::Done, 0));
            }
            (ClientMsg::Done, Outcome::Timer(result)) => {
                result?;
                let (now, end) = (Instant::now(), self.server.usage()?);
                let Some((round_trips, began, start)) = self.start.take() else {
                    return Err(io::Error::other("the window ended before it began"));
                };
                let mut latencies = std::mem::take(&mut self.latencies);
                latencies.sort_unstable();
                self.window = Some(Window {
                    round_trips: self.round_trips - round_trips,
                    elapsed: now - began,
                    start,
                    end,
                    latencies,
                });
                ring.stop();
            }
            (_, other) => return Err(io::Error::other(format!("client: unexpected {other:?}"))),
        }
        Ok(())
    }

    /// Sends the request and receives the echo into `room` (reused).
    fn send_request(&mut self, ring: &mut Ring<Client>, key: usize, room: Vec<u8>) {
        self.pending[key] = (self.size, Instant::now());
        let request = self.request.clone();
        ring.send(&self.conns[key], request, Client::ctx(ClientMsg::Sent, key));
        ring.recv(
            &self.conns[key],
            room,
            Client::ctx(ClientMsg::Received, key),
        );
    }
}

/// Drives `server` with `conns` connections; gives it back with the window.
fn run_client(
    server: ServerProcess,
    conns: usize,
    size: usize,
    timing: Timing,
) -> io::Result<(ServerProcess, Window)> {
    let mut ring: Ring<Client> = Ring::builder()
        .entries(256)
        .backend(BackendKind::Uring)
        .build()?;
    let addr: SocketAddr = server.addr;
    let mut client = Client {
        server,
        conns: Vec::with_capacity(conns),
        size,
        // Bytes that differ by position, so that a misplaced one shows.
        request: (0..size).map(|i| (i % 251) as u8).collect(),
        pending: vec![(0, Instant::now()); conns],
        round_trips: 0,
        start: None,
        window: None,
        latencies: Vec::with_capacity(1 << 20),
        length: timing.window,
    };
    for key in 0..conns {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_tcp_nodelay(true)?;
        let fd = Rc::new(OwnedFd::from(socket));
        ring.connect(&fd, addr, Client::ctx(ClientMsg::Connected, key));
        client.conns.push(fd);
    }
    ring.timer(timing.warmup, Client::ctx(ClientMsg::WarmedUp, 0));
    ring.run(&mut client, RunMode::Forever)?;
    // Close the connections before the server is stopped.
    drop(ring);
    for fd in &client.conns {
        // SAFETY: shutdown on our own socket.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
    let window = client
        .window
        .ok_or_else(|| io::Error::other("the client stopped early"))?;
    Ok((client.server, window))
}
