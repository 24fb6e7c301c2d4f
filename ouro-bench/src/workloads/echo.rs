//! `echo`: a TCP echo server over loopback, in each contestant — ouro on
//! the readiness backend (`ouro-poll`), ouro on io_uring (`ouro-uring`),
//! tokio's current-thread runtime (`tokio`) — against one load client.
//!
//! The server runs on its own thread pinned to CPU 0, the client on another
//! pinned to CPU 1 (the machine has two). The client (an ouro ring on io_uring, the same
//! for every contestant) keeps `conns` connections busy: each sends `size`
//! bytes, reads the echo back in full, and repeats. After a warm-up, it
//! counts round trips over the measured window and reads the server
//! thread's CPU time (user + system, `pthread_getcpuclockid`) at both ends.
//! Reported: `rps` (round trips per second) and `server_cpu_us_per_req`.
//!
//! Both ouro servers are the same program (accept; per connection: receive
//! into a buffer, send it back, receive again), so the figures compare the
//! backends; tokio's is the idiomatic read/`write_all` loop per task.
//!
//! Params `{"conns": N, "size": B}` (`--conns`, `--size`: comma-separated
//! lists), window `--secs` (default 1) after 0.3 s of warm-up; metrics `rps`
//! and `server_cpu_us_per_req`, compared with `tokio`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Args;
use ouro::{BackendKind, Buf, Completion, Ctx, Outcome, Ring, RunMode};
use serde_json::json;

use super::Settings;
use crate::record::{params, Results, Sample};

const WORKLOAD: &str = "echo";

/// Options of the `echo` workload.
#[derive(Debug, Args)]
pub struct Options {
    /// Connections kept busy by the client (a comma-separated list, one
    /// comparison per value).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64], value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub conns: Vec<u32>,
    /// Bytes per request, echoed back (a comma-separated list).
    #[arg(long, value_delimiter = ',', default_values_t = [64], value_parser = clap::value_parser!(u32).range(1..=1048576))]
    pub size: Vec<u32>,
    /// Seconds measured per run (after 0.3 s of warm-up).
    #[arg(long, default_value_t = 1.0)]
    pub secs: f64,
}

/// Measures every contestant for each (conns, size), `runs` times.
pub fn measure(options: &Options, settings: &Settings, results: &mut Results) -> io::Result<()> {
    if !(options.secs > 0.0 && options.secs <= 3600.0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--secs must be between 0 and 3600, not {}", options.secs),
        ));
    }
    results.compare_against(WORKLOAD, Contestant::Tokio.name());
    let timing = Timing {
        warmup: Duration::from_millis(300),
        window: Duration::from_secs_f64(options.secs),
    };
    for run in 0..settings.runs {
        for &conns in &options.conns {
            for &size in &options.size {
                for contestant in settings.order(&Contestant::ALL, Contestant::name, run) {
                    let measured = measure_once(contestant, conns as usize, size as usize, timing)
                        .map_err(|e| {
                            io::Error::new(e.kind(), format!("{}: {e}", contestant.name()))
                        })?;
                    let sample = |metric, value| Sample {
                        workload: WORKLOAD,
                        contestant: contestant.name(),
                        params: params([("conns", json!(conns)), ("size", json!(size))]),
                        metric,
                        value,
                    };
                    results.record(sample("rps", measured.rps));
                    results.record(sample(
                        "server_cpu_us_per_req",
                        measured.server_cpu_us_per_req,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contestant {
    OuroPoll,
    OuroUring,
    Tokio,
}

impl Contestant {
    pub const ALL: [Contestant; 3] = [
        Contestant::OuroPoll,
        Contestant::OuroUring,
        Contestant::Tokio,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Contestant::OuroPoll => "ouro-poll",
            Contestant::OuroUring => "ouro-uring",
            Contestant::Tokio => "tokio",
        }
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    pub rps: f64,
    pub server_cpu_us_per_req: f64,
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
    let stop = Arc::new(AtomicBool::new(false));
    let (ready, listening) = mpsc::channel();
    let server_stop = stop.clone();
    let server = std::thread::Builder::new()
        .name(contestant.name().into())
        .spawn(move || {
            pin_to_cpu(0);
            let listener = match ouro::net::tcp_listener("127.0.0.1:0".parse().unwrap(), 1024) {
                Ok(listener) => listener,
                Err(err) => return ready.send(Err(err)).map_err(|_| io::Error::other("gone")),
            };
            let addr = ouro::net::local_addr(&listener)?;
            ready
                .send(Ok(addr))
                .map_err(|_| io::Error::other("the client is gone"))?;
            match contestant {
                Contestant::OuroPoll => {
                    ouro_server(listener, BackendKind::Poll, size, &server_stop)
                }
                Contestant::OuroUring => {
                    ouro_server(listener, BackendKind::Uring, size, &server_stop)
                }
                Contestant::Tokio => tokio_server(listener, size, &server_stop),
            }
        })?;
    let addr = listening
        .recv()
        .map_err(|_| io::Error::other("the server thread died"))??;
    let cpu = ThreadCpu::of(&server)?;
    let client = std::thread::Builder::new()
        .name("echo-client".into())
        .spawn(move || {
            pin_to_cpu(1);
            run_client(addr, conns, size, timing, &cpu)
        })?;
    let counted = client
        .join()
        .map_err(|_| io::Error::other("the client panicked"))?;
    // Wake the server's accept so it sees the stop flag.
    stop.store(true, Ordering::SeqCst);
    drop(std::net::TcpStream::connect(addr));
    let served = server
        .join()
        .map_err(|_| io::Error::other("the server panicked"))?;
    let (round_trips, elapsed, cpu_time) = counted?;
    served?;
    if round_trips == 0 {
        return Err(io::Error::other("no round trip completed"));
    }
    Ok(Measurement {
        rps: round_trips as f64 / elapsed.as_secs_f64(),
        server_cpu_us_per_req: cpu_time.as_secs_f64() * 1e6 / round_trips as f64,
    })
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; we set one bit and pass
    // its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Another thread's CPU time (user + system).
#[derive(Clone, Copy)]
struct ThreadCpu(libc::clockid_t);

impl ThreadCpu {
    fn of<T>(thread: &std::thread::JoinHandle<T>) -> io::Result<ThreadCpu> {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is alive (we hold its handle, unjoined).
        let res = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
        if res != 0 {
            return Err(io::Error::from_raw_os_error(res));
        }
        Ok(ThreadCpu(clock))
    }

    fn now(&self) -> Duration {
        // SAFETY: clock_gettime writes the zeroed timespec we pass.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::clock_gettime(self.0, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

// -- ouro server ----------------------------------------------------------

ouro::messages! { enum ServerMsg { Accepted, Received, Sent } }

struct Server {
    listener: OwnedFd,
    conns: Vec<Option<OwnedFd>>,
    free: Vec<usize>,
    size: usize,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn ctx(msg: ServerMsg, key: usize) -> Ctx<Server> {
        Ctx::new(Server::on_completion).msg(msg).key(key as u64)
    }

    fn on_completion(&mut self, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
        let key = c.key() as usize;
        match (c.message::<ServerMsg>()?, c.outcome) {
            (ServerMsg::Accepted, Outcome::Accept(result)) => {
                let (fd, _) = result?;
                if self.stop.load(Ordering::SeqCst) {
                    ring.stop();
                    return Ok(());
                }
                socket2::SockRef::from(&fd).set_tcp_nodelay(true)?;
                ring.accept(&self.listener, Server::ctx(ServerMsg::Accepted, 0));
                let key = match self.free.pop() {
                    Some(key) => key,
                    None => {
                        self.conns.push(None);
                        self.conns.len() - 1
                    }
                };
                let buf = Vec::with_capacity(self.size);
                ring.recv(&fd, buf, Server::ctx(ServerMsg::Received, key));
                self.conns[key] = Some(fd);
            }
            (ServerMsg::Received, Outcome::Recv(Ok(n), buf)) if n > 0 => self.send(ring, key, buf),
            (ServerMsg::Sent, Outcome::Send(Ok(n), mut buf)) => {
                buf.consume(n);
                if buf.is_empty() {
                    let mut vec: Vec<u8> =
                        buf.downcast().map_err(|_| io::Error::other("buffer"))?;
                    vec.clear();
                    self.recv(ring, key, vec);
                } else {
                    self.send(ring, key, buf);
                }
            }
            // End of stream or an error: the connection is done.
            (ServerMsg::Received | ServerMsg::Sent, _) => {
                self.conns[key] = None;
                self.free.push(key);
            }
            (_, other) => return Err(io::Error::other(format!("unexpected {other:?}"))),
        }
        Ok(())
    }

    fn send(&mut self, ring: &mut Ring<Server>, key: usize, buf: Buf) {
        if let Some(fd) = &self.conns[key] {
            ring.send(fd, buf, Server::ctx(ServerMsg::Sent, key));
        }
    }

    fn recv(&mut self, ring: &mut Ring<Server>, key: usize, buf: Vec<u8>) {
        if let Some(fd) = &self.conns[key] {
            ring.recv(fd, buf, Server::ctx(ServerMsg::Received, key));
        }
    }
}

fn ouro_server(
    listener: OwnedFd,
    backend: BackendKind,
    size: usize,
    stop: &Arc<AtomicBool>,
) -> io::Result<()> {
    let mut ring: Ring<Server> = Ring::builder().entries(256).backend(backend).build()?;
    ring.accept(&listener, Server::ctx(ServerMsg::Accepted, 0));
    let mut server = Server {
        listener,
        conns: Vec::new(),
        free: Vec::new(),
        size,
        stop: stop.clone(),
    };
    ring.run(&mut server, RunMode::Forever)
}

// -- tokio server ---------------------------------------------------------

fn tokio_server(listener: OwnedFd, size: usize, stop: &Arc<AtomicBool>) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let std_listener = TcpListener::from(listener);
    std_listener.set_nonblocking(true)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        loop {
            let (mut stream, _) = listener.accept().await?;
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let mut buf = vec![0u8; size];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}

// -- the load client --------------------------------------------------------

ouro::messages! { enum ClientMsg { Connected, Sent, Received, WarmedUp, Done } }

struct Client {
    conns: Vec<OwnedFd>,
    size: usize,
    /// The request every connection sends (shared, never copied).
    request: std::rc::Rc<[u8]>,
    /// Bytes of the current echo still to come back, per connection.
    pending: Vec<usize>,
    round_trips: u64,
    start: Option<(u64, Instant, Duration)>,
    end: Option<(u64, Instant, Duration)>,
    cpu: ThreadCpu,
    window: Duration,
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
                self.pending[key] = self.pending[key].saturating_sub(n);
                let mut vec: Vec<u8> = buf.downcast().map_err(|_| io::Error::other("buffer"))?;
                vec.clear();
                if self.pending[key] > 0 {
                    ring.recv(&self.conns[key], vec, Client::ctx(ClientMsg::Received, key));
                } else {
                    self.round_trips += 1;
                    self.send_request(ring, key, vec);
                }
            }
            (ClientMsg::WarmedUp, Outcome::Timer(result)) => {
                result?;
                self.start = Some((self.round_trips, Instant::now(), self.cpu.now()));
                ring.timer(self.window, Client::ctx(ClientMsg::Done, 0));
            }
            (ClientMsg::Done, Outcome::Timer(result)) => {
                result?;
                self.end = Some((self.round_trips, Instant::now(), self.cpu.now()));
                ring.stop();
            }
            (_, other) => return Err(io::Error::other(format!("client: unexpected {other:?}"))),
        }
        Ok(())
    }

    /// Sends the request and receives the echo into `room` (reused).
    fn send_request(&mut self, ring: &mut Ring<Client>, key: usize, room: Vec<u8>) {
        self.pending[key] = self.size;
        let request = self.request.clone();
        ring.send(&self.conns[key], request, Client::ctx(ClientMsg::Sent, key));
        ring.recv(
            &self.conns[key],
            room,
            Client::ctx(ClientMsg::Received, key),
        );
    }
}

/// Round trips, elapsed time and server CPU time over the window.
fn run_client(
    addr: SocketAddr,
    conns: usize,
    size: usize,
    timing: Timing,
    cpu: &ThreadCpu,
) -> io::Result<(u64, Duration, Duration)> {
    let mut ring: Ring<Client> = Ring::builder()
        .entries(256)
        .backend(BackendKind::Uring)
        .build()?;
    let mut client = Client {
        conns: Vec::with_capacity(conns),
        size,
        request: vec![b'x'; size].into(),
        pending: vec![0; conns],
        round_trips: 0,
        start: None,
        end: None,
        cpu: *cpu,
        window: timing.window,
    };
    for key in 0..conns {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_tcp_nodelay(true)?;
        let fd: OwnedFd = socket.into();
        ring.connect(&fd, addr, Client::ctx(ClientMsg::Connected, key));
        client.conns.push(fd);
    }
    ring.timer(timing.warmup, Client::ctx(ClientMsg::WarmedUp, 0));
    ring.run(&mut client, RunMode::Forever)?;
    let (Some(start), Some(end)) = (client.start, client.end) else {
        return Err(io::Error::other("the client stopped early"));
    };
    // Close the connections before the server is told to stop.
    drop(ring);
    for fd in &client.conns {
        // SAFETY: shutdown on our own socket.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
    Ok((end.0 - start.0, end.1 - start.1, end.2 - start.2))
}
