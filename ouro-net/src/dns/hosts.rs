//! `/etc/hosts`: addresses for names, read before any query.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::config::{read_config_file, uncommented_lines};

/// The entries of a hosts file: each name (and alias, lower-cased, without
/// a trailing dot) with its addresses in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    names: HashMap<String, Vec<IpAddr>>,
}

impl Hosts {
    /// The entries of a hosts file with this text (or these bytes). A line
    /// is an address and one or more names; `#` starts a comment; a line
    /// whose address does not parse (an IPv6 zone included) is skipped, as
    /// is one that is not UTF-8 before its comment (glibc reads bytes: the
    /// other lines count).
    pub fn parse(text: impl AsRef<[u8]>) -> Hosts {
        let mut hosts = Hosts::default();
        for line in uncommented_lines(text.as_ref(), b"#") {
            let mut words = line.split_whitespace();
            let Some(addr) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
                continue;
            };
            for name in words {
                hosts.names.entry(normalize(name)).or_default().push(addr);
            }
        }
        // An address listed twice for a name counts once, where it came
        // first (removed here, in one pass, not looked for at each line).
        for addrs in hosts.names.values_mut().filter(|addrs| addrs.len() > 1) {
            let mut seen = HashSet::new();
            addrs.retain(|addr| seen.insert(*addr));
        }
        hosts
    }

    /// Reads the hosts file at `path` (a missing one has no entries); only
    /// a regular file of at most
    /// [`MAX_FILE_BYTES`](super::config::MAX_FILE_BYTES) is read.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Hosts> {
        let bytes = read_config_file(path)?.unwrap_or_default();
        Ok(Hosts::parse(bytes))
    }

    /// Adds an address for a name (after those it has).
    pub fn add(&mut self, name: &str, addr: IpAddr) {
        let addrs = self.names.entry(normalize(name)).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }

    /// The addresses of `name` (any case, rooted or not), in file order.
    pub fn addresses(&self, name: &str) -> &[IpAddr] {
        self.names
            .get(&normalize(name))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_and_aliases_map_to_their_addresses_in_file_order() {
        let hosts = Hosts::parse(
            "127.0.0.1 localhost\n# 10.0.0.9 web\n10.0.0.1 web.example web # the web\n::1 web.example\n\n  fe80::1%eth0 zoned\nbogus line\n",
        );
        let web: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(hosts.addresses("web.example"), &web[..]);
        assert_eq!(hosts.addresses("WEB.example."), &web[..]);
        assert_eq!(hosts.addresses("web"), &web[..1]);
        assert!(hosts.addresses("zoned").is_empty());
        assert!(hosts.addresses("bogus").is_empty());
        assert!(hosts.addresses("the").is_empty());
    }

    #[test]
    fn a_line_that_is_not_utf8_is_skipped_and_a_comment_that_is_not_costs_nothing() {
        let hosts = Hosts::parse(b"10.0.0.1 caf\xe9 web\n10.0.0.2 db # donn\xe9es\n");
        assert!(hosts.addresses("web").is_empty());
        assert_eq!(
            hosts.addresses("db"),
            ["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in "\\PC*") {
            let _ = Hosts::parse(&text);
        }

        #[test]
        fn any_bytes_parse_without_panicking(text in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Hosts::parse(&text);
        }
    }
}
