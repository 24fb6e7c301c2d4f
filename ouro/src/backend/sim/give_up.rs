//! TCP giving up over a long partition, as the kernel does after its
//! retransmissions (`tcp_syn_retries` for a connect, `tcp_retries2` or
//! `TCP_USER_TIMEOUT` for unacknowledged data): a connect whose SYN or
//! answer a cut path holds for half the configuration's bound fails with
//! `ETIMEDOUT`; a connection whose sent data a cut path holds for the
//! whole bound fails at the sender with `ETIMEDOUT`, and the receiver
//! learns of it by a reset that reaches it once the path heals (as the
//! kernel's reset answers its next segment). The kernel's bounds are
//! minutes; the simulator's are scaled to its partitions, which last
//! milliseconds to a few hundred of virtual time.

use super::faults::Fault;
use super::partition::Held;
use super::world::{State, What};

impl State {
    /// Schedules TCP's giving up on `item`, held on a cut path since
    /// `since`, if the configuration bounds it.
    pub(crate) fn arm_give_up(&mut self, item: &Held, since: u64) {
        let bound = self.config.tcp_give_up_ns;
        if bound == 0 {
            return;
        }
        match *item {
            Held::Connect { parked, .. } => self.schedule(
                since.saturating_add(bound / 2),
                What::ConnectGiveUp {
                    key: (parked.node, parked.user_data),
                    since,
                },
            ),
            Held::Arrive { sock, .. } | Held::Fin { sock } => {
                if self.paths.giving_up.insert(sock) {
                    self.schedule(since.saturating_add(bound), What::GiveUp { sock });
                }
            }
            // Not retransmitted: a reset that is lost is lost.
            Held::Reset { .. } => {}
        }
    }

    /// The connect of `key` (its node and user_data), held since `since`,
    /// fails with `ETIMEDOUT` if a cut path still holds it.
    pub(crate) fn give_up_connect(&mut self, key: (u32, u64), since: u64) {
        let (node, user_data) = key;
        let found = self.paths.held.iter().position(|(_, _, h, at)| {
            *at == since
                && matches!(h, Held::Connect { parked, .. }
                    if parked.node == node && parked.user_data == user_data)
        });
        if let Some(i) = found {
            self.paths.held.remove(i);
            self.faults.add(Fault::ConnectTimedOut);
            let now = self.now();
            self.complete(node, user_data, -libc::ETIMEDOUT, now);
        }
    }

    /// What the peer of `sock` sent it has been held the whole bound: the
    /// peer's connection fails with `ETIMEDOUT`. If what is held is newer,
    /// the giving up is put off to its bound.
    pub(crate) fn give_up(&mut self, sock: usize) {
        self.paths.giving_up.remove(&sock);
        let bound = self.config.tcp_give_up_ns;
        if bound == 0 {
            return;
        }
        let oldest = self.paths.held.iter().find_map(|(_, _, h, at)| match *h {
            Held::Arrive { sock: s, .. } | Held::Fin { sock: s } if s == sock => Some(*at),
            _ => None,
        });
        let Some(oldest) = oldest else {
            return;
        };
        let due = oldest.saturating_add(bound);
        if self.now() < due {
            self.paths.giving_up.insert(sock);
            self.schedule(due, What::GiveUp { sock });
            return;
        }
        let Some(sender) = self.net.peer_of(sock) else {
            return;
        };
        if self.abort(sender, libc::ETIMEDOUT) {
            self.faults.add(Fault::TimedOut);
            self.pass(sock, Held::Reset { sock });
        }
    }
}
