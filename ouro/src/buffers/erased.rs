//! `Buf`: a buffer of any `IoBuf` type behind one type, stored inline
//! (no allocation for the usual buffer types) with a table of its
//! functions; `SendBuf`, the same for buffers that may cross threads.

use super::{IoBuf, IoBufMut};
use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{self, MaybeUninit};
use std::ops::Deref;

// Type erasure without allocation: a value of up to five words is stored
// inline, a larger one in a box; a static table of functions knows its type.

const INLINE_WORDS: usize = 5;
pub(super) type Storage = MaybeUninit<[usize; INLINE_WORDS]>;

pub(super) const fn fits_inline<T>() -> bool {
    mem::size_of::<T>() <= mem::size_of::<Storage>()
        && mem::align_of::<T>() <= mem::align_of::<Storage>()
}

/// Moves `value` into storage, boxing it when it does not fit.
pub(super) fn store<T>(value: T) -> Storage {
    let mut storage = Storage::uninit();
    if fits_inline::<T>() {
        // SAFETY: `T` fits the storage's size and alignment (checked above).
        unsafe { storage.as_mut_ptr().cast::<T>().write(value) }
    } else {
        // SAFETY: a `Box<T>` is one pointer, which always fits.
        unsafe { storage.as_mut_ptr().cast::<Box<T>>().write(Box::new(value)) }
    }
    storage
}

/// # Safety
/// `storage` holds a live `T` written by `store::<T>`.
pub(super) unsafe fn stored_ref<T>(storage: &Storage) -> &T {
    if fits_inline::<T>() {
        // SAFETY: the caller guarantees a `T` lives inline.
        unsafe { &*storage.as_ptr().cast::<T>() }
    } else {
        // SAFETY: the caller guarantees a `Box<T>` lives inline.
        unsafe { &*storage.as_ptr().cast::<Box<T>>() }
    }
}

/// # Safety
/// `storage` holds a live `T` written by `store::<T>`.
pub(super) unsafe fn stored_mut<T>(storage: &mut Storage) -> &mut T {
    if fits_inline::<T>() {
        // SAFETY: the caller guarantees a `T` lives inline.
        unsafe { &mut *storage.as_mut_ptr().cast::<T>() }
    } else {
        // SAFETY: the caller guarantees a `Box<T>` lives inline.
        unsafe { &mut *storage.as_mut_ptr().cast::<Box<T>>() }
    }
}

/// # Safety
/// `storage` holds a live `T` written by `store::<T>`; it is dead afterwards.
pub(super) unsafe fn take_stored<T>(storage: &Storage) -> T {
    if fits_inline::<T>() {
        // SAFETY: the caller guarantees a `T` lives inline and gives it up.
        unsafe { storage.as_ptr().cast::<T>().read() }
    } else {
        // SAFETY: the caller guarantees a `Box<T>` lives inline and gives it up.
        unsafe { *storage.as_ptr().cast::<Box<T>>().read() }
    }
}

/// # Safety
/// `storage` holds a live `T` written by `store::<T>`; it is dead afterwards.
pub(super) unsafe fn drop_stored<T>(storage: &mut Storage) {
    // SAFETY: forwarded from the caller.
    drop(unsafe { take_stored::<T>(storage) })
}

/// Address and length of a writable buffer's spare region.
type SpareFn = unsafe fn(&mut Storage) -> (*mut u8, usize);

struct BufVTable {
    type_id: fn() -> TypeId,
    ptr: unsafe fn(&Storage) -> *const u8,
    len: unsafe fn(&Storage) -> usize,
    spare: Option<SpareFn>,
    advance: unsafe fn(&mut Storage, usize),
    drop: unsafe fn(&mut Storage),
    /// Whether the stored type is `Send`: kept in the table rather than in
    /// each `Buf`, so that recording it costs no space.
    send: bool,
}

struct BufFns<T>(T);

impl<T: IoBuf> BufFns<T> {
    const READ_ONLY: BufVTable = BufVTable {
        type_id: TypeId::of::<T>,
        ptr: Self::ptr,
        len: Self::len,
        spare: None,
        advance: Self::no_advance,
        drop: drop_stored::<T>,
        send: false,
    };

    unsafe fn ptr(s: &Storage) -> *const u8 {
        // SAFETY: this table is only paired with storage holding a `T`.
        unsafe { stored_ref::<T>(s) }.stable_ptr()
    }
    unsafe fn len(s: &Storage) -> usize {
        // SAFETY: as above.
        unsafe { stored_ref::<T>(s) }.bytes_init()
    }
    unsafe fn no_advance(_: &mut Storage, _: usize) {}
}

impl<T: IoBufMut> BufFns<T> {
    const WRITABLE: BufVTable = BufVTable {
        type_id: TypeId::of::<T>,
        ptr: Self::ptr,
        len: Self::len,
        spare: Some(Self::spare),
        advance: Self::advance,
        drop: drop_stored::<T>,
        send: false,
    };

    unsafe fn spare(s: &mut Storage) -> (*mut u8, usize) {
        // SAFETY: this table is only paired with storage holding a `T`.
        let buf = unsafe { stored_mut::<T>(s) };
        (buf.spare_ptr(), buf.spare_len())
    }
    unsafe fn advance(s: &mut Storage, n: usize) {
        // SAFETY: as above; ouro passes the kernel's count, `n <= spare_len`.
        unsafe { stored_mut::<T>(s).advance(n) }
    }
}

impl<T: IoBuf + Send> BufFns<T> {
    const SEND_READ_ONLY: BufVTable = BufVTable {
        send: true,
        ..Self::READ_ONLY
    };
}

impl<T: IoBufMut + Send> BufFns<T> {
    const SEND_WRITABLE: BufVTable = BufVTable {
        send: true,
        ..Self::WRITABLE
    };
}

/// An owned, type-erased buffer: the one an operation was given, handed
/// back in its completion.
///
/// It dereferences to the buffer's initialised bytes; [`Buf::downcast`]
/// recovers the original value. Creating one does not allocate for values of
/// up to five machine words (every buffer type ouro implements the traits
/// for); a larger user type is boxed.
///
/// A `Buf` is neither `Send` nor `Sync`, whatever it wraps: the type it
/// erased may be an `Rc` (a buffer group's buffers are), whose count two
/// threads must not touch. So neither a `Buf` nor a [`Completion`] holding
/// one crosses threads:
///
/// ```compile_fail,E0277
/// let buf = ouro::Buf::new(std::rc::Rc::<[u8]>::from(&b"abc"[..]));
/// std::thread::spawn(move || drop(buf));
/// ```
///
/// ```compile_fail,E0277
/// let buf = ouro::Buf::new(std::rc::Rc::<[u8]>::from(&b"abc"[..]));
/// let payload = ouro::Payload::value(buf);
/// ```
///
/// ```compile_fail,E0277
/// fn on_another_thread(c: ouro::Completion) {
///     std::thread::spawn(move || drop(c));
/// }
/// ```
///
/// ```compile_fail,E0277
/// let buf = ouro::Buf::new(vec![1u8, 2, 3]);
/// std::thread::scope(|s| {
///     s.spawn(|| buf.len());
/// });
/// ```
///
/// A buffer that is `Send` goes in as a [`SendBuf`] to come back out as
/// one with [`Buf::into_send`].
///
/// [`Completion`]: crate::Completion
pub struct Buf {
    storage: Storage,
    vtable: &'static BufVTable,
    /// Bytes dropped from the front of the view by [`Buf::consume`].
    skip: usize,
    /// The erased type may be neither `Send` nor `Sync`.
    _not_send: PhantomData<*const ()>,
}

/// A [`Buf`] that may move to another thread: it is built only from a
/// buffer that is `Send`.
///
/// Operations take it wherever they take a `Buf` (it converts for free),
/// and [`Buf::into_send`] turns the `Buf` a completion hands back into a
/// `SendBuf` again, to pass it to another thread (in a
/// [`Payload::value`](crate::Payload::value), say):
///
/// ```
/// use ouro::{Buf, Payload, SendBuf};
///
/// let buf: Buf = SendBuf::new(vec![1u8, 2, 3]).into(); // as a completion gives it back
/// let send = buf.into_send().expect("built from a SendBuf");
/// let len = std::thread::spawn(move || send.len()).join().unwrap();
/// assert_eq!(len, 3);
/// let payload = Payload::value(SendBuf::new_mut(Vec::<u8>::with_capacity(16)));
/// # drop(payload);
/// ```
///
/// It is not `Sync` (the erased type need not be), and one cannot be made
/// from a buffer that is not `Send`:
///
/// ```compile_fail,E0277
/// let buf = ouro::SendBuf::new(std::rc::Rc::<[u8]>::from(&b"abc"[..]));
/// ```
pub struct SendBuf(Buf);

// SAFETY: a `SendBuf` is only made from a `T: Send` (`new`, `new_mut`, or a
// `Buf` whose table says it was made so), and `Buf` shares nothing between
// values: moving it moves (or, boxed, owns) the `T` alone. It stays `!Sync`
// through the inner `Buf`.
unsafe impl Send for SendBuf {}

impl SendBuf {
    /// Wraps a buffer that operations only read from.
    pub fn new<T: IoBuf + Send>(value: T) -> SendBuf {
        SendBuf(Buf {
            storage: store(value),
            vtable: &BufFns::<T>::SEND_READ_ONLY,
            skip: 0,
            _not_send: PhantomData,
        })
    }

    /// Wraps a buffer that operations may also write into.
    pub fn new_mut<T: IoBufMut + Send>(value: T) -> SendBuf {
        SendBuf(Buf {
            storage: store(value),
            vtable: &BufFns::<T>::SEND_WRITABLE,
            skip: 0,
            _not_send: PhantomData,
        })
    }

    /// Whether operations may write into it (it wraps an [`IoBufMut`]).
    pub fn is_writable(&self) -> bool {
        self.0.is_writable()
    }

    /// Gives back the original value if it is a `T`, else `self` unchanged
    /// (see [`Buf::downcast`]).
    pub fn downcast<T: 'static>(self) -> Result<T, SendBuf> {
        self.0.downcast().map_err(SendBuf)
    }

    /// The `Buf` it is, for the thread it is on now.
    pub fn into_buf(self) -> Buf {
        self.0
    }
}

impl From<SendBuf> for Buf {
    fn from(buf: SendBuf) -> Buf {
        buf.0
    }
}

impl Deref for SendBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SendBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBuf").field("len", &self.len()).finish()
    }
}

/// What an operation that reads from a buffer (write, send) accepts: any
/// [`IoBuf`], or a [`Buf`] handed back by an earlier completion (e.g. after
/// [`Buf::consume`] to re-submit the rest of a partial write).
pub trait IntoBuf {
    /// Wraps the value, or passes a `Buf` through.
    fn into_buf(self) -> Buf;
}

impl<T: IoBuf> IntoBuf for T {
    fn into_buf(self) -> Buf {
        Buf::new(self)
    }
}

impl IntoBuf for Buf {
    fn into_buf(self) -> Buf {
        self
    }
}

impl IntoBuf for SendBuf {
    fn into_buf(self) -> Buf {
        self.0
    }
}

/// What an operation that writes into a buffer (read, recv) accepts: any
/// [`IoBufMut`], or a writable [`Buf`] handed back by an earlier
/// completion, to read more into it.
pub trait IntoBufMut {
    /// Wraps the value, or passes a `Buf` through; `Err` gives back a `Buf`
    /// that only wraps a read-only buffer.
    fn into_buf_mut(self) -> Result<Buf, Buf>;
}

impl<T: IoBufMut> IntoBufMut for T {
    fn into_buf_mut(self) -> Result<Buf, Buf> {
        Ok(Buf::new_mut(self))
    }
}

impl IntoBufMut for Buf {
    fn into_buf_mut(self) -> Result<Buf, Buf> {
        if self.is_writable() {
            Ok(self)
        } else {
            Err(self)
        }
    }
}

impl IntoBufMut for SendBuf {
    fn into_buf_mut(self) -> Result<Buf, Buf> {
        self.0.into_buf_mut()
    }
}

impl Buf {
    /// Wraps a buffer that operations only read from.
    pub fn new<T: IoBuf>(value: T) -> Buf {
        Buf {
            storage: store(value),
            vtable: &BufFns::<T>::READ_ONLY,
            skip: 0,
            _not_send: PhantomData,
        }
    }

    /// Wraps a buffer that operations may also write into.
    pub fn new_mut<T: IoBufMut>(value: T) -> Buf {
        Buf {
            storage: store(value),
            vtable: &BufFns::<T>::WRITABLE,
            skip: 0,
            _not_send: PhantomData,
        }
    }

    /// Drops `n` bytes (at most all) from the front of the view: what a
    /// partial write or send re-submits is the rest. The original value is
    /// unchanged.
    pub fn consume(&mut self, n: usize) {
        let len = self.len();
        self.skip += n.min(len);
    }

    /// Whether operations may write into it (it wraps an [`IoBufMut`]).
    pub fn is_writable(&self) -> bool {
        self.vtable.spare.is_some()
    }

    /// Gives back the original value if it is a `T`, else `self` unchanged.
    /// Bytes dropped with [`consume`](Buf::consume) are still in it.
    pub fn downcast<T: 'static>(self) -> Result<T, Buf> {
        if (self.vtable.type_id)() != TypeId::of::<T>() {
            return Err(self);
        }
        let this = mem::ManuallyDrop::new(self);
        // SAFETY: the type ids match, so the storage holds a live `T`;
        // `this` is never dropped, so the value is moved out exactly once.
        Ok(unsafe { take_stored::<T>(&this.storage) })
    }

    /// The same buffer as a [`SendBuf`], to move to another thread, if it
    /// was made as one (else `self` unchanged): a `Buf` built with
    /// [`Buf::new`] does not know whether what it wraps is `Send`.
    pub fn into_send(self) -> Result<SendBuf, Buf> {
        if self.vtable.send {
            Ok(SendBuf(self))
        } else {
            Err(self)
        }
    }

    /// Whether the original value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        (self.vtable.type_id)() == TypeId::of::<T>()
    }

    /// The bytes in view as a `Vec<u8>`: the original one when it was a
    /// `Vec<u8>` with nothing consumed, else a copy.
    pub fn into_vec(self) -> Vec<u8> {
        if self.skip > 0 {
            return self.to_vec();
        }
        match self.downcast::<Vec<u8>>() {
            Ok(vec) => vec,
            Err(buf) => buf.to_vec(),
        }
    }

    /// Address and length of the initialised bytes in view, for the kernel
    /// to read.
    pub(crate) fn raw_parts(&self) -> (*const u8, usize) {
        // SAFETY: the table matches the stored type.
        let (ptr, len) = unsafe {
            (
                (self.vtable.ptr)(&self.storage),
                (self.vtable.len)(&self.storage),
            )
        };
        let skip = self.skip.min(len);
        (ptr.wrapping_add(skip), len - skip)
    }

    /// Address and length of the spare bytes, for the kernel to write; an
    /// empty region for a read-only buffer.
    pub(crate) fn spare_parts(&mut self) -> (*mut u8, usize) {
        match self.vtable.spare {
            // SAFETY: the table matches the stored type.
            Some(spare) => unsafe { spare(&mut self.storage) },
            None => (std::ptr::null_mut(), 0),
        }
    }

    /// Records that an operation wrote `n` bytes into the spare region.
    ///
    /// # Safety
    /// `n` bytes at `spare_parts()` were initialised, `n <= spare len`.
    pub(crate) unsafe fn advance(&mut self, n: usize) {
        // SAFETY: the table matches the stored type; `n` is forwarded.
        unsafe { (self.vtable.advance)(&mut self.storage, n) }
    }
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let (ptr, len) = self.raw_parts();
        if len == 0 {
            return &[];
        }
        // SAFETY: `IoBuf` promises `len` initialised bytes at `ptr`, alive as
        // long as the value, which `self` owns.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: the table matches the stored type, dropped once here.
        unsafe { (self.vtable.drop)(&mut self.storage) }
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buf").field("len", &self.len()).finish()
    }
}
