//! Timers without a thread per timer: one binary heap per event loop.
//!
//! Every connection has exactly one deadline at a time: the header timeout
//! while a request head arrives, the keep-alive timeout between requests,
//! the send timeout while a response is stuck, the linger timeout while it
//! closes. The event loop asks the heap for the earliest deadline, sleeps in
//! `epoll_wait` at most until then, and pops what has expired.
//!
//! Cancelling an entry in the middle of a binary heap is O(n), so nothing is
//! ever removed: entries are cancelled *lazily*. A connection remembers the
//! one entry that counts (`armed`); an entry popped from the heap whose time
//! or serial number does not match is stale and is dropped.
//!
//! A second trick keeps the heap small on a busy keep-alive connection,
//! whose deadline moves forward on every request: moving a deadline *later*
//! pushes nothing. The entry already in the heap fires early, the loop sees
//! that the real deadline is still ahead, and pushes it then. So a
//! connection answering 100,000 requests a second pushes about one entry per
//! timeout period instead of 200,000 (nginx gets the same effect from its
//! red-black tree plus a 300 ms "don't bother moving it" threshold).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// One connection's view of its timer.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// When the connection times out.
    pub at: Instant,
    /// The time of the heap entry that will wake us for it, if any. Always
    /// `<= at` when set: an entry may fire early, never late.
    armed: Option<Instant>,
}

impl Deadline {
    /// A deadline with no heap entry yet; call [`Timers::arm`] to schedule it.
    pub fn new(at: Instant) -> Deadline {
        Deadline { at, armed: None }
    }
}

/// The heap of pending wake-ups of one event loop.
#[derive(Debug, Default)]
pub struct Timers {
    /// `(when, slab key, serial)`, earliest first. The serial tells a
    /// connection from a later one that reuses the same slab slot.
    heap: BinaryHeap<Reverse<(Instant, usize, u32)>>,
}

// ANCHOR: timers
impl Timers {
    /// An empty heap.
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Moves a connection's deadline to `at` and makes sure an entry will
    /// fire no later than that. Pushes only when the deadline moves earlier
    /// than the entry already armed.
    pub fn arm(&mut self, d: &mut Deadline, at: Instant, key: usize, serial: u32) {
        d.at = at;
        if d.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        d.armed = Some(at);
        self.heap.push(Reverse((at, key, serial)));
    }

    /// The earliest entry's time: how long the loop may sleep.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops the next entry due at `now`, as `(key, serial, time)`. The caller
    /// looks the connection up and hands the entry to [`Timers::fire`].
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, u32, Instant)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Reverse((at, key, serial)) = self.heap.pop()?;
                Some((key, serial, at))
            }
            _ => None,
        }
    }

    /// Decides what a popped entry means for the connection it named:
    /// `true` if the connection really timed out. A stale entry (not the
    /// armed one) is ignored; an early one re-arms for the real deadline.
    pub fn fire(
        &mut self,
        d: &mut Deadline,
        entry_at: Instant,
        now: Instant,
        key: usize,
        serial: u32,
    ) -> bool {
        if d.armed != Some(entry_at) {
            return false;
        }
        d.armed = None;
        if d.at <= now {
            return true;
        }
        self.arm(d, d.at, key, serial);
        false
    }

    /// Entries in the heap, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True if no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
// ANCHOR_END: timers

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn moving_a_deadline_later_pushes_nothing() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let mut d = Deadline::new(t0);
        timers.arm(&mut d, t0 + ms(100), 7, 1);
        for i in 1..1000 {
            timers.arm(&mut d, t0 + ms(100 + i), 7, 1);
        }
        assert_eq!(timers.len(), 1);
        // The early entry fires, sees the real deadline ahead, and re-arms.
        let (key, serial, at) = timers.pop_due(t0 + ms(100)).unwrap();
        assert_eq!((key, serial), (7, 1));
        assert!(!timers.fire(&mut d, at, t0 + ms(100), key, serial));
        assert_eq!(timers.next_wakeup(), Some(t0 + ms(1099)));
        let (key, serial, at) = timers.pop_due(t0 + ms(1099)).unwrap();
        assert!(timers.fire(&mut d, at, t0 + ms(1099), key, serial));
        assert!(timers.is_empty());
    }

    #[test]
    fn moving_a_deadline_earlier_makes_the_old_entry_stale() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let mut d = Deadline::new(t0);
        timers.arm(&mut d, t0 + ms(500), 1, 1);
        timers.arm(&mut d, t0 + ms(50), 1, 1);
        let (k, s, at) = timers.pop_due(t0 + ms(50)).unwrap();
        assert!(timers.fire(&mut d, at, t0 + ms(50), k, s));
        // The old 500 ms entry no longer matches anything.
        let (k, s, at) = timers.pop_due(t0 + ms(500)).unwrap();
        assert!(!timers.fire(&mut d, at, t0 + ms(500), k, s));
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let mut d = Deadline::new(t0);
        timers.arm(&mut d, t0 + ms(10), 3, 9);
        assert!(timers.pop_due(t0).is_none());
        assert_eq!(timers.pop_due(t0 + ms(10)).map(|e| e.0), Some(3));
    }
}
