//! The end check on buffer groups: when the world finishes, every buffer
//! of every group its rings made is back in its group. User code gives a
//! buffer back by dropping the `Buf` it came in, out of the world's sight;
//! what the world can see is the group's own count of buffers handed out.
//!
//! The world remembers each group weakly, when its ring makes it. A group
//! nothing holds any more is freed as usual and needs no check: each `Buf`
//! holds its group, so none of its buffers is out. A group still alive at
//! the end with buffers out is held by someone: a `Buf` kept past the end
//! (the leak this check is for), or a ring with operations still in flight.

use std::rc::{Rc, Weak};

use super::world::{State, What};
use crate::backend::{RawCompletion, BUFFER};
use crate::buffers::group::GroupInner;

/// A group a simulated ring made.
struct Made {
    group: Weak<GroupInner>,
    node: u32,
}

/// The groups the world's rings made, alive or freed since.
#[derive(Default)]
pub(crate) struct Groups(Vec<Made>);

impl State {
    /// Remembers `group`, made by ring `node`, for the end check.
    pub(crate) fn remember_group(&mut self, node: u32, group: &Rc<GroupInner>) {
        // Freed groups are forgotten here, so that a run making ring after
        // ring keeps no more entries than it has groups alive.
        self.groups.0.retain(|made| made.group.strong_count() > 0);
        self.groups.0.push(Made {
            group: Rc::downgrade(group),
            node,
        });
    }

    /// Adds a violation for each group with buffers out that no completion
    /// still carries: held by user code past the end.
    pub(crate) fn check_groups(&mut self) {
        let mut found = Vec::new();
        for made in &self.groups.0 {
            let Some(group) = made.group.upgrade() else {
                continue;
            };
            // A crash drops the completions on their way to the ring, and
            // the buffers they carried with them: its process is gone, and
            // what held its buffers with it.
            if self.down.contains(&made.node) {
                continue;
            }
            // Buffers in completions the ring has not reaped are the
            // kernel's: their operations are in flight, which the check
            // before this one names. A completion names its buffer but not
            // the group, so each group of the ring is let off them all.
            let riding = self.buffers_riding(made.node);
            let held = group.handed_out().saturating_sub(riding);
            if held > 0 {
                found.push(format!(
                    "ring {}: {held} of the {} buffers of its group {} not returned \
                     at the end (user code still holds them)",
                    made.node,
                    group.count(),
                    group.id
                ));
            }
        }
        self.violations.append(&mut found);
    }

    /// How many of `node`'s completions not yet reaped carry a buffer.
    fn buffers_riding(&self, node: u32) -> usize {
        let i = node as usize;
        let scheduled = self.events.iter().filter_map(|event| match &event.0.what {
            What::Complete { node: n, ready } if *n == node => Some(&ready.completion),
            _ => None,
        });
        let ready = self.ready[i].iter().chain(&self.overflow[i]);
        let carries = |c: &&RawCompletion| c.flags & BUFFER != 0;
        ready
            .map(|r| &r.completion)
            .chain(scheduled)
            .filter(carries)
            .count()
    }
}
