//! The self-sizing pool: how busy each worker is, and forking or retiring
//! workers to keep a few spare, as Apache's prefork MPM
//! (`MinSpareServers`, `MaxSpareServers`, `MaxRequestWorkers`) and
//! php-fpm's `pm = dynamic` do.
//!
//! **Busy, for an event-loop worker.** Apache's prefork child serves one
//! connection at a time, so "busy" means "serving a request". A worker
//! here holds thousands of connections in one loop; "it has a connection"
//! is true of every worker under load and says nothing about whether it
//! could take more. What runs out is the loop's time: so a worker is
//! *busy* when its loop spent at least
//! [`BUSY_PERCENT`](crate::scoreboard::BUSY_PERCENT) (half) of the last second
//! handling events (outside `epoll_wait`), and *spare* otherwise. The loop
//! adds up that time in its counters (`loop_busy_us`, in the shared
//! scoreboard); once a second the master turns the difference into a share
//! (`prefork_worker_busy_percent` on the status page) and decides.
//!
//! **The policy.** While fewer than `--min-spare` workers are spare and the
//! pool is below `--max-workers`, fork: 1 worker in the first second, then
//! 2, 4, … up to 32 a second while the shortage lasts (Apache's doubling),
//! never more than the shortage. While more than `--max-spare` are spare
//! and the pool is above `--min-workers`, retire one worker a second — the
//! spare one holding the fewest connections — with the same zero-error
//! retirement a reload uses. A worker that is still starting counts as
//! spare, so a burst does not fork twice for the same shortage.

use super::*;
use crate::cli::Sizing;

/// How often the master measures its workers (and resizes the pool).
pub(super) const SIZING_INTERVAL: Duration = Duration::from_secs(1);
/// At most this many workers forked in one interval.
const MAX_SPAWN_RATE: usize = 32;

/// What the pool does this interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Fork this many workers.
    Grow(usize),
    /// Retire one spare worker.
    Shrink,
    /// Leave the pool as it is.
    Hold,
}

// ANCHOR: decide
/// The policy, as a pure function: `workers` alive and not retiring,
/// `spare` of them spare, `rate` the most it may fork now.
pub(super) fn decide(s: &Sizing, workers: usize, spare: usize, rate: usize) -> Decision {
    if workers < s.min_workers {
        return Decision::Grow((s.min_workers - workers).min(rate.max(1)));
    }
    if spare < s.min_spare && workers < s.max_workers {
        let short = s.min_spare - spare;
        return Decision::Grow(short.min(rate).min(s.max_workers - workers));
    }
    if spare > s.max_spare && workers > s.min_workers {
        return Decision::Shrink;
    }
    Decision::Hold
}
// ANCHOR_END: decide

/// What the master remembers of each worker between two measurements.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// The worker's `loop_busy_us` then.
    pub busy_us: u64,
}

impl Master {
    // ANCHOR: size_pool
    /// Once per [`SIZING_INTERVAL`]: writes every running worker's busy
    /// share into its slot, then, for a self-sizing pool, forks or retires
    /// as [`decide`] says.
    pub(super) fn size_pool(&mut self) {
        let now = Instant::now();
        if now < self.next_sizing {
            return;
        }
        self.next_sizing = now + SIZING_INTERVAL;
        self.measure(now);
        let Some(sizing) = self.args.sizing() else {
            return;
        };
        if self.backoff_until.is_some_and(|t| now < t) || self.fatal {
            return;
        }
        let active: Vec<usize> = self.active().map(|(i, _)| i).collect();
        let spare = active
            .iter()
            .filter(|&&i| {
                let slot = self.board.slot(i);
                slot.state() == State::Starting || slot.is_spare()
            })
            .count();
        match decide(&sizing, active.len(), spare, self.spawn_rate) {
            Decision::Grow(n) => {
                log::info!(
                    "pool: {spare} of {} workers spare (min spare {}); starting {n}",
                    active.len(),
                    sizing.min_spare
                );
                self.size = active.len() + n;
                // Twice as many next second if the shortage lasts.
                self.spawn_rate = (self.spawn_rate * 2).min(MAX_SPAWN_RATE);
                self.maintain();
            }
            Decision::Shrink => {
                self.spawn_rate = 1;
                let board = &self.board;
                let quietest = active
                    .iter()
                    .copied()
                    .filter(|&i| board.slot(i).is_spare())
                    .min_by_key(|&i| {
                        let live = board.slot(i).counters.active.load(Ordering::Relaxed);
                        // Ties: the youngest goes (a higher slot was forked later).
                        (live, std::cmp::Reverse(i))
                    });
                if let Some(slot) = quietest {
                    let pid = self.children[slot].as_ref().map_or(0, |c| c.pid.as_raw());
                    log::info!(
                        "pool: {spare} of {} workers spare (max spare {}); retiring worker {slot} (pid {pid})",
                        active.len(),
                        sizing.max_spare
                    );
                    self.size = active.len() - 1;
                    self.retire(slot);
                }
            }
            // (The size stays: a crashed worker's replacement is
            // `maintain`'s business, after its back-off.)
            Decision::Hold => self.spawn_rate = 1,
        }
    }
    // ANCHOR_END: size_pool

    /// Turns each running worker's busy time since the last sample into a
    /// share of the interval, in its slot.
    fn measure(&mut self, now: Instant) {
        for (i, child) in self.children.iter_mut().enumerate() {
            let Some(child) = child.as_mut() else {
                continue;
            };
            let slot = self.board.slot(i);
            let busy_us = slot.counters.loop_busy_us.load(Ordering::Relaxed);
            if let Some(prev) = child.sample {
                let elapsed = now.duration_since(prev.at).as_micros().max(1) as u64;
                let busy = busy_us.saturating_sub(prev.busy_us);
                let percent = (busy.saturating_mul(100) / elapsed).min(100) as u32;
                slot.busy_percent.store(percent, Ordering::Relaxed);
            }
            child.sample = Some(Sample { at: now, busy_us });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: Sizing = Sizing {
        min_workers: 1,
        max_workers: 8,
        min_spare: 2,
        max_spare: 4,
    };

    /// The policy's table: (workers, spare, rate) → decision.
    #[test]
    fn decide_keeps_spare_workers_between_the_bounds() {
        let cases = [
            // Enough spare: nothing to do.
            ((3, 2, 1), Decision::Hold),
            ((5, 4, 1), Decision::Hold),
            // Short of spare: fork the shortage, no more than the rate...
            ((2, 0, 1), Decision::Grow(1)),
            ((2, 0, 4), Decision::Grow(2)),
            ((2, 1, 4), Decision::Grow(1)),
            // ...and never past the maximum.
            ((7, 0, 4), Decision::Grow(1)),
            ((8, 0, 4), Decision::Hold),
            // Too many spare: retire one, never below the minimum.
            ((6, 5, 1), Decision::Shrink),
            ((1, 5, 1), Decision::Hold),
            // Below the minimum (a crash): back up to it.
            ((0, 0, 1), Decision::Grow(1)),
        ];
        for ((workers, spare, rate), want) in cases {
            assert_eq!(
                decide(&POOL, workers, spare, rate),
                want,
                "workers {workers}, spare {spare}, rate {rate}"
            );
        }
    }
}
