//! The `raw` contestant's ring: the io-uring crate directly, set up the way
//! ouro sets up its own, so that a comparison measures ouro's layer and not
//! a difference in kernel features.

use std::io;

use io_uring::IoUring;

/// A setup's name, as ouro reports it, and what it asks for.
type Setup = (&'static str, fn(&mut io_uring::Builder));

/// Setups in ouro's order of preference (`ouro/src/backend/uring.rs`).
const SETUPS: [Setup; 4] = [
    ("single_issuer+defer_taskrun+taskrun_flag+submit_all", |b| {
        b.setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_submit_all();
    }),
    ("coop_taskrun+taskrun_flag+submit_all", |b| {
        b.setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_submit_all();
    }),
    ("coop_taskrun+taskrun_flag", |b| {
        b.setup_coop_taskrun().setup_taskrun_flag();
    }),
    ("plain", |_| {}),
];

/// A ring with the best setup this kernel accepts, and its name.
pub fn ring(entries: u32) -> io::Result<(IoUring, &'static str)> {
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for (name, configure) in SETUPS {
        let mut builder = IoUring::builder();
        builder.setup_clamp();
        configure(&mut builder);
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Fails unless ouro sets its ring up the way [`ring`] does: otherwise a
/// comparison would not be fair.
pub fn check_same_setup_as_ouro() -> io::Result<()> {
    let ouro = ouro::Ring::<()>::new(8)?.backend_description();
    let (_, raw) = ring(8)?;
    if ouro == format!("io_uring ({raw})") {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "ouro's ring is {ouro} but the raw ring got {raw}; they must match"
    )))
}
