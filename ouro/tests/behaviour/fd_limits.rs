//! Running out of fds: which limit was reached is named. A direct accept
//! that finds the ring's io_uring fixed file table full ends with an error
//! that says so (the kernel's `ENFILE` alone reads as the system's limit);
//! the table is sized by the fd limit when it is first needed.

use std::net::TcpStream;
use std::rc::Rc;

use ouro::net::{Domain, Type};
use ouro::{BackendKind, Outcome, Ring, RunMode};

use crate::common::fds::with_fd_limit;
use crate::harness::{ctx, open_fds, run_all, Got};

backend_tests![a_direct_accept_into_a_full_fd_table_names_the_table];
exclusive_backend_tests![a_fixed_table_first_needed_under_a_lowered_fd_limit_is_still_made];

/// A table of four slots and five connections: on io_uring the multishot
/// direct accept fills the table with four, then ends with an error naming
/// the table, its size and the setting that raises it, whose source is the
/// kernel's `ENFILE`; the readiness backend has no such table and accepts
/// all five.
fn a_direct_accept_into_a_full_fd_table_names_the_table(kind: BackendKind) {
    let mut ring: Ring<Got> = Ring::builder()
        .backend(kind)
        .entries(8)
        .fixed_files(4)
        .build()
        .unwrap();
    let listener = Rc::new(ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 8).unwrap());
    let addr = ouro::net::local_addr(&listener).unwrap();
    ring.accept_multishot_direct(&listener, ctx(0));
    let _clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut got = Vec::new();
    while got.len() < 5 {
        ring.run(&mut got, RunMode::Once).unwrap();
    }
    let errors: Vec<std::io::Error> = got
        .into_iter()
        .filter_map(|c| match c.outcome {
            Outcome::AcceptDirect(Ok(_)) => None,
            Outcome::AcceptDirect(Err(e)) => Some(e),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    if kind != BackendKind::Uring {
        assert!(errors.is_empty(), "{errors:?}");
        return;
    }
    let [err] = &errors[..] else {
        panic!("expected one error, got {errors:?}");
    };
    assert!(ouro::is_fd_table_full(err), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("fixed file table is full (4 of 4 slots in use; RingBuilder::fixed_files"),
        "{text}"
    );
    let source = std::error::Error::source(err.get_ref().unwrap()).unwrap();
    let os = source.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(os.raw_os_error(), Some(libc::ENFILE));
}

/// The fixed table's default size is the fd limit when the table is first
/// needed (the kernel refuses a larger one), not when the ring was built:
/// under a limit lowered in between, io_uring still makes its direct
/// sockets in the table, beyond the few process fds the limit leaves; the
/// readiness backend, whose ring fds are process fds, runs out.
fn a_fixed_table_first_needed_under_a_lowered_fd_limit_is_still_made(kind: BackendKind) {
    const SOCKETS: usize = 6;
    let mut ring: Ring<Got> = Ring::builder().backend(kind).entries(8).build().unwrap();
    let got = with_fd_limit(open_fds() as libc::rlim_t + 2, || {
        for key in 0..SOCKETS as u64 {
            ring.socket_direct(Domain::IPV4, Type::STREAM, None, ctx(key));
        }
        run_all(&mut ring)
    });
    let made: Vec<_> = (got.into_iter())
        .filter_map(|c| match c.outcome {
            Outcome::SocketDirect(Ok(fd)) => Some(fd),
            Outcome::SocketDirect(Err(e)) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                None
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    if kind == BackendKind::Uring {
        assert_eq!(made.len(), SOCKETS, "every socket is in the table");
    } else {
        assert!(made.len() < SOCKETS, "the fd limit ends the process fds");
    }
    for fd in made {
        ring.close(fd, ctx(9));
    }
    run_all(&mut ring);
}
