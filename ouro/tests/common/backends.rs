//! The one list of backends the integration tests run on.

/// One `#[test]` per backend for the test function `$name` (which takes a
/// `BackendKind`), in a module named after it: `$name::uring`, ... Each
/// calls `$runner(test, backend)`. To run every test on another backend,
/// add a function like `uring` for it here (and nothing else).
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
