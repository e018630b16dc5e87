//! The requests in flight on a ring: one slot each, keyed by the index
//! the submission carries as its `user_data`. A slot owns the request's
//! buffer until the kernel has answered, whatever became of the future
//! that asked, so the kernel never writes into memory that was freed.

use std::task::Waker;

use super::super::aligned::AlignedBuf;

/// What the kernel answered: the byte count or `-errno`, and the buffer
/// handed back.
pub(super) struct Answer {
    pub(super) result: i32,
    pub(super) buffer: Option<AlignedBuf>,
}

enum Slot {
    Free,
    /// Submitted; the future waiting for it (once polled) to wake.
    InFlight {
        buffer: Option<AlignedBuf>,
        waker: Option<Waker>,
    },
    /// Answered, not yet taken by its future.
    Answered(Answer),
    /// Submitted, and its future is gone: the buffer stays here until the
    /// kernel answers, then the slot is freed. Held, never read.
    Abandoned {
        _buffer: Option<AlignedBuf>,
    },
}

/// The slab of slots.
#[derive(Default)]
pub(super) struct Slots {
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Slots submitted and not yet answered (in flight or abandoned).
    unanswered: usize,
}

impl Slots {
    /// A slot for a request about to be submitted, owning `buffer`.
    pub(super) fn insert(&mut self, buffer: Option<AlignedBuf>) -> usize {
        let slot = Slot::InFlight {
            buffer,
            waker: None,
        };
        self.unanswered += 1;
        match self.free.pop() {
            Some(index) => {
                self.slots[index] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    /// The buffer a slot owns, for the submission to point into. Its heap
    /// memory stays where it is until [`take`](Self::take) or
    /// [`answer`](Self::answer) gives the buffer away.
    pub(super) fn buffer_mut(&mut self, index: usize) -> Option<&mut AlignedBuf> {
        match &mut self.slots[index] {
            Slot::InFlight { buffer, .. } => buffer.as_mut(),
            _ => None,
        }
    }

    /// The kernel answered the request in `index`: the waker of its
    /// future to wake (after letting go of the slots: a waker may run
    /// anything), or nothing, the slot freed, if the future is gone.
    pub(super) fn answer(&mut self, index: usize, result: i32) -> Option<Waker> {
        let Some(slot) = self.slots.get_mut(index) else {
            log::error!("io_uring completion for unknown request {index}");
            return None;
        };
        let waker = match std::mem::replace(slot, Slot::Free) {
            Slot::InFlight { buffer, waker } => {
                *slot = Slot::Answered(Answer { result, buffer });
                waker
            }
            Slot::Abandoned { .. } => {
                self.free.push(index);
                None
            }
            other => {
                log::error!("io_uring completion for request {index}, which was not in flight");
                *slot = other;
                return None;
            }
        };
        self.unanswered -= 1;
        waker
    }

    /// The answer for `index` if there is one (the slot is then free);
    /// otherwise remember `waker` for when it comes.
    pub(super) fn take(&mut self, index: usize, new_waker: &Waker) -> Option<Answer> {
        match &mut self.slots[index] {
            Slot::InFlight { waker, .. } => {
                match waker {
                    Some(old) if old.will_wake(new_waker) => {}
                    _ => *waker = Some(new_waker.clone()),
                }
                None
            }
            Slot::Answered(_) => {
                let Slot::Answered(answer) = std::mem::replace(&mut self.slots[index], Slot::Free)
                else {
                    unreachable!()
                };
                self.free.push(index);
                Some(answer)
            }
            Slot::Free | Slot::Abandoned { .. } => None,
        }
    }

    /// The future waiting for `index` is gone: free the slot if answered,
    /// or keep its buffer until the kernel answers.
    pub(super) fn abandon(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        match std::mem::replace(slot, Slot::Free) {
            Slot::InFlight { buffer, .. } => *slot = Slot::Abandoned { _buffer: buffer },
            Slot::Answered(_) | Slot::Free => self.free.push(index),
            abandoned @ Slot::Abandoned { .. } => *slot = abandoned,
        }
    }

    /// Requests the kernel has not answered yet.
    pub(super) fn unanswered(&self) -> usize {
        self.unanswered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn answers_wake_their_future_and_free_the_slot_once_taken() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut slots = Slots::default();
        let a = slots.insert(Some(AlignedBuf::zeroed(512)));
        let b = slots.insert(None);
        assert_ne!(a, b);
        assert_eq!(slots.unanswered(), 2);
        assert!(slots.take(a, &waker).is_none());
        slots.answer(a, 512).unwrap().wake();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        let answer = slots.take(a, &waker).unwrap();
        assert_eq!(answer.result, 512);
        assert_eq!(answer.buffer.unwrap().as_slice().len(), 512);
        // The freed slot is used again.
        assert_eq!(slots.insert(None), a);
        assert_eq!(slots.unanswered(), 2);
    }

    #[test]
    fn abandoned_slots_keep_their_buffer_until_answered() {
        let mut slots = Slots::default();
        let a = slots.insert(Some(AlignedBuf::zeroed(4096)));
        slots.abandon(a);
        assert_eq!(slots.unanswered(), 1);
        // Not reused while the kernel may still write into its buffer.
        assert_ne!(slots.insert(None), a);
        assert!(slots.answer(a, 4096).is_none());
        assert_eq!(slots.unanswered(), 1);
        assert_eq!(slots.insert(None), a);
    }
}
