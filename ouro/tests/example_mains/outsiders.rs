//! Other local processes at a demo's loopback port: finding the port a
//! child listens on (as `ss -tlnp` would), and connections to it that
//! misbehave.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// Raises this process's soft limit on fds (which its children inherit)
/// to `want`, or as far as the hard limit allows; returns the limit now.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur >= want {
        return limit.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: want.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return limit.rlim_cur;
    }
    raised.rlim_cur
}

/// How long the child may take to listen: generous, the machines are
/// shared.
const LISTEN_WITHIN: Duration = Duration::from_secs(30);

/// The loopback port process `pid` listens on, once it does; `None` if it
/// ends first, or takes longer than `LISTEN_WITHIN`.
pub fn listening_port(pid: u32) -> Option<u16> {
    let started = Instant::now();
    while started.elapsed() < LISTEN_WITHIN {
        let sockets = socket_inodes(pid)?;
        // Its own network namespace's table: the inode tells it apart
        // from the other tests' listeners.
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
        let listening = table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let listens = *state == "0A" && sockets.contains(*inode);
            let port = local.strip_prefix("0100007F:")?;
            listens.then(|| u16::from_str_radix(port, 16).ok())?
        });
        if listening.is_some() {
            return listening;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// The inodes of the sockets process `pid` has open; `None` once it has
/// ended.
fn socket_inodes(pid: u32) -> Option<HashSet<String>> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let inodes = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?;
            let inode = link.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    Some(inodes)
}

/// Up to `count` connections to `addr`, made one after another until one
/// cannot be (the server has gone): every third resets at once, after
/// sending; the others send 256 KiB without reading a byte of the echo
/// (with a small receive buffer, so the echo soon stalls) and are returned,
/// to be held open.
pub fn misbehave(addr: SocketAddr, count: usize) -> Vec<Socket> {
    let mut held = Vec::new();
    for i in 0..count {
        let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, None) else {
            break;
        };
        let _ = socket.set_recv_buffer_size(4096);
        if socket
            .connect_timeout(&addr.into(), Duration::from_secs(5))
            .is_err()
        {
            break;
        }
        let _ = socket.set_nonblocking(true);
        let _ = (&socket).write(&[i as u8; 256 * 1024]);
        if i % 3 == 0 {
            let _ = socket.set_linger(Some(Duration::ZERO));
            drop(socket);
        } else {
            held.push(socket);
        }
    }
    held
}
