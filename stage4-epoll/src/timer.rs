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
//!
//! Times are kept in *ticks*: whole milliseconds since the loop's `Timers`
//! were made, rounded up, in a `u64` (an `Instant` takes 16 bytes). A
//! deadline and a heap entry are 16 bytes each instead of 32, which is most
//! of what an idle connection costs (see the stage 4 chapter); rounding up
//! means a timeout fires up to a millisecond late, never early.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A time in whole milliseconds since the [`Timers`] were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(u64);

/// No heap entry armed.
const NONE: Tick = Tick(u64::MAX);

/// One connection's view of its timer.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// When the connection times out.
    at: Tick,
    /// The time of the heap entry that will wake us for it, if any ([`NONE`]
    /// if not). Always `<= at` when set: an entry may fire early, never late.
    armed: Tick,
}

impl Deadline {
    /// A deadline with no heap entry yet; call [`Timers::arm`] to schedule it.
    pub fn new() -> Deadline {
        Deadline {
            at: Tick(0),
            armed: NONE,
        }
    }
}

impl Default for Deadline {
    fn default() -> Deadline {
        Deadline::new()
    }
}

/// The heap of pending wake-ups of one event loop.
#[derive(Debug)]
pub struct Timers {
    /// Tick 0.
    epoch: Instant,
    /// `(when, slab key, serial)`, earliest first. The serial tells a
    /// connection from a later one that reuses the same slab slot.
    heap: BinaryHeap<Reverse<(Tick, u32, u32)>>,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers::new()
    }
}

// ANCHOR: timers
impl Timers {
    /// An empty heap; its ticks count from now.
    pub fn new() -> Timers {
        Timers {
            epoch: Instant::now(),
            heap: BinaryHeap::new(),
        }
    }

    /// `t` in ticks, rounded up (the first tick not before `t`).
    fn tick(&self, t: Instant) -> Tick {
        let ns = t.saturating_duration_since(self.epoch).as_nanos();
        Tick(u64::try_from(ns.div_ceil(1_000_000)).unwrap_or(u64::MAX - 1))
    }

    /// The last tick not after `now`: what is due at `now`.
    fn due(&self, now: Instant) -> Tick {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        Tick(u64::try_from(ms).unwrap_or(u64::MAX - 1))
    }

    /// Moves a connection's deadline to `at` and makes sure an entry will
    /// fire no later than that. Pushes only when the deadline moves earlier
    /// than the entry already armed.
    pub fn arm(&mut self, d: &mut Deadline, at: Instant, key: usize, serial: u32) {
        let at = self.tick(at);
        d.at = at;
        if d.armed <= at {
            return;
        }
        d.armed = at;
        // Slab keys stay far below 2^32: one per open connection.
        let key = u32::try_from(key).unwrap_or(u32::MAX);
        self.heap.push(Reverse((at, key, serial)));
    }

    /// True if `d` falls due later than `t`.
    pub fn is_later(&self, d: &Deadline, t: Instant) -> bool {
        d.at > self.tick(t)
    }

    /// The earliest entry's time: how long the loop may sleep.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| self.epoch + Duration::from_millis(at.0))
    }

    /// Pops the next entry due at `now`, as `(key, serial, time)`. The caller
    /// looks the connection up and hands the entry to [`Timers::fire`].
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, u32, Tick)> {
        let due = self.due(now);
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= due => {
                let Reverse((at, key, serial)) = self.heap.pop()?;
                Some((key as usize, serial, at))
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
        entry_at: Tick,
        now: Instant,
        key: usize,
        serial: u32,
    ) -> bool {
        if d.armed != entry_at {
            return false;
        }
        d.armed = NONE;
        if d.at <= self.due(now) {
            return true;
        }
        d.armed = d.at;
        let key = u32::try_from(key).unwrap_or(u32::MAX);
        self.heap.push(Reverse((d.at, key, serial)));
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

    impl Timers {
        /// Timers whose tick 0 is `epoch`, so whole milliseconds after it
        /// are exact ticks.
        fn counting_from(epoch: Instant) -> Timers {
            Timers {
                epoch,
                heap: BinaryHeap::new(),
            }
        }
    }

    #[test]
    fn moving_a_deadline_later_pushes_nothing() {
        let t0 = Instant::now();
        let mut timers = Timers::counting_from(t0);
        let mut d = Deadline::new();
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

    /// A deadline between two milliseconds fires at the later one: late
    /// by less than a millisecond, never early.
    #[test]
    fn a_deadline_never_fires_early() {
        let t0 = Instant::now();
        let mut timers = Timers::counting_from(t0);
        let mut d = Deadline::new();
        let at = t0 + Duration::from_micros(10_500);
        timers.arm(&mut d, at, 1, 1);
        let wake = timers.next_wakeup().unwrap();
        assert!(wake >= at && wake < at + ms(1), "{:?}", wake - at);
        assert!(timers.pop_due(at - Duration::from_micros(1)).is_none());
        let (k, s, e) = timers.pop_due(wake).unwrap();
        assert!(timers.fire(&mut d, e, wake, k, s));
        assert!(timers.is_later(&d, at - ms(1)));
        assert!(!timers.is_later(&d, at));
    }

    /// The heap entry and the deadline are 16 bytes each: most of what an
    /// idle connection costs.
    #[test]
    fn entries_are_small() {
        assert_eq!(size_of::<Reverse<(Tick, u32, u32)>>(), 16);
        assert_eq!(size_of::<Deadline>(), 16);
    }

    #[test]
    fn moving_a_deadline_earlier_makes_the_old_entry_stale() {
        let t0 = Instant::now();
        let mut timers = Timers::counting_from(t0);
        let mut d = Deadline::new();
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
        let mut timers = Timers::counting_from(t0);
        let mut d = Deadline::new();
        timers.arm(&mut d, t0 + ms(10), 3, 9);
        assert!(timers.pop_due(t0).is_none());
        assert_eq!(timers.pop_due(t0 + ms(10)).map(|e| e.0), Some(3));
    }
}
