//! How many clients a demo can run beside its server in one process. Each
//! client takes two fds, its socket and the server's end of the
//! connection, and the process's `RLIMIT_NOFILE` bounds both (on io_uring
//! it also sizes the fixed file table that holds them, up to 65536). A
//! demo asked for more refuses up front: past the limit, thousands of
//! clients would fail one by one, each failure logged, while the clients
//! that got an fd waited for a server that could accept no more.

/// Fds kept for all but the clients and the rings: stdio, the listener,
/// the signal relay.
const RESERVED: u64 = 64;
/// Fds a ring takes: its own, and its wake-up (an eventfd for messages).
const PER_RING: u64 = 2;

/// The largest fixed file table a ring sets up by default.
const MOST_FIXED_FILES: u64 = 65_536;

/// Whether `clients` fit in this process's fds beside `rings` rings; if
/// not, why.
pub fn check_clients(clients: usize, rings: usize) -> Result<(), String> {
    let limit = open_files_limit();
    let for_rings = PER_RING * rings as u64;
    let most = limit
        .min(MOST_FIXED_FILES)
        .saturating_sub(RESERVED + for_rings)
        / 2;
    if clients as u64 <= most {
        return Ok(());
    }
    Err(format!(
        "--clients {clients}: each client takes two fds (its socket and the server's end) \
         and this process may open {limit} (`ulimit -n`), {for_rings} of them for its \
         {rings} ring(s): at most {most} clients"
    ))
}

/// The process's soft limit on open files; if it cannot be read, the
/// common default.
fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}
