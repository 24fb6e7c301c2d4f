//! fadvise and madvise: every advice is taken and leaves the data as it
//! was; a pipe, a bad fd and out-of-range input fail clearly.

use std::os::unix::fs::FileExt;
use std::rc::Rc;

use ouro::fs::{Advice, MemoryAdvice};
use ouro::{BackendKind, IoBuf, Outcome};

use crate::harness::{bad_fd, complete, error_kind, os_error, pipe, ring, temp_file};

backend_tests![
    fadvise_takes_every_advice_and_reads_are_unchanged,
    fadvise_errors,
    madvise_takes_every_advice_on_a_buffer_that_does_not_start_on_a_page,
    madvise_of_a_buffer_too_long_for_an_entry_is_invalid_input,
];

const ALL_ADVICE: [Advice; 6] = [
    Advice::Normal,
    Advice::Sequential,
    Advice::Random,
    Advice::NoReuse,
    Advice::WillNeed,
    Advice::DontNeed,
];

fn fadvise_takes_every_advice_and_reads_are_unchanged(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let contents: Vec<u8> = (0..3 * 4096u32).map(|i| i as u8).collect();
    let file = Rc::new(temp_file(&contents));
    file.sync_all().unwrap();
    for advice in ALL_ADVICE {
        for (offset, len) in [(0, 0), (4096, 4096)] {
            let outcome = complete(&mut ring, |r, c| r.fadvise(&file, offset, len, advice, c));
            expect!(outcome, Outcome::Fadvise(Ok(())) => ());
        }
        let mut read = vec![0; contents.len()];
        file.read_exact_at(&mut read, 0).unwrap();
        assert!(read == contents, "{advice:?} changed what a read returns");
    }
}

fn fadvise_errors(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (read, _write) = pipe();
    let read = Rc::new(read);
    let outcome = complete(&mut ring, |r, c| {
        r.fadvise(&read, 0, 0, Advice::WillNeed, c)
    });
    let res = expect!(outcome, Outcome::Fadvise(res) => res);
    assert_eq!(os_error(res), libc::ESPIPE, "a pipe has no pages to advise");

    let closed = Rc::new(bad_fd());
    let outcome = complete(&mut ring, |r, c| {
        r.fadvise(&closed, 0, 0, Advice::Normal, c)
    });
    let res = expect!(outcome, Outcome::Fadvise(res) => res);
    assert_eq!(os_error(res), libc::EBADF);

    let file = Rc::new(temp_file(b"data"));
    let beyond = i64::MAX as u64 + 1;
    let outcome = complete(&mut ring, |r, c| {
        r.fadvise(&file, beyond, 0, Advice::Normal, c)
    });
    let res = expect!(outcome, Outcome::Fadvise(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput, "offset");
    let too_long = u64::from(u32::MAX) + 1;
    let outcome = complete(&mut ring, |r, c| {
        r.fadvise(&file, 0, too_long, Advice::Normal, c)
    });
    let res = expect!(outcome, Outcome::Fadvise(res) => res);
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput, "length");
}

fn madvise_takes_every_advice_on_a_buffer_that_does_not_start_on_a_page(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let contents: Vec<u8> = (0..4 * 4096u32).map(|i| (i % 251) as u8).collect();
    let advice = [
        MemoryAdvice::Normal,
        MemoryAdvice::Random,
        MemoryAdvice::Sequential,
        MemoryAdvice::WillNeed,
    ];
    let mut buf = contents.clone().slice(1..);
    let start = buf.stable_ptr();
    for advice in advice {
        // Starting one byte into the allocation, the buffer cannot start
        // on a page: given as it is, madvise would fail with EINVAL.
        let outcome = complete(&mut ring, |r, c| r.madvise(buf, advice, c));
        let back = expect!(outcome, Outcome::Madvise(Ok(()), back) => back);
        buf = back.downcast().expect("the slice comes back");
        assert_eq!(buf.stable_ptr(), start, "the same memory");
        assert!(buf.get_ref() == &contents, "{advice:?} changed the buffer");
    }
    let small = b"less than a page".to_vec();
    let outcome = complete(&mut ring, |r, c| {
        r.madvise(small, MemoryAdvice::WillNeed, c)
    });
    let back = expect!(outcome, Outcome::Madvise(Ok(()), back) => back);
    assert_eq!(
        &back[..],
        b"less than a page",
        "no whole page: nothing advised"
    );
}

fn madvise_of_a_buffer_too_long_for_an_entry_is_invalid_input(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let Some(huge) = untouched_zeroed(u32::MAX as usize + 1) else {
        eprintln!("skipped: no address space for a 4 GiB buffer");
        return;
    };
    let outcome = complete(&mut ring, |r, c| r.madvise(huge, MemoryAdvice::Normal, c));
    let (res, back) = expect!(outcome, Outcome::Madvise(res, back) => (res, back));
    assert_eq!(error_kind(res), std::io::ErrorKind::InvalidInput);
    assert_eq!(back.len(), u32::MAX as usize + 1, "the buffer comes back");
}

/// A zeroed buffer of `len` bytes whose pages are never touched (large
/// zeroed allocations are fresh mappings), or `None` if the system refuses
/// the address space.
fn untouched_zeroed(len: usize) -> Option<Vec<u8>> {
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` was allocated by the global allocator with this layout
    // (capacity `len`), and its `len` bytes are initialised (zeroed).
    Some(unsafe { Vec::from_raw_parts(ptr, len, len) })
}
