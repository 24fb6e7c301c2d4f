//! The one list of backends the integration tests run on, and skipping a
//! test where the host lacks its backend.

// Each test binary includes this module and uses part of it.
#![allow(dead_code, unused_macros)]

use std::io::{self, Write};
use std::sync::Mutex;

use ouro::{BackendKind, Ring};

/// One `#[test]` per backend for the test function `$name` (which takes a
/// `BackendKind`), in a module named after it: `$name::uring`, ... Each
/// calls `$runner(test, backend)`, which starts with [`skipped`] (after
/// taking any lock the test needs: the check opens fds). To run every test
/// on another backend, add a function like `uring` for it here (and
/// nothing else).
macro_rules! per_backend {
    ($runner:path, $name:ident) => {
        mod $name {
            #[test]
            fn uring() {
                $runner(super::$name, ::ouro::BackendKind::Uring)
            }
            #[test]
            fn poll() {
                $runner(super::$name, ::ouro::BackendKind::Poll)
            }
        }
    };
}

/// Whether a test on `kind` must be skipped because this host cannot set
/// the backend up (io_uring missing or forbidden, as in a container under
/// Docker's default seccomp profile; a backend this platform lacks); says
/// why in the test's output, and once per test binary where the test
/// harness does not capture it. Any other setup failure fails the test.
pub fn skipped(kind: BackendKind) -> bool {
    let Err(err) = Ring::builder().backend(kind).entries(8).build::<()>() else {
        return false;
    };
    if !host_lacks_backend(&err) {
        panic!("setting up the {kind:?} backend failed: {err}");
    }
    eprintln!("skipped: the {kind:?} backend is not available on this host: {err}");
    announce_once(kind, &err);
    true
}

/// Runs `test` on `kind`, unless the host lacks it (see [`skipped`]).
pub fn unless_skipped(test: fn(BackendKind), kind: BackendKind) {
    if !skipped(kind) {
        test(kind)
    }
}

/// The backends whose absence this test binary has announced.
static ANNOUNCED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Writes to stderr itself (which libtest does not capture, unlike
/// `eprintln!`), so that a passing run still shows that tests were skipped.
fn announce_once(kind: BackendKind, err: &io::Error) {
    let name = format!("{kind:?}");
    let mut announced = ANNOUNCED.lock().unwrap_or_else(|e| e.into_inner());
    if announced.contains(&name) {
        return;
    }
    announced.push(name);
    let note =
        format!("note: skipping the tests on the {kind:?} backend, not available here: {err}\n");
    let _ = io::stderr().write_all(note.as_bytes());
}

/// Whether `err`, from setting up a ring, means this host has no such
/// backend: io_uring's setup refused with `ENOSYS` or `EPERM` (whose
/// `io::Error` has the kind but not the code: see `SetupError::find`), or
/// an `Unsupported` backend or kernel.
fn host_lacks_backend(err: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    if ouro::SetupError::find(err).is_some_and(ouro::SetupError::is_unavailable) {
        return true;
    }
    err.kind() == io::ErrorKind::Unsupported
}
