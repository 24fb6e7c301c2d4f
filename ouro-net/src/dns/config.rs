//! The resolver's configuration: `resolv.conf`, the `RES_OPTIONS` and
//! `LOCALDOMAIN` overrides, with glibc's defaults and caps. Parsing never
//! fails: a line or value that does not parse is ignored and the default
//! stays, as glibc does; the file is read as bytes, as glibc reads it, so a
//! word that is not UTF-8 costs only itself.
//!
//! As in glibc, only a line that starts with `#` or `;` is a comment: on
//! a `search` line, `a.example #x b.example` is three domains (a word after
//! a `nameserver`'s address is ignored, as glibc ignores it). Two
//! leniencies glibc lacks: a line may be indented (glibc ignores such a
//! line; here its first word is the keyword, and an indented `#` or `;`
//! starts a comment), and a line may end in CRLF (the CR is whitespace).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

/// glibc's `MAXNS`: nameservers past the third are ignored.
pub const MAX_NAMESERVERS: usize = 3;
/// glibc's cap on `ndots`.
pub const MAX_NDOTS: u8 = 15;
/// glibc's cap on `timeout` (`RES_MAXRETRANS`), in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 30;
/// glibc's cap on `attempts` (`RES_MAXRETRY`).
pub const MAX_ATTEMPTS: u8 = 5;
/// The port nameservers listen on.
pub const DNS_PORT: u16 = 53;

/// How the resolver queries: servers, search list and options.
///
/// [`Config::default`] is glibc's configuration without a file and
/// without a host name that has a domain: the local server at
/// `127.0.0.1:53`, no search list, `ndots:1`, `timeout:5`, `attempts:2`.
/// (With neither a `search` nor a `domain` line, glibc searches the part
/// of the host name after its first dot: [`Config::parse_for_host`] and
/// [`Config::from_file`] do too.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The servers, in the order to try them (at most three from a file;
    /// a caller may set more, and a port other than 53, as tests do).
    pub nameservers: Vec<SocketAddr>,
    /// The domains appended to names with fewer than `ndots` dots (as many
    /// as the file lists: glibc has had no cap since 2.26).
    pub search: Vec<String>,
    /// Names with at least this many dots are tried as given first.
    pub ndots: u8,
    /// How long one query waits for its server's answer.
    pub timeout: Duration,
    /// How many rounds over the servers a question gets.
    pub attempts: u8,
    /// Start each lookup at the next server instead of the first.
    pub rotate: bool,
    /// Send the A and AAAA queries one after the other, not at once.
    pub single_request: bool,
    /// Ask over TCP from the start.
    pub use_vc: bool,
    /// Send EDNS0 (a 1232-byte UDP payload). On by default here (glibc's
    /// default is off): a large answer then comes over UDP instead of a
    /// truncated one and a TCP retry; a server that answers FORMERR is
    /// asked again without it.
    pub edns0: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
            single_request: false,
            use_vc: false,
            edns0: true,
        }
    }
}

impl Config {
    /// The configuration a `resolv.conf` with this text (or these bytes)
    /// gives. Without any `nameserver` line the server is `127.0.0.1:53`,
    /// as in glibc. A word that is not UTF-8 is ignored. The host name's
    /// domain is not consulted: see [`Config::parse_for_host`].
    pub fn parse(resolv_conf: impl AsRef<[u8]>) -> Config {
        Config::parse_lines(resolv_conf.as_ref()).0
    }

    /// As [`Config::parse`], for a machine named `hostname`: if the file
    /// has neither a `search` nor a `domain` line, the search list is the
    /// part of `hostname` after its first dot (none if it has no dot), as
    /// glibc and Go make it.
    pub fn parse_for_host(resolv_conf: impl AsRef<[u8]>, hostname: &str) -> Config {
        let (mut config, searched) = Config::parse_lines(resolv_conf.as_ref());
        if !searched {
            config.search = hostname_domain(hostname).into_iter().collect();
        }
        config
    }

    /// The configuration, and whether a `search` or `domain` line set the
    /// search list.
    fn parse_lines(text: &[u8]) -> (Config, bool) {
        let mut config = Config::default();
        let mut searched = false;
        for line in resolv_conf_lines(text) {
            searched |= config.parse_line(&line);
        }
        config.finish();
        (config, searched)
    }

    /// Applies the environment's overrides, given as values (so that tests
    /// need not touch the process environment): `RES_OPTIONS` holds
    /// options as in an `options` line, `LOCALDOMAIN` a search list that
    /// replaces the file's.
    pub fn apply_overrides(&mut self, res_options: Option<&str>, localdomain: Option<&str>) {
        if let Some(domains) = localdomain {
            self.search = search_list(domains.split_whitespace());
        }
        if let Some(options) = res_options {
            options
                .split_whitespace()
                .for_each(|o| self.apply_option(o));
        }
    }

    /// Reads `resolv_conf` (a missing file gives the defaults, as in glibc)
    /// as [`Config::parse_for_host`] parses it, for this machine's host
    /// name (`gethostname`), and applies `RES_OPTIONS` and `LOCALDOMAIN`
    /// from the environment.
    ///
    /// Only a regular file of at most [`MAX_RESOLV_CONF_BYTES`] is read
    /// (the resolver reads it on its ring's thread): a FIFO, a device or a
    /// directory is `InvalidInput`, a larger file `InvalidData` (refused
    /// from its size, before any of it is read).
    pub fn from_file(resolv_conf: &std::path::Path) -> std::io::Result<Config> {
        let bytes = read_config_file(resolv_conf, MAX_RESOLV_CONF_BYTES)?.unwrap_or_default();
        let mut config = Config::parse_for_host(bytes, &hostname().unwrap_or_default());
        let res_options = std::env::var("RES_OPTIONS").ok();
        let localdomain = std::env::var("LOCALDOMAIN").ok();
        config.apply_overrides(res_options.as_deref(), localdomain.as_deref());
        Ok(config)
    }

    /// Applies one line's words; true if it set the search list. A
    /// `domain` or `search` line without a domain is ignored, as glibc
    /// ignores it.
    fn parse_line(&mut self, words: &[&str]) -> bool {
        match words {
            ["nameserver", rest @ ..] => self.add_nameserver(rest.first().copied()),
            // `domain` and `search` replace each other: the last one wins.
            ["domain", first, ..] => {
                self.search = search_list([*first]);
                return true;
            }
            ["search", rest @ ..] if !rest.is_empty() => {
                self.search = search_list(rest.iter().copied());
                return true;
            }
            ["options", rest @ ..] => rest.iter().for_each(|o| self.apply_option(o)),
            _ => {}
        }
        false
    }

    fn add_nameserver(&mut self, word: Option<&str>) {
        if self.nameservers.len() >= MAX_NAMESERVERS {
            return;
        }
        if let Some(addr) = word.and_then(parse_nameserver) {
            self.nameservers.push(addr);
        }
    }

    fn apply_option(&mut self, option: &str) {
        let (name, value) = match option.split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let number = value.and_then(|v| v.parse::<u64>().ok());
        match (name, number) {
            ("ndots", Some(n)) => self.ndots = n.min(u64::from(MAX_NDOTS)) as u8,
            ("timeout", Some(n)) if n >= 1 => {
                self.timeout = Duration::from_secs(n.min(MAX_TIMEOUT_SECS));
            }
            ("attempts", Some(n)) if n >= 1 => {
                self.attempts = n.min(u64::from(MAX_ATTEMPTS)) as u8;
            }
            ("rotate", _) => self.rotate = true,
            ("single-request", _) => self.single_request = true,
            ("use-vc", _) => self.use_vc = true,
            ("edns0", _) => self.edns0 = true,
            _ => {}
        }
    }

    fn finish(&mut self) {
        if self.nameservers.is_empty() {
            self.nameservers
                .push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT));
        }
    }
}

/// The most bytes a resolv.conf may hold: real ones are a few hundred
/// bytes; this leaves room for a search list of thousands of domains.
pub const MAX_RESOLV_CONF_BYTES: u64 = 64 << 10;

/// The most bytes a hosts file may hold: hosts files that block whole ad
/// networks are a few MB. One at the cap, of 2.8 million five-letter
/// names, parses in about 0.2 s on the ring's thread (some 11 ms per MB,
/// at start and at each change), at a peak of under five times its size
/// of memory (its bytes while parsing; about 3.5 times its size held
/// after: see [`Hosts`](super::Hosts)); names of one or two letters cost
/// up to about ten times the file's size. A lookup takes time in
/// proportion to the lines that list its name (2.8 million lines of
/// `::1 a` made a lookup of `a` take some 150 ms; glibc, which reads the
/// file at every lookup, takes about as long).
pub const MAX_HOSTS_BYTES: u64 = 16 << 20;

/// The bytes of the configuration file at `path`, `None` if it does not
/// exist. The resolver reads its files on its ring's thread, so only a
/// regular file of at most `cap` bytes is read: a FIFO (opened without
/// waiting for a writer), a device such as `/dev/zero` or a directory is
/// `InvalidInput`, a larger file `InvalidData`, told from its size before
/// any of it is read (and again while reading, should it grow meanwhile).
pub(crate) fn read_config_file(
    path: &std::path::Path,
    cap: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let shown = path.display();
    let too_large = || {
        let why = format!("{shown}: larger than {cap} bytes");
        Error::new(ErrorKind::InvalidData, why)
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        let why = format!("{shown}: not a regular file");
        return Err(Error::new(ErrorKind::InvalidInput, why));
    }
    if meta.len() > cap {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// The lines of a resolv.conf as their words. A line whose first byte
/// (past any indentation) is `#` or `;` is a comment, and only such a
/// line: glibc reads `#` later in a line as a word. A word that is not
/// UTF-8 is left out (glibc reads bytes: it must not cost the others).
fn resolv_conf_lines(text: &[u8]) -> impl Iterator<Item = Vec<&str>> {
    text.split(|&b| b == b'\n').filter_map(|line| {
        let words: Vec<&str> = line
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty())
            .filter_map(|w| std::str::from_utf8(w).ok())
            .collect();
        let comment = line
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'#' | b';'));
        (!comment).then_some(words)
    })
}

/// The lines of `text`, each up to its first byte of `comment_starts`, as
/// text. A line whose part before the comment is not UTF-8 is left out:
/// glibc reads these files as bytes, so a stray byte (a Latin-1 comment,
/// say) must not cost the other lines. Cutting at the comment byte first
/// is sound because an ASCII byte never occurs inside a UTF-8 sequence.
pub(crate) fn uncommented_lines<'a>(
    text: &'a [u8],
    comment_starts: &'a [u8],
) -> impl Iterator<Item = &'a str> {
    text.split(|&b| b == b'\n').filter_map(move |line| {
        let end = (line.iter())
            .position(|b| comment_starts.contains(b))
            .unwrap_or(line.len());
        std::str::from_utf8(&line[..end]).ok()
    })
}

/// The search domain a host name implies: its part after the first dot,
/// without a root dot; `None` for a name without one.
fn hostname_domain(hostname: &str) -> Option<String> {
    let (_, domain) = hostname.split_once('.')?;
    search_list([domain]).pop()
}

/// This machine's host name (`gethostname`), `None` if it cannot be had
/// or is not UTF-8.
fn hostname() -> Option<String> {
    // Linux's names are at most 64 bytes (HOST_NAME_MAX); POSIX allows
    // 255. One byte more keeps a terminating NUL even if it is cut.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len() - 1` bytes, and its
    // last byte stays 0, so what follows is NUL-terminated.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return None;
    }
    let name = std::ffi::CStr::from_bytes_until_nul(&buf).ok()?;
    name.to_str().ok().map(str::to_owned)
}

/// A search list from its words: rooted dots dropped, empty and overlong
/// names skipped; no cap on their number (glibc has had none since 2.26:
/// the file's size bounds it).
fn search_list<'a>(words: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    words
        .into_iter()
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| !w.is_empty() && w.len() <= 253)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// A nameserver's address: IPv4, or IPv6 with an optional zone (`%eth0`
/// or `%2`); port 53.
fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    let (addr, zone) = match word.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (word, None),
    };
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) if zone.is_none() => Some(SocketAddr::new(IpAddr::V4(v4), DNS_PORT)),
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => {
            let scope_id = match zone {
                Some(zone) => zone_index(&v6, zone)?,
                None => 0,
            };
            Some(SocketAddr::V6(SocketAddrV6::new(v6, DNS_PORT, 0, scope_id)))
        }
    }
}

/// The zone of IPv6 address `addr` as an interface index, as glibc reads
/// it: an interface's name for a link-local address (unicast, or
/// multicast of node or link scope), or a number (digits only).
pub(crate) fn zone_index(addr: &Ipv6Addr, zone: &str) -> Option<u32> {
    if zone.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return zone
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| zone.parse().ok())?;
    }
    let multicast_scope = addr.segments()[0] & 0xff0f;
    let link_local = addr.is_unicast_link_local() || matches!(multicast_scope, 0xff01 | 0xff02);
    if !link_local {
        return None;
    }
    let name = std::ffi::CString::new(zone).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn server(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_empty_file_gives_glibcs_defaults() {
        let config = Config::parse("");
        assert_eq!(config.nameservers, vec![server("127.0.0.1:53")]);
        assert!(config.search.is_empty());
        assert_eq!(config.ndots, 1);
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.attempts, 2);
        assert!(!config.rotate && !config.single_request && !config.use_vc);
    }

    #[test]
    fn nameservers_keep_their_order_and_only_the_first_three_count() {
        let config = Config::parse(
            "nameserver 10.0.0.1\nnameserver ::1\n# nameserver 10.0.0.9\nnameserver fe80::1%7\nnameserver 10.0.0.4\n",
        );
        assert_eq!(
            config.nameservers,
            vec![
                server("10.0.0.1:53"),
                server("[::1]:53"),
                SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 7)),
            ]
        );
    }

    #[test]
    fn an_ipv6_zone_by_name_is_the_interfaces_index_and_an_unknown_one_drops_the_line() {
        let config = Config::parse("nameserver fe80::1%lo\nnameserver fe80::2%no-such-if0\n");
        assert_eq!(config.nameservers.len(), 1);
        let SocketAddr::V6(v6) = config.nameservers[0] else {
            panic!("not IPv6")
        };
        assert_eq!(v6.scope_id(), 1, "lo is interface 1");
    }

    #[test]
    fn malformed_nameservers_are_skipped() {
        let config = Config::parse(
            "nameserver\nnameserver 300.1.1.1\nnameserver 10.0.0.1%eth0\nnameserver x\n",
        );
        assert_eq!(config.nameservers, vec![server("127.0.0.1:53")]);
    }

    #[test]
    fn the_last_of_search_and_domain_wins() {
        assert_eq!(
            Config::parse("domain a.example\nsearch b.example c.example.\n").search,
            vec!["b.example", "c.example"]
        );
        assert_eq!(
            Config::parse("search b.example c.example\ndomain A.example\n").search,
            vec!["a.example"]
        );
    }

    #[test]
    fn the_search_list_has_no_cap() {
        let config = Config::parse("search a b c d e f g h\n");
        assert_eq!(config.search, vec!["a", "b", "c", "d", "e", "f", "g", "h"]);
        let many: Vec<String> = (0..100).map(|i| format!("d{i}.example")).collect();
        let config = Config::parse(format!("search {}\n", many.join(" ")));
        assert_eq!(config.search, many);
    }

    #[test]
    fn empty_search_and_domain_lines_are_ignored() {
        let config = Config::parse("search corp.example\nsearch\n");
        assert_eq!(config.search, vec!["corp.example"]);
        let config = Config::parse("search corp.example\ndomain \t\n");
        assert_eq!(config.search, vec!["corp.example"]);
        let config = Config::parse_for_host("domain\nsearch\n", "box.lab.example");
        assert_eq!(config.search, vec!["lab.example"], "no line set it");
    }

    #[test]
    fn only_a_line_starting_with_hash_or_semicolon_is_a_comment() {
        let config = Config::parse("search a.example #x b.example\n");
        assert_eq!(config.search, vec!["a.example", "#x", "b.example"]);
        let config = Config::parse("search a.example ;x\n");
        assert_eq!(config.search, vec!["a.example", ";x"]);
        let config = Config::parse("nameserver 10.0.0.1 # the router\n# search x\n;search y\n");
        assert_eq!(config.nameservers, vec![server("10.0.0.1:53")]);
        assert!(config.search.is_empty());
    }

    #[test]
    fn indented_lines_and_crlf_are_read_leniently() {
        let config =
            Config::parse("  nameserver 10.0.0.1\r\n\tsearch corp.example\r\n  # search x\n");
        assert_eq!(config.nameservers, vec![server("10.0.0.1:53")]);
        assert_eq!(config.search, vec!["corp.example"]);
    }

    #[test]
    fn without_search_or_domain_the_host_names_domain_is_searched() {
        let config = Config::parse_for_host("nameserver 10.0.0.1\n", "box.Lab.example.");
        assert_eq!(config.search, vec!["lab.example"]);
        assert!(Config::parse_for_host("", "box").search.is_empty());
        assert!(Config::parse_for_host("", "box.").search.is_empty());
        let config = Config::parse_for_host("search corp.example\n", "box.lab.example");
        assert_eq!(config.search, vec!["corp.example"]);
        let config = Config::parse_for_host("domain corp.example\n", "box.lab.example");
        assert_eq!(config.search, vec!["corp.example"]);
        let mut config = Config::parse_for_host("", "box.lab.example");
        config.apply_overrides(None, Some("env.example"));
        assert_eq!(config.search, vec!["env.example"], "LOCALDOMAIN wins");
    }

    #[test]
    fn a_resolv_conf_over_its_cap_is_refused_from_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_RESOLV_CONF_BYTES + 1).unwrap();
        let e = Config::from_file(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        file.set_len(MAX_RESOLV_CONF_BYTES).unwrap();
        assert!(Config::from_file(&path).is_ok());
    }

    #[test]
    fn options_are_read_and_capped_as_glibc_caps_them() {
        let config = Config::parse(
            "options ndots:40 timeout:99 attempts:9 rotate single-request use-vc edns0\n",
        );
        assert_eq!(config.ndots, 15);
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert_eq!(config.attempts, 5);
        assert!(config.rotate && config.single_request && config.use_vc && config.edns0);
    }

    #[test]
    fn malformed_option_values_keep_the_defaults() {
        let config = Config::parse(
            "options ndots:x timeout:-1 attempts: timeout:0 attempts:0 ndots:99999999999999999999999 bogus\n",
        );
        assert_eq!(config.ndots, 1);
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.attempts, 2);
    }

    #[test]
    fn res_options_and_localdomain_override_the_file() {
        let mut config = Config::parse("search a.example\noptions ndots:3 timeout:2\n");
        config.apply_overrides(
            Some("ndots:2 rotate attempts:x"),
            Some("x.example y.example"),
        );
        assert_eq!(config.ndots, 2);
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.attempts, 2);
        assert!(config.rotate);
        assert_eq!(config.search, vec!["x.example", "y.example"]);
    }

    #[test]
    fn a_word_that_is_not_utf8_is_ignored_and_costs_nothing_else() {
        let config = Config::parse(
            b"nameserver 10.0.0.1 # r\xe9seau\nsearch \xff.example\nsearch ok.example caf\xe9\n# caf\xe9\n",
        );
        assert_eq!(config.nameservers, vec![server("10.0.0.1:53")]);
        assert_eq!(config.search, vec!["ok.example"]);
    }

    #[test]
    fn a_missing_file_gives_the_defaults() {
        let dir = std::env::temp_dir().join("ouro-net-no-such-resolv.conf");
        let config = Config::from_file(&dir).unwrap();
        assert_eq!(config.nameservers, vec![server("127.0.0.1:53")]);
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in "\\PC*") {
            let config = Config::parse(&text);
            prop_assert!(!config.nameservers.is_empty());
            prop_assert!(config.nameservers.len() <= MAX_NAMESERVERS);
            prop_assert!(config.ndots <= MAX_NDOTS);
        }

        #[test]
        fn any_bytes_parse_without_panicking(text in proptest::collection::vec(any::<u8>(), 0..400)) {
            let config = Config::parse(&text);
            prop_assert!(!config.nameservers.is_empty());
            prop_assert!(config.nameservers.len() <= MAX_NAMESERVERS);
            prop_assert!(config.ndots <= MAX_NDOTS);
        }

        #[test]
        fn any_lines_of_known_keywords_parse_within_the_caps(
            lines in proptest::collection::vec(
                ("(nameserver|search|domain|options) ", "[0-9a-z:.%_-]{0,30}( [0-9a-z:.%_-]{0,12}){0,4}"),
                0..12,
            ),
        ) {
            let text: String = lines.iter().map(|(k, v)| format!("{k}{v}\n")).collect();
            let mut config = Config::parse(&text);
            config.apply_overrides(Some(&text), Some(&text));
            prop_assert!(config.attempts >= 1 && config.attempts <= MAX_ATTEMPTS);
            prop_assert!(config.timeout >= Duration::from_secs(1));
            prop_assert!(config.timeout <= Duration::from_secs(MAX_TIMEOUT_SECS));
        }
    }
}
