//! How many workers a self-sizing pool runs: a number between a minimum
//! and a maximum, changed only by a compare-and-swap.
//!
//! Two idle workers may time out at the same moment and both ask to
//! retire; the acceptor and a worker may both ask to grow. A plain
//! "load, compare, store" would let both succeed and take the pool below
//! its minimum (or above its maximum). `compare_exchange` makes each
//! change conditional on the count it was decided on: the loser sees the
//! new count and decides again. The `loom` tests below check exactly that.

use crate::sync::{AtomicUsize, Ordering};

/// The live worker count, kept within `min..=max`.
#[derive(Debug)]
pub struct Sizer {
    /// Workers running (or being started) now.
    workers: AtomicUsize,
    /// Workers kept however idle the pool is (`--min-threads`).
    pub min: usize,
    /// Workers never exceeded, however long connections wait
    /// (`--max-threads`).
    pub max: usize,
}

impl Sizer {
    /// A sizer for a pool that starts with `min` workers.
    pub fn new(min: usize, max: usize) -> Sizer {
        Sizer {
            workers: AtomicUsize::new(min),
            min,
            max: max.max(min),
        }
    }

    /// Workers running now.
    pub fn workers(&self) -> usize {
        self.workers.load(Ordering::Relaxed)
    }

    /// Counts one more worker if the pool is below its maximum; true if
    /// the caller must now start it.
    pub fn try_grow(&self) -> bool {
        self.change(|n| (n < self.max).then(|| n + 1))
    }

    /// Counts one worker less if the pool is above its minimum; true if
    /// the caller (an idle worker) must now exit.
    pub fn try_retire(&self) -> bool {
        self.change(|n| (n > self.min).then(|| n - 1))
    }

    /// Undoes a [`try_grow`](Self::try_grow) whose thread could not be
    /// started.
    pub fn grow_failed(&self) {
        self.workers.fetch_sub(1, Ordering::Relaxed);
    }

    fn change(&self, next: impl Fn(usize) -> Option<usize>) -> bool {
        let mut n = self.workers.load(Ordering::Relaxed);
        loop {
            let Some(m) = next(n) else { return false };
            // Relaxed is enough: the count orders nothing else, it only
            // has to change by one step from a value somebody saw.
            match self
                .workers
                .compare_exchange_weak(n, m, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Growing stops at the maximum, retiring at the minimum.
    #[test]
    fn stays_within_min_and_max() {
        let s = Sizer::new(2, 4);
        assert!(s.try_grow());
        assert!(s.try_grow());
        assert!(!s.try_grow());
        assert_eq!(s.workers(), 4);
        assert!(s.try_retire());
        assert!(s.try_retire());
        assert!(!s.try_retire());
        assert_eq!(s.workers(), 2);
    }
}

// ANCHOR: loom
/// Model checks of the sizer under every interleaving.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::Arc;
    use loom::thread;

    /// Two idle workers retire at once from a pool one above its minimum:
    /// exactly one of them goes.
    #[test]
    fn two_retiring_workers_never_go_below_min() {
        loom::model(|| {
            let s = Arc::new(Sizer::new(1, 3));
            assert!(s.try_grow());
            let t: Vec<_> = (0..2)
                .map(|_| {
                    let s = Arc::clone(&s);
                    thread::spawn(move || s.try_retire())
                })
                .collect();
            let retired = t.into_iter().map(|t| t.join().unwrap());
            assert_eq!(retired.filter(|&r| r).count(), 1);
            assert_eq!(s.workers(), 1);
        });
    }

    /// Growth racing with growth and a retirement never passes the
    /// maximum, and the count ends where the successful steps say.
    #[test]
    fn growth_never_passes_max() {
        loom::model(|| {
            let s = Arc::new(Sizer::new(1, 2));
            let t: Vec<_> = (0..2)
                .map(|_| {
                    let s = Arc::clone(&s);
                    thread::spawn(move || s.try_grow())
                })
                .collect();
            let retired = s.try_retire();
            let grown = t
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|&g| g)
                .count();
            assert!(s.workers() <= 2);
            assert_eq!(s.workers(), 1 + grown - usize::from(retired));
        });
    }
}
// ANCHOR_END: loom
