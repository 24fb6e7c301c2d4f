//! Stopping a thread: no acknowledged message lost, messages to a stopped
//! thread refused, and stop tasks cancelled or given a deadline.

use super::*;

backend_tests!(
    stopping_a_thread_loses_no_acknowledged_message,
    a_stop_tasks_deadline_ends_its_wait_while_the_thread_stops,
    a_stop_task_can_be_cancelled_while_the_thread_stops,
    a_second_stop_while_a_thread_stops_still_ends_its_tasks_with_their_callbacks,
);

// -- stopping ----------------------------------------------------------------

/// A sender that never stops on its own: it sends until refused, and asks
/// the receiver to stop after `stop_after` acknowledgements.
struct Stopper {
    sender: Sender,
    thread: Option<ouro::RingThread<Receiver>>,
    stop_after: u64,
    stopped: Option<io::Result<()>>,
}

impl AsMut<Sender> for Stopper {
    fn as_mut(&mut self) -> &mut Sender {
        &mut self.sender
    }
}

fn stopper_ack(state: &mut Stopper, ring: &mut Ring<Stopper>, c: Completion) -> io::Result<()> {
    let Outcome::MsgRing(result, payload) = c.outcome else {
        return Err(io::Error::other("expected a msg_ring outcome"));
    };
    match result {
        Ok(()) => {
            state.sender.acked += 1;
            if state.sender.acked == state.stop_after {
                if let Some(thread) = &state.thread {
                    thread.stop(ring, Ctx::new(on_stopped));
                }
            }
            send_from(state, ring);
        }
        Err(err) => {
            assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
            assert!(payload.as_u64().is_some(), "a refused payload comes back");
            state.sender.refused += 1;
        }
    }
    Ok(())
}

fn send_from(state: &mut Stopper, ring: &mut Ring<Stopper>) {
    let sender = &mut state.sender;
    let message = Ctx::new(on_number).key(sender.key);
    ring.msg_ring(
        &sender.target,
        message,
        Payload::U64(sender.next),
        Ctx::new(stopper_ack),
    );
    sender.next += 1;
}

fn on_stopped(state: &mut Stopper, _: &mut Ring<Stopper>, c: Completion) -> io::Result<()> {
    let Outcome::ThreadStopped(result) = c.outcome else {
        return Err(io::Error::other("expected a thread-stopped outcome"));
    };
    state.stopped = Some(result);
    Ok(())
}

fn stop_with_messages_in_flight(kind: BackendKind, msg_ring: bool) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(300));
    let mut ring: Ring<Stopper> = builder(kind, msg_ring).build()?;
    let (thread, tally) = spawn_receiver(&ring)?;
    // A thread without a ring sends too, until refused.
    let handle = thread.handle().clone();
    let ringless = std::thread::spawn(move || {
        let mut accepted = 0u64;
        loop {
            let message = Ctx::new(on_number).key(99);
            match handle.send(message, Payload::U64(accepted)) {
                Ok(()) => accepted += 1,
                Err(refused) => {
                    assert_eq!(refused.into_payload().as_u64(), Some(accepted));
                    return accepted;
                }
            }
        }
    });
    let mut state = Stopper {
        sender: Sender {
            target: thread.handle().clone(),
            key: 5,
            next: 0,
            total: u64::MAX,
            acked: 0,
            refused: 0,
        },
        thread: Some(thread),
        stop_after: 20_000,
        stopped: None,
    };
    for _ in 0..2048 {
        send_from(&mut state, &mut ring);
    }
    ring.run(&mut state, RunMode::UntilDone)?;
    assert!(matches!(state.stopped, Some(Ok(()))), "{:?}", state.stopped);
    let thread = state.thread.take().unwrap();
    assert!(thread.is_stopped());
    thread.join()?;
    let accepted_ringless = ringless.join().unwrap();
    let sender = &state.sender;
    assert!(sender.refused > 0, "messages after the stop are refused");
    assert_eq!(sender.acked + sender.refused, sender.next);
    let tally = tally.lock().unwrap();
    assert_eq!(
        tally.received,
        sender.acked + accepted_ringless,
        "every acknowledged message was delivered, and no other"
    );
    assert_eq!(tally.out_of_order, 0);
    assert_eq!(tally.next.get(&5).copied().unwrap_or(0), sender.acked);
    assert_eq!(tally.next.get(&99).copied().unwrap_or(0), accepted_ringless);
    Ok(())
}

fn stopping_a_thread_loses_no_acknowledged_message(kind: BackendKind) -> io::Result<()> {
    stop_with_messages_in_flight(kind, true)
}

#[test]
fn stopping_a_thread_loses_no_acknowledged_message_over_the_mailbox() -> io::Result<()> {
    if backends::skipped(BackendKind::Uring) {
        return Ok(());
    }
    stop_with_messages_in_flight(BackendKind::Uring, false)
}

// -- stop tasks can be cancelled or given a deadline --------------------------

/// A worker's state that takes 600 ms to drop (the thread's last step
/// before it reports its end), then records that it ended.
struct SlowToEnd(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SlowToEnd {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(600));
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What the stopping ring saw.
struct StopWait {
    /// Set by the worker once it has ended.
    ended: Arc<std::sync::atomic::AtomicBool>,
    /// The stop task's result, and whether the worker had ended by then.
    stopped: Vec<(io::Result<()>, bool)>,
    /// The cancel task's result.
    cancel: Vec<io::Result<()>>,
    /// Completions of later tasks (a noop reusing the stop task's slot).
    later: Vec<io::Result<()>>,
}

fn on_stop_wait(state: &mut StopWait, _: &mut Ring<StopWait>, c: Completion) -> io::Result<()> {
    let Outcome::ThreadStopped(result) = c.outcome else {
        return Err(io::Error::other("expected a thread-stopped outcome"));
    };
    let ended = state.ended.load(std::sync::atomic::Ordering::SeqCst);
    state.stopped.push((result, ended));
    Ok(())
}

fn on_stop_cancel(state: &mut StopWait, _: &mut Ring<StopWait>, c: Completion) -> io::Result<()> {
    let Outcome::Cancel(result) = c.outcome else {
        return Err(io::Error::other("expected a cancel outcome"));
    };
    state.cancel.push(result);
    Ok(())
}

fn on_later(state: &mut StopWait, _: &mut Ring<StopWait>, c: Completion) -> io::Result<()> {
    state.later.push(c.result());
    Ok(())
}

/// Stops a worker that takes 600 ms to end; `end_wait` ends the stop
/// task's wait (a deadline, or a cancel) once the request went out. The
/// stop task's callback runs while the worker is still alive; the worker
/// still ends; its later "ended" reaches nobody, not even a task that
/// reuses the stop task's slot.
fn stop_and_end_the_wait(
    kind: BackendKind,
    end_wait: fn(&mut Ring<StopWait>, ouro::Task),
) -> io::Result<StopWait> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut ring: Ring<StopWait> = ring(kind)?;
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ended.clone();
    let thread = ring.spawn_thread(16, move |_| Ok(SlowToEnd(flag)))?;
    let mut state = StopWait {
        ended,
        stopped: Vec::new(),
        cancel: Vec::new(),
        later: Vec::new(),
    };
    let task = thread.stop(&mut ring, Ctx::new(on_stop_wait));
    // Sends the request: from now on the task waits for the thread.
    ring.run(&mut state, RunMode::NoWait)?;
    end_wait(&mut ring, task);
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.stopped.len(), 1, "the stop task ended once");
    assert!(
        !state.stopped[0].1,
        "the stop task ended while the thread was still stopping"
    );
    thread.join()?;
    assert!(state.ended.load(std::sync::atomic::Ordering::SeqCst));
    // The thread's end was not sent to the ring, or is ignored: new tasks
    // in the freed slots get only their own completions.
    let slot = |task: ouro::Task| format!("{task:?}").split('#').next().map(str::to_owned);
    let noops = [ring.noop(Ctx::new(on_later)), ring.noop(Ctx::new(on_later))];
    assert!(noops.iter().any(|&noop| slot(noop) == slot(task)));
    ring.run(&mut state, RunMode::UntilDone)?;
    assert_eq!(state.stopped.len(), 1);
    assert_eq!(state.later.len(), 2);
    assert!(state.later.iter().all(Result::is_ok));
    Ok(state)
}

fn a_stop_tasks_deadline_ends_its_wait_while_the_thread_stops(kind: BackendKind) -> io::Result<()> {
    let state = stop_and_end_the_wait(kind, |ring, task| {
        let at = ring.now() + Duration::from_millis(50);
        ring.set_deadline(task, at).expect("the stop task is live");
    })?;
    let err = state.stopped[0]
        .0
        .as_ref()
        .expect_err("the deadline passed");
    assert!(ouro::is_deadline(err), "{err}");
    Ok(())
}

fn a_stop_task_can_be_cancelled_while_the_thread_stops(kind: BackendKind) -> io::Result<()> {
    let state = stop_and_end_the_wait(kind, |ring, task| {
        ring.cancel(task, Ctx::new(on_stop_cancel));
    })?;
    let err = state.stopped[0].0.as_ref().expect_err("cancelled");
    assert!(is_canceled(err), "{err}");
    assert_eq!(state.cancel.len(), 1);
    assert!(state.cancel[0].is_ok(), "{:?}", state.cancel[0]);
    Ok(())
}

// -- a stop asked while stopping ----------------------------------------------

/// A worker with a timer that would not fire for an hour; the callbacks
/// its timer got, shared with the test.
struct Sleeper {
    own: RingHandle<Sleeper>,
    timer_results: Arc<Mutex<Vec<io::Result<()>>>>,
}

fn on_sleeper_timer(state: &mut Sleeper, _: &mut Ring<Sleeper>, c: Completion) -> io::Result<()> {
    let Outcome::Timer(result) = c.outcome else {
        return Err(io::Error::other("expected a timer"));
    };
    state.timer_results.lock().unwrap().push(result);
    Ok(())
}

/// Asks its own ring to stop twice: a stop request through its handle
/// (delivered while the thread stops), and `stop`.
fn stop_twice(state: &mut Sleeper, ring: &mut Ring<Sleeper>, _: Completion) -> io::Result<()> {
    state.own.stop()?;
    ring.stop();
    Ok(())
}

/// `RingThread`'s step 3: every task still live is cancelled and its
/// callback runs, also when another stop arrives during the stop.
fn a_second_stop_while_a_thread_stops_still_ends_its_tasks_with_their_callbacks(
    kind: BackendKind,
) -> io::Result<()> {
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let ring: Ring<Idle> = ring(kind)?;
    let results = Arc::new(Mutex::new(Vec::new()));
    let shared = results.clone();
    let thread = ring.spawn_thread(16, move |r: &mut Ring<Sleeper>| {
        r.timer(Duration::from_secs(3600), Ctx::new(on_sleeper_timer));
        Ok(Sleeper {
            own: r.handle()?,
            timer_results: shared,
        })
    })?;
    thread
        .handle()
        .send(Ctx::new(stop_twice), Payload::None)
        .map_err(io::Error::from)?;
    thread.join()?;
    let results = results.lock().unwrap();
    assert_eq!(results.len(), 1, "the timer's callback runs once");
    assert!(is_canceled(results[0].as_ref().unwrap_err()));
    Ok(())
}
