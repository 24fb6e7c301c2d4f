//! Owned values in a [`Payload`]: they remember the name of their type, so
//! that asking for the wrong one says what was sent.

use std::any::{self, Any};
use std::fmt;
use std::io;

use super::Payload;

/// A value a [`Payload::Value`] carries: any owned `Send` value, which also
/// knows the name of its type. Every `T: Any + Send` is one; the name costs
/// nothing per message (it comes from the value's vtable).
pub trait SendAny: Any + Send {
    /// The name of the value's type, as [`std::any::type_name`] gives it.
    fn type_name(&self) -> &'static str;
}

impl<T: Any + Send> SendAny for T {
    fn type_name(&self) -> &'static str {
        any::type_name::<T>()
    }
}

/// [`Payload::into_value`] asked for a type the payload does not hold. It
/// names what was sent and what was asked for, and gives the payload back
/// ([`into_payload`](WrongValue::into_payload)): nothing is lost. Converts
/// into an `InvalidData` [`io::Error`], so `?` works in a callback.
///
/// ```
/// use ouro::Payload;
///
/// let err = Payload::value(7u32).into_value::<String>().unwrap_err();
/// assert_eq!(err.sent(), "u32");
/// assert_eq!(err.wanted(), "alloc::string::String");
/// assert_eq!(err.to_string(), "the payload is a u32 value, not the alloc::string::String asked for");
/// assert_eq!(err.into_payload().into_value::<u32>().unwrap(), 7);
/// ```
pub struct WrongValue {
    payload: Payload,
    wanted: &'static str,
}

impl WrongValue {
    pub(super) fn new<T: Any>(payload: Payload) -> WrongValue {
        WrongValue {
            payload,
            wanted: any::type_name::<T>(),
        }
    }

    /// What the payload holds: a value's type name, or the kind of payload
    /// (`"no value"`, `"u16"`, `"u64"`, `"fd"`, `"ring fd"`).
    pub fn sent(&self) -> &'static str {
        match &self.payload {
            // Through the box: the box itself is a `SendAny` too.
            Payload::Value(value) => (**value).type_name(),
            Payload::None => "no value",
            Payload::U16(_) => "u16",
            Payload::U64(_) => "u64",
            Payload::Fd(_) => "fd",
            Payload::RingFd(_) => "ring fd",
        }
    }

    /// The type that was asked for.
    pub fn wanted(&self) -> &'static str {
        self.wanted
    }

    /// The payload, unchanged.
    pub fn into_payload(self) -> Payload {
        self.payload
    }
}

impl fmt::Display for WrongValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let article = if matches!(self.payload, Payload::Value(_)) {
            "a "
        } else {
            ""
        };
        let value = if article.is_empty() { "" } else { " value" };
        write!(
            f,
            "the payload is {article}{}{value}, not the {} asked for",
            self.sent(),
            self.wanted
        )
    }
}

impl fmt::Debug for WrongValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrongValue")
            .field("sent", &self.sent())
            .field("wanted", &self.wanted)
            .finish()
    }
}

impl std::error::Error for WrongValue {}

impl From<WrongValue> for io::Error {
    /// An `InvalidData` error with the message (the payload is dropped:
    /// an fd in it is closed).
    fn from(err: WrongValue) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_type_names_what_was_sent_and_what_was_asked_for() {
        let err = Payload::value(String::from("hi"))
            .into_value::<u32>()
            .unwrap_err();
        assert_eq!(err.sent(), "alloc::string::String");
        assert_eq!(err.wanted(), "u32");
        let io = io::Error::from(err);
        assert_eq!(io.kind(), io::ErrorKind::InvalidData);
        assert!(io.to_string().contains("String"), "{io}");
        assert!(io.to_string().contains("u32"), "{io}");
    }

    #[test]
    fn a_payload_that_is_no_value_says_what_it_is() {
        let err = Payload::U64(3).into_value::<u32>().unwrap_err();
        assert_eq!(err.to_string(), "the payload is u64, not the u32 asked for");
        assert_eq!(err.into_payload().as_u64(), Some(3));
    }

    #[test]
    fn a_boxed_value_is_named_by_its_own_type() {
        let payload = Payload::Value(Box::new(vec![1u8]));
        let err = payload.into_value::<u8>().unwrap_err();
        assert_eq!(err.sent(), "alloc::vec::Vec<u8>");
    }
}
