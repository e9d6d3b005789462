//! The thread pool: a fixed number of workers that take items off the
//! queue and run a handler on each.
//!
//! The shape is the Rust Book's (chapter 21): a `ThreadPool` owns its
//! `Worker`s and the sending end of the queue, and shuts down in `Drop`:
//! drop the sender, so that every worker's next `pop` returns `None` once
//! the queue is drained, then join the workers one by one. Two things are
//! added for a server: the queue is bounded (the caller gets the item back
//! when it is full), and a panicking job does not take its worker down.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::queue::{self, Consumer, Producer, PushError, QueueKind};
use crate::stats::Stats;

/// How a pool is built.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Worker threads; at least one.
    pub threads: usize,
    /// Which queue hands items to the workers.
    pub queue: QueueKind,
    /// How many items may wait for a worker; at least one.
    pub depth: usize,
}

// ANCHOR: pool
/// A fixed set of worker threads fed through a bounded queue.
#[derive(Debug)]
pub struct ThreadPool<T> {
    /// The workers, joined on drop.
    workers: Vec<Worker>,
    /// The producing end of the queue. An `Option` so that shutting down
    /// can drop it *before* joining the workers: that is what closes the
    /// queue and lets their `pop` return `None`.
    producer: Option<Producer<T>>,
    /// Counters shared with the workers (and the queue gauge).
    stats: Arc<Stats>,
    /// How many worker threads are still running, so that a shutdown can
    /// wait for them *with a deadline* (`JoinHandle::join` has none).
    alive: Arc<Alive>,
}

/// One worker thread.
#[derive(Debug)]
struct Worker {
    id: usize,
    thread: JoinHandle<()>,
}
// ANCHOR_END: pool

/// A count of running threads and a condition variable to wait for zero.
#[derive(Debug, Default)]
struct Alive {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Alive {
    fn add(&self, n: isize) {
        let mut count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        *count = count.saturating_add_signed(n);
        self.changed.notify_all();
    }

    fn get(&self) -> usize {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no thread runs; false if `timeout` passed first.
    fn wait_for_zero(&self, timeout: Duration) -> bool {
        let count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        let (count, _) = self
            .changed
            .wait_timeout_while(count, timeout, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *count == 0
    }
}

/// Decrements [`Alive`] when a worker thread ends, however it ends.
struct AliveGuard(Arc<Alive>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

impl<T: Send + 'static> ThreadPool<T> {
    /// Starts `config.threads` workers, each running `handler` on the items
    /// it takes from the queue.
    pub fn new<F>(config: PoolConfig, stats: Arc<Stats>, handler: F) -> io::Result<ThreadPool<T>>
    where
        F: Fn(T) + Send + Sync + 'static,
    {
        if config.threads == 0 || config.depth == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a pool needs at least one thread and a queue of at least one",
            ));
        }
        let (producer, consumer) = queue::bounded(config.queue, config.depth);
        let handler: Arc<dyn Fn(T) + Send + Sync> = Arc::new(handler);
        let alive = Arc::new(Alive::default());
        let mut pool = ThreadPool {
            workers: Vec::with_capacity(config.threads),
            producer: Some(producer),
            stats,
            alive,
        };
        for id in 0..config.threads {
            let consumer = consumer.clone();
            let handler = Arc::clone(&handler);
            let stats = Arc::clone(&pool.stats);
            pool.alive.add(1);
            let guard = AliveGuard(Arc::clone(&pool.alive));
            // If the spawn fails, the closure (and the guard) is dropped,
            // and `pool`'s Drop stops the workers already started.
            let thread = thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || work(id, consumer, handler, stats, guard))?;
            pool.workers.push(Worker { id, thread });
        }
        Ok(pool)
    }

    // ANCHOR: try_execute
    /// Hands `item` to the workers, or gives it back at once if the queue
    /// is full (or closed). Never blocks.
    pub fn try_execute(&self, item: T) -> Result<(), PushError<T>> {
        let Some(producer) = &self.producer else {
            return Err(PushError::Closed(item));
        };
        self.stats.enqueue();
        let result = producer.try_push(item);
        if result.is_err() {
            self.stats.dequeue();
        }
        result
    }
    // ANCHOR_END: try_execute

    /// Worker threads running now. A panicking job does not lower it.
    pub fn workers_alive(&self) -> usize {
        self.alive.get()
    }

    /// Closes the queue and waits up to `grace` for the workers to finish
    /// what is queued and in flight. Returns false if some did not: they
    /// are left running (detached) and end with the process.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        drop(self.producer.take());
        let started = Instant::now();
        let finished = self.alive.wait_for_zero(grace);
        if finished {
            log::debug!("workers finished in {:?}", started.elapsed());
        } else {
            log::warn!(
                "{} workers still busy after the {grace:?} grace period; leaving them",
                self.alive.get()
            );
            // Dropping a JoinHandle detaches its thread; Drop joins none.
            self.workers.clear();
        }
        finished
    }
}

// ANCHOR: drop
impl<T> Drop for ThreadPool<T> {
    fn drop(&mut self) {
        // Close the queue first: a worker waiting in `pop` then wakes, finds
        // the queue closed and empty, and returns. Joining before closing
        // would wait forever.
        drop(self.producer.take());
        for worker in self.workers.drain(..) {
            log::debug!("joining worker {}", worker.id);
            if worker.thread.join().is_err() {
                log::error!("worker {} ended by a panic", worker.id);
            }
        }
    }
}
// ANCHOR_END: drop

// ANCHOR: work
/// A worker's life: take an item, run the handler on it, repeat until the
/// queue is closed and empty.
fn work<T>(
    id: usize,
    queue: Consumer<T>,
    handler: Arc<dyn Fn(T) + Send + Sync>,
    stats: Arc<Stats>,
    _alive: AliveGuard,
) {
    // `pop` returns the item by value: no lock guard lives on into the
    // loop body, so the other workers can take items while this one works.
    while let Some(item) = queue.pop() {
        stats.dequeue();
        stats
            .busy
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A panic in one job must not kill the worker (the pool would
        // shrink by one thread per panic). The handler's shared state is
        // immutable or atomic, so nothing is left half-updated; the item
        // itself (a connection: the socket is closed) is dropped during
        // unwinding.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler(item)));
        stats
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(payload) = outcome {
            Stats::bump(&stats.panics);
            log::error!(
                "worker {id}: a job panicked ({}); the worker carries on",
                panic_message(&*payload)
            );
        }
    }
    log::debug!("worker {id}: queue closed, exiting");
}
// ANCHOR_END: work

/// The text of a panic, if it has one.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    type Job = Box<dyn FnOnce() + Send>;

    fn pool(threads: usize, kind: QueueKind, depth: usize) -> ThreadPool<Job> {
        let config = PoolConfig {
            threads,
            queue: kind,
            depth,
        };
        ThreadPool::new(config, Arc::default(), |job: Job| job()).unwrap()
    }

    /// A latch: `n` jobs arrive; each waits (at most 10 s) for all `n`.
    #[derive(Default)]
    struct Latch {
        arrived: Mutex<usize>,
        cv: Condvar,
    }

    impl Latch {
        /// Arrives and waits for `n` arrivals; true if they all came.
        fn arrive_and_wait(&self, n: usize) -> bool {
            let mut count = self.arrived.lock().unwrap();
            *count += 1;
            self.cv.notify_all();
            let (count, _) = self
                .cv
                .wait_timeout_while(count, Duration::from_secs(10), |c| *c < n)
                .unwrap();
            *count >= n
        }
    }

    /// Submits `n` jobs that only finish together: true if `n` workers
    /// ran them at the same time.
    fn n_jobs_run_at_once(pool: &ThreadPool<Job>, n: usize) -> bool {
        let latch = Arc::new(Latch::default());
        let (tx, rx) = mpsc::channel();
        for _ in 0..n {
            let latch = Arc::clone(&latch);
            let tx = tx.clone();
            pool.try_execute(Box::new(move || {
                let _ = tx.send(latch.arrive_and_wait(n));
            }))
            .unwrap();
        }
        (0..n).all(|_| rx.recv().unwrap())
    }

    /// With either queue, N workers run N jobs at the same time.
    #[test]
    fn n_workers_run_n_jobs_at_once() {
        for kind in [QueueKind::Mutex, QueueKind::Crossbeam] {
            let pool = pool(4, kind, 16);
            assert!(n_jobs_run_at_once(&pool, 4), "{kind:?}");
        }
    }

    /// A job that panics is counted and logged, and its worker lives on:
    /// afterwards the pool still runs N jobs at once.
    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let stats = Arc::new(Stats::default());
        let config = PoolConfig {
            threads: 3,
            queue: QueueKind::Mutex,
            depth: 16,
        };
        let pool = ThreadPool::new(config, Arc::clone(&stats), |job: Job| job()).unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        for _ in 0..3 {
            let tx = tx.clone();
            pool.try_execute(Box::new(move || {
                // Dropped by the unwinding: the receiver learns the job ended.
                let _tx = tx;
                panic!("boom (expected by the test)");
            }))
            .unwrap();
        }
        drop(tx);
        // Every sender is gone once the three jobs have unwound.
        assert!(rx.recv().is_err());
        assert_eq!(pool.workers_alive(), 3);
        assert!(n_jobs_run_at_once(&pool, 3));
        assert_eq!(stats.panics.load(Ordering::Relaxed), 3);
    }

    /// Dropping the pool runs everything already queued, then joins.
    #[test]
    fn drop_finishes_queued_jobs() {
        for kind in [QueueKind::Mutex, QueueKind::Crossbeam] {
            let done = Arc::new(AtomicUsize::new(0));
            let pool = pool(1, kind, 100);
            for _ in 0..50 {
                let done = Arc::clone(&done);
                pool.try_execute(Box::new(move || {
                    done.fetch_add(1, Ordering::SeqCst);
                }))
                .unwrap();
            }
            drop(pool);
            assert_eq!(done.load(Ordering::SeqCst), 50, "{kind:?}");
        }
    }

    /// A full queue hands the job back instead of blocking the caller.
    #[test]
    fn a_full_queue_gives_the_job_back() {
        let pool = pool(1, QueueKind::Mutex, 1);
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        // Occupy the only worker, and wait until it has really started.
        pool.try_execute(Box::new(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        }))
        .unwrap();
        started_rx.recv().unwrap();
        pool.try_execute(Box::new(|| {})).unwrap();
        assert!(matches!(
            pool.try_execute(Box::new(|| {})),
            Err(PushError::Full(_))
        ));
        drop(release_tx);
    }

    /// `shutdown` waits at most the grace period for a stuck job.
    #[test]
    fn shutdown_gives_up_after_the_grace_period() {
        let pool = pool(1, QueueKind::Crossbeam, 1);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel();
        pool.try_execute(Box::new(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        }))
        .unwrap();
        started_rx.recv().unwrap();
        let t = Instant::now();
        assert!(!pool.shutdown(Duration::from_millis(100)));
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(release_tx);
    }
}
