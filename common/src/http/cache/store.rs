//! The thread-local map of the open-file cache: entries by raw request
//! path, their validity windows, the bounds, the figures, and the clock
//! (which unit tests move instead of sleeping).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::{Fresh, MAX_CONTENT_BYTES, MAX_ENTRIES, Outcome, VALID_FOR};

/// This thread's cache figures (for tests and curious operators).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered from an entry (trusted, or revalidated).
    pub hits: u64,
    /// Requests whose path was resolved from the file system.
    pub misses: u64,
    /// Entries checked again with `stat` after their window.
    pub revalidations: u64,
    /// Revalidations that found a change (the path was resolved again).
    pub invalidations: u64,
    /// Times the whole cache was emptied (full, or another site).
    pub clears: u64,
    /// Paths currently remembered.
    pub entries: usize,
    /// Bytes of file contents currently kept.
    pub content_bytes: usize,
}

/// This thread's figures.
pub fn stats() -> Stats {
    CACHE
        .try_with(|c| {
            c.try_borrow().map_or_else(
                |_| Stats::default(),
                |c| Stats {
                    entries: c.map.len(),
                    content_bytes: c.content_bytes,
                    ..c.stats
                },
            )
        })
        .unwrap_or_default()
}

/// Forgets every entry of this thread's cache (the counters stay).
pub fn clear() {
    let _ = CACHE.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.map.clear();
            c.content_bytes = 0;
        }
    });
}

struct Entry {
    fresh: Fresh,
    /// When the entry was made or last revalidated.
    checked: Instant,
    /// Its share of `content_bytes`.
    bytes: usize,
}

/// One thread's cache, bound to one site.
struct Cache {
    /// The site the entries belong to: its canonical root...
    root: PathBuf,
    /// ...and whether it serves precompressed siblings.
    precompressed: bool,
    map: HashMap<Box<str>, Entry>,
    content_bytes: usize,
    stats: Stats,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache {
        root: PathBuf::new(),
        precompressed: false,
        map: HashMap::new(),
        content_bytes: 0,
        stats: Stats::default(),
    });
}

impl Cache {
    /// Empties the cache if it was filled for another site.
    fn bind(&mut self, root: &Path, precompressed: bool) {
        if self.root.as_os_str() != root.as_os_str() || self.precompressed != precompressed {
            if !self.map.is_empty() {
                self.stats.clears += 1;
            }
            self.map.clear();
            self.content_bytes = 0;
            self.root = root.to_path_buf();
            self.precompressed = precompressed;
        }
    }

    fn lookup(&mut self, raw: &str, now: Instant) -> Option<Outcome> {
        let Some(entry) = self.map.get_mut(raw) else {
            self.stats.misses += 1;
            return None;
        };
        if now.saturating_duration_since(entry.checked) < VALID_FOR {
            self.stats.hits += 1;
            return Some(entry.fresh.outcome.clone());
        }
        self.stats.revalidations += 1;
        if entry.fresh.still_valid() {
            entry.checked = now;
            self.stats.hits += 1;
            return Some(entry.fresh.outcome.clone());
        }
        self.stats.invalidations += 1;
        self.stats.misses += 1;
        if let Some(old) = self.map.remove(raw) {
            self.content_bytes -= old.bytes;
        }
        None
    }

    fn insert(&mut self, raw: &str, fresh: Fresh, now: Instant) {
        let bytes = match &fresh.outcome {
            Outcome::File(f) => f.content_bytes(),
            Outcome::Redirect | Outcome::NotFound => 0,
        };
        if let Some(old) = self.map.remove(raw) {
            self.content_bytes -= old.bytes;
        }
        if self.map.len() >= MAX_ENTRIES || self.content_bytes + bytes > MAX_CONTENT_BYTES {
            self.stats.clears += 1;
            self.map.clear();
            self.content_bytes = 0;
        }
        if bytes > MAX_CONTENT_BYTES {
            return;
        }
        self.content_bytes += bytes;
        self.map.insert(
            raw.into(),
            Entry {
                fresh,
                checked: now,
                bytes,
            },
        );
    }
}

/// The cached outcome for `raw` under `root`, if there is a valid one
/// (revalidating it if its window is over). Counts a hit or a miss.
pub(super) fn lookup(root: &Path, precompressed: bool, raw: &str) -> Option<Outcome> {
    CACHE
        .try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            c.bind(root, precompressed);
            c.lookup(raw, now())
        })
        .ok()
        .flatten()
}

/// Remembers a fresh resolution of `raw`; returns its outcome to answer
/// with.
pub(super) fn insert(root: &Path, precompressed: bool, raw: &str, fresh: Fresh) -> Outcome {
    let outcome = fresh.outcome.clone();
    let _ = CACHE.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.bind(root, precompressed);
            c.insert(raw, fresh, now());
        }
    });
    outcome
}

#[cfg(not(test))]
fn now() -> Instant {
    Instant::now()
}

#[cfg(not(test))]
pub(super) fn wall_now() -> SystemTime {
    SystemTime::now()
}

// Unit tests age entries (and files) by moving this thread's clock instead
// of sleeping: forward to leave a validity window or let a file settle,
// backward to make every file look freshly changed (contents never cached).
#[cfg(test)]
thread_local! {
    static SKEW_MS: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn skewed<T>(t: T) -> T
where
    T: std::ops::Add<std::time::Duration, Output = T>
        + std::ops::Sub<std::time::Duration, Output = T>,
{
    let ms = SKEW_MS.with(std::cell::Cell::get);
    let by = std::time::Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 { t + by } else { t - by }
}

#[cfg(test)]
fn now() -> Instant {
    skewed(Instant::now())
}

#[cfg(test)]
pub(super) fn wall_now() -> SystemTime {
    skewed(SystemTime::now())
}

/// Sets this thread's cache clock to real time plus `ms` (tests only).
#[cfg(test)]
pub(super) fn set_clock(ms: i64) {
    SKEW_MS.with(|s| s.set(ms));
}

/// Moves this thread's cache clock forward by `ms` (tests only).
#[cfg(test)]
pub(super) fn advance_clock(ms: i64) {
    SKEW_MS.with(|s| s.set(s.get() + ms));
}
