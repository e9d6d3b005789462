//! The open-file cache's unit tests: hits and misses, what a change on
//! disk does and when it shows, the bounds, and that every answer is the
//! same with the cache and without it (the plain path of
//! [`files`](crate::http::files)).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::store::{advance_clock, set_clock};
use super::{MAX_ENTRIES, SMALL_FILE, Stats, clear, stats};
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

    /// The same site with the open-file cache switched off.
    fn plain_site(&self) -> Site {
        let mut site = self.site();
        site.open_file_cache = false;
        site
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
    let big = vec![b'x'; SMALL_FILE as usize + 1];
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
    for i in 0..=MAX_ENTRIES {
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

/// Checks that `raw` gets the same answer every way: from the plain path
/// (`plain` has the cache switched off: what `--open-file-cache false`
/// serves), the reference; through the cache on a thread of its own whose
/// clock is set back, so that no contents are cached and files are opened
/// per request; then on this thread, whose cache keeps what earlier calls
/// put in it, twice (a miss or a hit, then a hit).
fn same_every_way(cached: &Site, plain: &Site, raw: &str) -> Result<(), String> {
    let before = stats();
    let (reference, _) = ask(plain, raw);
    if (stats().hits, stats().misses) != (before.hits, before.misses) {
        return Err(format!("{raw:?}: the plain path used the cache"));
    }
    let cold = std::thread::scope(|s| {
        s.spawn(|| {
            set_clock(-10_000);
            ask(cached, raw).0
        })
        .join()
        .unwrap()
    });
    let (first, _) = ask(cached, raw);
    let (second, _) = ask(cached, raw);
    for (which, answer) in [("cold", cold), ("first", first), ("second", second)] {
        if answer != reference {
            return Err(format!(
                "{raw:?}, {which} answer through the cache:\n{answer}\n--- plain path:\n{reference}"
            ));
        }
    }
    Ok(())
}

/// Arbitrary paths built from the fixture's names, dot-segments and
/// encoded separators get the same answer cached or not: the cache
/// never serves what the resolver refuses.
#[test]
fn any_path_gets_the_same_answer_cached_or_not() {
    let r = fixture("anypath");
    let (site, plain) = (r.site(), r.plain_site());
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
            same_every_way(
                &site,
                &plain,
                &format!("GET {raw} HTTP/1.1\r\nHost: t\r\n\r\n"),
            )
            .map_err(proptest::test_runner::TestCaseError::fail)
        })
        .unwrap();
}

/// Every answer is the same whether it comes from the plain path (the
/// cache switched off), from the cache resolving from scratch with files
/// opened per request (the clock set back, so no contents are cached),
/// resolving from scratch with contents read, or from a cached entry.
#[test]
fn cached_answers_equal_uncached_answers() {
    let r = fixture("same");
    let (site, plain) = (r.site(), r.plain_site());
    let meta = std::fs::metadata(r.root.join("range.txt")).unwrap();
    let etag = format!(
        "\"{:x}-{:x}\"",
        crate::time::unix_secs(meta.modified().unwrap()),
        meta.len()
    );
    let lm = crate::time::http_date(crate::time::unix_secs(meta.modified().unwrap()));
    let with =
        |path: &str, header: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\n{header}\r\n\r\n");
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
        if let Err(e) = same_every_way(&site, &plain, raw) {
            panic!("{e}");
        }
    }
    // Small files were answered from memory on the hits.
    settled_clock();
    ask(&site, &get("/range.txt"));
    assert!(!ask(&site, &get("/range.txt")).1);
}

/// With the cache switched off every request asks the file system: the
/// cache's figures do not move, a small file is opened per request (a file
/// region, not bytes from memory), and a change on disk shows at once,
/// not after the cache's second.
#[test]
fn switched_off_every_request_asks_the_file_system() {
    let r = Root::new("off");
    r.write("f.txt", "version 1\n");
    let plain = r.plain_site();
    settled_clock();
    let before = stats();
    let (first, region) = ask(&plain, &get("/f.txt"));
    assert_eq!((body(&first), region), ("version 1\n", true));
    r.write("f.txt", "version 2\n");
    assert_eq!(body(&ask(&plain, &get("/f.txt")).0), "version 2\n");
    std::fs::remove_file(r.root.join("f.txt")).unwrap();
    assert_eq!(status(&ask(&plain, &get("/f.txt")).0), "404");
    assert_eq!(stats(), before);
}
