//! The thread pool: workers that take items off the queue and run a
//! handler on each, as many as the load needs between a minimum and a
//! maximum.
//!
//! The shape is the Rust Book's (chapter 21): a `ThreadPool` owns its
//! `Worker`s and the sending end of the queue, and shuts down in `Drop`:
//! drop the sender, so that every worker's next `pop` returns `None` once
//! the queue is drained, then join the workers one by one. Three things are
//! added for a server: the queue is bounded (the caller gets the item back
//! when it is full), a panicking job does not take its worker down, and the
//! pool sizes itself.
//!
//! **Sizing.** The pool starts `min` workers. A worker is added when an
//! item waited in the queue longer than [`GROW_AFTER`] (seen by the worker
//! that pops it, or by [`ThreadPool::tick`] while nobody pops at all) and
//! the pool is below `max`. A worker that found nothing to do for
//! `idle_timeout` exits while the pool is above `min`. The count itself is
//! a [`Sizer`]: one compare-and-swap per change, model-checked with loom.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::queue::{self, Consumer, Pop, Producer, PushError, QueueKind};
use crate::sizer::Sizer;
use crate::stats::Stats;

/// A connection that waited longer than this in the queue means the
/// workers are too few: the pool grows by one (up to its maximum).
pub const GROW_AFTER: Duration = Duration::from_millis(10);

/// How a pool is built.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Workers started at once and kept however idle the pool is; at
    /// least one.
    pub min_threads: usize,
    /// Workers never exceeded; at least `min_threads`.
    pub max_threads: usize,
    /// A worker idle this long exits while the pool is above its minimum.
    pub idle_timeout: Duration,
    /// Which queue hands items to the workers.
    pub queue: QueueKind,
    /// How many items may wait for a worker; at least one.
    pub depth: usize,
}

impl PoolConfig {
    /// A pool of exactly `threads` workers (what `--threads N` means).
    pub fn fixed(threads: usize, queue: QueueKind, depth: usize) -> PoolConfig {
        PoolConfig {
            min_threads: threads,
            max_threads: threads,
            idle_timeout: Duration::from_secs(60),
            queue,
            depth,
        }
    }
}

// ANCHOR: pool
/// Worker threads fed through a bounded queue, as many as the load needs
/// between a minimum and a maximum.
pub struct ThreadPool<T> {
    /// The producing end of the queue. An `Option` so that shutting down
    /// can drop it *before* joining the workers: that is what closes the
    /// queue and lets their `pop` return `None`.
    producer: Option<Producer<Stamped<T>>>,
    /// What the workers share, and what a worker needs to start another.
    shared: Arc<Shared<T>>,
    /// When [`tick`](Self::tick) first saw items waiting with no worker
    /// free (the producer's own growth check).
    stalled_since: Mutex<Option<Instant>>,
}

/// An item and the moment it entered the queue: the worker that takes it
/// knows how long it waited.
type Stamped<T> = (Instant, T);

/// The workers' common state.
struct Shared<T> {
    /// Each worker's end of the queue is a clone of this one.
    consumer: Consumer<Stamped<T>>,
    /// What a worker runs on each item.
    handler: Box<dyn Fn(T) + Send + Sync>,
    /// Counters shared with the workers (and the queue gauge).
    stats: Arc<Stats>,
    /// How many worker threads are still running, so that a shutdown can
    /// wait for them *with a deadline* (`JoinHandle::join` has none).
    alive: Alive,
    /// How many workers there should be, within `min..=max`.
    sizer: Sizer,
    /// How long a worker above the minimum waits for work before exiting.
    idle_timeout: Duration,
    /// Set when the pool shuts down: no worker is added from then on.
    closing: std::sync::atomic::AtomicBool,
    /// Numbers the workers, for their thread names and the logs.
    next_id: AtomicUsize,
    /// The running workers, joined on drop. A retiring worker removes
    /// itself (dropping a `JoinHandle` detaches the thread, which is
    /// exiting anyway).
    workers: Mutex<Vec<Worker>>,
}

/// One worker thread.
#[derive(Debug)]
struct Worker {
    id: usize,
    thread: JoinHandle<()>,
}
// ANCHOR_END: pool

impl<T> std::fmt::Debug for ThreadPool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("workers", &self.shared.sizer.workers())
            .field("min", &self.shared.sizer.min)
            .field("max", &self.shared.sizer.max)
            .finish_non_exhaustive()
    }
}

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
struct AliveGuard<T: Send + 'static>(Arc<Shared<T>>);

impl<T: Send + 'static> Drop for AliveGuard<T> {
    fn drop(&mut self) {
        self.0.alive.add(-1);
    }
}

impl<T: Send + 'static> ThreadPool<T> {
    /// Starts `config.min_threads` workers, each running `handler` on the
    /// items it takes from the queue; more are started as the load needs.
    pub fn new<F>(config: PoolConfig, stats: Arc<Stats>, handler: F) -> io::Result<ThreadPool<T>>
    where
        F: Fn(T) + Send + Sync + 'static,
    {
        if config.min_threads == 0 || config.depth == 0 || config.max_threads < config.min_threads {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a pool needs at least one thread, a maximum no lower than its minimum, \
                 and a queue of at least one",
            ));
        }
        let (producer, consumer) = queue::bounded(config.queue, config.depth);
        stats
            .workers_min
            .store(config.min_threads, Ordering::Relaxed);
        stats
            .workers_max
            .store(config.max_threads, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            consumer,
            handler: Box::new(handler),
            stats,
            alive: Alive::default(),
            // Counts the first `min` workers before they start; each
            // successful spawn below is one of them.
            sizer: Sizer::new(config.min_threads, config.max_threads),
            idle_timeout: config.idle_timeout,
            closing: false.into(),
            next_id: AtomicUsize::new(0),
            workers: Mutex::new(Vec::with_capacity(config.max_threads)),
        });
        let pool = ThreadPool {
            producer: Some(producer),
            shared,
            stalled_since: Mutex::new(None),
        };
        for _ in 0..config.min_threads {
            // If a spawn fails, `pool`'s Drop stops the workers already
            // started.
            spawn(&pool.shared)?;
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
        let stats = &self.shared.stats;
        stats.enqueue();
        let result = producer.try_push((Instant::now(), item));
        result.map_err(|e| {
            stats.dequeue();
            match e {
                PushError::Full((_, item)) => PushError::Full(item),
                PushError::Closed((_, item)) => PushError::Closed(item),
            }
        })
    }
    // ANCHOR_END: try_execute

    // ANCHOR: tick
    /// The producer's growth check, for when no worker pops at all (every
    /// one is busy with a long job, so none sees how long the queue
    /// waits): items waiting with no worker free for [`GROW_AFTER`] add a
    /// worker. Call it from the loop that feeds the pool; it returns how
    /// soon it wants to be called again (`None`: only when something
    /// happens).
    pub fn tick(&self) -> Option<Duration> {
        let stats = &self.shared.stats;
        let mut since = self
            .stalled_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let busy = stats.busy.load(Ordering::Relaxed);
        let stalled = stats.others_waiting() && busy >= self.shared.sizer.workers();
        if !stalled {
            *since = None;
            return None;
        }
        let now = Instant::now();
        let began = *since.get_or_insert(now);
        if now.duration_since(began) < GROW_AFTER {
            return Some(GROW_AFTER - now.duration_since(began));
        }
        *since = Some(now);
        grow(&self.shared);
        Some(GROW_AFTER)
    }
    // ANCHOR_END: tick

    /// Worker threads running now. A panicking job does not lower it.
    pub fn workers_alive(&self) -> usize {
        self.shared.alive.get()
    }

    /// Closes the queue and waits up to `grace` for the workers to finish
    /// what is queued and in flight. Returns false if some did not: they
    /// are left running (detached) and end with the process.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        self.shared.closing.store(true, Ordering::SeqCst);
        drop(self.producer.take());
        let started = Instant::now();
        let finished = self.shared.alive.wait_for_zero(grace);
        if finished {
            log::debug!("workers finished in {:?}", started.elapsed());
        } else {
            log::warn!(
                "{} workers still busy after the {grace:?} grace period; leaving them",
                self.shared.alive.get()
            );
            // Dropping a JoinHandle detaches its thread; Drop joins none.
            lock_workers(&self.shared).clear();
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
        self.shared.closing.store(true, Ordering::SeqCst);
        drop(self.producer.take());
        // A worker may have started another just before the close: join
        // until none is left.
        loop {
            let batch: Vec<Worker> = lock_workers(&self.shared).drain(..).collect();
            if batch.is_empty() {
                break;
            }
            for worker in batch {
                log::debug!("joining worker {}", worker.id);
                if worker.thread.join().is_err() {
                    log::error!("worker {} ended by a panic", worker.id);
                }
            }
        }
    }
}
// ANCHOR_END: drop

fn lock_workers<T>(shared: &Shared<T>) -> std::sync::MutexGuard<'_, Vec<Worker>> {
    shared
        .workers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Starts one worker thread, already counted by the sizer.
fn spawn<T: Send + 'static>(shared: &Arc<Shared<T>>) -> io::Result<()> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    shared.alive.add(1);
    let guard = AliveGuard(Arc::clone(shared));
    // Held across the spawn, so that a worker that retires at once finds
    // its own handle to remove.
    let mut workers = lock_workers(shared);
    // If the spawn fails, the closure (and the guard) is dropped.
    let thread = thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || work(id, guard))?;
    workers.push(Worker { id, thread });
    shared.stats.workers.fetch_add(1, Ordering::Relaxed);
    Stats::bump(&shared.stats.workers_started);
    Ok(())
}

/// Adds a worker if the pool is below its maximum and not closing.
fn grow<T: Send + 'static>(shared: &Arc<Shared<T>>) {
    if shared.closing.load(Ordering::SeqCst) || !shared.sizer.try_grow() {
        return;
    }
    match spawn(shared) {
        Ok(()) => log::debug!("pool grew to {}", shared.sizer.workers()),
        Err(e) => {
            shared.sizer.grow_failed();
            log::warn!("cannot add a worker: {e}");
        }
    }
}

// ANCHOR: work
/// A worker's life: take an item, run the handler on it, repeat until the
/// queue is closed and empty — or, above the pool's minimum, until no item
/// came for the idle timeout.
fn work<T: Send + 'static>(id: usize, guard: AliveGuard<T>) {
    let shared = &guard.0;
    let stats = &shared.stats;
    // A fixed pool never retires anyone. In a self-sizing one, a worker
    // that timed out but could not retire (the pool is at its minimum)
    // waits without a timeout until its next item: it does not wake every
    // idle timeout for nothing (or spin, with a timeout of zero).
    let fixed = shared.sizer.min == shared.sizer.max;
    let mut may_retire = !fixed;
    loop {
        // `pop` returns the item by value: no lock guard lives on into the
        // loop body, so the other workers can take items while this one
        // works.
        let popped = if may_retire {
            shared.consumer.pop_timeout(shared.idle_timeout)
        } else {
            shared.consumer.pop().map_or(Pop::Closed, Pop::Item)
        };
        let (queued_at, item) = match popped {
            Pop::Item(stamped) => stamped,
            Pop::Closed => break,
            Pop::TimedOut if shared.sizer.try_retire() => {
                stats.workers.fetch_sub(1, Ordering::Relaxed);
                Stats::bump(&stats.workers_retired);
                lock_workers(shared).retain(|w| w.id != id);
                log::debug!("worker {id}: idle, retiring");
                return;
            }
            Pop::TimedOut => {
                may_retire = false;
                continue;
            }
        };
        may_retire = !fixed;
        // Busy *before* the item leaves the queue gauge: whoever sees both
        // at zero knows that no item is in flight.
        stats.busy.fetch_add(1, Ordering::SeqCst);
        stats.dequeue();
        let waited = queued_at.elapsed();
        stats.waited(waited);
        if waited > GROW_AFTER {
            grow(shared);
        }
        // A panic in one job must not kill the worker (the pool would
        // shrink by one thread per panic). The handler's shared state is
        // immutable or atomic, so nothing is left half-updated; the item
        // itself (a connection: the socket is closed) is dropped during
        // unwinding.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| (shared.handler)(item)));
        stats.busy.fetch_sub(1, Ordering::SeqCst);
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
        ThreadPool::new(
            PoolConfig::fixed(threads, kind, depth),
            Arc::default(),
            |job: Job| job(),
        )
        .unwrap()
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
        let config = PoolConfig::fixed(3, QueueKind::Mutex, 16);
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

    /// A self-sizing pool grows when jobs wait (here: two long jobs on a
    /// one-worker pool, so the second waits past `GROW_AFTER`), never past
    /// its maximum, and shrinks back to its minimum once idle.
    #[test]
    fn the_pool_grows_under_load_and_shrinks_when_idle() {
        let stats = Arc::new(Stats::default());
        let config = PoolConfig {
            min_threads: 1,
            max_threads: 3,
            idle_timeout: Duration::from_millis(50),
            queue: QueueKind::Mutex,
            depth: 16,
        };
        let pool = ThreadPool::new(config, Arc::clone(&stats), |job: Job| job()).unwrap();
        // Three jobs that only finish together need three workers at once:
        // the pool must grow from one to three to run them.
        let latch = Arc::new(Latch::default());
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            let latch = Arc::clone(&latch);
            let tx = tx.clone();
            pool.try_execute(Box::new(move || {
                let _ = tx.send(latch.arrive_and_wait(3));
            }))
            .unwrap();
        }
        // The producer's check adds a worker each time the queue stalls.
        common::testkit::eventually("the pool grows to 3", Duration::from_secs(10), || {
            pool.tick();
            stats.workers.load(Ordering::Relaxed) == 3
        });
        assert!((0..3).all(|_| rx.recv().unwrap()), "three ran at once");
        assert!(stats.workers.load(Ordering::Relaxed) <= 3);
        common::testkit::eventually("the pool shrinks to 1", Duration::from_secs(10), || {
            pool.workers_alive() == 1 && stats.workers.load(Ordering::Relaxed) == 1
        });
        assert!(stats.workers_retired.load(Ordering::Relaxed) >= 2);
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
