//! Scenarios of the ring's queues: a burst of operations larger than the
//! submission queue (64 entries on the real legs, 256 simulated) and than
//! the completion queue, every one completing once.

use ouro::Outcome;

use crate::env::{Env, Step};

pub fn a_burst_beyond_the_queues_completes_every_operation_once(env: &mut Env) {
    let keys: Vec<u64> = (0..1000)
        .map(|_| env.start(|ring, ctx| ring.noop(ctx)).0)
        .collect();
    let mut ok = 0;
    for key in keys {
        if matches!(env.wait(key), Outcome::Noop(Ok(()))) {
            ok += 1;
        }
    }
    env.note("no-ops that succeeded", Step::Fact(ok.to_string()));
    env.note(
        "completions left over",
        Step::Fact(env.delivered().len().to_string()),
    );
}
