//! Parcels: ring fds moved with `IORING_MSG_SEND_FD` (see
//! `ring/parcel.rs`). The message travels in order with the sender's
//! others, as an [`Envelope::Parcel`]; the file travels apart, through the
//! kernel, into the target's fixed table. The target's mailbox keeps one
//! record per parcel, under a token, where the two halves meet: the target
//! delivers the message once the file has landed (or skips it once the
//! sender knows the file never will), and the sender learns whether its
//! message was accepted.
//!
//! A record is freed only when nobody can name its token any more: the
//! sender has settled, the message was delivered or refused, and the
//! target has seen the file land (if it did). Until then the token is not
//! reused, so a late landing is never taken for another parcel's.

use super::{Envelope, Inbox, Mailbox};

/// What became of a parcel, as its sender learns when its send completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handover {
    /// Delivered, or to be: the target has the file, and its mailbox
    /// accepted the message.
    Accepted,
    /// The file landed, but the target's mailbox refused the message (it
    /// had closed).
    Refused,
    /// The file did not land.
    Failed,
}

/// What the target finds when a parcel's message comes up for delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The file is in the target's table, in this slot: deliver.
    Landed(u32),
    /// The file will never land: skip the message.
    Lost,
    /// Not known yet: the message waits, and those behind it too.
    NotYet,
}

/// Where a parcel's message is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Placement {
    /// In the sender's outbox.
    #[default]
    Unpublished,
    /// Accepted into the target's queue.
    Queued,
    /// Refused by the target's closed mailbox.
    Refused,
    /// Dropped with its sender before it was published.
    Dropped,
    /// Taken by the target.
    Delivered,
}

/// One parcel's record.
#[derive(Default)]
pub(crate) struct Parcel {
    in_use: bool,
    placement: Placement,
    /// Where the file landed, until the target takes it.
    slot: Option<u32>,
    /// Whether the target has seen the file land.
    landing_seen: bool,
    /// The sender's result: whether the file landed.
    settled: Option<bool>,
}

impl Parcel {
    fn done(&self) -> bool {
        let message_done = !matches!(self.placement, Placement::Unpublished | Placement::Queued);
        let file_done = self.settled == Some(false) || self.landing_seen;
        self.settled.is_some() && message_done && file_done
    }
}

impl Mailbox {
    /// Opens a record for a parcel about to be sent; `None` if the mailbox
    /// is closed.
    pub(crate) fn hold_parcel(&self) -> Option<u32> {
        let mut inbox = self.lock();
        if inbox.closed {
            return None;
        }
        let fresh = Parcel {
            in_use: true,
            ..Parcel::default()
        };
        let token = match inbox.free_parcels.pop() {
            Some(token) => {
                inbox.parcels[token as usize] = fresh;
                token
            }
            None => {
                inbox.parcels.push(fresh);
                (inbox.parcels.len() - 1) as u32
            }
        };
        Some(token)
    }

    /// A sender publishing `envelopes` (under the lock, before queueing
    /// them): the parcels' messages among them are accepted, or refused if
    /// the mailbox is closed.
    pub(crate) fn place_parcels_locked(&self, inbox: &mut Inbox, envelopes: &[Envelope]) {
        let placement = if inbox.closed {
            Placement::Refused
        } else {
            Placement::Queued
        };
        for envelope in envelopes {
            if let Envelope::Parcel { token, .. } = envelope {
                update(inbox, *token, |parcel| parcel.placement = placement);
            }
        }
    }

    /// The target has seen parcel `token`'s file land in `slot`: whether
    /// it is wanted (if not, nobody will deliver it, and the target closes
    /// it).
    pub(crate) fn parcel_landed(&self, token: u32, slot: u32) -> bool {
        let mut inbox = self.lock();
        // A message not yet published will be refused if the mailbox has
        // closed.
        let open = !inbox.closed;
        let mut wanted = false;
        update(&mut inbox, token, |parcel| {
            parcel.landing_seen = true;
            wanted = match parcel.placement {
                Placement::Queued => true,
                Placement::Unpublished => open,
                _ => false,
            };
            if wanted {
                parcel.slot = Some(slot);
            }
        });
        wanted
    }

    /// The target's side when parcel `token`'s message comes up.
    pub(crate) fn parcel_arrival(&self, token: u32) -> Arrival {
        let mut inbox = self.lock();
        let mut arrival = Arrival::Lost;
        update(&mut inbox, token, |parcel| {
            arrival = match (parcel.slot.take(), parcel.settled) {
                (Some(slot), _) => Arrival::Landed(slot),
                (None, Some(false)) => Arrival::Lost,
                (None, _) => Arrival::NotYet,
            };
            if arrival != Arrival::NotYet {
                parcel.placement = Placement::Delivered;
            }
        });
        arrival
    }

    /// The sender's side, once its send completed (`landed`: it succeeded)
    /// and its outbox was published: a message still unpublished then was
    /// dropped with its sender. A target that may be waiting for a file
    /// that will not come is woken.
    pub(crate) fn settle_parcel(&self, token: u32, landed: bool) -> Handover {
        let mut placement = Placement::Dropped;
        {
            let mut inbox = self.lock();
            update(&mut inbox, token, |parcel| {
                parcel.settled = Some(landed);
                if parcel.placement == Placement::Unpublished {
                    parcel.placement = Placement::Dropped;
                }
                placement = parcel.placement;
            });
        }
        let accepted = matches!(placement, Placement::Queued | Placement::Delivered);
        match (landed, accepted) {
            (true, true) => Handover::Accepted,
            (true, false) => Handover::Refused,
            (false, waited_for) => {
                if waited_for {
                    self.wake();
                }
                Handover::Failed
            }
        }
    }
}

/// Changes parcel `token`'s record, then frees it if it is done.
fn update(inbox: &mut Inbox, token: u32, change: impl FnOnce(&mut Parcel)) {
    let Some(parcel) = inbox.parcels.get_mut(token as usize) else {
        return;
    };
    if !parcel.in_use {
        return;
    }
    change(parcel);
    if parcel.done() {
        *parcel = Parcel::default();
        inbox.free_parcels.push(token);
    }
}
