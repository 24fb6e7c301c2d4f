//! Making system calls fail in this thread (and what it starts) with a
//! seccomp filter: io_uring forbidden, threads that cannot start. Included
//! by path by the binaries that use it (it needs the `seccompiler`
//! dev-dependency, which not every crate including `common` has).

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

/// Installs a filter under which each of `calls` fails with `errno`.
pub fn fail_calls(calls: &[libc::c_long], errno: i32) {
    let rules = calls.iter().map(|&call| (call, vec![])).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        std::env::consts::ARCH
            .try_into()
            .expect("a seccomp architecture"),
    )
    .expect("filter");
    let program: BpfProgram = filter.try_into().expect("BPF program");
    seccompiler::apply_filter(&program).expect("installing the filter");
}
