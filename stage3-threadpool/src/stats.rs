//! Counters the acceptor and the workers bump as they go, logged at
//! shutdown.
//!
//! They are plain atomics with `Relaxed` ordering: each counter is a
//! number on its own, nobody reads one to decide whether another
//! thread's writes are visible, so no ordering between them is needed.
//! (The one gauge that steers behaviour, [`Stats::queued`], is only ever a
//! hint: "someone may be waiting".)

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

    /// Counts an item that left the queue, or never got in.
    pub fn dequeue(&self) {
        self.queued.fetch_sub(1, Relaxed);
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

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} rejected={} served={} requests={} bytes={} yielded={} panics={} \
             active={} queued={} queued_max={}",
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
        )
    }
}
