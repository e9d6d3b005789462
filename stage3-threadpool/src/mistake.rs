//! The classic mistake of a hand-made thread pool, kept compiling so the
//! course can show it next to the fix, and a test can prove what it costs.
//!
//! Both workers below use the Rust Book's first design: one
//! `mpsc::Receiver` shared behind an `Arc<Mutex<_>>`. Only where the lock
//! guard dies differs. (Compiled for tests only; the server's own queue is
//! `queue::BoundedQueue`, whose `pop` returns the item by value.)
#![allow(
    clippy::unwrap_used,
    reason = "the Book's code as printed; poisoning does not matter here"
)]

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

/// A job, as in the Book.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

// ANCHOR: mistake
/// THE MISTAKE. The temporaries of a `while let` condition live until the
/// end of the loop body, and `lock()` returns one: the `MutexGuard`. So
/// this worker holds the lock while `job()` runs, and every other worker
/// waits for the lock instead of taking the next job. The pool has N
/// threads and runs one job at a time.
pub fn worker_holding_the_lock(receiver: Arc<Mutex<Receiver<Job>>>) {
    while let Ok(job) = receiver.lock().unwrap().recv() {
        job();
    }
}
// ANCHOR_END: mistake

// ANCHOR: fix
/// THE FIX. A `let` statement drops its temporaries at the semicolon: the
/// guard dies as soon as `recv` has returned, before the job runs.
pub fn worker_releasing_the_lock(receiver: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let message = receiver.lock().unwrap().recv();
        match message {
            Ok(job) => job(),
            Err(_) => break,
        }
    }
}
// ANCHOR_END: fix

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    /// Runs two workers of the given kind and two jobs: the first waits (up
    /// to `patience`) for the second to start. True if they overlapped.
    fn jobs_overlap(worker: fn(Arc<Mutex<Receiver<Job>>>), patience: Duration) -> bool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let rx = Arc::clone(&rx);
                thread::spawn(move || worker(rx))
            })
            .collect();
        let (b_started_tx, b_started_rx) = mpsc::channel();
        let (result_tx, result_rx) = mpsc::channel();
        tx.send(Box::new(move || {
            let overlapped = b_started_rx.recv_timeout(patience).is_ok();
            result_tx.send(overlapped).unwrap();
        }))
        .unwrap();
        tx.send(Box::new(move || {
            let _ = b_started_tx.send(());
        }))
        .unwrap();
        drop(tx);
        for w in workers {
            w.join().unwrap();
        }
        result_rx.recv().unwrap()
    }

    /// Holding the lock while running the job serializes the pool: the
    /// second job cannot start while the first one runs. (Proving that
    /// something does *not* happen needs a timeout: here 300 ms.)
    #[test]
    fn holding_the_lock_runs_one_job_at_a_time() {
        assert!(!jobs_overlap(
            worker_holding_the_lock,
            Duration::from_millis(300)
        ));
    }

    /// Releasing the lock before the job lets the two jobs run together;
    /// the timeout is only an upper bound here.
    #[test]
    fn releasing_the_lock_runs_jobs_in_parallel() {
        assert!(jobs_overlap(
            worker_releasing_the_lock,
            Duration::from_secs(10)
        ));
    }
}
