//! A per-thread cache of what the file system said about a request path.
//!
//! Answering `GET /index.html` from scratch costs about a dozen system calls
//! before a byte is sent: [`path::contain`](super::path::contain)
//! canonicalizes (a `readlink` per path component), the file is `stat`ed,
//! then its `.br` and `.gz` siblings, then it is opened and `fstat`ed, read
//! and closed. For a busy site the answer is the same thousands of times a
//! second. So each thread remembers, per raw request path:
//!
//! - the **outcome** of resolving it: a file to serve, a directory asked for
//!   without its slash (`301`), or nothing there (`404`). Outcomes that are
//!   rare or that depend on more than one file are not cached: `400` (the
//!   path is refused before the file system is asked, which is cheap),
//!   `403`, and directory listings;
//! - for a file: its MIME type, its canonical path, and for each
//!   precompressed sibling (`.br`, `.gz`) whether one exists;
//! - for each representation of at most [`SMALL_FILE`] bytes: its
//!   validators (length and modification time, for `ETag` and
//!   `Last-Modified`) and its **contents**, read once. Such an answer is
//!   written from memory: no `open`, no `read`, no `close`. Larger files are
//!   still opened for every request (the stage sends them with `sendfile`),
//!   but without resolving the path again.
//!
//! # Validity
//!
//! An entry is trusted for [`VALID_FOR`] (one second, like nginx's
//! `open_file_cache_valid`). The first request after that **revalidates**
//! it: one `stat` of the request's path under the root (which follows
//! symlinks to whatever the path names *now*), plus, when precompressed
//! files are served, one of each sibling name. If the device, inode, type,
//! permissions, length, modification time and change time are all as they
//! were, the entry is trusted for another second; if anything differs, or
//! the `stat` fails where it succeeded before (or the other way round), the
//! path is resolved again from scratch, with every check of
//! [`path`](super::path).
//!
//! The consequence, stated plainly: **a change on disk becomes visible
//! within one second, not at once.** A file edited in place, replaced by a
//! rename, or deleted; a symlink swapped to point elsewhere (or out of the
//! root); a sibling `.gz` added or removed — each is seen by the first
//! request after the entry's second is over, and until then the old answer
//! is served. Nothing is ever served that the uncached resolution did not
//! allow at the moment the entry was made, and the `stat` is taken
//! *before* the resolution it guards, so a change racing with the
//! resolution makes the next revalidation fail instead of being missed.
//!
//! Contents are cached only for a file whose change time is at least
//! [`SETTLE_TIME`] in the past. A file system stores times with a finite
//! granularity (a clock tick, or a whole second on some), so two writes in
//! quick succession can leave identical metadata; caching the bytes between
//! them would keep the first version for good ("racy git" has the same
//! problem). A file that changed a moment ago is opened per request, and its
//! entry is resolved afresh (not merely revalidated) after its window, until
//! the file has settled and its contents can be kept.
//!
//! One limit of revalidation: it compares the *file* the path names (device
//! and inode), not the route to it. If, within an entry's life, the path is
//! re-pointed to reach the same inode by another route — a hard link whose
//! other name lies outside the root, say — the entry stays valid. The file
//! was inside the root when it was resolved, so nothing outside is served;
//! but a change of route alone is only noticed when the entry is resolved
//! afresh.
//!
//! # Bounds
//!
//! At most [`MAX_ENTRIES`] paths and [`MAX_CONTENT_BYTES`] of contents per
//! thread. When an insertion would pass either, the cache is emptied and
//! starts over: crude, but bounded, and a flood of distinct paths costs the
//! misses it causes, never correctness. It is also emptied when the thread
//! serves a different [`Site`](super::Site) (another root, or precompressed
//! files switched on or off).
//!
//! # Why per thread
//!
//! Stage 3 runs a pool of threads, stage 4 one event loop per thread, and
//! stage 5 one loop per process: a thread-local cache needs no lock, and a
//! hot file is cached once per thread, which for a handful of threads is
//! cheap. Lookups do not allocate: the map is keyed by `Box<str>` and
//! looked up with the request's `&str`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long an entry is trusted before a request revalidates it.
pub const VALID_FOR: Duration = Duration::from_secs(1);
/// Representations up to this many bytes have their contents cached.
pub const SMALL_FILE: u64 = 16 * 1024;
/// Contents are cached only once the file has not changed for this long
/// (longer than any file system's timestamp granularity we expect).
pub const SETTLE_TIME: Duration = Duration::from_secs(1);
/// Most paths one thread remembers.
pub const MAX_ENTRIES: usize = 1024;
/// Most bytes of file contents one thread keeps.
pub const MAX_CONTENT_BYTES: usize = 4 * 1024 * 1024;

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

/// What `stat` says about a file, as far as a change would show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The result of one `stat` of a path: what revalidation compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The path names this file (symlinks followed).
    Found(Stamp),
    /// `stat` failed with this `errno` (`-1` if it had none).
    Failed(i32),
}

impl Probe {
    /// The probe for the result of `std::fs::metadata`.
    pub(crate) fn of(result: &io::Result<Metadata>) -> Probe {
        match result {
            Ok(meta) => Probe::Found(Stamp::of(meta)),
            Err(e) => Probe::Failed(e.raw_os_error().unwrap_or(-1)),
        }
    }

    /// Takes a fresh probe of `path`: one `stat`.
    pub(crate) fn take(path: &Path) -> Probe {
        Probe::of(&std::fs::metadata(path))
    }
}

/// The cached contents of a small representation, with the validators
/// they were read with (from the same open file).
#[derive(Debug)]
pub(crate) struct Contents {
    /// Modification time in seconds (for `ETag` and `Last-Modified`).
    pub(crate) mtime: u64,
    /// The bytes; their length is the representation's length.
    pub(crate) bytes: Arc<[u8]>,
}

/// One representation of a file: the file itself or a sibling.
#[derive(Debug)]
pub(crate) struct Rep {
    /// The canonical path, opened per request when there are no contents.
    pub(crate) path: PathBuf,
    /// The contents, if the file is small and had settled.
    pub(crate) contents: Option<Contents>,
}

/// A precompressed sibling slot (`.br` or `.gz`).
#[derive(Debug)]
pub(crate) struct Sibling {
    /// The `Content-Encoding` it stands for (`br`, `gzip`).
    pub(crate) coding: &'static str,
    /// The sibling's name: the canonical file path plus `.br` or `.gz`.
    pub(crate) probe_path: PathBuf,
    /// What `stat` said about that name before it was resolved.
    pub(crate) probe: Probe,
    /// The sibling, if it exists, is a file, and is inside the root.
    pub(crate) rep: Option<Rep>,
}

/// Everything needed to answer for one file without asking the disk.
#[derive(Debug)]
pub(crate) struct FileEntry {
    /// The MIME type, from the canonical name of the file itself.
    pub(crate) mime: &'static str,
    /// The file itself.
    pub(crate) plain: Rep,
    /// Its precompressed siblings in order of preference (empty when the
    /// site does not serve precompressed files).
    pub(crate) siblings: Vec<Sibling>,
    /// A small representation changed too recently for its contents to be
    /// cached: after the window the entry is resolved again (instead of
    /// revalidated), so that the contents are read once the file settled.
    pub(crate) unsettled: bool,
}

impl FileEntry {
    fn content_bytes(&self) -> usize {
        let len = |r: &Rep| r.contents.as_ref().map_or(0, |c| c.bytes.len());
        len(&self.plain)
            + self
                .siblings
                .iter()
                .filter_map(|s| s.rep.as_ref())
                .map(len)
                .sum::<usize>()
    }
}

/// What resolving a request path decided. Cloning is cheap (an `Arc`).
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Serve this file (possibly a directory's `index.html`).
    File(Arc<FileEntry>),
    /// A directory without the trailing slash: `301` to the slash.
    Redirect,
    /// Nothing to serve there: `404`.
    NotFound,
}

/// A freshly resolved outcome and the probe that guards it.
#[derive(Debug)]
pub(crate) struct Fresh {
    /// The outcome.
    pub(crate) outcome: Outcome,
    /// The path revalidation `stat`s: the request path under the root
    /// (plus `index.html` for a directory's index), not canonicalized, so
    /// that a swapped symlink shows.
    pub(crate) probe_path: PathBuf,
    /// What `stat` said about `probe_path` before the resolution.
    pub(crate) probe: Probe,
}

impl Fresh {
    /// One `stat` per file the outcome depends on; true if none changed.
    fn still_valid(&self) -> bool {
        if Probe::take(&self.probe_path) != self.probe {
            return false;
        }
        match &self.outcome {
            Outcome::File(f) => {
                !f.unsettled
                    && f.siblings
                        .iter()
                        .all(|s| Probe::take(&s.probe_path) == s.probe)
            }
            Outcome::Redirect | Outcome::NotFound => true,
        }
    }
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
pub(crate) fn lookup(root: &Path, precompressed: bool, raw: &str) -> Option<Outcome> {
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
pub(crate) fn insert(root: &Path, precompressed: bool, raw: &str, fresh: Fresh) -> Outcome {
    let outcome = fresh.outcome.clone();
    let _ = CACHE.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.bind(root, precompressed);
            c.insert(raw, fresh, now());
        }
    });
    outcome
}

/// Whether a file's last change is far enough in the past that caching its
/// contents is safe (see the module docs).
pub(crate) fn settled(meta: &Metadata) -> bool {
    let (Ok(secs), Ok(nanos)) = (
        u64::try_from(meta.ctime()),
        u32::try_from(meta.ctime_nsec()),
    ) else {
        return true;
    };
    let changed = UNIX_EPOCH + Duration::new(secs, nanos);
    wall_now()
        .duration_since(changed)
        .is_ok_and(|age| age >= SETTLE_TIME)
}

#[cfg(not(test))]
fn now() -> Instant {
    Instant::now()
}

#[cfg(not(test))]
fn wall_now() -> SystemTime {
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
    T: std::ops::Add<Duration, Output = T> + std::ops::Sub<Duration, Output = T>,
{
    let ms = SKEW_MS.with(std::cell::Cell::get);
    let by = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 { t + by } else { t - by }
}

#[cfg(test)]
fn now() -> Instant {
    skewed(Instant::now())
}

#[cfg(test)]
fn wall_now() -> SystemTime {
    skewed(SystemTime::now())
}

/// Sets this thread's cache clock to real time plus `ms` (tests only).
#[cfg(test)]
pub(crate) fn set_clock(ms: i64) {
    SKEW_MS.with(|s| s.set(ms));
}

/// Moves this thread's cache clock forward by `ms` (tests only).
#[cfg(test)]
pub(crate) fn advance_clock(ms: i64) {
    SKEW_MS.with(|s| s.set(s.get() + ms));
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};

    use super::{Stats, advance_clock, clear, set_clock, stats};
    use crate::http::parse::{self, Limits, Status};
    use crate::http::{Site, respond};
    use crate::logging::AccessLog;

    /// A fresh document root with a secret outside it; removed on drop.
    struct Root {
        base: PathBuf,
        root: PathBuf,
    }

    impl Root {
        fn new(name: &str) -> Root {
            let base = std::env::temp_dir().join(format!(
                "filecache-{}-{name}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&base);
            let root = base.join("root");
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(base.join("secret.txt"), "secret").unwrap();
            let root = root.canonicalize().unwrap();
            Root { base, root }
        }

        fn write(&self, rel: &str, data: impl AsRef<[u8]>) {
            let p = self.root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }

        fn site(&self) -> Site {
            Site::new(&self.root, "test", None, AccessLog::disabled()).unwrap()
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    /// One answer, as the wire would carry it (a file region read in), with
    /// the `Date` value blanked; and whether it came as a file region.
    fn ask(site: &Site, raw: &str) -> (String, bool) {
        let Ok(Status::Complete(req)) = parse::parse(raw.as_bytes(), &Limits::default()) else {
            panic!("not a complete request: {raw:?}");
        };
        let mut out = Vec::new();
        let reply = respond(&req, site, true, &mut out);
        let region = reply.file.is_some();
        if let Some(r) = reply.file {
            let start = out.len();
            out.resize(start + r.len as usize, 0);
            r.file.read_exact_at(&mut out[start..], r.offset).unwrap();
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        let blanked = text
            .split("\r\n")
            .map(|l| {
                if l.starts_with("Date: ") {
                    "Date: -"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        (blanked, region)
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
    }

    fn body(answer: &str) -> &str {
        answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    fn status(answer: &str) -> &str {
        &answer[9..12]
    }

    /// Counters since `before`.
    fn since(before: Stats) -> (u64, u64, u64) {
        let now = stats();
        (
            now.hits - before.hits,
            now.misses - before.misses,
            now.invalidations - before.invalidations,
        )
    }

    /// Files written by a test changed "just now"; most tests want them
    /// settled (contents cacheable), so they start the clock 2 s ahead.
    fn settled_clock() {
        set_clock(2_000);
        clear();
    }

    /// A repeated request is answered from the cache: one miss, then hits,
    /// the body written from memory (no file region), the bytes the same.
    #[test]
    fn repeated_requests_hit_the_cache() {
        let r = Root::new("hit");
        r.write("small.txt", "hello\n");
        let site = r.site();
        settled_clock();
        let before = stats();
        let (first, region) = ask(&site, &get("/small.txt"));
        assert!(!region, "a small settled file is served from memory");
        assert_eq!(body(&first), "hello\n");
        for _ in 0..5 {
            assert_eq!(ask(&site, &get("/small.txt")), (first.clone(), false));
        }
        assert_eq!(since(before), (5, 1, 0));
        assert_eq!(stats().content_bytes, 6);
    }

    /// Within its window an entry is trusted without touching the disk (a
    /// deleted file is still served); after it, one `stat` finds the file
    /// gone and the answer becomes 404.
    #[test]
    fn deleted_file_is_404_after_revalidation() {
        let r = Root::new("deleted");
        r.write("gone.txt", "soon gone\n");
        let site = r.site();
        settled_clock();
        assert_eq!(status(&ask(&site, &get("/gone.txt")).0), "200");
        std::fs::remove_file(r.root.join("gone.txt")).unwrap();
        let (within, _) = ask(&site, &get("/gone.txt"));
        assert_eq!(body(&within), "soon gone\n", "trusted within the window");
        advance_clock(1_100);
        let before = stats();
        assert_eq!(status(&ask(&site, &get("/gone.txt")).0), "404");
        assert_eq!(since(before), (0, 1, 1));
        // The 404 is cached too.
        assert_eq!(status(&ask(&site, &get("/gone.txt")).0), "404");
        assert_eq!(since(before), (1, 1, 1));
    }

    /// A file rewritten in place (same length, so only the times differ)
    /// or replaced by a rename is re-read after the window.
    #[test]
    fn modified_file_is_reread_after_the_window() {
        let r = Root::new("modified");
        r.write("f.txt", "version 1\n");
        let site = r.site();
        settled_clock();
        assert_eq!(body(&ask(&site, &get("/f.txt")).0), "version 1\n");
        r.write("f.txt", "version 2\n");
        assert_eq!(body(&ask(&site, &get("/f.txt")).0), "version 1\n");
        advance_clock(1_100);
        assert_eq!(body(&ask(&site, &get("/f.txt")).0), "version 2\n");

        r.write("new.txt", "version 3, longer\n");
        std::fs::rename(r.root.join("new.txt"), r.root.join("f.txt")).unwrap();
        advance_clock(1_100);
        assert_eq!(body(&ask(&site, &get("/f.txt")).0), "version 3, longer\n");
    }

    /// A file that changed a moment ago is opened per request, not read
    /// into memory; once it has settled, the next revalidation reads it.
    #[test]
    fn contents_are_cached_only_once_settled() {
        let r = Root::new("settle");
        r.write("new.txt", "fresh\n");
        let site = r.site();
        set_clock(0);
        clear();
        let before = stats();
        assert!(ask(&site, &get("/new.txt")).1, "a file region");
        assert!(
            ask(&site, &get("/new.txt")).1,
            "resolved once, opened again"
        );
        assert_eq!(since(before), (1, 1, 0));
        advance_clock(1_100);
        let (settled, region) = ask(&site, &get("/new.txt"));
        assert_eq!((body(&settled), region), ("fresh\n", false));
        assert_eq!(stats().content_bytes, 6);
    }

    /// A cached 404 notices a file created later; a cached file notices
    /// its symlink swapped, also to a target outside the root.
    #[test]
    fn creations_and_symlink_swaps_are_seen_after_the_window() {
        let r = Root::new("swap");
        r.write("a.txt", "a\n");
        r.write("b.txt", "b\n");
        let site = r.site();
        settled_clock();
        assert_eq!(status(&ask(&site, &get("/later.txt")).0), "404");
        r.write("later.txt", "here now\n");
        advance_clock(1_100);
        assert_eq!(body(&ask(&site, &get("/later.txt")).0), "here now\n");

        let link = r.root.join("link.txt");
        std::os::unix::fs::symlink(r.root.join("a.txt"), &link).unwrap();
        assert_eq!(body(&ask(&site, &get("/link.txt")).0), "a\n");
        let swap = |target: &Path| {
            let tmp = r.root.join("link.tmp");
            std::os::unix::fs::symlink(target, &tmp).unwrap();
            std::fs::rename(&tmp, &link).unwrap();
        };
        swap(&r.root.join("b.txt"));
        advance_clock(1_100);
        assert_eq!(body(&ask(&site, &get("/link.txt")).0), "b\n");
        swap(&r.base.join("secret.txt"));
        advance_clock(1_100);
        let (out, _) = ask(&site, &get("/link.txt"));
        assert_eq!(status(&out), "404");
        assert!(!out.contains("secret"));
    }

    /// A precompressed sibling added (or removed) later is seen after the
    /// window, although the file itself did not change.
    #[test]
    fn siblings_added_and_removed_are_seen() {
        let r = Root::new("sibling");
        r.write("page.html", "<p>plain</p>\n");
        let site = r.site();
        settled_clock();
        let gz = "GET /page.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n";
        let (plain, _) = ask(&site, gz);
        assert!(!plain.contains("Content-Encoding"));
        r.write("page.html.gz", "pretend gzip");
        advance_clock(1_100);
        let (zipped, _) = ask(&site, gz);
        assert!(zipped.contains("Content-Encoding: gzip\r\n"), "{zipped}");
        assert_eq!(body(&zipped), "pretend gzip");
        std::fs::remove_file(r.root.join("page.html.gz")).unwrap();
        advance_clock(1_100);
        assert_eq!(ask(&site, gz).0, plain);
    }

    /// Two sites with different roots in one thread never see each other's
    /// entries.
    #[test]
    fn different_roots_do_not_mix() {
        let one = Root::new("one");
        let two = Root::new("two");
        one.write("same.txt", "from one\n");
        two.write("same.txt", "from two\n");
        let (s1, s2) = (one.site(), two.site());
        settled_clock();
        for _ in 0..3 {
            assert_eq!(body(&ask(&s1, &get("/same.txt")).0), "from one\n");
            assert_eq!(body(&ask(&s2, &get("/same.txt")).0), "from two\n");
        }
        // Switching precompressed files off is another site too.
        let mut s3 = one.site();
        s3.precompressed = false;
        one.write("same.txt.gz", "zipped");
        let gz = "GET /same.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n";
        assert_eq!(body(&ask(&s3, gz).0), "from one\n");
        assert_eq!(body(&ask(&s1, gz).0), "zipped");
    }

    /// Large files are resolved once but opened per request and handed to
    /// the stage as a file region.
    #[test]
    fn large_files_are_resolved_once_and_sent_as_regions() {
        let r = Root::new("large");
        let big = vec![b'x'; super::SMALL_FILE as usize + 1];
        r.write("big.bin", &big);
        let site = r.site();
        settled_clock();
        let before = stats();
        let (a, region_a) = ask(&site, &get("/big.bin"));
        let (b, region_b) = ask(&site, &get("/big.bin"));
        assert!(region_a && region_b);
        assert_eq!(a, b);
        assert_eq!(body(&a).len(), big.len());
        assert_eq!(since(before), (1, 1, 0));
        assert_eq!(stats().content_bytes, 0);
    }

    /// The cache is bounded: past `MAX_ENTRIES` paths it starts over.
    #[test]
    fn the_cache_is_bounded() {
        let r = Root::new("bounded");
        let site = r.site();
        settled_clock();
        let before = stats();
        for i in 0..=super::MAX_ENTRIES {
            ask(&site, &get(&format!("/missing-{i}")));
        }
        assert_eq!(stats().clears - before.clears, 1);
        assert_eq!(stats().entries, 1);
    }

    /// A site with one of everything: index files, ranges, siblings, a
    /// large file, symlinks in and out of the root, a FIFO, a listing.
    fn fixture(name: &str) -> Root {
        let r = Root::new(name);
        r.write("index.html", "<p>index</p>\n");
        r.write("range.txt", "0123456789abcdefghij\n");
        r.write("style.css", "body{}\n");
        r.write("empty.txt", "");
        r.write("dir/index.html", "<p>dir</p>\n");
        r.write("list/a.txt", "a\n");
        r.write("gz/page.html", "<p>identity</p>\n");
        r.write("gz/page.html.gz", "pretend gzip");
        r.write("gz/page.html.br", "pretend brotli");
        r.write("big.bin", vec![7u8; 20_000]);
        std::os::unix::fs::symlink(r.root.join("range.txt"), r.root.join("link-in.txt")).unwrap();
        std::os::unix::fs::symlink(r.base.join("secret.txt"), r.root.join("link-out.txt")).unwrap();
        std::os::unix::fs::symlink(&r.base, r.root.join("link-out-dir")).unwrap();
        nix::unistd::mkfifo(&r.root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        r
    }

    /// Checks that `raw` gets the same answer three ways: resolved from
    /// scratch on a thread of its own whose clock is set back, so that no
    /// contents are cached and files are opened per request (what the
    /// server did before the cache); then on this thread, whose cache keeps
    /// what earlier calls put in it, twice (a miss or a hit, then a hit).
    fn same_three_ways(site: &Site, raw: &str) -> Result<(), String> {
        let reference = std::thread::scope(|s| {
            s.spawn(|| {
                set_clock(-10_000);
                ask(site, raw).0
            })
            .join()
            .unwrap()
        });
        let (first, _) = ask(site, raw);
        let (second, _) = ask(site, raw);
        if first != reference {
            return Err(format!("{raw:?}, first:\n{first}\n---\n{reference}"));
        }
        if second != reference {
            return Err(format!("{raw:?}, second:\n{second}\n---\n{reference}"));
        }
        Ok(())
    }

    /// Arbitrary paths built from the fixture's names, dot-segments and
    /// encoded separators get the same answer cached or not: the cache
    /// never serves what the resolver refuses.
    #[test]
    fn any_path_gets_the_same_answer_cached_or_not() {
        let r = fixture("anypath");
        let site = r.site();
        settled_clock();
        let names = [
            "index.html",
            "dir",
            "list",
            "a.txt",
            "gz",
            "page.html",
            "page.html.gz",
            "range.txt",
            "big.bin",
            "link-in.txt",
            "link-out.txt",
            "link-out-dir",
            "secret.txt",
            "fifo",
            ".",
            "..",
            "%2e%2e",
            "%2E",
            "a%2fb",
            "%00",
            "%5c",
            "x%20y",
            "",
        ];
        let names: Vec<String> = names.iter().map(|n| n.replace('.', "\\.")).collect();
        let strategy = format!("(/({})){{1,4}}/?", names.join("|"));
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            failure_persistence: None,
            ..Default::default()
        });
        runner
            .run(&strategy.as_str(), |raw| {
                same_three_ways(&site, &format!("GET {raw} HTTP/1.1\r\nHost: t\r\n\r\n"))
                    .map_err(proptest::test_runner::TestCaseError::fail)
            })
            .unwrap();
    }

    /// Every answer is the same whether the path is resolved from scratch
    /// with files opened per request (the clock set back, so no contents
    /// are cached: what the server did before the cache), resolved from
    /// scratch with contents read, or answered from the cache.
    #[test]
    fn cached_answers_equal_uncached_answers() {
        let r = fixture("same");
        let site = r.site();
        let meta = std::fs::metadata(r.root.join("range.txt")).unwrap();
        let etag = format!(
            "\"{:x}-{:x}\"",
            crate::time::unix_secs(meta.modified().unwrap()),
            meta.len()
        );
        let lm = crate::time::http_date(crate::time::unix_secs(meta.modified().unwrap()));
        let with = |path: &str, header: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n{header}\r\n\r\n")
        };
        let requests = [
            get("/"),
            get("/index.html"),
            "HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
            "GET /index.html HTTP/1.0\r\n\r\n".to_string(),
            get("/style.css"),
            get("/empty.txt"),
            get("/dir"),
            "GET /dir?x=1 HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
            get("/dir/"),
            get("/list/"),
            get("/missing"),
            get("/range.txt"),
            with("/range.txt", "Range: bytes=2-5"),
            with("/range.txt", "Range: bytes=-3"),
            with("/range.txt", "Range: bytes=0-1, 4-5"),
            with("/range.txt", "Range: bytes=50-"),
            with("/range.txt", &format!("If-None-Match: {etag}")),
            with("/range.txt", &format!("If-Modified-Since: {lm}")),
            with(
                "/range.txt",
                &format!("Range: bytes=1-2\r\nIf-Range: {etag}"),
            ),
            with("/range.txt", "Range: bytes=1-2\r\nIf-Range: \"stale\""),
            with("/gz/page.html", "Accept-Encoding: gzip, br"),
            with("/gz/page.html", "Accept-Encoding: gzip"),
            with("/gz/page.html", "Accept-Encoding: identity"),
            "HEAD /gz/page.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\n\r\n".to_string(),
            get("/big.bin"),
            with("/big.bin", "Range: bytes=100-199"),
            get("/link-in.txt"),
            get("/link-out.txt"),
            get("/fifo"),
            get("/../secret.txt"),
            get("/%2e%2e/secret.txt"),
            get("/a%2fb"),
            get("/index.html/"),
        ];
        settled_clock();
        for raw in &requests {
            if let Err(e) = same_three_ways(&site, raw) {
                panic!("{e}");
            }
        }
        // Small files were answered from memory on the hits.
        settled_clock();
        ask(&site, &get("/range.txt"));
        assert!(!ask(&site, &get("/range.txt")).1);
    }
}
