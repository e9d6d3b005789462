//! One test at a time may hold thousands of connections.
//!
//! A test that opens thousands of sockets spends descriptors in two
//! processes: its own (the client ends) and the server's. The hard limit on
//! open files is finite (20,000 on the CI machine), and `cargo test` runs the
//! tests of one binary side by side in threads that share one descriptor
//! table, so two such tests at once can run out of descriptors and fail for
//! a reason that has nothing to do with the server. Other runners (two
//! `cargo test` invocations, `cargo nextest`) run test binaries side by side
//! too.
//!
//! [`many_connections`] takes an exclusive `flock(2)` on a file in the
//! temporary folder and returns a guard that holds it: every such test, in
//! any process, runs alone, and the lock is released when the guard drops,
//! even if the test panics (the kernel also releases it if the process
//! dies). A thread that already holds the lock may take it again (a test
//! that takes it and then starts a [`Slowloris`](super::abuse::Slowloris),
//! which takes it too): only the outermost guard locks and unlocks.

use std::cell::Cell;
use std::fs::File;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

thread_local! {
    /// How many guards this thread holds; the file is locked while it is
    /// above zero.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Holds the many-connections lock; dropping it releases the lock.
///
/// The guard is neither `Send` nor `Sync`: it must be dropped on the thread
/// that took it, which is what the per-thread nesting count relies on.
#[derive(Debug)]
pub struct ManyConnections {
    /// The locked file, for the outermost guard of a thread; `None` for a
    /// nested one.
    lock: Option<Flock<File>>,
    /// The soft open-files limit, raised to the hard limit.
    pub fd_limit: u64,
    /// Ties the guard to its thread (raw pointers are `!Send`).
    _not_send: std::marker::PhantomData<*const ()>,
}

/// The lock file every test process shares.
pub fn lock_path() -> PathBuf {
    std::env::temp_dir().join("five-servers-many-connections.lock")
}

/// Waits until no other test holds thousands of connections, raises this
/// process's soft open-files limit to the hard limit, and returns the guard.
/// Call it first in every test that opens more than a few hundred
/// connections.
pub fn many_connections() -> ManyConnections {
    // The soft limit is often 1,024; raising it to the hard limit needs no
    // privilege (as every server of ours does at start-up).
    let fd_limit = crate::limits::raise_fd_limit().unwrap_or(1024);
    let nested = DEPTH.with(|d| {
        let n = d.get();
        d.set(n + 1);
        n > 0
    });
    let lock = if nested { None } else { Some(take_lock()) };
    ManyConnections {
        lock,
        fd_limit,
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for ManyConnections {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        // Dropping the `Flock` unlocks the file.
        drop(self.lock.take());
    }
}

fn take_lock() -> Flock<File> {
    let path = lock_path();
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open the lock file {}: {e}", path.display()))
    };
    // Try without waiting first, so that a test that does wait says why it
    // seems to hang.
    match Flock::lock(open(), FlockArg::LockExclusiveNonblock) {
        Ok(lock) => return lock,
        Err((_, Errno::EWOULDBLOCK)) => eprintln!(
            "waiting for another test that holds many connections ({})",
            path.display()
        ),
        Err((_, e)) => panic!("cannot lock {}: {e}", path.display()),
    }
    let mut file = open();
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return lock,
            Err((f, Errno::EINTR)) => file = f,
            Err((_, e)) => panic!("cannot lock {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// While one thread holds the lock, another one waits for it; a nested
    /// guard on the holding thread does not deadlock; and the lock is free
    /// once the outer guard drops.
    #[test]
    fn the_lock_excludes_other_threads_and_nests() {
        let outer = many_connections();
        let inner = many_connections();
        assert!(inner.lock.is_none(), "a nested guard does not lock again");
        let (tx, rx) = mpsc::channel();
        let other = std::thread::spawn(move || {
            let _g = many_connections();
            tx.send(()).unwrap();
        });
        // The other thread must not get the lock while this one holds it.
        // A bounded wait for something that must not happen; the positive
        // case below waits for as long as it takes.
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "another thread took the lock while it was held"
        );
        drop(inner);
        assert!(
            rx.try_recv().is_err(),
            "dropping the nested guard released the lock"
        );
        drop(outer);
        rx.recv()
            .expect("the other thread gets the lock once it is free");
        other.join().unwrap();
    }
}
