//! The reply-acceptance path under random and mutated replies: no panic,
//! and nothing accepted that is not a response with the query's ID.
//! `JUDGE_CASES` sets the cases per property (default 5,000); the count
//! judged is printed.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use ouro_net::dns::wire::{encode_query, judge, RecordType, Verdict};
use proptest::prelude::*;
use simple_dns::RCODE;
use support::{a_record, cname_record, reply};

static JUDGED: AtomicUsize = AtomicUsize::new(0);
const ID: u16 = 0x5a17;

fn cases() -> u32 {
    std::env::var("JUDGE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000)
}

/// A valid answer to the query, with a CNAME and two addresses.
fn valid_reply(edns: bool) -> Vec<u8> {
    let query = encode_query(ID, "www.example.test", RecordType::A, edns).unwrap();
    reply(&query, RCODE::NoError, |p, name| {
        p.answers.push(cname_record(name, "real.example.test"));
        let real = simple_dns::Name::new_unchecked("real.example.test").into_owned();
        p.answers.push(a_record(&real, [192, 0, 2, 1].into()));
        p.answers.push(a_record(&real, [192, 0, 2, 2].into()));
    })
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    JUDGED.fetch_add(1, Ordering::Relaxed);
    for (edns, tcp) in [(true, false), (false, true)] {
        let verdict = judge(ID, "www.example.test", RecordType::A, edns, tcp, bytes);
        if !matches!(verdict, Verdict::Ignore) {
            prop_assert!(bytes.len() >= 12, "accepted a short reply");
            prop_assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), ID);
            prop_assert!(bytes[2] & 0x80 != 0, "accepted a non-response");
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |i: usize| i % bytes.len();
    match *m {
        Mutation::Flip(i, x) => {
            let i = at(i);
            bytes[i] ^= x;
        }
        Mutation::Truncate(i) => bytes.truncate(at(i)),
        Mutation::Insert(i, b) => {
            let i = at(i);
            bytes.insert(i, b);
        }
        Mutation::Remove(i) => {
            let i = at(i);
            bytes.remove(i);
        }
    }
}

fn run<T: std::fmt::Debug>(
    strategy: impl Strategy<Value = T>,
    test: impl Fn(T) -> Result<(), TestCaseError>,
) {
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

#[test]
fn random_and_mutated_replies_never_panic_and_are_accepted_only_with_the_id() {
    run(proptest::collection::vec(any::<u8>(), 0..600), |bytes| {
        check(&bytes)
    });
    run(
        (any::<bool>(), proptest::collection::vec(mutation(), 1..6)),
        |(edns, mutations)| {
            let mut bytes = valid_reply(edns);
            for m in &mutations {
                mutate(&mut bytes, m);
            }
            check(&bytes)
        },
    );
    run(proptest::collection::vec(any::<u8>(), 0..600), |tail| {
        let mut bytes = valid_reply(false)[..12].to_vec();
        bytes.extend_from_slice(&tail);
        check(&bytes)
    });
    eprintln!(
        "replies judged: {}, no panic",
        JUDGED.load(Ordering::Relaxed)
    );
}

#[test]
fn the_valid_reply_is_accepted() {
    let verdict = judge(
        ID,
        "www.example.test",
        RecordType::A,
        false,
        false,
        &valid_reply(false),
    );
    assert!(
        matches!(verdict, Verdict::Answer { ref canonical, .. } if canonical == "real.example.test"),
        "{verdict:?}"
    );
}
