//! `no-uring EPERM|ENOSYS COMMAND [ARGS...]`: runs COMMAND with every
//! io_uring system call (`io_uring_setup`, `io_uring_enter`,
//! `io_uring_register`) failing with the given error, as under Docker's
//! default seccomp profile (`EPERM`) or a kernel or sandbox without io_uring
//! (`ENOSYS`). The filter is inherited by every process and thread COMMAND
//! starts, so `no-uring EPERM cargo test --workspace` runs the whole suite
//! where io_uring cannot be used.

#[cfg(target_os = "linux")]
fn main() {
    let mut args = std::env::args_os().skip(1);
    let errno = args
        .next()
        .and_then(|name| errno_named(name.to_str()?))
        .unwrap_or_else(|| usage());
    let Some(program) = args.next() else { usage() };
    if let Err(err) = forbid_io_uring(errno) {
        eprintln!("no-uring: cannot install the seccomp filter: {err}");
        std::process::exit(2);
    }
    let err =
        std::os::unix::process::CommandExt::exec(std::process::Command::new(&program).args(args));
    eprintln!("no-uring: cannot run {}: {err}", program.to_string_lossy());
    std::process::exit(127);
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("no-uring: io_uring and seccomp exist only on Linux");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
fn usage() -> ! {
    eprintln!("usage: no-uring EPERM|ENOSYS COMMAND [ARGS...]");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
fn errno_named(name: &str) -> Option<i32> {
    match name {
        "EPERM" => Some(libc::EPERM),
        "ENOSYS" => Some(libc::ENOSYS),
        _ => None,
    }
}

/// Makes the io_uring system calls fail with `errno` in this thread and
/// everything it starts or executes (a seccomp filter survives `exec`; the
/// caller is single-threaded, so no other thread escapes it).
#[cfg(target_os = "linux")]
fn forbid_io_uring(errno: i32) -> Result<(), seccompiler::Error> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let rules = [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ]
    .into_iter()
    .map(|call| (call, vec![]))
    .collect();
    let arch: TargetArch = std::env::consts::ARCH.try_into()?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )?;
    let program: BpfProgram = filter.try_into()?;
    seccompiler::apply_filter(&program)
}
