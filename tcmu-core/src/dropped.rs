//! Commands dropped without a reply: each one is reported here, and the
//! ring answers it the next time it is used, so a forgotten command fails
//! instead of holding `cmd_tail` (and so the whole ring) forever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The ids of commands dropped unanswered, shared by a ring and the
/// commands it handed out.
#[derive(Default)]
pub(crate) struct DroppedCommands {
    /// How many ids are in `ids`: checked without the lock on every call.
    count: AtomicUsize,
    ids: Mutex<Vec<u16>>,
}

impl DroppedCommands {
    /// The ids reported since the last call (usually none, without a lock).
    pub(crate) fn take(&self) -> Vec<u16> {
        if self.count.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(PoisonError::into_inner));
        self.count.fetch_sub(ids.len(), Ordering::AcqRel);
        ids
    }

    fn report(&self, id: u16) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.push(id);
        self.count.fetch_add(1, Ordering::Release);
    }
}

/// Carried by each command handed out: reports the command when it is
/// dropped before [`answered`](Self::answered) is called.
pub(crate) struct UnansweredNotice {
    id: u16,
    /// `None` once answered.
    to: Option<Arc<DroppedCommands>>,
}

impl UnansweredNotice {
    pub(crate) fn new(id: u16, to: &Arc<DroppedCommands>) -> Self {
        UnansweredNotice {
            id,
            to: Some(to.clone()),
        }
    }

    /// The command is being answered: nothing to report.
    pub(crate) fn answered(mut self) {
        self.to = None;
    }
}

impl Drop for UnansweredNotice {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            to.report(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unanswered_commands_are_reported() {
        let dropped = Arc::new(DroppedCommands::default());
        UnansweredNotice::new(7, &dropped).answered();
        assert!(dropped.take().is_empty());
        drop(UnansweredNotice::new(8, &dropped));
        drop(UnansweredNotice::new(9, &dropped));
        assert_eq!(dropped.take(), vec![8, 9]);
        assert!(dropped.take().is_empty(), "reported once");
    }
}
