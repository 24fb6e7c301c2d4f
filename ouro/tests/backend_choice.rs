//! Choosing the backend: io_uring where it works; the readiness backend when
//! `io_uring_setup` is refused (by a real seccomp filter); `OURO_BACKEND`.
//!
//! Each scenario runs in a child process — this test binary again, running
//! one `#[ignore]`d helper — so that neither the filter nor the variable
//! reaches the other tests.

use std::io::{self, Write};
use std::process::Command;
use std::rc::Rc;

use ouro::{BackendKind, Completion, Ctx, Offset, Outcome, Ring, RunMode};

/// Set for the helpers when a parent test runs them.
const CHILD: &str = "OURO_TEST_CHILD";

/// Runs `helper` in a child process with `env`; its success and output.
/// A pipe, both ends blocking and close-on-exec (as `std::io::pipe` makes
/// them, which needs a newer Rust than ouro's minimum).
fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds are new and owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

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
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let rules = [(libc::SYS_io_uring_setup, vec![])].into_iter().collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH
            .try_into()
            .expect("a seccomp architecture"),
    )
    .expect("filter");
    let program: BpfProgram = filter.try_into().expect("BPF program");
    seccompiler::apply_filter(&program).expect("installing the filter");
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
    let (reader, writer) = pipe();
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
    expect(Some("poll"), "Ring::new: Poll, fallback: false");
    expect(Some("uring"), "Ring::new: Uring, fallback: false");
    expect(None, "Ring::new: Uring, fallback: false");
    expect(Some(""), "Ring::new: Uring, fallback: false");
    // The program's choice wins over the variable.
    expect(Some("poll"), "builder(Uring): Uring");
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
        let ring: Ring = Ring::builder().backend(kind).build().unwrap();
        println!("builder({kind:?}): {:?}", ring.backend());
    }
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
