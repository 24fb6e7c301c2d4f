//! The names a lookup asks for, in order: the search list as glibc builds
//! it, and the names that never go to the network.
//!
//! Names are text in the master-file form (RFC 1035 section 5.1): a dot
//! separates labels unless escaped, `\.` or `\046`, which puts it inside a
//! label. Labels are found with their escapes kept, so that joining a name
//! with a search domain never splits or merges a label.

use std::borrow::Cow;

use simple_dns::Name;

use super::config::Config;

/// The fully qualified names to ask for `name`, in order (without their
/// root dot):
/// - a rooted name (`host.example.`) is asked as it is, and only so;
/// - a name with at least `ndots` dots between its labels is asked as it
///   is first, then with each search domain;
/// - any other name is asked with each search domain first, then as it is.
///
/// Names the wire cannot carry (too long, a bad escape) are left out; an
/// empty list means the name cannot be asked for, as is the case for a
/// name that is not [well formed](is_well_formed).
pub fn candidates(name: &str, config: &Config) -> Vec<String> {
    let Some((labels, rooted)) = labels(name) else {
        return Vec::new();
    };
    let bare = labels.join(".").to_ascii_lowercase();
    if rooted {
        return keep_valid(vec![bare]);
    }
    let dots = labels.len() - 1;
    let searched = config
        .search
        .iter()
        .map(|domain| format!("{bare}.{domain}"));
    let names = if dots >= usize::from(config.ndots) {
        std::iter::once(bare.clone()).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(bare.clone())).collect()
    };
    keep_valid(names)
}

fn keep_valid(names: Vec<String>) -> Vec<String> {
    names.into_iter().filter(|n| is_askable(n)).collect()
}

/// Whether the wire carries `name` as it is (not rooted): well formed, and
/// once its escapes are read, each label at most 63 bytes and the whole at
/// most 255 (as `simple-dns` encodes it).
fn is_askable(name: &str) -> bool {
    matches!(labels(name), Some((_, false))) && Name::new(name).is_ok()
}

/// Whether `name` is a name at all: printable ASCII, one or more labels,
/// none empty, and no backslash at its end with nothing to escape; a root
/// dot may end it. Other names (`a..b`, `.a`, `a..`, `a\`, `a b`, a
/// control character, `bücher.example` rather than its `xn--` form) are
/// refused, by a lookup with `InvalidInput`, before the hosts file or
/// `localhost` is consulted.
pub fn is_well_formed(name: &str) -> bool {
    labels(name).is_some()
}

/// Whether `name` is `localhost` or under it (RFC 6761), however its last
/// label is spelt (`\108ocalhost` is `localhost` on the wire): such names
/// are answered with the loopback addresses and never go to the network.
pub fn is_localhost(name: &str) -> bool {
    let last = labels(name).and_then(|(labels, _)| labels.last().copied());
    last.and_then(label_bytes)
        .is_some_and(|label| label.eq_ignore_ascii_case(b"localhost"))
}

/// `name` as a hosts file spells it: its escapes read (`w\eb` is `web`),
/// or `None` if a label then holds a dot or bytes that are not text, which
/// no hosts file name does.
pub fn hosts_name(name: &str) -> Option<Cow<'_, str>> {
    if !name.contains('\\') {
        return Some(Cow::Borrowed(name));
    }
    let (labels, _) = labels(name)?;
    let mut plain = String::with_capacity(name.len());
    for label in labels {
        let bytes = label_bytes(label)?;
        if bytes.contains(&b'.') {
            return None;
        }
        if !plain.is_empty() {
            plain.push('.');
        }
        plain.push_str(std::str::from_utf8(&bytes).ok()?);
    }
    Some(Cow::Owned(plain))
}

/// `name` in presentation form, lower-cased, without its root dot and
/// without needless escapes: a byte is escaped only if it must be (`\.`
/// for a dot inside a label, `\\`, and `\DDD` for a byte that is not
/// printable ASCII), so `w\eb.example` is `web.example`. A name that is not
/// [well formed](is_well_formed) comes back as it is.
pub fn presentation(name: &str) -> String {
    let Some((labels, _)) = labels(name) else {
        return name.to_string();
    };
    let mut text = String::with_capacity(name.len());
    for (i, label) in labels.into_iter().enumerate() {
        let Some(bytes) = label_bytes(label) else {
            return name.to_string();
        };
        if i > 0 {
            text.push('.');
        }
        for byte in bytes.iter().map(u8::to_ascii_lowercase) {
            match byte {
                b'.' | b'\\' => {
                    text.push('\\');
                    text.push(char::from(byte));
                }
                _ if byte.is_ascii_graphic() => text.push(char::from(byte)),
                _ => text.push_str(&format!("\\{byte:03}")),
            }
        }
    }
    text
}

/// The bytes of one label as written (`\.`, `\\` and `\DDD` read as the
/// wire encoder reads them); `None` if the wire cannot carry it.
fn label_bytes(label: &str) -> Option<Cow<'_, [u8]>> {
    if !label.contains('\\') {
        return Some(Cow::Borrowed(label.as_bytes()));
    }
    let name = Name::new(label).ok()?;
    let [only] = name.get_labels() else {
        return None;
    };
    Some(Cow::Owned(only.as_ref().to_vec()))
}

/// The labels of `name` as written (escapes kept) and whether a root dot
/// ends it; `None` for a name that is not [well formed](is_well_formed).
fn labels(name: &str) -> Option<(Vec<&str>, bool)> {
    let mut labels = Vec::new();
    let mut start = 0;
    let mut bytes = name.bytes().enumerate();
    while let Some((at, byte)) = bytes.next() {
        match byte {
            // The escaped byte is the label's, whether a dot, a backslash
            // or a space (which is written only so).
            b'\\' => {
                let (_, escaped) = bytes.next()?;
                if !(escaped == b' ' || escaped.is_ascii_graphic()) {
                    return None;
                }
            }
            b'.' => {
                labels.push(&name[start..at]);
                start = at + 1;
            }
            // Master-file text is printable ASCII: other bytes are written
            // `\DDD`, and an internationalised name in its `xn--` form.
            _ if byte.is_ascii_graphic() => {}
            _ => return None,
        }
    }
    let rooted = !labels.is_empty() && start == name.len();
    if !rooted {
        labels.push(&name[start..]);
    }
    let empty_label = labels.iter().any(|label| label.is_empty());
    (!empty_label).then_some((labels, rooted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(search: &[&str], ndots: u8) -> Config {
        Config {
            search: search.iter().map(|s| s.to_string()).collect(),
            ndots,
            ..Config::default()
        }
    }

    #[test]
    fn a_rooted_name_is_asked_as_it_is_only() {
        assert_eq!(
            candidates("www.example.", &config(&["corp"], 1)),
            ["www.example"]
        );
    }

    #[test]
    fn a_name_with_ndots_dots_is_asked_as_it_is_first() {
        assert_eq!(
            candidates("www.example", &config(&["corp", "lab"], 1)),
            ["www.example", "www.example.corp", "www.example.lab"]
        );
    }

    #[test]
    fn a_name_with_fewer_dots_is_asked_with_the_search_domains_first() {
        assert_eq!(
            candidates("WWW.example", &config(&["corp", "lab"], 2)),
            ["www.example.corp", "www.example.lab", "www.example"]
        );
        assert_eq!(candidates("web", &config(&[], 1)), ["web"]);
    }

    #[test]
    fn escaped_dots_stay_in_their_label_and_the_search_list_joins_whole_labels() {
        let config = config(&["corp"], 2);
        assert_eq!(candidates("a\\.b.c", &config), ["a\\.b.c.corp", "a\\.b.c"]);
        assert_eq!(
            candidates("a\\046b.c", &config),
            ["a\\046b.c.corp", "a\\046b.c"]
        );
        assert_eq!(candidates("a\\\\", &config), ["a\\\\.corp", "a\\\\"]);
        assert_eq!(candidates("a\\.", &config), ["a\\..corp", "a\\."]);
        assert_eq!(candidates("a\\\\.", &config), ["a\\\\"]);
    }

    #[test]
    fn empty_and_malformed_names_have_no_candidates() {
        for name in [
            "",
            ".",
            "..",
            "a..b",
            ".a",
            "a..",
            "a\\",
            "a\\\\\\",
            "\\999.b",
            "a b.example",
            "a\0b.example",
            "a\nb",
            "a\x7fb",
            "bücher.example",
            "a\\\nb",
        ] {
            assert!(
                candidates(name, &config(&["corp"], 1)).is_empty(),
                "{name:?}"
            );
        }
        assert_eq!(
            candidates("a\\ b.example", &config(&[], 1)),
            ["a\\ b.example"],
            "an escaped space is text"
        );
        let long_label = "x".repeat(64);
        assert!(candidates(&long_label, &config(&[], 1)).is_empty());
        let long_name = ["abc"; 70].join(".");
        assert!(candidates(&long_name, &config(&[], 1)).is_empty());
    }

    #[test]
    fn localhost_and_names_under_it_are_local() {
        assert!(is_localhost("localhost"));
        assert!(is_localhost("LocalHost."));
        assert!(is_localhost("app.localhost"));
        assert!(!is_localhost("localhost.example"));
        assert!(!is_localhost("notlocalhost"));
        assert!(!is_localhost("a\\.localhost"), "one label, a.localhost");
        for escaped in [
            "\\108ocalhost",
            "localhos\\t",
            "app.\\108ocalhost",
            "a\\.b.localhost",
        ] {
            assert!(
                is_localhost(escaped),
                "{escaped:?} is localhost on the wire"
            );
        }
        assert!(!is_localhost("localhost\\046example"), "one label");
        for malformed in [".localhost", "..localhost", "localhost..", "a..localhost"] {
            assert!(!is_localhost(malformed), "{malformed:?}");
        }
    }

    #[test]
    fn a_hosts_name_is_read_past_its_escapes() {
        assert_eq!(hosts_name("web.test").as_deref(), Some("web.test"));
        assert_eq!(hosts_name("w\\eb.t\\101st").as_deref(), Some("web.test"));
        assert_eq!(hosts_name("a\\.b.test"), None, "a dot inside a label");
        assert_eq!(hosts_name("a\\255.test"), None, "not text");
    }

    #[test]
    fn presentation_form_drops_needless_escapes_only() {
        assert_eq!(presentation("w\\eb.corp.example"), "web.corp.example");
        assert_eq!(presentation("W\\069b.Example."), "web.example");
        assert_eq!(presentation("a\\.b.example"), "a\\.b.example");
        assert_eq!(presentation("a\\046b"), "a\\.b");
        assert_eq!(presentation("a\\\\b"), "a\\\\b");
        assert_eq!(presentation("a\\ b"), "a\\032b");
        assert_eq!(presentation("a\\255"), "a\\255");
        assert_eq!(presentation("a..b"), "a..b", "not a name: as it is");
    }

    proptest! {
        #[test]
        fn a_name_and_its_presentation_form_are_the_same_on_the_wire(name in "[a-z.\\\\0-9 ]{1,40}") {
            let shown = presentation(&name);
            if let (Ok(a), Ok(b)) = (Name::new(&name), Name::new(&shown)) {
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn any_name_gives_valid_candidates(name in "\\PC{0,300}", ndots in 0u8..20) {
            for candidate in candidates(&name, &config(&["corp.example"], ndots)) {
                prop_assert!(is_askable(&candidate), "{:?}", candidate);
            }
        }
    }
}
