//! The hot path allocates nothing: a repeated keep-alive `GET` of a small
//! cached file, through the whole sans-IO core (`Conn::next`: parse,
//! respond, access log), makes no heap allocation.
//!
//! This is its own test binary because it installs a counting global
//! allocator.

#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait: it counts, then defers to System"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use common::http::{Conn, Site, Step, cache};
use common::logging::AccessLog;

/// Counts allocations made by threads that switched counting on.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: the allocator may run while thread-locals are torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only an atomic and a const-initialized thread-local,
// neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`; `ptr` came from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A keep-alive `GET /small.txt`, answered 1000 times after a warm-up,
/// makes no allocation. The `Date` header is re-formatted (allocating a
/// `String` in `common::time`) once a second, so a run that crosses a
/// second boundary is repeated.
#[test]
fn cached_small_file_keep_alive_allocates_nothing() {
    let base: PathBuf =
        std::env::temp_dir().join(format!("filecache-alloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("small.txt"), "a small file, cached in memory\n").unwrap();
    // Contents are cached once a file has not changed for SETTLE_TIME.
    std::thread::sleep(cache::SETTLE_TIME + Duration::from_millis(50));

    let site = Site::new(&base, "alloc-test", None, AccessLog::disabled()).unwrap();
    let request = b"GET /small.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: test\r\n\r\n";
    let mut conn = Conn::new("127.0.0.1".parse().unwrap());
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut answer = |out: &mut Vec<u8>| {
        out.clear();
        let (used, step) = conn.next(request, &site, false, out);
        assert_eq!(used, request.len());
        match step {
            Step::Respond(reply) => {
                assert_eq!(reply.status, 200);
                assert!(reply.keep_alive);
                assert!(reply.file.is_none(), "the body comes from the cache");
            }
            other => panic!("unexpected step {other:?}"),
        }
    };
    for _ in 0..3 {
        answer(&mut out);
    }
    assert!(out.ends_with(b"\r\n\r\na small file, cached in memory\n"));

    let mut result = None;
    for _attempt in 0..5 {
        let second = unix_secs();
        let n = allocations_in(|| {
            for _ in 0..1000 {
                answer(&mut out);
            }
        });
        if unix_secs() == second {
            result = Some(n);
            break;
        }
    }
    let stats = cache::stats();
    let _ = std::fs::remove_dir_all(&base);
    assert_eq!(result, Some(0), "allocations in 1000 cached answers");
    assert!(stats.hits >= 1000, "{stats:?}");
    assert_eq!(stats.misses, 1, "{stats:?}");
}
