//! The queue between the acceptor and the workers, in two versions.
//!
//! - [`BoundedQueue`]: written by hand, a `Mutex<VecDeque>` and a `Condvar`.
//!   It is the whole trick of a thread pool in forty lines, so it is worth
//!   reading once and model-checking (the `loom` tests at the bottom).
//! - `crossbeam-channel`'s bounded channel: what you would use in practice.
//!   Faster under contention, and somebody else proved it correct.
//!
//! Both are *bounded*: when the queue is full the acceptor is told so at
//! once ([`PushError::Full`]) and answers `503` instead of letting
//! connections pile up (backpressure). Both are *closable*: dropping the
//! [`Producer`] lets the workers drain what is queued, then their
//! [`Consumer::pop`] returns `None` and they exit.

use std::collections::VecDeque;
use std::fmt;
use std::sync::PoisonError;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Which queue implementation the pool uses (`--queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueKind {
    /// The hand-written `Mutex<VecDeque>` + `Condvar` queue.
    Mutex,
    /// `crossbeam_channel::bounded`.
    Crossbeam,
}

impl QueueKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            QueueKind::Mutex => "mutex",
            QueueKind::Crossbeam => "crossbeam",
        }
    }
}

/// Why an item was not queued; the item comes back so that the caller can
/// still answer the connection.
pub enum PushError<T> {
    /// The queue holds `capacity` items already.
    Full(T),
    /// The queue was closed: the pool is shutting down.
    Closed(T),
}

/// What [`Consumer::pop_timeout`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop<T> {
    /// The oldest item.
    Item(T),
    /// Nothing arrived within the timeout: an idle worker may retire.
    TimedOut,
    /// The queue is closed and empty: every worker exits.
    Closed,
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Closed(_) => "Closed(..)",
        })
    }
}

// ANCHOR: bounded_queue
/// A bounded FIFO queue: a `VecDeque` behind a `Mutex`, and a `Condvar` on
/// which idle workers sleep until there is an item (or the queue closes).
#[derive(Debug)]
pub struct BoundedQueue<T> {
    /// The items and the closed flag. They share one lock because a worker
    /// must see "empty" and "closed" *together* to know it may exit.
    state: Mutex<State<T>>,
    /// Signalled when an item is pushed (one sleeper is enough) and when the
    /// queue closes (every sleeper must wake up and exit).
    not_empty: Condvar,
    /// Most items held; one more is refused with [`PushError::Full`].
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}
// ANCHOR_END: bounded_queue

impl<T> BoundedQueue<T> {
    /// An empty open queue holding at most `capacity` items.
    pub fn new(capacity: usize) -> BoundedQueue<T> {
        BoundedQueue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(4096)),
                closed: false,
            }),
            not_empty: Condvar::new(),
            capacity,
        }
    }

    /// Locks the state. A panic while the lock was held cannot leave it
    /// half-changed (every change is one `VecDeque` call or one `bool`
    /// store), so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ANCHOR: push
    /// Queues `item`, or gives it back if the queue is full or closed.
    /// Never blocks: the acceptor must stay free to accept.
    pub fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(PushError::Full(item));
        }
        state.items.push_back(item);
        // Unlock before notifying, so the woken worker does not wake up
        // only to block on the lock we still hold.
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }
    // ANCHOR_END: push

    // ANCHOR: pop
    /// Takes the oldest item, sleeping while the queue is empty. Returns
    /// `None` once the queue is closed *and* empty: queued work is always
    /// finished before a worker exits.
    pub fn pop(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                // Returning drops the guard: the lock is released here,
                // *before* the caller runs the job.
                return Some(item);
            }
            if state.closed {
                return None;
            }
            // Atomically unlocks and sleeps; relocks on wake-up. Wake-ups
            // can be spurious, hence the loop that looks again.
            state = self
                .not_empty
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
    // ANCHOR_END: pop

    // ANCHOR: pop_timeout
    /// Like [`pop`](Self::pop), but sleeps at most `timeout` in all:
    /// [`Pop::TimedOut`] tells an idle worker of a self-sizing pool that it
    /// may retire. The deadline is kept across wake-ups, so a stream of
    /// spurious wake-ups cannot keep a worker waiting forever.
    pub fn pop_timeout(&self, timeout: Duration) -> Pop<T> {
        let mut state = self.lock();
        let mut left = timeout;
        loop {
            if let Some(item) = state.items.pop_front() {
                return Pop::Item(item);
            }
            if state.closed {
                return Pop::Closed;
            }
            if left.is_zero() {
                return Pop::TimedOut;
            }
            let began = std::time::Instant::now();
            let (guard, result) = self
                .not_empty
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner);
            state = guard;
            left = if result.timed_out() {
                Duration::ZERO
            } else {
                left.saturating_sub(began.elapsed())
            };
        }
    }
    // ANCHOR_END: pop_timeout

    // ANCHOR: close
    /// Refuses new items and wakes every sleeping worker so that each can
    /// see "closed and empty" and exit. `notify_one` here would be a lost
    /// wake-up: one worker would exit, the others would sleep forever, and
    /// the pool's `Drop` would hang joining them. The loom test
    /// `close_wakes_every_waiting_worker` catches exactly that.
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
    }
    // ANCHOR_END: close

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True if no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ANCHOR: handles
/// The acceptor's end of the queue. Dropping it closes the queue, exactly
/// like dropping the last `Sender` of a channel.
#[derive(Debug)]
pub struct Producer<T>(ProducerImpl<T>);

#[derive(Debug)]
enum ProducerImpl<T> {
    Mutex(Arc<BoundedQueue<T>>),
    Crossbeam(crossbeam_channel::Sender<T>),
}

/// The workers' end of the queue; each worker holds a clone.
#[derive(Debug)]
pub struct Consumer<T>(ConsumerImpl<T>);

#[derive(Debug)]
enum ConsumerImpl<T> {
    Mutex(Arc<BoundedQueue<T>>),
    Crossbeam(crossbeam_channel::Receiver<T>),
}

/// A bounded queue of `capacity` items of the given kind, as its two ends.
pub fn bounded<T>(kind: QueueKind, capacity: usize) -> (Producer<T>, Consumer<T>) {
    match kind {
        QueueKind::Mutex => {
            let q = Arc::new(BoundedQueue::new(capacity));
            (
                Producer(ProducerImpl::Mutex(Arc::clone(&q))),
                Consumer(ConsumerImpl::Mutex(q)),
            )
        }
        QueueKind::Crossbeam => {
            let (tx, rx) = crossbeam_channel::bounded(capacity);
            (
                Producer(ProducerImpl::Crossbeam(tx)),
                Consumer(ConsumerImpl::Crossbeam(rx)),
            )
        }
    }
}
// ANCHOR_END: handles

impl<T> Producer<T> {
    /// Queues `item` without blocking, or gives it back.
    pub fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        match &self.0 {
            ProducerImpl::Mutex(q) => q.try_push(item),
            ProducerImpl::Crossbeam(tx) => tx.try_send(item).map_err(|e| match e {
                crossbeam_channel::TrySendError::Full(item) => PushError::Full(item),
                crossbeam_channel::TrySendError::Disconnected(item) => PushError::Closed(item),
            }),
        }
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // The channel closes itself when its last sender goes away; the
        // hand-written queue has to be told.
        if let ProducerImpl::Mutex(q) = &self.0 {
            q.close();
        }
    }
}

impl<T> Consumer<T> {
    /// Takes the oldest item, sleeping while there is none; `None` once
    /// the producer is gone and the queue is empty.
    pub fn pop(&self) -> Option<T> {
        match &self.0 {
            ConsumerImpl::Mutex(q) => q.pop(),
            ConsumerImpl::Crossbeam(rx) => rx.recv().ok(),
        }
    }
}

impl<T> Consumer<T> {
    /// Takes the oldest item, sleeping at most `timeout` while there is
    /// none.
    pub fn pop_timeout(&self, timeout: Duration) -> Pop<T> {
        match &self.0 {
            ConsumerImpl::Mutex(q) => q.pop_timeout(timeout),
            ConsumerImpl::Crossbeam(rx) => match rx.recv_timeout(timeout) {
                Ok(item) => Pop::Item(item),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => Pop::TimedOut,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Pop::Closed,
            },
        }
    }
}

impl<T> Clone for Consumer<T> {
    fn clone(&self) -> Self {
        Consumer(match &self.0 {
            ConsumerImpl::Mutex(q) => ConsumerImpl::Mutex(Arc::clone(q)),
            ConsumerImpl::Crossbeam(rx) => ConsumerImpl::Crossbeam(rx.clone()),
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    const KINDS: [QueueKind; 2] = [QueueKind::Mutex, QueueKind::Crossbeam];

    /// A full queue refuses at once and hands the item back.
    #[test]
    fn full_queue_gives_the_item_back() {
        for kind in KINDS {
            let (tx, _rx) = bounded(kind, 2);
            tx.try_push(1).unwrap();
            tx.try_push(2).unwrap();
            match tx.try_push(3) {
                Err(PushError::Full(3)) => {}
                other => panic!("{kind:?}: {other:?}"),
            }
        }
    }

    /// Items come out in the order they went in, and what was queued
    /// before the producer went away is still delivered.
    #[test]
    fn fifo_and_drain_after_close() {
        for kind in KINDS {
            let (tx, rx) = bounded(kind, 8);
            for i in 0..5 {
                tx.try_push(i).unwrap();
            }
            drop(tx);
            let got: Vec<i32> = std::iter::from_fn(|| rx.pop()).collect();
            assert_eq!(got, [0, 1, 2, 3, 4], "{kind:?}");
        }
    }

    /// Dropping the producer wakes every worker asleep in `pop`.
    #[test]
    fn dropping_the_producer_wakes_all_sleepers() {
        for kind in KINDS {
            let (tx, rx) = bounded::<u32>(kind, 8);
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            for _ in 0..4 {
                let rx = rx.clone();
                let done = done_tx.clone();
                std::thread::spawn(move || {
                    let got = rx.pop();
                    let _ = done.send(got);
                });
            }
            drop(tx);
            for _ in 0..4 {
                let got = done_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("a worker stayed asleep after close");
                assert_eq!(got, None, "{kind:?}");
            }
        }
    }

    /// Stress: one producer pushes 100,000 numbers (retrying when the
    /// small queue is full) to four consumers; every number comes out
    /// exactly once, whatever the queue.
    #[test]
    fn stress_no_item_lost_or_duplicated() {
        const N: u64 = 100_000;
        for kind in KINDS {
            let (tx, rx) = bounded::<u64>(kind, 16);
            let consumers: Vec<_> = (0..4)
                .map(|_| {
                    let rx = rx.clone();
                    std::thread::spawn(move || {
                        let (mut count, mut sum) = (0u64, 0u64);
                        while let Some(x) = rx.pop() {
                            count += 1;
                            sum += x;
                        }
                        (count, sum)
                    })
                })
                .collect();
            for mut x in 0..N {
                loop {
                    match tx.try_push(x) {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => {
                            x = back;
                            std::thread::yield_now();
                        }
                        Err(PushError::Closed(_)) => unreachable!("nobody closed it"),
                    }
                }
            }
            drop(tx);
            let (count, sum) = consumers
                .into_iter()
                .map(|c| c.join().unwrap())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            assert_eq!((count, sum), (N, N * (N - 1) / 2), "{kind:?}");
        }
    }

    /// `pop_timeout` gives up after its timeout on an empty queue, returns
    /// an item that is there, and reports a closed queue as closed.
    #[test]
    fn pop_timeout_times_out_returns_items_and_sees_close() {
        for kind in KINDS {
            let (tx, rx) = bounded::<u32>(kind, 4);
            assert_eq!(rx.pop_timeout(Duration::from_millis(10)), Pop::TimedOut);
            tx.try_push(5).unwrap();
            assert_eq!(rx.pop_timeout(Duration::from_secs(10)), Pop::Item(5));
            drop(tx);
            assert_eq!(rx.pop_timeout(Duration::from_secs(10)), Pop::Closed);
        }
    }

    /// A closed queue refuses new items.
    #[test]
    fn closed_queue_refuses() {
        let q = BoundedQueue::new(4);
        q.close();
        assert!(matches!(q.try_push(1), Err(PushError::Closed(1))));
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
    }
}

// ANCHOR: loom
/// Model checks: `loom` runs each body under every interleaving of its
/// threads (and every spurious wake-up). Run them with
/// `RUSTFLAGS="--cfg loom" cargo test -p stage3-threadpool --release --lib`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// Whatever the interleaving, every item pushed before the close is
    /// popped exactly once, in order, and the consumer then sees `None`.
    #[test]
    fn every_item_is_popped_once() {
        loom::model(|| {
            let q = Arc::new(BoundedQueue::new(2));
            let consumer = {
                let q = Arc::clone(&q);
                thread::spawn(move || std::iter::from_fn(|| q.pop()).collect::<Vec<u32>>())
            };
            assert!(q.try_push(1).is_ok());
            assert!(q.try_push(2).is_ok());
            q.close();
            assert_eq!(consumer.join().unwrap(), [1, 2]);
        });
    }

    /// Two workers, one item, then close: one gets the item, and *both*
    /// return. With `notify_one` in `close`, loom finds the interleaving in
    /// which the second worker sleeps forever and reports a deadlock.
    #[test]
    fn close_wakes_every_waiting_worker() {
        loom::model(|| {
            let q = Arc::new(BoundedQueue::new(1));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || std::iter::from_fn(|| q.pop()).count())
                })
                .collect();
            assert!(q.try_push(7u32).is_ok());
            q.close();
            let popped: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
            assert_eq!(popped, 1);
        });
    }

    /// A worker waiting with a timeout (as an idle worker of a self-sizing
    /// pool does) never loses an item pushed meanwhile: it either gets the
    /// item, or times out and the item is still in the queue for the next
    /// worker. A close is always seen.
    #[test]
    fn a_timed_pop_never_loses_an_item() {
        loom::model(|| {
            let q = Arc::new(BoundedQueue::new(1));
            let worker = {
                let q = Arc::clone(&q);
                thread::spawn(move || q.pop_timeout(std::time::Duration::from_millis(1)))
            };
            assert!(q.try_push(3u32).is_ok());
            match worker.join().unwrap() {
                Pop::Item(3) => assert!(q.is_empty()),
                Pop::TimedOut => assert_eq!(q.pop(), Some(3)),
                other => panic!("{other:?}"),
            }
            q.close();
            assert_eq!(
                q.pop_timeout(std::time::Duration::from_millis(1)),
                Pop::Closed
            );
        });
    }
}
// ANCHOR_END: loom
