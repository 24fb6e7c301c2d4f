//! The conveniences around tasks and completions: asking whether a task is
//! live, relative deadlines, and taking a completion apart.

use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use ouro::{is_deadline, BackendKind, Ctx, Outcome, Ring, RunMode};

use crate::harness::{ctx, ring, run_all, socket_pair, Got};

backend_tests![
    a_task_is_live_until_its_completion_is_delivered,
    a_stale_or_foreign_handle_is_not_live,
    a_timeout_fails_a_recv_that_never_gets_data_with_etime,
    a_timeout_leaves_a_task_that_finishes_in_time_alone,
    a_timeout_on_a_finished_task_is_not_found,
    an_absurdly_long_timeout_is_no_panic,
    into_parts_gives_the_message_key_and_outcome_with_its_buffer,
    a_ring_running_forever_serves_messages_until_stopped_through_its_handle,
    stopping_a_dropped_ring_through_its_handle_is_a_send_error,
];

fn a_task_is_live_until_its_completion_is_delivered(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let a = Rc::new(a);
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(1));
    assert!(ring.is_live(recv));
    ring.run(&mut Vec::new(), RunMode::NoWait).unwrap();
    assert!(recv.is_live(&ring), "waiting for data: still live");
    std::fs::File::from(b).write_all(b"x").unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 1);
    assert!(!ring.is_live(recv), "delivered: no longer live");
}

fn a_stale_or_foreign_handle_is_not_live(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let first = ring.noop(ctx(1));
    run_all(&mut ring);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    // The slot of the finished no-op is reused by a live task.
    let second = ring.recv(&a, Vec::with_capacity(8), ctx(2));
    assert!(ring.is_live(second));
    assert!(
        !ring.is_live(first),
        "a stale handle must not see the new task"
    );
    let other: Ring<Got> = crate::harness::ring(kind, 8);
    assert!(
        !other.is_live(second),
        "another ring's handle names nothing"
    );
    ring.cancel(second, Ctx::none());
    run_all(&mut ring);
}

fn a_timeout_fails_a_recv_that_never_gets_data_with_etime(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let a = Rc::new(a);
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    recv.set_timeout(&mut ring, Duration::from_millis(10))
        .unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 1);
    let err = expect!(&got[0].outcome, Outcome::Recv(Err(e), _) => e);
    assert!(is_deadline(err), "{err}");
}

fn a_timeout_leaves_a_task_that_finishes_in_time_alone(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let a = Rc::new(a);
    std::fs::File::from(b).write_all(b"hi").unwrap();
    let recv = ring.recv(&a, Vec::with_capacity(8), ctx(0));
    ring.set_timeout(recv, Duration::from_secs(60)).unwrap();
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes().unwrap(), 2);
}

fn a_timeout_on_a_finished_task_is_not_found(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let noop = ring.noop(ctx(0));
    run_all(&mut ring);
    let err = ring
        .set_timeout(noop, Duration::from_millis(1))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

fn an_absurdly_long_timeout_is_no_panic(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let timer = ring.timer(Duration::from_millis(1), ctx(0));
    ring.set_timeout(timer, Duration::MAX).unwrap();
    let got = run_all(&mut ring);
    assert!(
        got[0].result().is_ok(),
        "the timer fires, the deadline never"
    );
}

ouro::messages! { enum Msg { Ping, Pong } }

fn into_parts_gives_the_message_key_and_outcome_with_its_buffer(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, b) = socket_pair();
    let a = Rc::new(a);
    std::fs::File::from(b).write_all(b"pong").unwrap();
    let ctx = crate::harness::ctx(7).msg(Msg::Pong);
    ring.recv(&a, Vec::with_capacity(8), ctx);
    let mut got = run_all(&mut ring);
    let (msg, key, buf) = match got.remove(0).into_parts().unwrap() {
        (Msg::Pong, key, Outcome::Recv(Ok(4), buf)) => (Msg::Pong, key, buf),
        (msg, _, outcome) => panic!("unexpected {msg:?}: {outcome:?}"),
    };
    assert_eq!((msg, key), (Msg::Pong, 7));
    assert_eq!(buf.downcast::<Vec<u8>>().unwrap(), b"pong");
    let unknown = ring.noop(crate::harness::ctx(1).msg(9u16));
    let got = run_all(&mut ring);
    assert!(!ring.is_live(unknown));
    let err = got
        .into_iter()
        .next()
        .unwrap()
        .into_parts::<Msg>()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

fn add(total: &mut u64, _: &mut Ring<u64>, c: ouro::Completion) -> std::io::Result<()> {
    if let Outcome::Message(payload) = c.outcome {
        *total += payload.as_u64().unwrap_or(0);
    }
    Ok(())
}

fn a_ring_running_forever_serves_messages_until_stopped_through_its_handle(kind: BackendKind) {
    let mut ring: Ring<u64> = ring(kind, 8);
    let handle = ring.handle().unwrap();
    let sender = std::thread::spawn(move || {
        for n in 1..=10u64 {
            handle.send(Ctx::new(add), n.into()).unwrap();
        }
        handle.stop().unwrap();
        handle
    });
    let mut total = 0;
    ring.run(&mut total, RunMode::Forever).unwrap();
    assert_eq!(total, 55, "every message sent before the stop is delivered");
    let handle = sender.join().unwrap();
    // The ring is still usable, and serves again until stopped again.
    handle.send(Ctx::new(add), 5u64.into()).unwrap();
    handle.stop().unwrap();
    ring.run(&mut total, RunMode::Forever).unwrap();
    assert_eq!(total, 60);
}

fn stopping_a_dropped_ring_through_its_handle_is_a_send_error(kind: BackendKind) {
    let mut ring: Ring<u64> = ring(kind, 8);
    let handle = ring.handle().unwrap();
    drop(ring);
    let err = handle.stop().unwrap_err();
    assert_eq!(std::io::Error::from(err).raw_os_error(), Some(libc::EPIPE));
}
