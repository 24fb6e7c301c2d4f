//! Running an example's `main_with` as its `main` runs it, in a child
//! process: this test binary again, running one `#[ignore]`d test that
//! the parent names, told by environment variables which example to be,
//! with which arguments, and what its stdout is. The child reports through
//! the example's `cli::status` and exits with that status, as `main` does.
//! (ouro-net's tests include this file too.)

// Each test binary uses part of it.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Set in the child: the example to be.
const EXAMPLE: &str = "OURO_TEST_EXAMPLE";
/// Its arguments, separated by `SEPARATOR`.
const ARGS: &str = "OURO_TEST_EXAMPLE_ARGS";
/// What its stdout is: `piped`, `closed` or `full`.
const STDOUT: &str = "OURO_TEST_EXAMPLE_STDOUT";
const SEPARATOR: char = '\u{1f}';

/// How long a child may take: generous, as it must end, not end fast.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// What the example's stdout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdout {
    /// A pipe the parent reads.
    Piped,
    /// A pipe whose reader is gone: writes fail with `EPIPE`.
    Closed,
    /// `/dev/full`: writes fail with `ENOSPC`.
    Full,
}

/// In the child, what the parent asked for.
pub struct Asked {
    pub example: String,
    pub args: Vec<String>,
    pub stdout: Stdout,
}

/// What the parent asked for, if this process is a child.
pub fn asked() -> Option<Asked> {
    let example = std::env::var(EXAMPLE).ok()?;
    let args = std::env::var(ARGS).unwrap_or_default();
    let stdout = match std::env::var(STDOUT).as_deref() {
        Ok("closed") => Stdout::Closed,
        Ok("full") => Stdout::Full,
        _ => Stdout::Piped,
    };
    Some(Asked {
        example,
        args: args
            .split(SEPARATOR)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect(),
        stdout,
    })
}

/// How an example's run ended, and what it wrote.
pub struct Ran {
    pub what: String,
    pub status: ExitStatus,
    /// Its stdout, after libtest's lines about the child test.
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Fails the test unless the example exited with `code`, and said
    /// nothing a user should not see: a panic, or a Rust debug struct
    /// where its own words belong.
    pub fn assert_exit(&self, code: i32) -> &Ran {
        assert_eq!(self.status.code(), Some(code), "{self}");
        for leak in ["panicked", "Custom {", "Os {", "kind: "] {
            assert!(!self.stderr.contains(leak), "{leak:?} on stderr: {self}");
        }
        self
    }

    /// Fails the test unless stderr has `text`.
    pub fn assert_stderr_has(&self, text: &str) -> &Ran {
        assert!(self.stderr.contains(text), "no {text:?} on stderr: {self}");
        self
    }

    /// Fails the test unless stdout has `text`.
    pub fn assert_stdout_has(&self, text: &str) -> &Ran {
        assert!(self.stdout.contains(text), "no {text:?} on stdout: {self}");
        self
    }

    /// The lines of stderr that report an error (`error: ...`).
    pub fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| line.starts_with("error: "))
            .collect()
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `example` with `args` and `stdout` in a child that runs the test
/// `child_test`, to its end (see [`Running::finish`]).
pub fn run(child_test: &str, example: &str, args: &[&str], stdout: Stdout) -> Ran {
    start(child_test, example, args, stdout).finish()
}

/// A child started, not yet waited for.
pub struct Running {
    /// Its stdout is the parent's to take, to read or to close.
    pub child: Child,
    child_test: String,
    what: String,
}

/// Starts `example` with `args` and `stdout` in a child that runs the test
/// `child_test`.
pub fn start(child_test: &str, example: &str, args: &[&str], stdout: Stdout) -> Running {
    let mode = match stdout {
        Stdout::Piped => "piped",
        Stdout::Closed => "closed",
        Stdout::Full => "full",
    };
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child_test, "--ignored", "--nocapture"])
        .args(["--test-threads=1"])
        .env(EXAMPLE, example)
        .env(ARGS, args.join(&SEPARATOR.to_string()))
        .env(STDOUT, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the child");
    Running {
        child,
        child_test: child_test.to_string(),
        what: format!("{example} {}", args.join(" ")),
    }
}

impl Running {
    /// Waits for the child to end, reading what it writes (its stdout
    /// unless taken); kills it and fails the test if it outlives
    /// `CHILD_LIMIT`.
    pub fn finish(mut self) -> Ran {
        let out = self.child.stdout.take();
        let err = self.child.stderr.take().unwrap();
        let out = thread::spawn(move || out.map(read_all).unwrap_or_default());
        let err = thread::spawn(move || read_all(err));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > CHILD_LIMIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not end within {CHILD_LIMIT:?}", self.what);
            }
            thread::sleep(Duration::from_millis(10));
        };
        let stdout = out.join().unwrap();
        let stdout = match stdout.split_once(&format!("test {} ... ", self.child_test)) {
            Some((_, after)) => after.to_string(),
            None => stdout,
        };
        Ran {
            what: self.what,
            status,
            stdout,
            stderr: err.join().unwrap(),
        }
    }
}

fn read_all(mut from: impl Read) -> String {
    let mut text = Vec::new();
    let _ = from.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// Lowers this process's fd limit to `fds` (in a child, before it runs
/// the example).
#[allow(dead_code)] // not every includer lowers it
pub fn lower_fd_limit(fds: u64) {
    let limit = libc::rlimit {
        rlim_cur: fds,
        rlim_max: fds,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}
