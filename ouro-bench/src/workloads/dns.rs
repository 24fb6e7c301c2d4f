//! `dns`: address lookups against `dnsmasq` on loopback — ouro-net's
//! resolver (`lookup_ip`, `in_flight` lookups at once on one ring) against
//! glibc's `getaddrinfo` on a pool of `in_flight` threads (the standard
//! library's `to_socket_addrs`, as a program without an asynchronous
//! resolver does it) and against `hickory-resolver` on a current-thread
//! tokio runtime (`in_flight` tasks). All ask for A and AAAA; each lookup
//! asks for a name of its own (`l0.ouro.test`, `l1.ouro.test`, ...: the
//! names are made before the clock starts), which dnsmasq answers for
//! every name under `ouro.test`, so that no contestant answers a lookup
//! from an earlier one: hickory-resolver sends one query for identical
//! questions in flight at once, and keeps a cache. After each run the
//! namespace's UDP counter must show four datagrams per lookup (two
//! queries, two answers), or the workload fails.
//! Two patterns: `closed`, each of `in_flight` lookups at once followed
//! by the next as soon as it ends (metrics: `lookups_per_sec`, `p50_us`
//! and `p99_us` of each lookup's time, `cpu_us_per_lookup`: this process's
//! CPU, user + system; dnsmasq's is its own), and `paced`, lookups
//! arriving at `rate` per second for every contestant (`p50_us`, `p99_us`
//! from each lookup's arrival, `cpu_us_per_lookup`; see [`paced`]).
//!
//! getaddrinfo reads `/etc/resolv.conf`, which names servers on port 53
//! only. So the workload runs in network and mount namespaces of its own
//! (it starts itself again under `unshare --net --mount`, which needs
//! root): there the loopback is brought up, dnsmasq listens on
//! 127.0.0.1:53 and a resolv.conf naming it is bind-mounted over
//! `/etc/resolv.conf`; nothing outside them changes. The resolver reads
//! the same file, and so does hickory-resolver (its system
//! configuration), with its cache off. The order of the contestants rotates from run to run;
//! one unmeasured run of a tenth of the lookups warms each up. dnsmasq
//! runs on CPU 0 (`taskset`) and the contestants on CPU 1, threads
//! included, as in the http workload: no contestant competes with the
//! server for a CPU, and each has one CPU, however many threads it starts.

mod paced;

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hickory_resolver::TokioResolver;
use ouro::{Completion, Ctx, Ring, RunMode};
use ouro_net::dns::reload::RELOAD_INTERVAL;
use ouro_net::dns::{answer, Hosts, Resolver};
use serde_json::json;

use super::Settings;
use crate::progress::Progress;
use crate::record::{params, Results, Sample};
use crate::server::{cpu_micros, on_client_cpu, SERVER_CPU};

const WORKLOAD: &str = "dns";
/// The domain whose every name dnsmasq answers with one address of each
/// family.
const DOMAIN: &str = "ouro.test";
/// Set in the environment of the workload started again in its
/// namespaces.
const IN_NAMESPACES: &str = "OURO_BENCH_DNS_NAMESPACES";
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Options of the `dns` workload.
#[derive(Debug, Args)]
pub struct Options {
    /// Lookups per run.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub lookups: u64,
    /// Lookups at once (ouro's in flight on its ring, getaddrinfo's
    /// threads).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub in_flight: u16,
    /// Lookups per second offered to each contestant in the paced pattern
    /// (at most `in_flight` of them at once).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contestant {
    Ouro,
    Getaddrinfo,
    Hickory,
}

impl Contestant {
    const ALL: [Contestant; 3] = [
        Contestant::Ouro,
        Contestant::Getaddrinfo,
        Contestant::Hickory,
    ];

    fn name(self) -> &'static str {
        match self {
            Contestant::Ouro => "ouro",
            Contestant::Getaddrinfo => "getaddrinfo",
            Contestant::Hickory => "hickory",
        }
    }

    /// Each lookup's time, in microseconds: one lookup of each of `names`.
    fn lookups(self, names: &[String], in_flight: u16) -> io::Result<Vec<u64>> {
        match self {
            Contestant::Ouro => ouro_lookups(names, in_flight),
            Contestant::Getaddrinfo => getaddrinfo_lookups(names, in_flight),
            Contestant::Hickory => hickory_lookups(names, in_flight),
        }
    }
}

/// `count` distinct names under [`DOMAIN`].
fn names(count: u64) -> Vec<String> {
    (0..count).map(|n| format!("l{n}.{DOMAIN}")).collect()
}

/// Whether this process is the workload started again in its namespaces.
pub fn in_namespaces() -> bool {
    std::env::var_os(IN_NAMESPACES).is_some()
}

/// Starts this program again, with the same arguments, in network and
/// mount namespaces of its own, and returns its exit status.
pub fn run_in_namespaces() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("ouro-bench dns: {err}");
            return ExitCode::FAILURE;
        }
    };
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(IN_NAMESPACES, "1")
        .status();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("ouro-bench dns: {status} (it needs root, unshare and dnsmasq)");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("ouro-bench dns: cannot run unshare: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Measurements made, for the progress bar.
pub fn steps(_options: &Options, settings: &Settings) -> u64 {
    2 * u64::from(settings.runs) * super::included(settings, &Contestant::ALL, Contestant::name)
}

/// How a run gives the contestant its lookups.
#[derive(Clone, Copy, Debug)]
enum Pattern {
    /// `in_flight` at once, the next as soon as one ends.
    Closed,
    /// Arriving at `rate` per second.
    Paced,
}

impl Pattern {
    fn params(self, options: &Options) -> crate::record::Params {
        match self {
            Pattern::Closed => params([
                ("pattern", json!("closed")),
                ("in_flight", json!(options.in_flight)),
            ]),
            Pattern::Paced => params([
                ("pattern", json!("paced")),
                ("rate", json!(options.rate)),
                ("in_flight", json!(options.in_flight)),
            ]),
        }
    }

    /// Each lookup's time, in microseconds (one lookup of each of
    /// `names`), and CPU time of this process that is not the contestant's
    /// (the pacer's).
    fn lookups(
        self,
        contestant: Contestant,
        names: &[String],
        options: &Options,
    ) -> io::Result<(Vec<u64>, u64)> {
        match self {
            Pattern::Closed => Ok((contestant.lookups(names, options.in_flight)?, 0)),
            Pattern::Paced => paced::lookups(contestant, names, options.in_flight, options.rate),
        }
    }
}

/// Measures the contestants `runs` times against one dnsmasq.
pub fn measure(
    options: &Options,
    settings: &Settings,
    results: &mut Results,
    progress: &Progress,
) -> io::Result<()> {
    if !in_namespaces() {
        return Err(io::Error::other(
            "the dns workload runs in namespaces of its own (started by `ouro-bench dns`)",
        ));
    }
    let _server = Dnsmasq::start()?;
    results.compare_against(WORKLOAD, Contestant::Getaddrinfo.name());
    let names = names(options.lookups);
    let warm_up = &names[..names.len().div_ceil(10)];
    for contestant in settings.order(&Contestant::ALL, Contestant::name, 0) {
        on_client_cpu(|| contestant.lookups(warm_up, options.in_flight))?;
    }
    for run in 0..settings.runs {
        for pattern in [Pattern::Closed, Pattern::Paced] {
            for contestant in settings.order(&Contestant::ALL, Contestant::name, run) {
                progress.step(format!("dns {pattern:?} {}", contestant.name()));
                measure_one(pattern, contestant, &names, options, results)?;
                progress.done();
            }
        }
    }
    Ok(())
}

/// One run of `contestant` in `pattern`, recorded in `results`.
fn measure_one(
    pattern: Pattern,
    contestant: Contestant,
    names: &[String],
    options: &Options,
    results: &mut Results,
) -> io::Result<()> {
    let datagrams = udp_datagrams_sent()?;
    let cpu = cpu_micros();
    let start = Instant::now();
    let (mut times, not_the_contestants) =
        on_client_cpu(|| pattern.lookups(contestant, names, options))?;
    let elapsed = start.elapsed();
    let cpu_us = (cpu_micros() - cpu).saturating_sub(not_the_contestants) as f64;
    let sent = udp_datagrams_sent()? - datagrams;
    // Each lookup: an A and an AAAA query, and dnsmasq's two answers.
    if sent < 4 * options.lookups {
        return Err(io::Error::other(format!(
            "{}: {sent} UDP datagrams for {} lookups (some answered without a query)",
            contestant.name(),
            options.lookups
        )));
    }
    times.sort_unstable();
    let sample = |metric, value| Sample {
        workload: WORKLOAD,
        contestant: contestant.name(),
        params: pattern.params(options),
        metric,
        value,
    };
    let count = options.lookups as f64;
    if matches!(pattern, Pattern::Closed) {
        results.record(sample("lookups_per_sec", count / elapsed.as_secs_f64()));
    }
    results.record(sample("p50_us", percentile(&times, 0.50)));
    results.record(sample("p99_us", percentile(&times, 0.99)));
    results.record(sample("cpu_us_per_lookup", cpu_us / count));
    Ok(())
}

/// UDP datagrams sent in this network namespace so far (the `Udp:`
/// `OutDatagrams` counter of `/proc/net/snmp`).
fn udp_datagrams_sent() -> io::Result<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp")?;
    let mut udp = snmp.lines().filter(|line| line.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return Err(io::Error::other("no Udp lines in /proc/net/snmp"));
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "OutDatagrams")
        .and_then(|(_, value)| value.parse().ok())
        .ok_or_else(|| io::Error::other("no Udp OutDatagrams in /proc/net/snmp"))
}

fn percentile(sorted: &[u64], at: f64) -> f64 {
    let index = ((sorted.len() as f64 * at).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64
}

/// dnsmasq on 127.0.0.1:53 in the namespaces, with the loopback up and a
/// resolv.conf naming it over `/etc/resolv.conf`; killed when dropped.
struct Dnsmasq(Child);

impl Dnsmasq {
    fn start() -> io::Result<Dnsmasq> {
        loopback_up()?;
        let conf = std::env::temp_dir().join(format!("ouro-bench-resolv-{}", std::process::id()));
        std::fs::write(&conf, "nameserver 127.0.0.1\n")?;
        let mounted = Command::new("mount")
            .arg("--bind")
            .arg(&conf)
            .arg(RESOLV_CONF)
            .status()?;
        std::fs::remove_file(&conf)?; // the mount keeps it
        if !mounted.success() {
            return Err(io::Error::other(format!(
                "mount --bind over {RESOLV_CONF} failed"
            )));
        }
        let program = ["/usr/sbin/dnsmasq", "dnsmasq"]
            .into_iter()
            .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
            .unwrap_or("dnsmasq");
        // On the server CPU, as the other servers the workloads start: the
        // contestants run on the client CPU, so none competes with dnsmasq
        // for a CPU and each gets one of its own.
        let child = Command::new("taskset")
            .args(["-c", &SERVER_CPU.to_string(), program])
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
            ])
            .args([
                "--log-facility=-",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
            ])
            .args([
                "--local=/ouro.test/",
                "--address=/ouro.test/192.0.2.1",
                "--address=/ouro.test/2001:db8::1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("dnsmasq: {err}")))?;
        let mut server = Dnsmasq(child);
        let start = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, 53)).is_err() {
            if server.0.try_wait()?.is_some() || start.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::other("dnsmasq did not listen on 127.0.0.1:53"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Brings `lo` up (a new network namespace starts with it down).
fn loopback_up() -> io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // SAFETY: an all-zero ifreq is valid (an empty name, zero flags).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *to = *from as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of the
    // ifreq we own, on an open socket.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the flags member is the one SIOCGIFFLAGS just filled.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and flags of the ifreq we own.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a lookup of `name` must find: both addresses dnsmasq gives.
fn check(name: &str, mut found: Vec<IpAddr>) -> io::Result<()> {
    found.sort();
    let expected: Vec<IpAddr> = vec![[192, 0, 2, 1].into(), "2001:db8::1".parse().unwrap()];
    if found != expected {
        return Err(io::Error::other(format!("{name} gave {found:?}")));
    }
    Ok(())
}

/// getaddrinfo on `threads` threads, one lookup of each of `names`.
fn getaddrinfo_lookups(names: &[String], threads: u16) -> io::Result<Vec<u64>> {
    let next = AtomicUsize::new(0);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> io::Result<Vec<u64>> {
                    let mut times = Vec::new();
                    while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let start = Instant::now();
                        let found = getaddrinfo(name)?;
                        times.push(start.elapsed().as_micros() as u64);
                        check(name, found)?;
                    }
                    Ok(times)
                })
            })
            .collect();
        gathered(workers)
    })
}

/// The addresses glibc's `getaddrinfo` finds for `name` (through the
/// standard library, as a program without an asynchronous resolver asks).
fn getaddrinfo(name: &str) -> io::Result<Vec<IpAddr>> {
    Ok((name, 0).to_socket_addrs()?.map(|a| a.ip()).collect())
}

/// Every lookup time the getaddrinfo threads measured.
fn gathered(
    workers: Vec<thread::ScopedJoinHandle<'_, io::Result<Vec<u64>>>>,
) -> io::Result<Vec<u64>> {
    let mut all = Vec::new();
    for worker in workers {
        let times = worker
            .join()
            .map_err(|_| io::Error::other("a getaddrinfo thread panicked"))??;
        all.extend(times);
    }
    Ok(all)
}

/// hickory-resolver on a current-thread tokio runtime, `tasks` tasks
/// making one lookup of each of `names`.
fn hickory_lookups(names: &[String], tasks: u16) -> io::Result<Vec<u64>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let resolver = hickory_resolver()?;
        let next = Cell::new(0);
        let mut lookups: FuturesUnordered<_> = (0..tasks)
            .map(|_| async {
                let mut times = Vec::new();
                while let Some(name) = names.get(next.replace(next.get() + 1)) {
                    let start = Instant::now();
                    let found = resolver.lookup_ip(name.as_str()).await;
                    let found = found.map_err(io::Error::other)?.iter().collect();
                    times.push(start.elapsed().as_micros() as u64);
                    check(name, found)?;
                }
                Ok::<_, io::Error>(times)
            })
            .collect();
        let mut all = Vec::with_capacity(names.len());
        while let Some(times) = lookups.next().await {
            all.extend(times?);
        }
        Ok(all)
    })
}

struct Lookups<'a> {
    resolver: Option<Resolver<Lookups<'a>>>,
    names: &'a [String],
    started: usize,
    /// The name and start of the lookup with each key.
    asked: Vec<(&'a str, Instant)>,
    times: Vec<u64>,
    failure: Option<io::Error>,
}

/// hickory-resolver with the system configuration (the resolv.conf the
/// workload mounted) and no cache; made inside the tokio runtime.
fn hickory_resolver() -> io::Result<TokioResolver> {
    let mut builder = TokioResolver::builder_tokio().map_err(io::Error::other)?;
    builder.options_mut().cache_size = 0;
    builder.build().map_err(io::Error::other)
}

/// A ring state that holds the ouro resolver its tasks report to.
trait WithResolver: Sized {
    fn resolver(&mut self) -> Option<&mut Resolver<Self>>;
}

impl<'a> WithResolver for Lookups<'a> {
    fn resolver(&mut self) -> Option<&mut Resolver<Lookups<'a>>> {
        self.resolver.as_mut()
    }
}

/// The callback of the resolver's own tasks.
fn to_resolver<S: WithResolver>(
    state: &mut S,
    ring: &mut Ring<S>,
    c: Completion,
) -> io::Result<()> {
    match state.resolver() {
        Some(resolver) => resolver.on_completion(ring, c),
        None => Ok(()),
    }
}

/// ouro-net's resolver on `ring`, configured from the resolv.conf the
/// workload mounted (which must name dnsmasq).
fn ouro_resolver<S>(ring: &mut Ring<S>, tasks: Ctx<S>) -> io::Result<Resolver<S>> {
    let resolver =
        Resolver::from_resolv_conf(ring, RESOLV_CONF, RELOAD_INTERVAL, Hosts::default(), tasks)?;
    let servers = &resolver.config().nameservers;
    if servers != &[SocketAddr::from((Ipv4Addr::LOCALHOST, 53))] {
        return Err(io::Error::other(format!("{RESOLV_CONF} names {servers:?}")));
    }
    Ok(resolver)
}

fn on_answer<'a>(
    state: &mut Lookups<'a>,
    ring: &mut Ring<Lookups<'a>>,
    c: Completion,
) -> io::Result<()> {
    let key = c.key() as usize;
    let (name, began) = state.asked[key];
    state.times.push(began.elapsed().as_micros() as u64);
    match answer(c).and_then(|answer| check(name, answer.addresses())) {
        Ok(()) => start_lookup(state, ring, key),
        Err(err) => {
            state.failure.get_or_insert(err);
        }
    }
    Ok(())
}

fn start_lookup<'a>(state: &mut Lookups<'a>, ring: &mut Ring<Lookups<'a>>, key: usize) {
    let Some(name) = state.names.get(state.started) else {
        return;
    };
    state.started += 1;
    state.asked[key] = (name, Instant::now());
    if let Some(resolver) = state.resolver.as_mut() {
        resolver.lookup_ip(ring, name, Ctx::new(on_answer).key(key as u64));
    }
}

/// ouro-net's resolver on one ring, `in_flight` lookups at once, one
/// lookup of each of `names`.
fn ouro_lookups(names: &[String], in_flight: u16) -> io::Result<Vec<u64>> {
    let mut ring = Ring::new(1024)?;
    let resolver = ouro_resolver(&mut ring, Ctx::new(to_resolver))?;
    let mut state = Lookups {
        resolver: Some(resolver),
        names,
        started: 0,
        asked: vec![("", Instant::now()); usize::from(in_flight)],
        times: Vec::with_capacity(names.len()),
        failure: None,
    };
    for key in 0..usize::from(in_flight) {
        start_lookup(&mut state, &mut ring, key);
    }
    ring.run(&mut state, RunMode::UntilDone)?;
    if let Some(err) = state.failure {
        return Err(err);
    }
    Ok(state.times)
}
