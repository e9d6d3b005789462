//! The synchronization types the queue uses: `std`'s normally, `loom`'s
//! when compiled with `--cfg loom`, so that the same queue code can be
//! model-checked. `loom` runs a test body under every interleaving of its
//! threads that matters, which is how a lost wake-up is found in seconds
//! instead of once a month in production.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
