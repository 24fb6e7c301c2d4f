//! `Limit`: a writable buffer that lets operations write at most a given
//! number of bytes into it, whatever its spare capacity.

use super::{IoBuf, IoBufMut};

/// A writable buffer of which operations may fill at most a budget of
/// bytes, made by [`IoBufMut::limit`]: reads, receives and their vectored
/// forms take it as they take the buffer it wraps, and stop at the budget.
///
/// Its spare region is the wrapped buffer's, cut to the bytes left in the
/// budget; every byte written is taken from the budget, so a `Limit`
/// handed to several reads in turn lets all of them together write no more
/// than the limit. [`into_inner`](Limit::into_inner) gives the buffer back,
/// with what was read.
///
/// ```
/// use ouro::IoBufMut;
///
/// let mut header = Vec::with_capacity(4096).limit(10);
/// assert_eq!(header.spare_len(), 10);
/// header = Vec::with_capacity(4).limit(10);
/// assert_eq!(header.spare_len(), 4, "never more than the buffer has");
/// assert_eq!(header.into_inner().capacity(), 4);
/// ```
#[derive(Debug)]
pub struct Limit<T> {
    inner: T,
    left: usize,
}

impl<T> Limit<T> {
    pub(super) fn new(inner: T, limit: usize) -> Limit<T> {
        Limit { inner, left: limit }
    }

    /// The wrapped buffer, with every byte written into it.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// The wrapped buffer, borrowed.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// How many more bytes operations may write.
    pub fn remaining(&self) -> usize {
        self.left
    }
}

// SAFETY: forwards to the wrapped buffer, which keeps its bytes stable.
unsafe impl<T: IoBuf> IoBuf for Limit<T> {
    fn stable_ptr(&self) -> *const u8 {
        self.inner.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.inner.bytes_init()
    }
}

// SAFETY: the spare region is a prefix of the wrapped buffer's (the same
// address, no longer), so its writes and `advance` are the wrapped
// buffer's own.
unsafe impl<T: IoBufMut> IoBufMut for Limit<T> {
    fn spare_ptr(&mut self) -> *mut u8 {
        self.inner.spare_ptr()
    }
    fn spare_len(&self) -> usize {
        self.inner.spare_len().min(self.left)
    }
    unsafe fn advance(&mut self, n: usize) {
        self.left -= n;
        // SAFETY: the caller wrote `n <= self.spare_len()` bytes, which is
        // no more than the wrapped buffer's spare length.
        unsafe { self.inner.advance(n) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffers::erased::fits_inline;
    use crate::Buf;

    /// Writes `n` bytes of `byte` into the spare region, as a read would.
    fn fill<B: IoBufMut>(buf: &mut B, byte: u8, n: usize) {
        assert!(n <= buf.spare_len());
        // SAFETY: `n` bytes fit in the spare region (checked above) and
        // are written before `advance` counts them.
        unsafe {
            buf.spare_ptr().write_bytes(byte, n);
            buf.advance(n);
        }
    }

    #[test]
    fn spare_length_is_the_smaller_of_limit_and_capacity() {
        let limited = Vec::<u8>::with_capacity(4096).limit(10);
        assert_eq!(limited.spare_len(), 10);
        let mut vec = Vec::with_capacity(16);
        vec.extend_from_slice(b"0123456789");
        let limited = vec.limit(100);
        assert_eq!(limited.spare_len(), 6, "capacity 16 less the 10 held");
        assert_eq!(limited.bytes_init(), 10);
        assert_eq!(Vec::<u8>::with_capacity(64).limit(0).spare_len(), 0);
    }

    #[test]
    fn writes_take_from_the_budget_and_reach_the_inner_buffer() {
        let mut limited = Vec::with_capacity(4096).limit(10);
        fill(&mut limited, b'a', 4);
        assert_eq!((limited.remaining(), limited.spare_len()), (6, 6));
        fill(&mut limited, b'b', 6);
        assert_eq!(limited.spare_len(), 0, "the budget is spent");
        let vec = limited.into_inner();
        assert_eq!(vec, b"aaaabbbbbb");
        assert!(vec.capacity() >= 4096, "the same buffer comes back");
    }

    #[test]
    fn a_boxed_slice_is_overwritten_up_to_the_limit() {
        let mut limited = vec![0u8; 8].into_boxed_slice().limit(3);
        assert_eq!(limited.spare_len(), 3);
        fill(&mut limited, 7, 3);
        assert_eq!(limited.spare_len(), 0);
        assert_eq!(&*limited.into_inner(), &[7, 7, 7, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_limited_vec_is_stored_inline_and_comes_back_from_buf() {
        assert!(fits_inline::<Limit<Vec<u8>>>());
        let mut buf = Buf::new_mut(Vec::with_capacity(32).limit(5));
        let (ptr, len) = buf.spare_parts();
        assert_eq!(len, 5);
        // SAFETY: the region is 5 writable bytes; 2 are written.
        unsafe {
            ptr.write_bytes(1, 2);
            buf.advance(2);
        }
        assert_eq!(&*buf, &[1, 1]);
        let limited = buf.downcast::<Limit<Vec<u8>>>().unwrap();
        assert_eq!(limited.remaining(), 3);
        assert_eq!(limited.into_inner(), vec![1, 1]);
    }
}
