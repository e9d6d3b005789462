//! The way back from the workers to the poller: a list behind a lock, and
//! a wake-up that is sent once per batch.
//!
//! The poller sleeps in `epoll_wait`. A worker that hands a connection
//! back must wake it, and a wake-up is a system call (an eventfd `write`).
//! The poller takes the *whole* list per wake-up, so only the hand-back
//! that finds the list empty needs to wake it: every later one joins a
//! batch whose wake-up is already owed. That is a hand-made
//! synchronization rule, so it is model-checked below with `loom`, with a
//! waker that behaves like the eventfd under epoll: a wake-up that comes
//! while one is pending is merged into it, and the poller consumes the
//! pending wake-up *before* it takes the list (`epoll_wait` returns the
//! event, then the poller looks).

use std::sync::PoisonError;

use crate::sync::Mutex;

/// Something that wakes the poller (`mio::Waker` in the server).
pub trait Wake {
    /// Wakes the poller, or makes its next wait return at once.
    fn wake(&self);
}

impl Wake for mio::Waker {
    fn wake(&self) {
        if let Err(e) = mio::Waker::wake(self) {
            log::error!("cannot wake the poller: {e}");
        }
    }
}

// ANCHOR: inbox
/// Where workers hand items back to the poller.
#[derive(Debug)]
pub struct Inbox<T, W> {
    /// Items handed back and not yet taken by the poller; `None` once the
    /// poller has exited.
    returned: Mutex<Option<Vec<T>>>,
    /// Wakes the poller from `epoll_wait` (an eventfd under mio).
    waker: W,
}

impl<T, W: Wake> Inbox<T, W> {
    /// An empty, open inbox.
    pub fn new(waker: W) -> Inbox<T, W> {
        Inbox {
            returned: Mutex::new(Some(Vec::new())),
            waker,
        }
    }

    /// Hands `item` to the poller, or gives it back if the poller is gone.
    /// Only the hand-back that finds the inbox empty wakes the poller: the
    /// poller takes the whole inbox per wake-up, so a wake is already owed
    /// for every later one until it does.
    pub fn hand_back(&self, item: T) -> Result<(), T> {
        let mut returned = self.returned.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(list) = returned.as_mut() else {
            return Err(item);
        };
        list.push(item);
        let first = list.len() == 1;
        // Wake after unlocking: the poller may take the list at once.
        drop(returned);
        if first {
            self.waker.wake();
        }
        Ok(())
    }

    /// Everything handed back since the last call.
    pub fn take(&self) -> Vec<T> {
        let mut returned = self.returned.lock().unwrap_or_else(PoisonError::into_inner);
        returned.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Refuses hand-backs from now on; returns what came in before.
    pub fn close(&self) -> Vec<T> {
        let mut returned = self.returned.lock().unwrap_or_else(PoisonError::into_inner);
        returned.take().unwrap_or_default()
    }
}
// ANCHOR_END: inbox

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for &Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Three hand-backs before the poller looks cost one wake-up; after it
    /// took them, the next one wakes it again. A closed inbox gives the
    /// item back.
    #[test]
    fn one_wake_per_batch() {
        let count = Count::default();
        let inbox = Inbox::new(&count);
        for i in 0..3 {
            inbox.hand_back(i).unwrap();
        }
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert_eq!(inbox.take(), [0, 1, 2]);
        inbox.hand_back(3).unwrap();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert_eq!(inbox.close(), [3]);
        assert_eq!(inbox.hand_back(4), Err(4));
    }
}

// ANCHOR: loom
/// Model checks: no hand-back is ever stranded in the inbox without a
/// wake-up to come for it.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{Arc, Condvar};
    use loom::thread;

    /// An eventfd under epoll: `wake` sets a pending flag (merging with one
    /// already pending); the poller waits for it and clears it.
    #[derive(Default)]
    struct Pending {
        pending: Mutex<bool>,
        cv: Condvar,
    }

    impl Wake for Arc<Pending> {
        fn wake(&self) {
            *self.pending.lock().unwrap() = true;
            self.cv.notify_one();
        }
    }

    impl Pending {
        /// The poller's `epoll_wait` on the waker: returns once a wake-up
        /// is pending, and consumes it.
        fn wait(&self) {
            let mut pending = self.pending.lock().unwrap();
            while !*pending {
                pending = self.cv.wait(pending).unwrap();
            }
            *pending = false;
        }
    }

    /// Two workers hand back one connection each while the poller sleeps,
    /// wakes, and takes what is there, until it has both. Were a wake-up
    /// lost (say, the second worker finding the list non-empty just after
    /// the poller had emptied it), the poller would sleep forever and loom
    /// would report the deadlock.
    #[test]
    fn every_hand_back_reaches_the_poller() {
        loom::model(|| {
            let waker = Arc::new(Pending::default());
            let inbox = Arc::new(Inbox::new(Arc::clone(&waker)));
            let workers: Vec<_> = (0..2)
                .map(|i| {
                    let inbox = Arc::clone(&inbox);
                    thread::spawn(move || inbox.hand_back(i).unwrap())
                })
                .collect();
            let mut got = Vec::new();
            while got.len() < 2 {
                waker.wait();
                got.extend(inbox.take());
            }
            for w in workers {
                w.join().unwrap();
            }
            got.sort();
            assert_eq!(got, [0, 1]);
        });
    }
}
// ANCHOR_END: loom
