//! Counters the acceptor and the workers bump as they go, logged at
//! shutdown.
//!
//! Most are plain atomics with `Relaxed` ordering: each counter is a
//! number on its own, nobody reads one to decide whether another
//! thread's writes are visible, so no ordering between them is needed.
//! Two gauges steer behaviour: [`Stats::queued`] is a hint to the
//! fairness policy and the workers' short wait ("someone may be
//! waiting"), and, with [`Stats::busy`], tells the poller when a shutdown
//! has nothing left in flight; for that one use the decrement of `queued`
//! is a release and `busy` is changed with `SeqCst` (see
//! `poller::Poller::drained`).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

// ANCHOR: stats
/// What the server did since it started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections answered `503` because the queue was full.
    pub rejected: AtomicU64,
    /// Connections a worker finished (whatever the outcome).
    pub served: AtomicU64,
    /// Responses written.
    pub requests: AtomicU64,
    /// Response body bytes sent (what the access log records).
    pub bytes: AtomicU64,
    /// Idle keep-alive connections closed because others were waiting.
    pub yielded: AtomicU64,
    /// Jobs that panicked; the worker survived each of them.
    pub panics: AtomicU64,
    /// Connections waiting in the queue right now.
    pub queued: AtomicUsize,
    /// The most connections that ever waited at once.
    pub queued_max: AtomicUsize,
    /// Connections a worker is serving right now (busy workers).
    pub busy: AtomicUsize,
    /// Worker threads running now (the pool sizes itself between the
    /// two next gauges).
    pub workers: AtomicUsize,
    /// `--min-threads`.
    pub workers_min: AtomicUsize,
    /// `--max-threads`.
    pub workers_max: AtomicUsize,
    /// Workers started since the server started (the first `min` too).
    pub workers_started: AtomicU64,
    /// Workers that exited after `--thread-idle-timeout` with nothing to do.
    pub workers_retired: AtomicU64,
    /// Connections taken off the queue by a worker.
    pub queue_waits: AtomicU64,
    /// Their time in the queue, summed, in microseconds.
    pub queue_wait_us: AtomicU64,
    /// The longest time one waited, in microseconds.
    pub queue_wait_us_max: AtomicU64,
    /// Those that waited longer than the growth bound (`pool::GROW_AFTER`).
    pub queue_waits_slow: AtomicU64,
    /// Connections held by the poller now (waiting for bytes, or in their
    /// lingering close), in the poller model.
    pub parked: AtomicUsize,
    /// Connections a worker handed back to the poller.
    pub handed_back: AtomicU64,
}
// ANCHOR_END: stats

impl Stats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Counts an item about to enter the queue (before it is pushed, so
    /// that a worker popping it at once never takes the gauge below zero).
    pub fn enqueue(&self) {
        let now = self.queued.fetch_add(1, Relaxed) + 1;
        self.queued_max.fetch_max(now, Relaxed);
    }

    /// Counts an item that left the queue, or never got in. `Release`: a
    /// worker counts itself busy first, and whoever sees this decrement
    /// (with `Acquire`) sees that too (the poller's shutdown relies on it).
    pub fn dequeue(&self) {
        self.queued
            .fetch_sub(1, std::sync::atomic::Ordering::Release);
    }

    /// Counts a connection that waited `waited` in the queue.
    pub fn waited(&self, waited: std::time::Duration) {
        let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        Stats::bump(&self.queue_waits);
        self.queue_wait_us.fetch_add(us, Relaxed);
        self.queue_wait_us_max.fetch_max(us, Relaxed);
        if waited > crate::pool::GROW_AFTER {
            Stats::bump(&self.queue_waits_slow);
        }
    }

    /// Appends the pool's own figures to the status page.
    pub fn render(&self, out: &mut String) {
        use common::stats::metric;
        let g = |a: &AtomicUsize| a.load(Relaxed) as u64;
        metric(
            out,
            "threadpool_queue_depth",
            "gauge",
            "Connections waiting for a worker.",
            g(&self.queued),
        );
        metric(
            out,
            "threadpool_queue_depth_max",
            "gauge",
            "The most connections that ever waited at once.",
            g(&self.queued_max),
        );
        metric(
            out,
            "threadpool_busy_workers",
            "gauge",
            "Workers serving a connection now.",
            g(&self.busy),
        );
        metric(
            out,
            "threadpool_workers",
            "gauge",
            "Worker threads running now.",
            g(&self.workers),
        );
        metric(
            out,
            "threadpool_workers_min",
            "gauge",
            "Workers kept however idle the pool is (--min-threads).",
            g(&self.workers_min),
        );
        metric(
            out,
            "threadpool_workers_max",
            "gauge",
            "Workers never exceeded (--max-threads).",
            g(&self.workers_max),
        );
        metric(
            out,
            "threadpool_workers_started_total",
            "counter",
            "Workers started, the first --min-threads included.",
            self.workers_started.load(Relaxed),
        );
        metric(
            out,
            "threadpool_workers_retired_total",
            "counter",
            "Workers that exited after --thread-idle-timeout idle.",
            self.workers_retired.load(Relaxed),
        );
        metric(
            out,
            "threadpool_queue_waits_total",
            "counter",
            "Connections a worker took off the queue.",
            self.queue_waits.load(Relaxed),
        );
        seconds(
            out,
            "threadpool_queue_wait_seconds_total",
            "counter",
            "Time those connections spent in the queue, summed.",
            self.queue_wait_us.load(Relaxed),
        );
        seconds(
            out,
            "threadpool_queue_wait_seconds_max",
            "gauge",
            "The longest time a connection waited in the queue.",
            self.queue_wait_us_max.load(Relaxed),
        );
        metric(
            out,
            "threadpool_queue_waits_slow_total",
            "counter",
            "Connections that waited longer than the growth bound (10 ms).",
            self.queue_waits_slow.load(Relaxed),
        );
        metric(
            out,
            "threadpool_poller_connections",
            "gauge",
            "Connections the poller holds now (waiting for bytes, or lingering).",
            g(&self.parked),
        );
        metric(
            out,
            "threadpool_handed_back_total",
            "counter",
            "Connections a worker handed back to the poller.",
            self.handed_back.load(Relaxed),
        );
        metric(
            out,
            "threadpool_yielded_total",
            "counter",
            "Idle keep-alive connections closed to make room.",
            self.yielded.load(Relaxed),
        );
        metric(
            out,
            "threadpool_panics_total",
            "counter",
            "Jobs that panicked (the worker survived).",
            self.panics.load(Relaxed),
        );
    }

    /// True if connections are waiting for a worker.
    pub fn others_waiting(&self) -> bool {
        self.queued.load(Relaxed) > 0
    }
}

/// Appends a metric kept in microseconds, in Prometheus's base unit
/// (seconds, with six decimals).
fn seconds(out: &mut String, name: &str, kind: &str, help: &str, micros: u64) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}.{:06}",
        micros / 1_000_000,
        micros % 1_000_000
    );
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} rejected={} served={} requests={} bytes={} yielded={} panics={} \
             active={} queued={} queued_max={} workers={} workers_started={} \
             workers_retired={} handed_back={}",
            self.accepted.load(Relaxed),
            self.rejected.load(Relaxed),
            self.served.load(Relaxed),
            self.requests.load(Relaxed),
            self.bytes.load(Relaxed),
            self.yielded.load(Relaxed),
            self.panics.load(Relaxed),
            self.busy.load(Relaxed),
            self.queued.load(Relaxed),
            self.queued_max.load(Relaxed),
            self.workers.load(Relaxed),
            self.workers_started.load(Relaxed),
            self.workers_retired.load(Relaxed),
            self.handed_back.load(Relaxed),
        )
    }
}
