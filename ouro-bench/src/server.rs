//! Servers under test run in a child process of their own — this program
//! again, as `ouro-bench serve --protocol P --contestant C` — pinned to
//! CPU 0, while the load (this process's client, or `wrk`) runs on CPU 1.
//! So the server's CPU time is the child's `getrusage(RUSAGE_SELF)` (user +
//! system, every thread of it) and its memory is the child's `VmRSS`,
//! neither mixed with the client's.
//!
//! The child prints `listening ADDR` once its listener is bound, then
//! answers each `usage` line on its standard input with `usage CPU_US
//! RSS_KB`, from a control thread; it exits when its standard input closes.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::servers::{self, Contestant, Protocol};

/// The CPU servers run on.
pub const SERVER_CPU: usize = 0;
/// The CPU load clients (this process, `wrk`) run on.
pub const CLIENT_CPU: usize = 1;

/// A server's resource use so far.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// User + system CPU time of the whole server process.
    pub cpu: Duration,
    /// Its resident memory, in KiB.
    pub rss_kb: u64,
}

/// A server running in a child process.
pub struct ServerProcess {
    child: Child,
    control: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `contestant`'s `protocol` server and waits until it listens.
    pub fn start(protocol: Protocol, contestant: Contestant) -> io::Result<ServerProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--protocol", protocol.name()])
            .args(["--contestant", contestant.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let control = child.stdin.take();
        let replies = BufReader::new(child.stdout.take().expect("piped"));
        let mut server = ServerProcess {
            child,
            control,
            replies,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let line = server.reply()?;
        server.addr = line
            .strip_prefix("listening ")
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| io::Error::other(format!("the server said {line:?}")))?;
        Ok(server)
    }

    /// Its CPU time and memory now.
    pub fn usage(&mut self) -> io::Result<Usage> {
        let control = self.control.as_mut().expect("open until stop");
        control.write_all(b"usage\n")?;
        control.flush()?;
        let line = self.reply()?;
        let numbers: Vec<u64> = line
            .strip_prefix("usage ")
            .map(|rest| rest.split(' ').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        match numbers[..] {
            [cpu_us, rss_kb] => Ok(Usage {
                cpu: Duration::from_micros(cpu_us),
                rss_kb,
            }),
            _ => Err(io::Error::other(format!("the server said {line:?}"))),
        }
    }

    /// A line from the server; an error that says how it ended if it did.
    fn reply(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.replies.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            return Err(io::Error::other(format!("the server ended ({status})")));
        }
        Ok(line.trim_end().to_string())
    }

    /// Stops the server; fails if it had failed.
    pub fn stop(mut self) -> io::Result<()> {
        self.control = None;
        let status = self.wait_briefly()?;
        if !status.success() {
            return Err(io::Error::other(format!("the server failed ({status})")));
        }
        Ok(())
    }

    /// Waits up to 10 s for the child to exit (its input is closed), then
    /// kills it.
    fn wait_briefly(&mut self) -> io::Result<std::process::ExitStatus> {
        let limit = Instant::now() + Duration::from_secs(10);
        while Instant::now() < limit {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child.kill()?;
        self.child.wait()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.control.take().is_some() {
            let _ = self.wait_briefly();
        }
    }
}

/// The child's side: `ouro-bench serve`.
#[derive(Debug, Args)]
pub struct ServeOptions {
    #[arg(long, value_enum)]
    protocol: Protocol,
    #[arg(long, value_enum)]
    contestant: Contestant,
}

/// Runs the server until standard input closes.
pub fn serve(options: &ServeOptions) -> io::Result<()> {
    pin_to_cpu(SERVER_CPU);
    raise_fd_limit(max_fd_limit())?;
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 4096)?;
    let addr = ouro::net::local_addr(&listener)?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening {addr}")?;
    out.flush()?;
    drop(out);
    std::thread::Builder::new()
        .name("control".into())
        .spawn(answer_control)?;
    servers::serve(options.protocol, options.contestant, listener)
}

/// Answers `usage` requests; ends the process when its input closes.
fn answer_control() {
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line != "usage" {
            continue;
        }
        let reply = format!("usage {} {}\n", cpu_micros(), rss_kb());
        let mut out = io::stdout().lock();
        if out
            .write_all(reply.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            break;
        }
    }
    std::process::exit(0);
}

/// This process's CPU time (user + system, all threads), in microseconds.
pub(crate) fn cpu_micros() -> u64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// The calling thread's CPU time (user + system) so far, in microseconds.
pub(crate) fn thread_cpu_micros() -> u64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD is the calling thread's (Linux).
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// This process's resident memory (`VmRSS`), in KiB.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Runs `client` on the calling thread pinned to `CLIENT_CPU` (and the
/// threads and processes it starts), then lets the thread run anywhere
/// again.
pub fn on_client_cpu<T>(client: impl FnOnce() -> T) -> T {
    // SAFETY: sched_getaffinity fills the zeroed set we pass, of its size.
    let mut before: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: as above.
    let saved = unsafe { libc::sched_getaffinity(0, size, &mut before) } == 0;
    pin_to_cpu(CLIENT_CPU);
    let result = client();
    if saved {
        // SAFETY: restores the set read above.
        unsafe { libc::sched_setaffinity(0, size, &before) };
    }
    result
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; we set one bit and pass
    // its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Raises the limit on open files to `wanted` where this process may
/// (raising the hard limit needs `CAP_SYS_RESOURCE`), else the soft limit
/// to the hard one; returns the limit now in force.
pub fn raise_fd_limit(wanted: u64) -> io::Result<u64> {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_max < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Ok(wanted);
            }
        }
        limit.rlim_cur = limit.rlim_max.min(wanted.max(limit.rlim_cur));
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(limit.rlim_cur)
    }
}

/// The most files a process may be allowed to open (`fs.nr_open`).
pub fn max_fd_limit() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1 << 20)
}
