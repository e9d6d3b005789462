//! The synchronization types the queue and the pool's sizer use: `std`'s
//! normally, `loom`'s when compiled with `--cfg loom`, so that the same
//! code can be model-checked. `loom` runs a test body under every
//! interleaving of its threads that matters, which is how a lost wake-up
//! is found in seconds instead of once a month in production.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
