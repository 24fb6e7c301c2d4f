//! Reporting failed accepts without flooding the log. A server out of fds
//! retries its accept every few milliseconds and fails each time; it says
//! so once per cause, then at most once per `SUMMARY_EVERY`, and names the
//! limit that was reached: the ring's fixed file table, the process's fd
//! limit or the system's.

use std::io;
use std::time::{Duration, Instant};

/// How often, at most, repeated failures are summed up.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// Why accepting failed, as far as the summary goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The ring's fixed file table is full.
    FdTable,
    /// The process's fd limit (`EMFILE`).
    Process,
    /// The system's file limit (`ENFILE`).
    System,
    /// Anything else, by its OS code (`None`: no code).
    Other(Option<i32>),
}

impl Cause {
    fn of(err: &io::Error) -> Cause {
        if ouro::is_fd_table_full(err) {
            return Cause::FdTable;
        }
        match err.raw_os_error() {
            Some(libc::EMFILE) => Cause::Process,
            Some(libc::ENFILE) => Cause::System,
            code => Cause::Other(code),
        }
    }
}

/// Counts failed accepts (or other steps of taking a connection in) and
/// logs them sparingly (`tracing` warnings).
pub struct AcceptErrors {
    /// What failed, as the log says it: "accept" unless [`named`] otherwise.
    ///
    /// [`named`]: AcceptErrors::named
    what: &'static str,
    /// When the current summary period began (`None`: no failure yet).
    since: Option<Instant>,
    /// Causes already logged in this period.
    logged: Vec<Cause>,
    /// Failures not logged in this period, and the last one's description.
    unlogged: u64,
    last: String,
}

impl Default for AcceptErrors {
    fn default() -> Self {
        AcceptErrors::named("accept")
    }
}

impl AcceptErrors {
    /// Failures of `what` ("accept", "hand-over"), as the log names them.
    pub fn named(what: &'static str) -> AcceptErrors {
        AcceptErrors {
            what,
            since: None,
            logged: Vec::new(),
            unlogged: 0,
            last: String::new(),
        }
    }

    /// Notes a failed accept at `now`: logged at once if its cause is new
    /// in this period, else counted for the summary.
    pub fn failed(&mut self, err: &io::Error, now: Instant) {
        self.summarize_if_due(now);
        self.since.get_or_insert(now);
        let cause = Cause::of(err);
        if self.logged.contains(&cause) {
            self.unlogged += 1;
            self.last = describe(err, cause);
            return;
        }
        self.logged.push(cause);
        tracing::warn!("{} failed: {}", self.what, describe(err, cause));
    }

    /// Notes a successful accept at `now`: failures not yet logged are
    /// summed up once their period is over.
    pub fn accepted(&mut self, now: Instant) {
        if self.unlogged > 0 {
            self.summarize_if_due(now);
        }
    }

    /// Ends the period if it is over, summing up what was not logged. A
    /// quiet period forgets the causes seen; after a summary they stay
    /// known, so that failing on and on logs one summary per period.
    fn summarize_if_due(&mut self, now: Instant) {
        let Some(since) = self.since else {
            return;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed < SUMMARY_EVERY {
            return;
        }
        if self.unlogged == 0 {
            *self = AcceptErrors::named(self.what);
            return;
        }
        tracing::warn!(
            "{} failed {} more times in the last {} s; the last of them: {}",
            self.what,
            self.unlogged,
            elapsed.as_secs(),
            self.last
        );
        self.since = Some(now);
        self.unlogged = 0;
    }
}

/// The error, with the limit it means where the OS text does not say.
fn describe(err: &io::Error, cause: Cause) -> String {
    match cause {
        Cause::Process => format!(
            "{err}: the process's fd limit (RLIMIT_NOFILE, {}) is reached",
            fd_limit()
        ),
        Cause::System => format!("{err}: the system's file limit (fs.file-max) is reached"),
        Cause::FdTable | Cause::Other(_) => err.to_string(),
    }
}

/// The process's soft fd limit, as text.
fn fd_limit() -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return "unknown".to_string();
    }
    limit.rlim_cur.to_string()
}
