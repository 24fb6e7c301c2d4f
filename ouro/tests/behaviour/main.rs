//! The behaviour suite: every operation (success and error paths) and every
//! invariant of `shared/design.md`, on real fds (pipes, socketpairs,
//! loopback sockets, temporary files), written once and run on every
//! backend.
//!
//! A test is a function taking a [`BackendKind`](ouro::BackendKind);
//! `backend_tests!` turns each one into a `#[test]` per backend, named
//! `<test>::<backend>` (e.g. `ops_fs::read_write_pipe::uring`). The list of
//! backends is `per_backend!` in `tests/common/backends.rs`: adding a
//! backend is adding its line there.

// The included examples each include `support/logging.rs`, as each must to
// build on its own.
#![allow(clippy::duplicate_mod)]

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

/// Tests that may run alongside each other.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::harness::run, $name);)+
    };
}

/// Tests that count the process's open fds, so run while no other test of
/// this binary does.
macro_rules! exclusive_backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::harness::run_exclusive, $name);)+
    };
}

/// Matches an outcome against one pattern, or fails showing what came.
macro_rules! expect {
    ($value:expr, $pattern:pat $(if $guard:expr)? => $result:expr) => {
        match $value {
            $pattern $(if $guard)? => $result,
            other => panic!(
                "expected {}, got {other:?}",
                stringify!($pattern)
            ),
        }
    };
}

mod harness;

mod advice;
mod agreement;
mod buffers;
mod cancel;
mod deadlines;
mod drop_safety;
mod ergonomics;
mod errors;
mod examples;
mod fd_limits;
mod fs_ops;
mod multishot;
mod ops_basic;
mod ops_fs;
mod ops_net;
#[cfg(target_os = "linux")] // kqueue rings cannot be pollable yet
mod pollable;
mod readiness;
mod reaping;
mod ring_fds;
mod ring_fds_direct;
mod robustness;
mod send_file;
mod shared_fds;
mod udp;
mod user_panics;
mod write_queue;

// The examples, included as they are, so that tests run them.
#[allow(dead_code)] // their `main`s and command-line parsing
#[path = "../../examples/echo.rs"]
mod echo_example;
#[allow(dead_code)]
#[path = "../../examples/multiwriter.rs"]
mod multiwriter_example;
#[allow(dead_code)]
#[path = "../../examples/udp_echo.rs"]
mod udp_echo_example;
