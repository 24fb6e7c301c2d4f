//! `/etc/hosts`: addresses for names, read before any query.

use std::collections::HashSet;
use std::net::IpAddr;

use super::config::{read_config_file, uncommented_lines, MAX_HOSTS_BYTES};

/// The entries of a hosts file: each name (and alias, lower-cased, without
/// a trailing dot) with its addresses in file order, and each line's
/// official (first) name.
///
/// Built to be cheap for the large files that block ad networks, which
/// the resolver reads on its ring's thread: the names lie end to end in
/// one string, each indexed by a 16-byte entry in one vector sorted by the
/// name's hash (binary search finds it), so that parsing makes no
/// allocation per name. A file of five-letter names takes some 11 ms per
/// MB to parse and about 3.5 times its size in memory (21 bytes per name
/// of 6 in the file); a file is at most
/// [`MAX_HOSTS_BYTES`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    /// The names, lower-cased, and the lines' official names as written,
    /// end to end.
    text: String,
    /// One per name of each line, sorted by hash, then by position in the
    /// file (which `start` follows).
    names: Vec<NameEntry>,
    /// The lines with an address, in file order.
    lines: Vec<Line>,
}

/// A name on a line: where its text lies and which line it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NameEntry {
    hash: u32,
    start: u32,
    line: u32,
    len: u8,
}

/// A line's address and its official name (a range of `text`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Line {
    addr: IpAddr,
    official_start: u32,
    official_len: u8,
}

/// The longest name kept: a longer one cannot be asked for (a name is at
/// most 253 bytes as text), so it could never match.
const MAX_NAME_BYTES: usize = 255;

impl Hosts {
    /// The entries of a hosts file with this text (or these bytes). A line
    /// is an address and one or more names; `#` anywhere starts a comment
    /// (as in glibc); a line whose address does not parse (an IPv6 zone
    /// included) is skipped, as is one that is not UTF-8 before its
    /// comment (glibc reads bytes: the other lines count). A name longer
    /// than 255 bytes, which no lookup can match, is skipped.
    pub fn parse(text: impl AsRef<[u8]>) -> Hosts {
        let mut hosts = Hosts::default();
        for line in uncommented_lines(text.as_ref(), b"#") {
            let mut words = line.split_whitespace();
            let Some(addr) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
                continue;
            };
            let mut names = words.filter(|w| w.trim_end_matches('.').len() <= MAX_NAME_BYTES);
            if let Some(official) = names.next() {
                hosts.push_line(addr, official, names);
            }
        }
        // Unstable is enough: `start` grows with the file, so equal names
        // stay in file order.
        hosts.names.sort_unstable_by_key(|e| (e.hash, e.start));
        hosts
    }

    /// Reads the hosts file at `path` (a missing one has no entries); only
    /// a regular file of at most [`MAX_HOSTS_BYTES`] is read (a larger one
    /// is refused from its size, unread).
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Hosts> {
        let bytes = read_config_file(path, MAX_HOSTS_BYTES)?.unwrap_or_default();
        Ok(Hosts::parse(bytes))
    }

    /// Adds an address for a name (after those it has), as a line of its
    /// own. A name longer than 255 bytes is ignored.
    pub fn add(&mut self, name: &str, addr: IpAddr) {
        if name.trim_end_matches('.').len() > MAX_NAME_BYTES {
            return;
        }
        let before = self.names.len();
        self.push_line(addr, name, std::iter::empty());
        if self.names.len() != before + 1 {
            return;
        }
        let Some(entry) = self.names.pop() else {
            return;
        };
        let at = self
            .names
            .partition_point(|e| (e.hash, e.start) < (entry.hash, entry.start));
        self.names.insert(at, entry);
    }

    /// The addresses of `name` (any case, rooted or not), in file order,
    /// each once.
    pub fn addresses(&self, name: &str) -> Vec<IpAddr> {
        // A set, not a search of those before: a name may have many.
        let mut seen = HashSet::new();
        (self.entries(name).into_iter())
            .map(|(addr, _)| addr)
            .filter(|addr| seen.insert(*addr))
            .collect()
    }

    /// The lines listing `name` (any case, rooted or not), in file order:
    /// each line's address and official (first) name, as written but for a
    /// root dot. An address may come more than once.
    pub fn entries(&self, name: &str) -> Vec<(IpAddr, &str)> {
        let wanted = name.trim_end_matches('.');
        let hash = name_hash(wanted.bytes().map(|b| b.to_ascii_lowercase()));
        let first = self.names.partition_point(|e| e.hash < hash);
        self.names[first..]
            .iter()
            .take_while(|e| e.hash == hash)
            .filter(|e| self.text_at(e.start, e.len).eq_ignore_ascii_case(wanted))
            .map(|e| {
                let line = &self.lines[e.line as usize];
                (
                    line.addr,
                    self.text_at(line.official_start, line.official_len),
                )
            })
            .collect()
    }

    /// Appends a line: its official name as written, then each name
    /// (the official one included) lower-cased, with its entry. A hosts
    /// value past `u32` offsets (only `add` could get there) is ignored.
    fn push_line<'a>(
        &mut self,
        addr: IpAddr,
        official: &'a str,
        aliases: impl Iterator<Item = &'a str>,
    ) {
        let official = official.trim_end_matches('.');
        let (Ok(line), Ok(official_start)) = (
            u32::try_from(self.lines.len()),
            u32::try_from(self.text.len()),
        ) else {
            return;
        };
        self.text.push_str(official);
        self.lines.push(Line {
            addr,
            official_start,
            official_len: official.len() as u8,
        });
        let mut previous: Option<&str> = None;
        for name in std::iter::once(official).chain(aliases) {
            let name = name.trim_end_matches('.');
            // A name repeated at once adds nothing (`a a a ...`, a line
            // that would otherwise cost a lookup of `a` a pass over all).
            if previous.is_some_and(|p| p.eq_ignore_ascii_case(name)) {
                continue;
            }
            self.push_name(name, line);
            previous = Some(name);
        }
    }

    fn push_name(&mut self, name: &str, line: u32) {
        let Ok(start) = u32::try_from(self.text.len()) else {
            return;
        };
        self.text.push_str(name);
        let lowered = &mut self.text[start as usize..];
        lowered.make_ascii_lowercase();
        let hash = name_hash(lowered.bytes());
        self.names.push(NameEntry {
            hash,
            start,
            line,
            len: name.len() as u8,
        });
    }

    fn text_at(&self, start: u32, len: u8) -> &str {
        let start = start as usize;
        self.text.get(start..start + usize::from(len)).unwrap_or("")
    }
}

/// FNV-1a over a lower-cased name: cheap for short names, and the file is
/// the machine's own (not an adversary's), so flooding is no concern; an
/// equal hash only costs a comparison.
fn name_hash(bytes: impl Iterator<Item = u8>) -> u32 {
    bytes.fold(0x811c_9dc5, |hash, b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
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
        assert_eq!(hosts.addresses("web.example"), web);
        assert_eq!(hosts.addresses("WEB.example."), web);
        assert_eq!(hosts.addresses("web"), web[..1]);
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

    #[test]
    fn each_entry_carries_its_lines_official_name_and_repeats_count_once() {
        let mut hosts = Hosts::parse(
            "10.0.0.1 Web.Example. web alias\n10.0.0.1 other web\n10.0.0.2 db.example web\n",
        );
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            hosts.entries("ALIAS"),
            [(a("10.0.0.1"), "Web.Example")],
            "the official name as written, less its root dot"
        );
        assert_eq!(
            hosts.entries("web"),
            [
                (a("10.0.0.1"), "Web.Example"),
                (a("10.0.0.1"), "other"),
                (a("10.0.0.2"), "db.example")
            ]
        );
        assert_eq!(hosts.addresses("web"), [a("10.0.0.1"), a("10.0.0.2")]);
        hosts.add("Web.", a("10.0.0.3"));
        hosts.add("new.example", a("10.0.0.4"));
        assert_eq!(
            hosts.addresses("web"),
            [a("10.0.0.1"), a("10.0.0.2"), a("10.0.0.3")]
        );
        assert_eq!(
            hosts.entries("new.example"),
            [(a("10.0.0.4"), "new.example")]
        );
        let long = "x".repeat(256);
        hosts.add(&long, a("10.0.0.5"));
        assert!(hosts.entries(&long).is_empty());
    }

    #[test]
    fn a_name_repeated_at_once_on_a_line_is_listed_once() {
        let line = format!("1.1.1.1 a{}\n", " A a.".repeat(10_000));
        let hosts = Hosts::parse(line + "2.2.2.2 b a b a\n");
        assert_eq!(hosts.entries("a").len(), 3, "once from the first line");
        assert_eq!(hosts.entries("b").len(), 2, "twice: not next to each other");
    }

    #[test]
    fn many_names_take_memory_in_proportion_to_the_file() {
        // 2,000 lines of 200 five-byte names (2.4 MB), 6 bytes of file
        // per name: the entries hold 16 + 5 per name.
        let mut text = String::new();
        for line in 0..2_000 {
            text.push_str("1.1.1.1");
            for name in 0..200 {
                text.push_str(&format!(" {:05}", (line * 200 + name) % 100_000));
            }
            text.push('\n');
        }
        let hosts = Hosts::parse(&text);
        let held = hosts.text.capacity()
            + hosts.names.capacity() * std::mem::size_of::<NameEntry>()
            + hosts.lines.capacity() * std::mem::size_of::<Line>();
        assert!(held < 5 * text.len(), "{held} bytes for {}", text.len());
        assert_eq!(std::mem::size_of::<NameEntry>(), 16);
        assert_eq!(hosts.addresses("00042").len(), 1);
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
