//! Parcels: envelopes of ring fds moved with `IORING_MSG_SEND_FD`, held
//! in the target's mailbox until the file lands (see `ring/parcel.rs`).

use super::{Envelope, Mailbox};

/// What became of a parcel, as its sender learns when its send completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handover {
    /// Delivered, or to be: the target has the file and an open mailbox.
    Accepted,
    /// The file landed, but the target has closed its mailbox.
    Refused,
    /// The file did not land.
    Failed,
}

impl Mailbox {
    /// Keeps a parcel's envelope until its file lands; the envelope back if
    /// the mailbox is closed.
    pub(crate) fn hold_parcel(&self, envelope: Envelope) -> Result<u32, Envelope> {
        let mut inbox = self.lock();
        if inbox.closed {
            return Err(envelope);
        }
        let token = match inbox.free_parcels.pop() {
            Some(token) => {
                inbox.parcels[token as usize] = Some(envelope);
                token
            }
            None => {
                inbox.parcels.push(Some(envelope));
                (inbox.parcels.len() - 1) as u32
            }
        };
        Ok(token)
    }

    /// Takes the envelope of parcel `token` (by the target, whose
    /// completion says the file landed; or by the sender, withdrawing it).
    pub(crate) fn take_parcel(&self, token: u32) -> Option<Envelope> {
        let mut inbox = self.lock();
        self.take_parcel_locked(&mut inbox, token)
    }

    fn take_parcel_locked(&self, inbox: &mut super::Inbox, token: u32) -> Option<Envelope> {
        let envelope = inbox.parcels.get_mut(token as usize)?.take()?;
        inbox.free_parcels.push(token);
        Some(envelope)
    }

    /// The sender's side, once its send completed (`landed`: it succeeded);
    /// see the [module docs](self).
    pub(crate) fn settle_parcel(&self, token: u32, landed: bool) -> Handover {
        let mut inbox = self.lock();
        let held = inbox
            .parcels
            .get(token as usize)
            .is_some_and(Option::is_some);
        if !held || (landed && !inbox.closed) {
            return Handover::Accepted;
        }
        // Dropping the envelope runs no user code: its payload is empty
        // (the file travels apart).
        drop(self.take_parcel_locked(&mut inbox, token));
        if landed {
            Handover::Refused
        } else {
            Handover::Failed
        }
    }
}
