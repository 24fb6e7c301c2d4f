//! Choosing the backend: io_uring where it works; the readiness backend when
//! `io_uring_setup` is refused (by a real seccomp filter); `OURO_BACKEND`.
//!
//! Each scenario runs in a child process — this test binary again, running
//! one `#[ignore]`d helper — so that neither the filter nor the variable
//! reaches the other tests. The examples run here as their `main` runs
//! them, under the filter: they must say why they fell back, and fail
//! before claiming to listen when io_uring is forced.

// Both protocol examples include `support/stream_server.rs`, as each must
// to build on its own.
#![allow(clippy::duplicate_mod)]

use std::io::{self, BufRead, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ouro::{BackendKind, Completion, Ctx, Offset, Outcome, Ring, RunMode};

#[macro_use]
#[path = "common/mod.rs"]
mod common;
#[cfg(target_os = "linux")]
#[path = "common/seccomp.rs"]
mod seccomp;

use common::fds::pipe_files;

// The examples, included as they are, to run what their `main` runs.
#[allow(dead_code)]
#[path = "../examples/echo.rs"]
mod echo;
#[allow(dead_code)]
#[path = "../examples/http_server.rs"]
mod http_server;
#[allow(dead_code)]
#[path = "../examples/resp_server.rs"]
mod resp_server;

/// Set for the helpers when a parent test runs them.
const CHILD: &str = "OURO_TEST_CHILD";

/// Runs `helper` in a child process with `env`; its success and output.
fn run_child(helper: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            helper,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env_remove(BackendKind::ENV_VAR);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("running the child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

#[cfg(target_os = "linux")]
#[test]
fn falls_back_when_io_uring_setup_is_forbidden() {
    let (ok, output) = run_child("forbidden_io_uring_child", &[]);
    assert!(ok, "child failed:\n{output}");
    assert!(
        output.contains("raw io_uring_setup: EPERM"),
        "the filter did not take: {output}"
    );
    assert!(
        output.contains("fallback reason: io_uring setup failed"),
        "{output}"
    );
    assert!(
        output.contains("seccomp"),
        "the reason should name seccomp: {output}"
    );
    assert!(
        output.contains("io_uring is unavailable: using the readiness backend"),
        "no tracing event: {output}"
    );
    assert!(output.contains("child IO: ok"), "{output}");
}

/// Installs a seccomp filter that makes `io_uring_setup` fail with `EPERM`
/// in this thread (and the threads it starts), as Docker's default profile
/// does.
#[cfg(target_os = "linux")]
fn forbid_io_uring() {
    seccomp::fail_calls(&[libc::SYS_io_uring_setup], libc::EPERM);
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by falls_back_when_io_uring_setup_is_forbidden"]
fn forbidden_io_uring_child() {
    if !is_child() {
        return;
    }
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    forbid_io_uring();
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup with a params block of the kernel's size.
    let raw = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) };
    if raw < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        println!("raw io_uring_setup: EPERM");
    }
    let mut ring: Ring<Vec<Completion>> = Ring::new(32).expect("Ring::new falls back");
    assert_eq!(ring.backend(), BackendKind::Poll);
    let reason = ring.fallback_reason().expect("a fallback reason");
    let setup = reason
        .get_ref()
        .and_then(|e| e.downcast_ref::<ouro::SetupError>())
        .expect("the reason is io_uring's setup error");
    assert_eq!(setup.os_error(), Some(libc::EPERM));
    println!("fallback reason: {reason}");
    do_real_io(&mut ring);
    println!("child IO: ok");
}

/// A pipe round trip and a file read (which runs on the pool).
fn do_real_io(ring: &mut Ring<Vec<Completion>>) {
    fn record(
        done: &mut Vec<Completion>,
        _: &mut Ring<Vec<Completion>>,
        c: Completion,
    ) -> io::Result<()> {
        done.push(c);
        Ok(())
    }
    let (reader, writer) = pipe_files();
    let (reader, writer) = (Rc::new(reader), Rc::new(writer));
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"from a file").unwrap();
    let file = Rc::new(file.into_file());
    let mut done = Vec::new();
    ring.write(
        &writer,
        &b"through a pipe"[..],
        Offset::Current,
        Ctx::new(record).key(0),
    );
    ring.read(
        &reader,
        Vec::with_capacity(32),
        Offset::Current,
        Ctx::new(record).key(1),
    );
    ring.read(
        &file,
        Vec::with_capacity(32),
        Offset::At(0),
        Ctx::new(record).key(2),
    );
    ring.run(&mut done, RunMode::UntilDone).unwrap();
    done.sort_by_key(Completion::key);
    assert!(
        matches!(done[0].outcome, Outcome::Write(Ok(14), _)),
        "{done:?}"
    );
    match (&done[1].outcome, &done[2].outcome) {
        (Outcome::Read(Ok(14), pipe), Outcome::Read(Ok(11), file)) => {
            assert_eq!(&pipe[..], b"through a pipe");
            assert_eq!(&file[..], b"from a file");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ouro_backend_variable_forces_a_backend_or_is_rejected() {
    let expect = |value: Option<&str>, wanted: &str| {
        let env: Vec<(&str, &str)> = value
            .map(|v| (BackendKind::ENV_VAR, v))
            .into_iter()
            .collect();
        let (ok, output) = run_child("backend_from_env_child", &env);
        assert!(ok, "child failed:\n{output}");
        assert!(
            output.contains(wanted),
            "OURO_BACKEND={value:?}: wanted {wanted:?} in:\n{output}"
        );
    };
    // Where io_uring is forbidden (as under `no-uring`), asking for it is
    // its setup error and the default falls back.
    let (uring, default, forced_uring) = match io_uring_setup_error() {
        None => (
            "Ring::new: Uring, fallback: false".to_string(),
            "Ring::new: Uring, fallback: false",
            "builder(Uring): Uring",
        ),
        Some(err) => (
            format!("Ring::new error ({:?}): io_uring setup failed", err.kind()),
            "Ring::new: Poll, fallback: true",
            "builder(Uring) error: io_uring setup failed",
        ),
    };
    expect(Some("poll"), "Ring::new: Poll, fallback: false");
    expect(Some("uring"), &uring);
    expect(None, default);
    expect(Some(""), default);
    // The program's choice wins over the variable.
    expect(Some("poll"), forced_uring);
    expect(Some("uring"), "builder(Poll): Poll");
    let (ok, output) = run_child("backend_from_env_child", &[(BackendKind::ENV_VAR, "epoll")]);
    assert!(ok, "{output}");
    assert!(
        output.contains("Ring::new error (InvalidInput): OURO_BACKEND=\"epoll\" names no backend: use `uring` or `poll`"),
        "{output}"
    );
}

#[test]
#[ignore = "run in a child process by ouro_backend_variable_forces_a_backend_or_is_rejected"]
fn backend_from_env_child() {
    if !is_child() {
        return;
    }
    match Ring::<()>::new(8) {
        Ok(ring) => println!(
            "Ring::new: {:?}, fallback: {}",
            ring.backend(),
            ring.fallback_reason().is_some()
        ),
        Err(err) => println!("Ring::new error ({:?}): {err}", err.kind()),
    }
    for kind in [BackendKind::Uring, BackendKind::Poll] {
        match Ring::builder().backend(kind).build::<()>() {
            Ok(ring) => println!("builder({kind:?}): {:?}", ring.backend()),
            Err(err) => println!("builder({kind:?}) error: {err}"),
        }
    }
}

/// An io_uring ring that cannot be mapped for lack of address space
/// (`RLIMIT_AS` just above what the process uses) fails with `ENOMEM`
/// explained by the address space too, not only by locked memory (which
/// `io_uring_setup` itself charges before 5.12). Run in a child process, as
/// the limit holds for the whole process.
#[cfg(target_os = "linux")]
#[test]
fn a_ring_out_of_address_space_names_the_address_space() {
    if io_uring_setup_error().is_some() {
        return eprintln!("skipped: io_uring is not available here");
    }
    let (ok, output) = run_child("out_of_address_space_child", &[]);
    assert!(ok, "child failed:\n{output}");
    assert!(
        output.contains("builder(Uring) error (OutOfMemory): io_uring setup failed"),
        "{output}"
    );
    assert!(output.contains("RLIMIT_AS"), "{output}");
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by a_ring_out_of_address_space_names_the_address_space"]
fn out_of_address_space_child() {
    if !is_child() {
        return;
    }
    let vm_size = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmSize in /proc/self/status")
        * 1024;
    let set_limit = |bytes: libc::rlim_t| {
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit reads the struct we pass.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    };
    // Room for small allocations (a heap grows by 128 KiB at least), not
    // for the 512 KiB of 8192 submission entries.
    set_limit(vm_size + (256 << 10));
    let built = Ring::builder()
        .backend(BackendKind::Uring)
        .entries(8192)
        .build::<()>();
    set_limit(libc::RLIM_INFINITY);
    let err = built.err().expect("the ring cannot be mapped");
    let setup = ouro::SetupError::find(&err).expect("a setup error");
    assert_eq!(setup.os_error(), Some(libc::ENOMEM), "{err}");
    println!("builder(Uring) error ({:?}): {err}", err.kind());
}

/// Why io_uring cannot be set up here (`None` where it can): only its
/// being missing or forbidden counts; any other failure fails the test.
fn io_uring_setup_error() -> Option<io::Error> {
    let err = Ring::builder()
        .backend(BackendKind::Uring)
        .build::<()>()
        .err()?;
    #[cfg(target_os = "linux")]
    assert!(
        ouro::SetupError::find(&err).is_some_and(ouro::SetupError::is_unavailable),
        "setting up io_uring failed: {err}"
    );
    Some(err)
}

#[test]
fn both_backends_refuse_the_same_bad_sizes() {
    for kind in [BackendKind::Uring, BackendKind::Poll] {
        for entries in [0, 32769] {
            let err = Ring::builder()
                .backend(kind)
                .entries(entries)
                .build::<()>()
                .err()
                .expect("refused");
            assert_eq!(
                err.kind(),
                io::ErrorKind::InvalidInput,
                "{kind:?} {entries}: {err}"
            );
        }
    }
}

/// How long a child may take before it counts as hung. Generous: the
/// machines are shared; this only turns a hang into a failure.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// A child running `helper`, its stdout read line by line as it comes.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: JoinHandle<String>,
}

impl Watched {
    /// Starts `helper` with `env`, without `OURO_BACKEND` or `RUST_LOG`
    /// unless `env` sets them: the examples' defaults.
    fn start(helper: &str, env: &[(&str, &str)]) -> Watched {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                helper,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env_remove(BackendKind::ENV_VAR)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting the child");
        let stdout = io::BufReader::new(child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Watched {
            child,
            lines,
            stderr,
        }
    }

    /// Stdout's lines until `enough` of them, or until it closes; kills the
    /// child and fails the test if that takes longer than `CHILD_LIMIT`.
    fn stdout_until(&mut self, enough: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + CHILD_LIMIT;
        let mut lines = Vec::new();
        while !enough(&lines) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("the child hung; its output so far: {lines:?}");
                }
            }
        }
        lines
    }

    /// Ends the child if it still runs; how it ended and its stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        let _ = self.child.kill();
        let status = self.child.wait().expect("waiting for the child");
        (status, self.stderr.join().expect("reading stderr"))
    }
}

/// The example servers, started as `main` starts them (listening on a free
/// port) where io_uring is forbidden; what each ended with.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by the example server tests"]
fn example_servers_child() {
    if !is_child() {
        return;
    }
    forbid_io_uring();
    let address = || vec!["127.0.0.1:0".to_string()].into_iter();
    let echo_args = || ["--serve", "127.0.0.1:0"].map(String::from).into_iter();
    let servers = [
        (
            "http_server",
            std::thread::spawn(move || http_server::main_with(address())),
        ),
        (
            "resp_server",
            std::thread::spawn(move || resp_server::main_with(address())),
        ),
        (
            "echo --serve",
            std::thread::spawn(move || echo::main_with(echo_args())),
        ),
    ];
    for (name, server) in servers {
        match server.join().expect("the server panicked") {
            Ok(()) => println!("{name} stopped"),
            Err(err) => println!("{name} failed: {err}"),
        }
    }
}

fn claims_to_listen(line: &str) -> bool {
    // (libtest's "test NAME ... " may precede the first line.)
    line.contains("listening on ") || line.contains("echo: serving on ")
}

#[cfg(target_os = "linux")]
#[test]
fn example_servers_say_on_stderr_why_they_fell_back_from_io_uring() {
    let mut child = Watched::start("example_servers_child", &[]);
    let lines =
        child.stdout_until(|lines| lines.iter().filter(|l| claims_to_listen(l)).count() == 3);
    let (_, stderr) = child.finish();
    let listening: Vec<&String> = lines.iter().filter(|l| claims_to_listen(l)).collect();
    assert_eq!(listening.len(), 3, "stdout: {lines:?}\nstderr: {stderr}");
    for line in listening {
        assert!(line.contains("(readiness ("), "{line}");
    }
    let warnings = stderr
        .lines()
        .filter(|l| {
            l.contains("WARN") && l.contains("io_uring is unavailable: using the readiness backend")
        })
        .collect::<Vec<_>>();
    assert_eq!(
        warnings.len(),
        3,
        "one warning per server's ring:\n{stderr}"
    );
    assert!(warnings.iter().all(|w| w.contains("seccomp")), "{stderr}");
}

#[cfg(target_os = "linux")]
#[test]
fn example_servers_forced_onto_forbidden_io_uring_fail_before_claiming_to_listen() {
    let mut child = Watched::start("example_servers_child", &[(BackendKind::ENV_VAR, "uring")]);
    let lines = child.stdout_until(|_| false);
    let (status, stderr) = child.finish();
    let output = format!("stdout: {lines:?}\nstderr: {stderr}");
    assert!(status.success(), "{output}");
    assert!(!lines.iter().any(|l| claims_to_listen(l)), "{output}");
    for name in ["http_server", "resp_server", "echo --serve"] {
        let failed = format!("{name} failed: io_uring setup failed (Operation not permitted");
        assert!(lines.iter().any(|l| l.contains(&failed)), "{output}");
    }
}

/// The README's demo command (`echo` without arguments, fewer clients)
/// where io_uring is forbidden.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by the echo demo's test"]
fn echo_demo_child() {
    if !is_child() {
        return;
    }
    forbid_io_uring();
    let args = ["--clients", "4", "--rounds", "20"].map(String::from);
    echo::main_with(args.into_iter()).expect("the demo");
}

#[cfg(target_os = "linux")]
#[test]
fn the_echo_demo_runs_on_the_readiness_backend_where_io_uring_is_forbidden() {
    let mut child = Watched::start("echo_demo_child", &[]);
    let lines = child.stdout_until(|_| false);
    let (status, stderr) = child.finish();
    let output = format!("stdout: {lines:?}\nstderr: {stderr}");
    assert!(status.success(), "{output}");
    assert!(
        lines.iter().any(
            |l| l.contains("echo: 4 clients x 20 round trips") && l.contains(" on readiness (")
        ),
        "{output}"
    );
    assert!(
        lines.iter().any(|l| l.contains("4/4 clients done")),
        "{output}"
    );
    assert!(
        stderr.contains("io_uring is unavailable: using the readiness backend"),
        "{output}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn the_examples_log_at_the_levels_rust_log_sets() {
    let mut child = Watched::start("echo_demo_child", &[("RUST_LOG", "ouro=debug")]);
    let lines = child.stdout_until(|_| false);
    let (status, stderr) = child.finish();
    assert!(status.success(), "stdout: {lines:?}\nstderr: {stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains("readiness backend ready")),
        "{stderr}"
    );
}
