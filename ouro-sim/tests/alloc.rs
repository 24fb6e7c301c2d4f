//! The simulator allocates per connection, not per operation: ten times
//! the rounds over the same connections cost next to no more allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use ouro_sim::{echo, run_case, Case, FaultClass, Load};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and simulated operations of a faultless run of `rounds`.
fn cost(rounds: u32) -> (u64, u64) {
    // Faults make clients reconnect, which allocates per connection.
    let case = Case {
        seed: 11,
        off: FaultClass::ALL.to_vec(),
        load: Load { clients: 6, rounds },
    };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let report = run_case(&case, echo::run, None);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    (allocations, report.ops)
}

#[test]
fn more_rounds_on_the_same_connections_allocate_next_to_nothing_more() {
    let (few_allocs, few_ops) = cost(4);
    let (many_allocs, many_ops) = cost(40);
    let extra_ops = many_ops - few_ops;
    let extra_allocs = many_allocs.saturating_sub(few_allocs);
    eprintln!("{few_ops} ops: {few_allocs} allocations; {many_ops} ops: {many_allocs}");
    assert!(extra_ops > 1_000, "only {extra_ops} more operations");
    // Buffers and queues grow to the largest message once; one allocation
    // per operation would be `extra_ops`.
    assert!(
        extra_allocs * 20 < extra_ops,
        "{extra_allocs} more allocations for {extra_ops} more operations"
    );
}
