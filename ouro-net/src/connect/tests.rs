//! Tests of the connector's own choices.

use super::*;
use ouro::net::LocalAddressFlags;

/// Every destination reachable from itself; no address flags.
struct Direct;

impl Sources for Direct {
    fn source_address(&mut self, dest: IpAddr) -> io::Result<IpAddr> {
        Ok(dest)
    }

    fn local_address_flags(&mut self) -> io::Result<LocalAddressFlags> {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    }
}

#[test]
fn the_family_rfc_6724_puts_first_leads() {
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    let v4 = ip("192.0.2.7");
    assert!(
        v4_leads(ip("fd08::5"), v4, &mut Direct),
        "before a unique local address"
    );
    assert!(
        !v4_leads(ip("2001:db8::5"), v4, &mut Direct),
        "after a global one"
    );
    assert!(
        !v4_leads(ip("::1"), ip("127.0.0.1"), &mut Direct),
        "after ::1"
    );
}
