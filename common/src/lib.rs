//! `common`: everything the five servers share that is *not* their
//! concurrency model.
#![warn(missing_docs)]

pub mod config;
pub mod signals;
#[cfg(feature = "testkit")]
pub mod testkit;
