//! The `raw` contestant's ring: the io-uring crate directly, with one fixed
//! setup, the best ouro asks for (Linux 6.1 and later): a single issuer,
//! task work deferred to `io_uring_enter`, the task-run flag and
//! submitting all entries despite an error, with the entry count clamped.
//! It tries nothing else, so it needs no copy of ouro's list of setups
//! and fallbacks: on an older kernel the raw contestants fail with the
//! setup's error, and [`check_same_setup_as_ouro`] refuses to compare with
//! an ouro ring that fell back to less, so that both always run with the
//! same kernel features and the comparison measures ouro's layer alone.

use std::io;

use io_uring::IoUring;

/// The setup, named as ouro's backend description names it.
const SETUP: &str = "single_issuer+defer_taskrun+taskrun_flag+submit_all";

/// A ring of `entries` with the fixed setup.
pub fn ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_clamp()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .build(entries)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the raw contestant's ring ({SETUP}; Linux 6.1 or later): {e}"),
            )
        })
}

/// Fails unless ouro's ring has the setup [`ring`] has: otherwise a
/// comparison would not be fair.
pub fn check_same_setup_as_ouro() -> io::Result<()> {
    let ouro = ouro::Ring::<()>::new(8)?.backend_description();
    if ouro == format!("io_uring ({SETUP})") {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "ouro's ring is {ouro} but the raw ring is {SETUP}; they must match"
    )))
}
