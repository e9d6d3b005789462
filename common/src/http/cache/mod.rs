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
//! # A layer over the plain path
//!
//! [`files`] answers a request by asking the file system every time;
//! [`serve`] answers exactly the same bytes with fewer system calls. It
//! does not resolve paths its own way: on a miss it takes a `stat` of the
//! path (the probe, below), runs the plain [`resolve`] step (the same
//! functions, in two halves around the probe), reads the contents of small
//! files, and remembers the outcome; on a hit it skips all of that. Either
//! way the answer is written by the plain path's last steps (conditionals,
//! ranges, head and body), given the file's contents or an opened file.
//! `--open-file-cache false` (`Site::open_file_cache`) switches the layer
//! off, to read the plain path alone or to measure what the cache is worth;
//! the conformance suite runs against every stage both ways.
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
//! serves a different [`Site`] (another root, or precompressed
//! files switched on or off).
//!
//! # Why per thread
//!
//! Stage 3 runs a pool of threads, stage 4 one event loop per thread, and
//! stage 5 one loop per process: a thread-local cache needs no lock, and a
//! hot file is cached once per thread, which for a handful of threads is
//! cheap. Lookups do not allocate: the map is keyed by `Box<str>` and
//! looked up with the request's `&str`.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::files::conditional::Validators;
use super::files::resolve::{self, Found, Resolved};
use super::files::{self, Body, Representation, listing, precompressed};
use super::parse::{Method, Request};
use super::path::PathError;
use super::response::Persist;
use super::site::{INDEX_FILE, Reply, Site, error};

mod store;
#[cfg(test)]
mod tests;

pub use store::{Stats, clear, stats};

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

/// Serves a GET or HEAD for a path under the root, as
/// [`files::serve`] does, from this thread's cache
/// when it can.
///
/// Only a miss (or an entry whose window is over and whose file changed)
/// goes to the file system, where every rule of [`path`](super::path)
/// applies.
pub fn serve(req: &Request<'_>, site: &Site, persist: Persist, out: &mut Vec<u8>) -> Reply {
    let head_only = req.method == Method::Head;
    let outcome = match store::lookup(&site.root, site.precompressed, req.path) {
        Some(outcome) => outcome,
        None => match resolve_miss(site, req.path) {
            Miss::Keep(fresh) => store::insert(&site.root, site.precompressed, req.path, fresh),
            Miss::Once(outcome) => outcome,
            Miss::WithoutIndex(dir) => {
                return listing::without_index(req, site, &dir, persist, out);
            }
            Miss::Refused(e) => return error(site, e.status(), persist, head_only, out),
        },
    };
    match outcome {
        Outcome::File(entry) => serve_entry(req, site, &entry, persist, out),
        Outcome::Redirect => files::redirect_to_slash(req, site, persist, head_only, out),
        Outcome::NotFound => error(site, PathError::NotFound.status(), persist, head_only, out),
    }
}

/// Answers for a remembered file: the plain path's choice of
/// representation, then its body from memory if the cache has the
/// contents, else from the file opened now (no path resolved).
fn serve_entry(
    req: &Request<'_>,
    site: &Site,
    entry: &FileEntry,
    persist: Persist,
    out: &mut Vec<u8>,
) -> Reply {
    let available = entry
        .siblings
        .iter()
        .filter_map(|s| Some((s.coding, s.rep.as_ref()?)));
    let choice = precompressed::choose(req.accept_encoding, &entry.plain, available);
    let (validators, body) = match &choice.rep.contents {
        Some(c) => (
            Validators {
                mtime: c.mtime,
                len: c.bytes.len() as u64,
            },
            Body::Bytes(&c.bytes),
        ),
        None => match resolve::open_regular(&choice.rep.path) {
            Ok((file, meta)) => (Validators::of(&meta), Body::File(file)),
            Err(e) => return files::open_failed(req, site, &e, persist, out),
        },
    };
    let rep = Representation {
        mime: entry.mime,
        coding: choice.coding,
        vary: choice.vary,
        validators,
    };
    files::answer(req, site, &rep, body, persist, out)
}

/// What `stat` says about a file, as far as a change would show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
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
enum Probe {
    /// The path names this file (symlinks followed).
    Found(Stamp),
    /// `stat` failed with this `errno` (`-1` if it had none).
    Failed(i32),
}

impl Probe {
    /// The probe for the result of `std::fs::metadata`.
    fn of(result: &io::Result<Metadata>) -> Probe {
        match result {
            Ok(meta) => Probe::Found(Stamp::of(meta)),
            Err(e) => Probe::Failed(e.raw_os_error().unwrap_or(-1)),
        }
    }

    /// Takes a fresh probe of `path`: one `stat`.
    fn take(path: &Path) -> Probe {
        Probe::of(&std::fs::metadata(path))
    }
}

/// The cached contents of a small representation, with the validators
/// they were read with (from the same open file).
#[derive(Debug)]
struct Contents {
    /// Modification time in seconds (for `ETag` and `Last-Modified`).
    mtime: u64,
    /// The bytes; their length is the representation's length.
    bytes: Arc<[u8]>,
}

/// One representation of a file, as the cache keeps it: the file itself
/// or a sibling.
#[derive(Debug)]
struct Rep {
    /// The canonical path, opened per request when there are no contents.
    path: PathBuf,
    /// The contents, if the file is small and had settled.
    contents: Option<Contents>,
}

/// A precompressed sibling slot (`.br` or `.gz`).
#[derive(Debug)]
struct Sibling {
    /// The `Content-Encoding` it stands for (`br`, `gzip`).
    coding: &'static str,
    /// The sibling's name: the canonical file path plus `.br` or `.gz`.
    probe_path: PathBuf,
    /// What `stat` said about that name before it was resolved.
    probe: Probe,
    /// The sibling, if it exists, is a file, and is inside the root.
    rep: Option<Rep>,
}

/// Everything needed to answer for one file without asking the disk.
#[derive(Debug)]
struct FileEntry {
    /// The MIME type, from the canonical name of the file itself.
    mime: &'static str,
    /// The file itself.
    plain: Rep,
    /// Its precompressed siblings in order of preference (empty when the
    /// site does not serve precompressed files).
    siblings: Vec<Sibling>,
    /// A small representation changed too recently for its contents to be
    /// cached: after the window the entry is resolved again (instead of
    /// revalidated), so that the contents are read once the file settled.
    unsettled: bool,
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
enum Outcome {
    /// Serve this file (possibly a directory's `index.html`).
    File(Arc<FileEntry>),
    /// A directory without the trailing slash: `301` to the slash.
    Redirect,
    /// Nothing to serve there: `404`.
    NotFound,
}

/// A freshly resolved outcome and the probe that guards it.
#[derive(Debug)]
struct Fresh {
    /// The outcome.
    outcome: Outcome,
    /// The path revalidation `stat`s: the request path under the root
    /// (plus `index.html` for a directory's index), not canonicalized, so
    /// that a swapped symlink shows.
    probe_path: PathBuf,
    /// What `stat` said about `probe_path` before the resolution.
    probe: Probe,
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

/// What resolving a request path on a miss found.
#[derive(Debug)]
enum Miss {
    /// An outcome to remember, with the probe that guards it.
    Keep(Fresh),
    /// An outcome to answer with but not to remember: the file system
    /// changed while it was being resolved.
    Once(Outcome),
    /// A directory without an index file, listed or refused (never cached:
    /// a listing depends on every entry of the directory).
    WithoutIndex(PathBuf),
    /// `400` or `403` (never cached: rare, and a `400` costs no system call).
    Refused(PathError),
}

/// Resolves a raw request path from scratch with the plain path's
/// [`resolve`] step, in its two halves: [`resolve::under_root`] (no system
/// call), then one `stat` of the joined path (the probe), then
/// [`resolve::resolve_joined`]. The probe is taken *first*, so that any
/// change racing with the resolution makes the entry's next revalidation
/// fail.
fn resolve_miss(site: &Site, raw: &str) -> Miss {
    let joined = match resolve::under_root(site, raw) {
        Ok(joined) => joined,
        Err(e) => return Miss::Refused(e),
    };
    let probe = Probe::take(&joined);
    let outcome = match resolve::resolve_joined(site, raw, &joined) {
        Resolved::File(file) => Outcome::File(Arc::new(file_entry(site, file))),
        Resolved::Redirect => Outcome::Redirect,
        // `404` is remembered (the common miss), `400`/`403` are not.
        Resolved::Refused(PathError::NotFound) => Outcome::NotFound,
        Resolved::Refused(e) => return Miss::Refused(e),
        Resolved::Directory(dir) => return index_miss(site, dir, joined, probe),
    };
    Miss::Keep(Fresh {
        outcome,
        probe_path: joined,
        probe,
    })
}

/// A directory asked for with its slash: the answer is its index file, so
/// the index's name is probed (before it is looked up) and guards the entry.
fn index_miss(site: &Site, dir: PathBuf, joined: PathBuf, probe: Probe) -> Miss {
    let index_joined = joined.join(INDEX_FILE);
    let index_probe = Probe::take(&index_joined);
    let Some(index) = resolve::index(site, &dir) else {
        return Miss::WithoutIndex(dir);
    };
    let outcome = Outcome::File(Arc::new(file_entry(site, index)));
    // The index was probed after the directory was canonicalized: if the
    // directory changed meanwhile (a swapped symlink), the probe may
    // describe another directory's index than the one resolved.
    if Probe::take(&joined) != probe {
        return Miss::Once(outcome);
    }
    Miss::Keep(Fresh {
        outcome,
        probe_path: index_joined,
        probe: index_probe,
    })
}

/// Gathers what answering for a resolved file needs: its MIME type, its
/// precompressed siblings (each with its probe), and the contents of small
/// representations.
fn file_entry(site: &Site, file: Found) -> FileEntry {
    let mime = resolve::mime_type(&file.path);
    let (plain, mut unsettled) = representation(file);
    let mut siblings = Vec::new();
    if site.precompressed {
        for (coding, ext) in precompressed::CODINGS {
            let probe_path = precompressed::sibling_name(&plain.path, ext);
            let stat = std::fs::metadata(&probe_path);
            let probe = Probe::of(&stat);
            let rep = precompressed::sibling_at(site, &probe_path, stat).map(|found| {
                let (rep, recent) = representation(found);
                unsettled |= recent;
                rep
            });
            siblings.push(Sibling {
                coding,
                probe_path,
                probe,
                rep,
            });
        }
    }
    FileEntry {
        mime,
        plain,
        siblings,
        unsettled,
    }
}

/// One representation; a small, settled file is read into memory now.
/// Also says whether it is small but changed too recently to be read.
fn representation(file: Found) -> (Rep, bool) {
    let path = file.path;
    if file.meta.len() > SMALL_FILE {
        return (
            Rep {
                path,
                contents: None,
            },
            false,
        );
    }
    let (contents, unsettled) = match read_small(&path) {
        Ok(contents) => (contents, false),
        Err(Unsettled) => (None, true),
    };
    (Rep { path, contents }, unsettled)
}

/// The file changed a moment ago: its contents are not cached yet.
#[derive(Debug)]
struct Unsettled;

/// Reads a small file whole, with the validators of the same open file.
/// `Ok(None)` (the file is then opened per request) if it cannot be read or
/// grew.
fn read_small(path: &Path) -> Result<Option<Contents>, Unsettled> {
    let Ok((file, meta)) = resolve::open_regular(path) else {
        return Ok(None);
    };
    if !settled(&meta) {
        return Err(Unsettled);
    }
    let Ok(len) = usize::try_from(meta.len()) else {
        return Ok(None);
    };
    if meta.len() > SMALL_FILE {
        return Ok(None);
    }
    let mut bytes = vec![0; len];
    if file.read_exact_at(&mut bytes, 0).is_err() {
        return Ok(None);
    }
    Ok(Some(Contents {
        mtime: Validators::of(&meta).mtime,
        bytes: bytes.into(),
    }))
}

/// Whether a file's last change is far enough in the past that caching its
/// contents is safe (see the module docs).
fn settled(meta: &Metadata) -> bool {
    let (Ok(secs), Ok(nanos)) = (
        u64::try_from(meta.ctime()),
        u32::try_from(meta.ctime_nsec()),
    ) else {
        return true;
    };
    let changed = UNIX_EPOCH + Duration::new(secs, nanos);
    store::wall_now()
        .duration_since(changed)
        .is_ok_and(|age| age >= SETTLE_TIME)
}
