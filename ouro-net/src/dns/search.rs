//! The names a lookup asks for, in order: the search list as glibc builds
//! it, and the names that never go to the network.

use super::config::Config;

/// The longest name the wire format carries, without its root dot.
const MAX_NAME_LEN: usize = 253;

/// The fully qualified names to ask for `name`, in order (without their
/// root dot):
/// - a rooted name (`host.example.`) is asked as it is, and only so;
/// - a name with at least `ndots` dots is asked as it is first, then with
///   each search domain;
/// - any other name is asked with each search domain first, then as it is.
///
/// Names too long for the wire are left out; an empty list means the name
/// cannot be asked for.
pub fn candidates(name: &str, config: &Config) -> Vec<String> {
    let rooted = name.ends_with('.');
    let bare = name.trim_end_matches('.').to_ascii_lowercase();
    if bare.is_empty() || bare.contains("..") || bare.starts_with('.') {
        return Vec::new();
    }
    if rooted {
        return keep_valid(vec![bare]);
    }
    let dots = bare.matches('.').count();
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
    names
        .into_iter()
        .filter(|n| n.len() <= MAX_NAME_LEN && n.split('.').all(|l| !l.is_empty() && l.len() <= 63))
        .collect()
}

/// Whether `name` is `localhost` or under it (RFC 6761): such names are
/// answered with the loopback addresses and never go to the network.
pub fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
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
    fn empty_and_malformed_names_have_no_candidates() {
        for name in ["", ".", "..", "a..b", ".a"] {
            assert!(
                candidates(name, &config(&["corp"], 1)).is_empty(),
                "{name:?}"
            );
        }
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
    }

    proptest! {
        #[test]
        fn any_name_gives_valid_candidates(name in "\\PC{0,300}", ndots in 0u8..20) {
            for candidate in candidates(&name, &config(&["corp.example"], ndots)) {
                prop_assert!(candidate.len() <= MAX_NAME_LEN);
                prop_assert!(!candidate.ends_with('.'));
            }
        }
    }
}
