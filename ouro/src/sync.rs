//! The locks and atomics that rings share across threads (the mailbox, a
//! ring thread's end), from one place, so that a model checker can stand in
//! for them: normally std's own, re-exported as they are (the code and its
//! speed are std's); built with `RUSTFLAGS="--cfg loom"`, loom's, whose
//! `loom::model` runs the mailbox's model tests (`mailbox/model.rs`) through
//! every interleaving of their threads, within a bound (docs/testing.md).
//!
//! `Arc` stays std's in both builds: a mailbox's waker is an
//! `Arc<dyn Wake>` made by the backends, and loom's `Arc` cannot be coerced
//! to a trait object on stable Rust. Reference counts are not what the
//! models check; the models count what is dropped themselves.

#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Atomics: std's, or under loom ones that keep `SeqCst`'s meaning.
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::Ordering;

    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::AtomicBool;

    #[cfg(loom)]
    pub(crate) use self::seq_cst::AtomicBool;

    /// Loom treats a `SeqCst` access as `AcqRel` (a limitation its README
    /// states), so it would report the mailbox's doorbell handshake — a
    /// store then a load on each side, correct only under `SeqCst`'s single
    /// total order — as losing wake-ups that no real execution loses. Loom
    /// does model `fence(SeqCst)`; a `SeqCst` fence on each side of a
    /// `SeqCst` access gives it that total order. And loom orders a plain
    /// store only after the stores its thread has seen, so a later load
    /// elsewhere could still read a value the store overwrote (in the total
    /// order, it did); a `SeqCst` store is therefore modelled as a swap
    /// (with `Release`: it acquires nothing), which loom places after the
    /// newest store, as the total order does. Accesses of any other
    /// ordering pass through unchanged, so a weakened ordering is still
    /// modelled as weak.
    #[cfg(loom)]
    mod seq_cst {
        use loom::sync::atomic::{fence, AtomicBool as LoomBool};
        use std::sync::atomic::Ordering;

        /// An atomic `bool` whose `SeqCst` accesses loom orders totally.
        #[derive(Debug)]
        pub(crate) struct AtomicBool(LoomBool);

        /// Runs `access`, between `SeqCst` fences if it is a `SeqCst` one.
        fn ordered<T>(order: Ordering, access: impl FnOnce() -> T) -> T {
            if order != Ordering::SeqCst {
                return access();
            }
            fence(Ordering::SeqCst);
            let value = access();
            fence(Ordering::SeqCst);
            value
        }

        impl AtomicBool {
            pub(crate) fn new(value: bool) -> AtomicBool {
                AtomicBool(LoomBool::new(value))
            }

            pub(crate) fn load(&self, order: Ordering) -> bool {
                ordered(order, || self.0.load(order))
            }

            pub(crate) fn store(&self, value: bool, order: Ordering) {
                ordered(order, || {
                    if order == Ordering::SeqCst {
                        self.0.swap(value, Ordering::Release);
                    } else {
                        self.0.store(value, order);
                    }
                });
            }

            pub(crate) fn swap(&self, value: bool, order: Ordering) -> bool {
                ordered(order, || self.0.swap(value, order))
            }
        }
    }
}
