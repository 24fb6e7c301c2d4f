//! Networking components on ouro's ring: [`dns`], an asynchronous stub
//! resolver that does its own IO on the ring, and [`connect`], connect by
//! host name with Happy Eyeballs v2 (RFC 8305).

#![deny(missing_docs)]

pub mod connect;
pub mod dns;
