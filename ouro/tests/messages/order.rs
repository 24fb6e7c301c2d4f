//! Delivery exactly once and in order, per sender: a million messages over
//! MSG_RING and over the mailbox, a ringless thread and a ring sending at
//! once, fire-and-forget and acknowledged messages in one order.

use super::*;

backend_tests!(
    a_million_messages_arrive_once_and_in_order_over_the_mailbox,
    a_ringless_thread_and_a_ring_send_concurrently_each_in_order,
    fire_and_forget_and_acknowledged_messages_keep_one_order,
);

// -- a million messages, and two senders at once -----------------------------

fn million_in_order(kind: BackendKind, msg_ring: bool) -> io::Result<()> {
    const TOTAL: u64 = 1_000_000;
    const WINDOW: u64 = 4096;
    let _watchdog = AbortAfter::new(Duration::from_secs(300));
    let mut ring: Ring<Sender> = builder(kind, msg_ring).build()?;
    let (thread, tally) = spawn_receiver(&ring)?;
    let mut sender = Sender {
        target: thread.handle().clone(),
        key: 7,
        next: 0,
        total: TOTAL,
        acked: 0,
        refused: 0,
    };
    for _ in 0..WINDOW {
        sender.send_next(&mut ring);
    }
    ring.run(&mut sender, RunMode::UntilDone)?;
    assert_eq!((sender.acked, sender.refused), (TOTAL, 0));
    thread.join()?;
    let tally = tally.lock().unwrap();
    assert_eq!(tally.received, TOTAL, "every message arrives exactly once");
    assert_eq!(tally.out_of_order, 0, "in the order sent");
    assert_eq!(tally.next.get(&7), Some(&TOTAL));
    Ok(())
}

/// io_uring rings wake each other with MSG_RING doorbells (Linux 6.3).
#[test]
fn a_million_messages_arrive_once_and_in_order_over_msg_ring() -> io::Result<()> {
    if backends::skipped(BackendKind::Uring) {
        return Ok(());
    }
    million_in_order(BackendKind::Uring, true)
}

/// The mailbox path: the target's eventfd (io_uring) or poller waker.
fn a_million_messages_arrive_once_and_in_order_over_the_mailbox(
    kind: BackendKind,
) -> io::Result<()> {
    million_in_order(kind, false)
}

fn a_ringless_thread_and_a_ring_send_concurrently_each_in_order(
    kind: BackendKind,
) -> io::Result<()> {
    const EACH: u64 = 200_000;
    let _watchdog = AbortAfter::new(Duration::from_secs(300));
    let mut ring: Ring<Sender> = ring(kind)?;
    let (thread, tally) = spawn_receiver(&ring)?;
    let handle = thread.handle().clone();
    let ringless = std::thread::spawn(move || {
        for n in 0..EACH {
            let message = Ctx::new(on_number).key(1);
            if handle.send(message, Payload::U64(n)).is_err() {
                return n;
            }
        }
        EACH
    });
    let mut sender = Sender {
        target: thread.handle().clone(),
        key: 2,
        next: 0,
        total: EACH,
        acked: 0,
        refused: 0,
    };
    for _ in 0..1024 {
        sender.send_next(&mut ring);
    }
    ring.run(&mut sender, RunMode::UntilDone)?;
    assert_eq!(ringless.join().unwrap(), EACH);
    assert_eq!(sender.acked, EACH);
    thread.join()?;
    let tally = tally.lock().unwrap();
    assert_eq!(tally.received, 2 * EACH);
    assert_eq!(tally.out_of_order, 0);
    assert_eq!((tally.next[&1], tally.next[&2]), (EACH, EACH));
    Ok(())
}

fn fire_and_forget_and_acknowledged_messages_keep_one_order(kind: BackendKind) -> io::Result<()> {
    const TOTAL: u64 = 10_000;
    let _watchdog = AbortAfter::new(Duration::from_secs(120));
    let mut ring: Ring<Sender> = ring(kind)?;
    let (thread, tally) = spawn_receiver(&ring)?;
    let mut sender = Sender {
        target: thread.handle().clone(),
        key: 3,
        next: 0,
        total: TOTAL,
        acked: 0,
        refused: 0,
    };
    for n in 0..TOTAL {
        // Every third message asks to hear back; the others take no task.
        let ctx = match n % 3 {
            0 => Ctx::new(Sender::on_ack),
            _ => Ctx::none(),
        };
        let message = Ctx::new(on_number).key(3);
        ring.msg_ring(&sender.target, message, Payload::U64(n), ctx);
    }
    sender.next = TOTAL;
    ring.run(&mut sender, RunMode::UntilDone)?;
    assert_eq!(sender.acked, TOTAL.div_ceil(3));
    thread.join()?;
    let tally = tally.lock().unwrap();
    assert_eq!((tally.received, tally.out_of_order), (TOTAL, 0));
    Ok(())
}
