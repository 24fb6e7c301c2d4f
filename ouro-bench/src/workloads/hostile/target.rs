//! The servers under attack: ouro's example servers, each run as a process
//! of its own (so that its memory, fds and fixed-table slots are measured
//! from outside, and its crash is seen and does not end the suite), on the
//! backend `OURO_BACKEND` names, with its standard error kept in a file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use clap::ValueEnum;

/// An example server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Server {
    /// `examples/echo.rs --serve ADDR`.
    Echo,
    /// `examples/http_server.rs ADDR`.
    Http,
    /// `examples/resp_server.rs ADDR`.
    Resp,
}

/// Every server, in the order of the table.
pub const SERVERS: [Server; 3] = [Server::Echo, Server::Http, Server::Resp];

impl Server {
    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Server::Echo => "echo",
            Server::Http => "http",
            Server::Resp => "resp",
        }
    }

    /// Its example's binary name.
    pub fn binary(self) -> &'static str {
        match self {
            Server::Echo => "echo",
            Server::Http => "http_server",
            Server::Resp => "resp_server",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Server::Echo => &["--serve", "127.0.0.1:0"],
            Server::Http | Server::Resp => &["127.0.0.1:0"],
        }
    }

    /// A well-formed request (for echo, a message), answered with one
    /// answer.
    pub fn request(self) -> &'static [u8] {
        match self {
            Server::Echo => b"hostile-suite: a well-behaved 64-byte echo message ...........\r\n",
            Server::Http => b"GET / HTTP/1.1\r\nHost: hostile\r\n\r\n",
            Server::Resp => b"*1\r\n$4\r\nPING\r\n",
        }
    }

    /// The length of the complete answer at the start of `input`, once it
    /// is all there.
    pub fn answer_len(self, input: &[u8]) -> Option<usize> {
        match self {
            Server::Echo => (input.len() >= self.request().len()).then_some(self.request().len()),
            Server::Http => http_answer_len(input),
            Server::Resp => find(input, b"\r\n").map(|end| end + 2),
        }
    }
}

/// A head and its `Content-Length` body.
fn http_answer_len(input: &[u8]) -> Option<usize> {
    let head = find(input, b"\r\n\r\n")? + 4;
    let body = String::from_utf8_lossy(&input[..head])
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (input.len() >= head + body).then_some(head + body)
}

/// Where `needle` starts in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The backend a server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// io_uring (`OURO_BACKEND=uring`).
    Uring,
    /// The readiness backend (`OURO_BACKEND=poll`).
    Poll,
}

impl Backend {
    /// Its name, as `OURO_BACKEND` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Poll => "poll",
        }
    }
}

/// A server process, killed when dropped.
pub struct Process {
    child: Child,
    /// Kept open: the server's later prints must not fail.
    _stdout: BufReader<ChildStdout>,
    log: PathBuf,
    pub pid: u32,
    pub addr: SocketAddr,
}

impl Process {
    /// Starts `server` from `examples` on `backend`, with its fd limit
    /// (soft and hard) set to `fd_limit`, or else its soft limit raised to
    /// the hard one (a server needs an fd per connection; the default soft
    /// limit is often 1,024), and waits until it says where it listens.
    pub fn start(
        examples: &Path,
        server: Server,
        backend: Backend,
        fd_limit: Option<u64>,
        log: PathBuf,
    ) -> io::Result<Process> {
        let binary = examples.join(server.binary());
        let mut command = Command::new(&binary);
        command
            .args(server.args())
            .env("OURO_BACKEND", backend.name())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?);
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only getrlimit/setrlimit, which are async-signal-safe; it
        // allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || set_fd_limit(fd_limit));
        }
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", binary.display())))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped");
        let (stdout, line) = first_line(stdout, &mut child)?;
        let mut process = Process {
            child,
            _stdout: stdout,
            log,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        match listening_addr(&line) {
            Some(addr) => process.addr = addr,
            None => {
                let ended = process
                    .exit_status()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                return Err(io::Error::other(format!(
                    "{} did not say where it listens{ended}: stdout {line:?}, stderr {:?}",
                    server.binary(),
                    process.log_tail()
                )));
            }
        }
        Ok(process)
    }

    /// How it ended, if it did.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Lines it has written to standard error so far.
    pub fn log_lines(&self) -> usize {
        std::fs::read(&self.log)
            .map(|log| log.iter().filter(|&&b| b == b'\n').count())
            .unwrap_or(0)
    }

    /// The last line it wrote to standard error.
    pub fn log_tail(&self) -> String {
        let mut log = Vec::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_end(&mut log));
        let text = String::from_utf8_lossy(&log);
        text.lines()
            .last()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect()
    }

    /// One request on a fresh connection, answered within `timeout`.
    pub fn serves_a_new_connection(&self, server: Server, timeout: Duration) -> io::Result<()> {
        let mut stream = TcpStream::connect_timeout(&self.addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(server.request())?;
        read_answer(&mut stream, server).map(drop)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// How long a server may take to say where it listens.
const START_WITHIN: Duration = Duration::from_secs(10);

/// The first line `child` prints, read within `START_WITHIN` (a server that
/// says nothing is killed, and its empty line tells so).
fn first_line(
    stdout: ChildStdout,
    child: &mut Child,
) -> io::Result<(BufReader<ChildStdout>, String)> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let _ = sender.send(read.map(|_| (stdout, line)));
    });
    match receiver.recv_timeout(START_WITHIN) {
        Ok(read) => read,
        Err(_) => {
            let _ = child.kill();
            receiver
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("the server's output was lost")))
        }
    }
}

/// Reads one whole answer of `server`'s from `stream`.
pub fn read_answer(stream: &mut TcpStream, server: Server) -> io::Result<Vec<u8>> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(len) = server.answer_len(&answer) {
            answer.truncate(len);
            return Ok(answer);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the server closed the connection after {} bytes of an answer",
                    answer.len()
                ),
            ));
        }
        answer.extend_from_slice(&chunk[..n]);
    }
}

/// The address on a server's first line (`listening on ADDR (BACKEND)`,
/// `echo: serving on ADDR ...`): the first word that is a socket address.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    line.split_whitespace().find_map(|word| word.parse().ok())
}

/// In the child before exec: sets `RLIMIT_NOFILE` to `limit`, or the soft
/// limit to the hard one.
fn set_fd_limit(limit: Option<u64>) -> io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = match limit {
        Some(limit) => libc::rlimit {
            rlim_cur: limit.min(current.rlim_max),
            rlim_max: limit.min(current.rlim_max),
        },
        None => libc::rlimit {
            rlim_cur: current.rlim_max,
            rlim_max: current.rlim_max,
        },
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_the_first_socket_address_on_the_first_line() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(listening_addr("listening on 127.0.0.1:4000\n"), Some(addr));
        assert_eq!(
            listening_addr("echo: serving on 127.0.0.1:4000"),
            Some(addr)
        );
        assert_eq!(
            listening_addr("listening on 127.0.0.1:4000 (io_uring (single_issuer))"),
            Some(addr)
        );
        assert_eq!(listening_addr("error: no ring"), None);
        assert_eq!(listening_addr(""), None);
    }

    #[test]
    fn answers_are_complete_only_when_whole() {
        let http = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(Server::Http.answer_len(http), Some(http.len()));
        assert_eq!(Server::Http.answer_len(&http[..http.len() - 1]), None);
        assert_eq!(
            Server::Http.answer_len(b"HTTP/1.1 400 Bad\r\n\r\nmore"),
            Some(20)
        );
        assert_eq!(Server::Resp.answer_len(b"+PONG\r\n+PO"), Some(7));
        assert_eq!(Server::Resp.answer_len(b"+PONG"), None);
        let echo = Server::Echo.request();
        assert_eq!(Server::Echo.answer_len(&echo[1..]), None);
        assert_eq!(Server::Echo.answer_len(echo), Some(echo.len()));
    }
}
