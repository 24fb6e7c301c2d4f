//! Sessions that succeed, fail on a certificate, are cut short, time out
//! or are cancelled leave no fd open. A binary of its own: it counts the
//! process's fds, which other tests running at the same time would change.

mod support;

use std::time::Duration;

use ouro_tls::{client_config, server_config, Versions};
use support::certs::{Leaf, Pki};
use support::pair::{Pair, Role};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn session(pki: &Pki, leaf: &Leaf, client_role: Role, server_role: Role) -> Pair {
    let client = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    let server = server_config(leaf.chain.clone(), leaf.key(), &[], Versions::Both).unwrap();
    Pair::new(client, client_role, server, server_role).run()
}

#[test]
fn no_fd_is_left_open_after_sessions_that_end_every_way() {
    let _limit = support::watchdog::AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let send = |len| Role::Send {
        payload: vec![7; len],
        sent: 0,
    };
    // One round first, so that what the process opens once (the backend's
    // probes, the allocator's arenas) is open before counting.
    session(&pki, &pki.localhost, send(10), Role::Echo);
    let before = open_fds();
    for _ in 0..3 {
        let ok = session(&pki, &pki.localhost, send(200_000), Role::Echo);
        assert!(ok.client.closed && ok.server.closed);
        let refused = session(&pki, &pki.expired, send(10), Role::Echo);
        assert!(refused.client.failed.is_some());
        let cut = session(
            &pki,
            &pki.localhost,
            Role::Echo,
            Role::Cut {
                payload: vec![1; 100],
            },
        );
        assert!(cut.client.failed.is_some());
        let cancelled = session(&pki, &pki.localhost, Role::CancelEarly, Role::Echo);
        assert!(cancelled.client.failed.is_some());
    }
    assert_eq!(open_fds(), before, "fds leaked");
}
