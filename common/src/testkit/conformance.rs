//! The shared conformance suite: black-box HTTP checks that every HTTP
//! stage must pass. Each stage's `tests/conformance.rs` calls [`run_suite`].
//!
//! The suite builds a fixture document root in a temporary folder (files of
//! every type, a listing folder with awkward names, symlinks that stay in and
//! that leave the root, a secret file just outside it, a FIFO, precompressed
//! siblings, a custom 404 page), starts the stage on port 0 with short
//! timeouts, and runs every check on fresh connections, one connection at a
//! time (so that stage 2, which serves one connection at a time, is tested
//! on the same terms).
//!
//! Besides status codes and headers, [`identical_to_core`] sends a list of
//! requests and compares the bytes on the wire with what the sans-IO core
//! in this crate produces for the same request in-process. That is how the
//! design's promise "stages 2–5 give byte-identical responses" is held:
//! each stage is identical to the core, hence to each other.
//!
//! Adding a case: write a `fn(&Ctx)` that panics on failure, and list it in
//! [`CHECKS`]. Every stage picks it up.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ServerProcess;
use super::client::{Client, Response, find, get};
use crate::http::{Conn, Site, Step};
use crate::logging::AccessLog;

/// What a check gets.
#[derive(Debug)]
pub struct Ctx {
    /// The server under test.
    pub addr: SocketAddr,
    /// The fixture root it serves.
    pub root: PathBuf,
    /// The access log file it writes.
    pub access_log: PathBuf,
    /// The binary under test and the arguments it was started with, for
    /// checks that need a second instance with other flags.
    pub bin: String,
    /// See `bin`.
    pub args: Vec<String>,
}

impl Ctx {
    /// Starts a second instance of the server under test, on the same
    /// fixture, with `extra` flags added and no access log (the caller
    /// stops it).
    pub fn start_variant(&self, extra: &[&str]) -> ServerProcess {
        let mut args: Vec<&str> = Vec::new();
        let mut given = self.args.iter().map(String::as_str);
        while let Some(a) = given.next() {
            if a == "--access-log" {
                given.next();
            } else {
                args.push(a);
            }
        }
        args.extend_from_slice(&["--access-log", "off"]);
        args.extend_from_slice(extra);
        ServerProcess::start(&self.bin, &args)
    }
}

/// The secret just outside the root; no response may ever contain it.
const SECRET: &str = "TOP-SECRET-4f1c9e";
/// A 20-byte file for range checks.
const RANGE_TXT: &str = "0123456789abcdefghij";
/// The fixture's custom 404 page.
const PAGE_404: &str = "<!DOCTYPE html><title>custom 404</title><p>fixture not-found page</p>\n";

/// A named check: it panics when the stage misbehaves.
pub type Check = (&'static str, fn(&Ctx));

/// Every check, by name. Adding one here adds it to every stage.
pub const CHECKS: &[Check] = &[
    ("get_index", get_index),
    (
        "head_has_get_headers_and_no_body",
        head_has_get_headers_and_no_body,
    ),
    ("keep_alive_http11", keep_alive_http11),
    ("http10_closes_by_default", http10_closes_by_default),
    ("http10_keep_alive_on_request", http10_keep_alive_on_request),
    ("connection_close_is_honoured", connection_close_is_honoured),
    ("pipelined_requests_in_order", pipelined_requests_in_order),
    (
        "body_on_get_is_skipped_not_parsed",
        body_on_get_is_skipped_not_parsed,
    ),
    (
        "body_split_across_writes_is_skipped",
        body_split_across_writes_is_skipped,
    ),
    (
        "chunked_body_then_pipelined_get",
        chunked_body_then_pipelined_get,
    ),
    (
        "chunked_body_split_at_every_byte",
        chunked_body_split_at_every_byte,
    ),
    (
        "chunked_body_too_large_gets_413",
        chunked_body_too_large_gets_413,
    ),
    (
        "chunked_body_malformed_gets_400",
        chunked_body_malformed_gets_400,
    ),
    (
        "framing_attacks_get_400_and_close",
        framing_attacks_get_400_and_close,
    ),
    ("malformed_heads_get_400", malformed_heads_get_400),
    ("limits_give_414_431_413", limits_give_414_431_413),
    ("versions", versions),
    ("methods_405_and_501", methods_405_and_501),
    ("traversal_never_leaks", traversal_never_leaks),
    ("symlinks", symlinks),
    ("fifo_is_not_opened", fifo_is_not_opened),
    (
        "directories_redirect_index_and_list",
        directories_redirect_index_and_list,
    ),
    (
        "file_followed_by_slash_is_404",
        file_followed_by_slash_is_404,
    ),
    ("mime_types", mime_types),
    ("conditional_requests", conditional_requests),
    (
        "no_caching_headers_by_default",
        no_caching_headers_by_default,
    ),
    (
        "expires_sets_max_age_and_expires",
        expires_sets_max_age_and_expires,
    ),
    (
        "cache_control_is_sent_verbatim",
        cache_control_is_sent_verbatim,
    ),
    ("ranges", ranges),
    ("precompressed_siblings", precompressed_siblings),
    ("error_pages", error_pages),
    ("api_add", api_add),
    ("large_file_read_slowly", large_file_read_slowly),
    (
        "junk_and_resets_leave_server_serving",
        junk_and_resets_leave_server_serving,
    ),
    ("header_timeout_gives_408", header_timeout_gives_408),
    (
        "stalled_chunked_body_gets_408",
        stalled_chunked_body_gets_408,
    ),
    ("idle_keep_alive_is_closed", idle_keep_alive_is_closed),
    ("head_split_across_writes", head_split_across_writes),
    ("identical_to_core", identical_to_core),
    ("access_log_lines", access_log_lines),
    ("curl_agrees", curl_agrees),
    ("status_page", status_page),
];

/// Runs every check against the binary `bin` (started with `extra_args` on
/// port 0), then stops it with SIGTERM and expects exit status 0. Panics
/// with the list of failed checks.
pub fn run_suite(bin: &str, extra_args: &[&str]) {
    let fixture = Fixture::create();
    let log = fixture.base.join("access.log");
    let root = fixture.root.display().to_string();
    let log_arg = log.display().to_string();
    let mut args = vec![
        "--root",
        &root,
        "--access-log",
        &log_arg,
        "--header-timeout",
        "1",
        "--keepalive-timeout",
        "1",
        "--send-timeout",
        "5",
        "--grace-period",
        "5",
    ];
    args.extend_from_slice(extra_args);
    let mut server = ServerProcess::start(bin, &args);
    let ctx = Ctx {
        addr: server.addr,
        root: fixture.root.clone(),
        access_log: log,
        bin: bin.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    let mut failures = Vec::new();
    for (name, check) in CHECKS {
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&ctx)));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name}: {msg}"));
        }
        eprintln!("conformance {name}: {:?}", started.elapsed());
    }
    let status = server.terminate();
    if !status.success() {
        failures.push(format!("graceful shutdown: exit status {status}"));
    }
    // A real log analyser reads every line of this run's access log.
    if let Err(e) = super::goaccess::check_log(&ctx.access_log) {
        failures.push(format!("goaccess reads the access log: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{} conformance check(s) failed for {bin}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The fixture document root, removed on drop.
#[derive(Debug)]
pub struct Fixture {
    /// The temporary folder (the secret lives here, outside the root).
    pub base: PathBuf,
    /// The document root.
    pub root: PathBuf,
}

impl Fixture {
    /// Builds the fixture in a fresh temporary folder.
    pub fn create() -> Fixture {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir().join(format!(
            "conformance-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        let w = |rel: &str, data: &[u8]| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(base.join("secret.txt"), SECRET).unwrap();
        w(
            "index.html",
            b"<!DOCTYPE html>\n<title>fixture</title>\n<p>fixture index</p>\n",
        );
        w("style.css", b"body { color: #123; }\n");
        w("app.js", b"console.log('fixture');\n");
        w("data.json", b"{\"fixture\": true}\n");
        w("logo.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n");
        w("pic.png", b"\x89PNG\r\n\x1a\nnot really a png");
        w("blob.zzqx", b"unknown type");
        w("range.txt", RANGE_TXT.as_bytes());
        w("empty.txt", b"");
        let big: Vec<u8> = (0..3 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        w("big.bin", &big);
        w("dir/index.html", b"<p>dir index</p>\n");
        w("list/b.txt", b"b\n");
        w("list/a&b <c>.txt", b"awkward\n");
        w("list/space name.txt", b"space\n");
        w("list/zdir/inner.txt", b"inner\n");
        w("gz/page.html", b"<p>identity</p>\n");
        w("gz/page.html.gz", b"pretend gzip bytes");
        w("gz/page.html.br", b"pretend brotli bytes");
        w("gz/only-gzip.txt", b"identity text\n");
        w("gz/only-gzip.txt.gz", b"gzip text bytes");
        w("errors/404.html", PAGE_404.as_bytes());
        w("caf\u{e9}.txt", b"accent\n");
        symlink(root.join("range.txt"), root.join("link-in.txt")).unwrap();
        symlink(base.join("secret.txt"), root.join("link-out.txt")).unwrap();
        symlink(&base, root.join("link-out-dir")).unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        Fixture { base, root }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
}

fn status_of(ctx: &Ctx, raw: &str) -> u16 {
    get(ctx.addr, raw).status
}

fn assert_status(ctx: &Ctx, raw: &str, expect: u16) -> Response {
    let r = get(ctx.addr, raw);
    assert_eq!(
        r.status, expect,
        "request {raw:?} gave {} {:?}",
        r.status, r.headers
    );
    r
}

fn get_index(ctx: &Ctx) {
    let r = assert_status(ctx, &req("/"), 200);
    assert_eq!(r.body, std::fs::read(ctx.root.join("index.html")).unwrap());
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.header("Content-Length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    assert!(r.header("ETag").is_some_and(|e| e.starts_with('"')));
    assert!(r.header("Server").is_some());
    let date = r.header("Date").expect("a Date header");
    let lm = r.header("Last-Modified").expect("Last-Modified");
    assert!(crate::time::parse_http_date(date).is_some(), "{date}");
    assert!(crate::time::parse_http_date(lm).is_some(), "{lm}");
}

fn head_has_get_headers_and_no_body(ctx: &Ctx) {
    let mut c = Client::connect(ctx.addr);
    c.send(
        b"HEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let head = c.response(true);
    let get = c.response(false);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let strip = |r: &Response| -> Vec<(String, String)> {
        r.headers
            .iter()
            .filter(|(n, _)| n != "Date")
            .cloned()
            .collect()
    };
    assert_eq!(strip(&head), strip(&get));
    assert_eq!(get.body, b"body { color: #123; }\n");
}

fn keep_alive_http11(ctx: &Ctx) {
    let mut c = Client::connect(ctx.addr);
    for _ in 0..3 {
        c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), None);
        assert_eq!(r.body, RANGE_TXT.as_bytes());
    }
}

fn http10_closes_by_default(ctx: &Ctx) {
    let mut c = Client::connect(ctx.addr);
    c.send(b"GET /range.txt HTTP/1.0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(
        c.closed(),
        "an HTTP/1.0 connection without keep-alive must close"
    );
}

fn http10_keep_alive_on_request(ctx: &Ctx) {
    let mut c = Client::connect(ctx.addr);
    c.send(b"GET /range.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.header("Connection"), Some("keep-alive"));
    c.send(b"GET /style.css HTTP/1.0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 200);
    assert!(c.closed());
}

fn connection_close_is_honoured(ctx: &Ctx) {
    let mut c = Client::connect(ctx.addr);
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());
}

fn pipelined_requests_in_order(ctx: &Ctx) {
    let mut c = Client::connect(ctx.addr);
    c.send(
        b"GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\nHEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /data.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
          GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.response(false).body, RANGE_TXT.as_bytes());
    let h = c.response(true);
    assert_eq!((h.status, h.body.len()), (200, 0));
    assert_eq!(c.response(false).status, 404);
    let last = c.response(false);
    assert_eq!(last.body, b"{\"fixture\": true}\n");
    assert!(
        c.closed(),
        "nothing may be answered after Connection: close"
    );
}

fn body_on_get_is_skipped_not_parsed(ctx: &Ctx) {
    // The body looks like a request; it must be skipped as a body.
    let smuggled = "GET /data.json HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut c = Client::connect(ctx.addr);
    let first = format!(
        "GET /range.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    c.send(first.as_bytes());
    c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(false).body, RANGE_TXT.as_bytes());
    let second = c.response(false);
    assert_eq!(
        second.body, b"body { color: #123; }\n",
        "the body was parsed as a request"
    );
    assert!(c.closed());
}

fn body_split_across_writes_is_skipped(ctx: &Ctx) {
    let mut c = Client::connect(ctx.addr);
    c.send(b"POST /range.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
    let r = c.response(false);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    c.send(b"56789GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response(false).body, RANGE_TXT.as_bytes());
}

/// A chunked request body (RFC 9112 7.1), with an extension and a trailer.
const CHUNKED_POST: &str = "POST /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
    5;note=x\r\nhello\r\nB\r\n, chunked!!\r\n0\r\nX-Trailer: 1\r\n\r\n";

fn chunked_body_then_pipelined_get(ctx: &Ctx) {
    // The body is decoded, so the request behind it is found and answered
    // on the same connection (the response to the POST keeps it open).
    let mut c = Client::connect(ctx.addr);
    c.send(CHUNKED_POST.as_bytes());
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(
        r.header("Connection"),
        None,
        "the connection must stay open"
    );
    let r = c.response(false);
    assert_eq!(
        (r.status, &r.body[..]),
        (200, RANGE_TXT.as_bytes()),
        "the request after a chunked body"
    );
    // A chunked body on a GET is read and ignored, like a Content-Length one.
    c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nGET\r\n0\r\n\r\n");
    c.send(b"GET /data.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(false).body, b"body { color: #123; }\n");
    assert_eq!(c.response(false).body, b"{\"fixture\": true}\n");
    assert!(c.closed());
}

fn chunked_body_split_at_every_byte(ctx: &Ctx) {
    // Each split point of the body goes out as two segments (Nagle is off),
    // so the server sees the body end in a later read than it began.
    let head_len = CHUNKED_POST.find("\r\n\r\n").unwrap() + 4;
    let next = "GET /range.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let whole = format!("{CHUNKED_POST}{next}");
    for cut in head_len..CHUNKED_POST.len() + 1 {
        let mut c = Client::connect(ctx.addr);
        c.send(&whole.as_bytes()[..cut]);
        c.send(&whole.as_bytes()[cut..]);
        let r = c.response(false);
        assert_eq!(r.status, 405, "split at byte {cut}: {r:?}");
        let r = c.response(false);
        assert_eq!(r.body, RANGE_TXT.as_bytes(), "split at byte {cut}");
        assert!(c.closed(), "split at byte {cut}");
    }
}

fn chunked_body_too_large_gets_413(ctx: &Ctx) {
    // The limit (--max-body, 1 MiB by default) counts decoded bytes: one
    // chunk that is too large, and chunks that only together are.
    let one = "GET /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n";
    let mut c = Client::connect(ctx.addr);
    c.send(one.as_bytes());
    let r = c.response(false);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());
    // Closed on our side too, so that a sequential server is not left
    // lingering on it.
    drop(c);

    let mut c = Client::connect(ctx.addr);
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n80000\r\n");
    c.send(&vec![b'x'; 0x80000]);
    c.send(b"\r\n80000\r\n");
    c.send(&vec![b'y'; 0x80000]);
    c.send(b"\r\n1\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 413, "2 x 512 KiB + 1 byte: {r:?}");
    assert!(c.closed());
}

fn chunked_body_malformed_gets_400(ctx: &Ctx) {
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffff\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "3\r\nhello\r\n0\r\n\r\n",
        "\r\n\r\n",
        "5;a\x01b\r\nhello\r\n0\r\n\r\n",
        "0\r\nX-Trailer: 1\n\r\n",
    ] {
        let mut c = Client::connect(ctx.addr);
        let raw = format!(
            "GET /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        c.send(raw.as_bytes());
        c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.status, 400, "body {body:?}: {r:?}");
        assert_eq!(r.header("Connection"), Some("close"), "body {body:?}");
        assert!(c.closed(), "body {body:?}: the connection must close");
    }
    // The answer to a HEAD has no body, an error's neither (found by the
    // fuzzer): after the head, the connection just closes.
    let mut c = Client::connect(ctx.addr);
    c.send(b"HEAD /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX");
    let r = c.response(true);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(c.closed(), "bytes after the head of a 400 to a HEAD");
}

fn framing_attacks_get_400_and_close(ctx: &Ctx) {
    for raw in [
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let mut c = Client::connect(ctx.addr);
        c.send(raw.as_bytes());
        let r = c.response(false);
        assert_eq!(r.status, 400, "{raw:?}");
        assert_eq!(r.header("Connection"), Some("close"), "{raw:?}");
        assert!(c.closed(), "{raw:?}: the connection must close");
    }
}

fn file_followed_by_slash_is_404(ctx: &Ctx) {
    // A file is not a directory: serving it under a trailing slash would
    // break every relative link on the page (nginx and Apache say 404).
    for path in [
        "/style.css/",
        "/dir/index.html/",
        "/style.css/.",
        "/style.css/%2e",
        "/list/b.txt/",
        "/link-in.txt/",
    ] {
        let r = assert_status(ctx, &req(path), 404);
        assert_eq!(r.body, PAGE_404.as_bytes(), "{path}");
    }
    assert_status(ctx, &req("/dir/"), 200);
    assert_status(ctx, &req("/style.css"), 200);
}

fn malformed_heads_get_400(ctx: &Ctx) {
    for raw in [
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Fold: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : t\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET nopath HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTQ/1.1\r\nHost: t\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\x03\x03\r\n\r\n",
    ] {
        assert_eq!(status_of(ctx, raw), 400, "{raw:?}");
    }
}

fn limits_give_414_431_413(ctx: &Ctx) {
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    assert_status(ctx, &long, 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(17000)
    );
    assert_status(ctx, &big, 431);
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_status(
        ctx,
        &format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n"),
        431,
    );
    assert_status(
        ctx,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
        413,
    );
}

fn versions(ctx: &Ctx) {
    assert_status(ctx, "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    assert_status(ctx, "GET / HTTP/1.0\r\n\r\n", 200);
    // Empty lines before a request line are ignored (RFC 9112 2.2).
    assert_status(
        ctx,
        "\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        200,
    );
    // Absolute-form targets are served by path.
    assert_status(
        ctx,
        "GET http://t/range.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        200,
    );
}

fn methods_405_and_501(ctx: &Ctx) {
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"] {
        let r = assert_status(
            ctx,
            &format!("{m} /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
            405,
        );
        assert_eq!(r.header("Allow"), Some("GET, HEAD"), "{m}");
    }
    assert_status(
        ctx,
        "BREW /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        501,
    );
}

fn traversal_never_leaks(ctx: &Ctx) {
    for path in [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/..%5csecret.txt",
        "/%252e%252e/secret.txt",
        "/dir/../../secret.txt",
        "/./../secret.txt",
        "//../secret.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/..;/secret.txt",
        "/link-out.txt",
        "/link-out-dir/secret.txt",
        "/index.html%00.txt",
        "http://t/../secret.txt",
    ] {
        let mut c = Client::connect(ctx.addr);
        c.send(req(path).as_bytes());
        let all = c.read_to_end();
        assert!(
            find(&all, SECRET.as_bytes()).is_none(),
            "{path} leaked the secret"
        );
        let status = std::str::from_utf8(&all[..12.min(all.len())]).unwrap_or("");
        assert!(
            status.starts_with("HTTP/1.1 400") || status.starts_with("HTTP/1.1 404"),
            "{path}: {status:?}"
        );
    }
}

fn symlinks(ctx: &Ctx) {
    let r = assert_status(ctx, &req("/link-in.txt"), 200);
    assert_eq!(r.body, RANGE_TXT.as_bytes());
    assert_status(ctx, &req("/link-out.txt"), 404);
}

fn fifo_is_not_opened(ctx: &Ctx) {
    // Opening a FIFO for reading blocks until a writer appears: a server
    // that tried would hang here until the read timeout.
    assert_status(ctx, &req("/fifo"), 404);
    assert_status(ctx, &req("/range.txt"), 200);
}

fn directories_redirect_index_and_list(ctx: &Ctx) {
    let r = assert_status(ctx, &req("/dir"), 301);
    assert_eq!(r.header("Location"), Some("/dir/"));
    let r = assert_status(ctx, &req("/list?x=1"), 301);
    assert_eq!(r.header("Location"), Some("/list/?x=1"));
    // Never a scheme-relative Location (`//host/`): an open redirect.
    let r = assert_status(ctx, &req("//list"), 301);
    assert_eq!(r.header("Location"), Some("/list/"));
    let r = assert_status(ctx, &req("//."), 301);
    assert_eq!(r.header("Location"), Some("/"));
    for attack in ["//evil.example/..", "/\\evil.example/.."] {
        let r = assert_status(ctx, &req(attack), 301);
        assert_eq!(r.header("Location"), Some("/"), "{attack}");
    }
    let r = assert_status(ctx, &req("/dir/"), 200);
    assert_eq!(r.body, b"<p>dir index</p>\n");
    let r = assert_status(ctx, &req("/list/"), 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    let pos = |s: &str| {
        html.find(s)
            .unwrap_or_else(|| panic!("listing lacks {s:?}:\n{html}"))
    };
    // Directories first, then files in name order.
    let zdir = pos("href=\"zdir/\"");
    let awkward = pos("href=\"a%26b%20%3Cc%3E.txt\"");
    let b = pos("href=\"b.txt\"");
    let space = pos("href=\"space%20name.txt\"");
    assert!(zdir < awkward && awkward < b && b < space, "order:\n{html}");
    assert!(
        html.contains("a&amp;b &lt;c&gt;.txt"),
        "names must be HTML-escaped:\n{html}"
    );
    assert!(!html.contains("<c>"), "raw name leaked into HTML");
    // The links work.
    assert_status(ctx, &req("/list/a%26b%20%3Cc%3E.txt"), 200);
    assert_status(ctx, &req("/caf%C3%A9.txt"), 200);
}

fn mime_types(ctx: &Ctx) {
    for (path, ty) in [
        ("/style.css", "text/css; charset=utf-8"),
        ("/data.json", "application/json; charset=utf-8"),
        ("/logo.svg", "image/svg+xml; charset=utf-8"),
        ("/pic.png", "image/png"),
        ("/range.txt", "text/plain; charset=utf-8"),
        ("/blob.zzqx", "application/octet-stream"),
    ] {
        let r = assert_status(ctx, &req(path), 200);
        assert_eq!(r.header("Content-Type"), Some(ty), "{path}");
    }
    let js = assert_status(ctx, &req("/app.js"), 200);
    let ty = js.header("Content-Type").unwrap_or("");
    assert!(ty.ends_with("javascript; charset=utf-8"), "{ty}");
}

fn conditional_requests(ctx: &Ctx) {
    let r = assert_status(ctx, &req("/range.txt"), 200);
    let etag = r.header("ETag").unwrap().to_string();
    let lm = r.header("Last-Modified").unwrap().to_string();
    let cond =
        |h: &str| format!("GET /range.txt HTTP/1.1\r\nHost: t\r\n{h}\r\nConnection: close\r\n\r\n");
    let nm = assert_status(ctx, &cond(&format!("If-None-Match: {etag}")), 304);
    assert!(nm.body.is_empty());
    assert_eq!(nm.header("ETag"), Some(etag.as_str()));
    assert_status(
        ctx,
        &cond(&format!("If-None-Match: \"other\", W/{etag}")),
        304,
    );
    assert_status(ctx, &cond("If-None-Match: *"), 304);
    assert_status(ctx, &cond("If-None-Match: \"other\""), 200);
    assert_status(ctx, &cond(&format!("If-Modified-Since: {lm}")), 304);
    assert_status(
        ctx,
        &cond("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"),
        200,
    );
    assert_status(ctx, &cond("If-Modified-Since: not a date"), 200);
    // If-None-Match takes precedence over If-Modified-Since.
    assert_status(
        ctx,
        &cond(&format!(
            "If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}"
        )),
        200,
    );
    // HEAD is conditional too.
    let mut c = Client::connect(ctx.addr);
    c.send(
        format!("HEAD /range.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
    );
    assert_eq!(c.response(true).status, 304);
}

fn no_caching_headers_by_default(ctx: &Ctx) {
    // As nginx: without --expires or --cache-control, clients revalidate
    // with the validators (or use a heuristic of their own).
    let r = assert_status(ctx, &req("/style.css"), 200);
    assert_eq!(r.header("Cache-Control"), None);
    assert_eq!(r.header("Expires"), None);
}

/// `Expires` must be `Date` plus `secs`, and `Cache-Control` `max-age=secs`
/// (or `cache_control` when given).
fn assert_fresh_for(r: &Response, secs: u64, cache_control: &str, what: &str) {
    let date = r.header("Date").and_then(crate::time::parse_http_date);
    let expires = r.header("Expires").and_then(crate::time::parse_http_date);
    let (Some(date), Some(expires)) = (date, expires) else {
        panic!("{what}: no valid Date and Expires: {:?}", r.headers);
    };
    assert_eq!(expires, date + secs, "{what}: Expires is not Date + {secs}");
    assert_eq!(r.header("Cache-Control"), Some(cache_control), "{what}");
}

fn expires_sets_max_age_and_expires(ctx: &Ctx) {
    let mut server = ctx.start_variant(&["--expires", "600"]);
    let at = |raw: &str| get(server.addr, raw);
    let ok = at(&req("/style.css"));
    assert_eq!(ok.status, 200);
    assert_fresh_for(&ok, 600, "max-age=600", "200");
    let etag = ok.header("ETag").unwrap().to_string();
    let not_modified = at(&format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(not_modified.status, 304);
    assert_fresh_for(&not_modified, 600, "max-age=600", "304");
    let part =
        at("GET /range.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n");
    assert_eq!(part.status, 206);
    assert_fresh_for(&part, 600, "max-age=600", "206");
    // Errors, redirects and listings are not static files.
    for (path, status) in [("/nope", 404), ("/dir", 301), ("/list/", 200)] {
        let r = at(&req(path));
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("Expires"), None, "{path}");
        assert_eq!(r.header("Cache-Control"), None, "{path}");
    }
    assert!(server.terminate().success());
}

fn cache_control_is_sent_verbatim(ctx: &Ctx) {
    let value = "public, max-age=60, immutable";
    let mut server = ctx.start_variant(&["--cache-control", value]);
    let r = get(server.addr, &req("/style.css"));
    assert_eq!(r.header("Cache-Control"), Some(value));
    assert_eq!(r.header("Expires"), None);
    assert!(server.terminate().success());
    // Both: the verbatim value replaces max-age; Expires stays.
    let mut server = ctx.start_variant(&["--expires", "30", "--cache-control", "no-cache"]);
    let r = get(server.addr, &req("/style.css"));
    assert_fresh_for(&r, 30, "no-cache", "--expires 30 --cache-control no-cache");
    assert!(server.terminate().success());
}

fn ranges(ctx: &Ctx) {
    let range = |spec: &str| {
        get(
            ctx.addr,
            &format!(
                "GET /range.txt HTTP/1.1\r\nHost: t\r\nRange: {spec}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    for (spec, body, cr) in [
        ("bytes=0-4", "01234", "bytes 0-4/20"),
        ("bytes=15-", "fghij", "bytes 15-19/20"),
        ("bytes=-3", "hij", "bytes 17-19/20"),
        ("bytes=18-100", "ij", "bytes 18-19/20"),
    ] {
        let r = range(spec);
        assert_eq!(r.status, 206, "{spec}");
        assert_eq!(r.text(), body, "{spec}");
        assert_eq!(r.header("Content-Range"), Some(cr), "{spec}");
    }
    let r = range("bytes=20-");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */20"));
    assert_eq!(range("bytes=5-2").status, 200, "invalid ranges are ignored");
    assert_eq!(range("lines=1-2").status, 200);
    let r = range("bytes=0-1,5-6");
    assert_eq!(r.status, 206);
    let ty = r.header("Content-Type").unwrap().to_string();
    let boundary = ty
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart type")
        .to_string();
    let text = r.text();
    assert!(
        text.contains("Content-Range: bytes 0-1/20\r\n\r\n01\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Range: bytes 5-6/20\r\n\r\n56\r\n"),
        "{text}"
    );
    assert!(text.ends_with(&format!("--{boundary}--\r\n")), "{text}");
    // If-Range: a matching validator keeps the range, a stale one gets 200.
    let etag = get(ctx.addr, &req("/range.txt"))
        .header("ETag")
        .unwrap()
        .to_string();
    let ir = |v: &str| {
        get(
            ctx.addr,
            &format!(
                "GET /range.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\nIf-Range: {v}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    assert_eq!(ir(&etag).status, 206);
    assert_eq!(ir("\"stale\"").status, 200);
    // A range on HEAD is ignored.
    let mut c = Client::connect(ctx.addr);
    c.send(b"HEAD /range.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\n\r\n");
    assert_eq!(c.response(true).status, 200);
    // Close it: stage 2 serves one connection at a time.
    drop(c);
    // A range in a large file.
    let r = get(
        ctx.addr,
        "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000000-1000009\r\nConnection: close\r\n\r\n",
    );
    let big = std::fs::read(ctx.root.join("big.bin")).unwrap();
    assert_eq!(r.body, &big[1_000_000..1_000_010]);
}

fn precompressed_siblings(ctx: &Ctx) {
    let ae = |path: &str, enc: &str| {
        get(
            ctx.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {enc}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    let r = ae("/gz/page.html", "gzip, deflate, br");
    assert_eq!(
        (r.header("Content-Encoding"), r.text().as_str()),
        (Some("br"), "pretend brotli bytes")
    );
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let r = ae("/gz/page.html", "gzip");
    assert_eq!(
        (r.header("Content-Encoding"), r.text().as_str()),
        (Some("gzip"), "pretend gzip bytes")
    );
    let r = ae("/gz/page.html", "identity");
    assert_eq!(
        (r.header("Content-Encoding"), r.text().as_str()),
        (None, "<p>identity</p>\n")
    );
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    let r = ae("/gz/only-gzip.txt", "br, gzip;q=0");
    assert_eq!(r.header("Content-Encoding"), None);
    let r = ae("/range.txt", "gzip");
    assert_eq!(
        (r.header("Content-Encoding"), r.header("Vary")),
        (None, None)
    );
}

fn error_pages(ctx: &Ctx) {
    let r = assert_status(ctx, &req("/no/such/file"), 404);
    assert_eq!(r.text(), PAGE_404);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    // No custom 405 page: the built-in one.
    let r = assert_status(
        ctx,
        "DELETE / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        405,
    );
    assert!(r.text().contains("405 Method Not Allowed"), "{}", r.text());
    // HEAD of an error: headers only.
    let mut c = Client::connect(ctx.addr);
    c.send(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.response(true);
    assert_eq!(h.status, 404);
    assert_eq!(
        h.header("Content-Length"),
        Some(PAGE_404.len().to_string().as_str())
    );
    assert_eq!(
        c.response(false).body,
        RANGE_TXT.as_bytes(),
        "HEAD must not send the error body"
    );
}

fn api_add(ctx: &Ctx) {
    let r = assert_status(ctx, &req("/api/add?a=2&b=40"), 200);
    assert_eq!(r.text(), "{\"a\":2,\"b\":40,\"sum\":42}\n");
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    let r = assert_status(ctx, &req("/api/add?a=-7&b=%2B3"), 200);
    assert_eq!(r.text(), "{\"a\":-7,\"b\":3,\"sum\":-4}\n");
    for q in [
        "",
        "?a=1",
        "?a=x&b=1",
        "?a=9223372036854775807&b=1",
        "?a=1.5&b=1",
    ] {
        let r = assert_status(ctx, &req(&format!("/api/add{q}")), 400);
        assert!(r.text().starts_with("{\"error\":"), "{q}: {}", r.text());
    }
    assert_status(
        ctx,
        "POST /api/add?a=1&b=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        405,
    );
}

fn large_file_read_slowly(ctx: &Ctx) {
    let big = std::fs::read(ctx.root.join("big.bin")).unwrap();
    let mut c = Client::connect(ctx.addr);
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut all = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut reads = 0;
    loop {
        use std::io::Read;
        let n = c.stream.read(&mut chunk).expect("the download stalled");
        if n == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..n]);
        reads += 1;
        // Read slowly for a while: the server must cope with a full socket.
        if reads < 20 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let body_at = find(&all, b"\r\n\r\n").expect("a head") + 4;
    assert!(all.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(all.len() - body_at, big.len());
    assert!(all[body_at..] == big[..], "the body differs from the file");
    // Close our side as a real client does on EOF (stage 2 lingers until then).
    drop(c);
    assert_status(ctx, &req("/range.txt"), 200);
}

fn junk_and_resets_leave_server_serving(ctx: &Ctx) {
    // Binary junk.
    let mut c = Client::connect(ctx.addr);
    c.send(&[0u8, 255, 1, 2, 3, b'\r', b'\n', b'\r', b'\n']);
    let all = c.read_to_end();
    assert!(
        all.is_empty() || all.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
    drop(c);
    // A client that sends half a request and resets the connection.
    let c = Client::connect(ctx.addr);
    (&c.stream)
        .write_all(b"GET /big.bin HTTP/1.1\r\nHo")
        .unwrap();
    set_linger_zero(&c.stream);
    drop(c);
    // A client that asks for a large file and resets mid-body.
    let mut c = Client::connect(ctx.addr);
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut first = [0u8; 1024];
    use std::io::Read;
    let _ = c.stream.read(&mut first).unwrap();
    set_linger_zero(&c.stream);
    drop(c);
    // A client that connects and closes without a byte.
    drop(Client::connect(ctx.addr));
    assert_status(ctx, &req("/range.txt"), 200);
}

/// `SO_LINGER` with a zero timeout: `close` then sends a RST.
fn set_linger_zero(s: &std::net::TcpStream) {
    nix::sys::socket::setsockopt(
        s,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .expect("SO_LINGER");
}

fn stalled_chunked_body_gets_408(ctx: &Ctx) {
    // A chunked body is read before its request is answered, under the same
    // deadline as the head: a client that stops half-way gets a 408, not a
    // thread (or a connection slot) held for ever.
    let mut c = Client::connect(ctx.addr);
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    let r = c.response(false);
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());
}

fn header_timeout_gives_408(ctx: &Ctx) {
    let started = Instant::now();
    let mut c = Client::connect(ctx.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 408);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());
    drop(c);
    // The suite runs the server with --header-timeout 1.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "408 came too early: {:?}",
        started.elapsed()
    );
    // Trickling bytes does not extend the deadline.
    let mut c = Client::connect(ctx.addr);
    c.send(b"GET / HTTP/1.1\r\n");
    let started = Instant::now();
    let mut got = None;
    for _ in 0..40 {
        if (&c.stream).write_all(b"X").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(r) = peek_status(&c) {
            got = Some(r);
            break;
        }
    }
    assert!(
        got.is_some() || started.elapsed() < Duration::from_secs(4),
        "a trickling client was not cut off"
    );
}

/// Non-blocking check whether a response has started arriving.
fn peek_status(c: &Client) -> std::io::Result<usize> {
    c.stream.set_nonblocking(true)?;
    let mut b = [0u8; 1];
    let r = c.stream.peek(&mut b);
    c.stream.set_nonblocking(false)?;
    match r {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Ok(0),
        Err(e) => Err(e),
    }
}

fn idle_keep_alive_is_closed(ctx: &Ctx) {
    let mut c = Client::connect(ctx.addr);
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    let started = Instant::now();
    assert!(c.closed(), "an idle keep-alive connection must be closed");
    // The suite runs the server with --keepalive-timeout 1.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed too early: {:?}",
        started.elapsed()
    );
}

fn head_split_across_writes(ctx: &Ctx) {
    let mut c = Client::connect(ctx.addr);
    for piece in [
        "GE",
        "T /range",
        ".txt HTTP/1.1\r",
        "\nHost: t\r\n",
        "\r",
        "\n",
    ] {
        c.send(piece.as_bytes());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.response(false).body, RANGE_TXT.as_bytes());
}

/// The requests whose answers must be byte-identical (but for `Date` and
/// `Server`) to the core's.
const IDENTICAL: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET /list/ HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /list HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET //list HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /range.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=2-5\r\n\r\n",
    "GET /range.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,4-5\r\n\r\n",
    "GET /range.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=99-\r\n\r\n",
    "GET /gz/page.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n",
    "GET /api/add?a=1&b=2 HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /api/add?a=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    "PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    "BREW / HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /empty.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /../x HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    CHUNKED_POST,
    "HEAD /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    "GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc",
    "GET /style.css/ HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET / HTTP/3.0\r\nHost: t\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
];

fn identical_to_core(ctx: &Ctx) {
    let site = Site::new(
        &ctx.root,
        "core",
        Some(Path::new("errors")),
        AccessLog::disabled(),
    )
    .unwrap();
    for raw in IDENTICAL {
        // All requests on one connection, answered in order, then a close.
        let mut c = Client::connect(ctx.addr);
        c.send(raw.as_bytes());
        c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let wire = normalize(&c.read_to_end());
        let mut expected = Vec::new();
        let mut input = raw.as_bytes().to_vec();
        input.extend_from_slice(b"GET /range.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let mut conn = Conn::new("127.0.0.1".parse().unwrap());
        loop {
            let mut out = Vec::new();
            let (used, step) = conn.next(&input, &site, false, &mut out);
            input.drain(..used);
            match step {
                Step::Respond(reply) => {
                    expected.extend_from_slice(&out);
                    if let Some(region) = reply.file {
                        use std::os::unix::fs::FileExt;
                        let mut body = vec![0; region.len as usize];
                        region.file.read_exact_at(&mut body, region.offset).unwrap();
                        expected.extend_from_slice(&body);
                    }
                    if !reply.keep_alive {
                        break;
                    }
                }
                Step::NeedInput | Step::Close => break,
            }
        }
        let expected = normalize(&expected);
        assert!(
            wire == expected,
            "{raw:?}: the stage's bytes differ from the core's\n--- stage:\n{}\n--- core:\n{}",
            String::from_utf8_lossy(&wire),
            String::from_utf8_lossy(&expected)
        );
    }
}

/// Blanks the values of `Date` and `Server`, which may differ by stage.
fn normalize(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(i) = find(rest, b"\r\n") {
        let line = &rest[..i + 2];
        if line.starts_with(b"Date: ") {
            out.extend_from_slice(b"Date: *\r\n");
        } else if line.starts_with(b"Server: ") {
            out.extend_from_slice(b"Server: *\r\n");
        } else {
            out.extend_from_slice(line);
        }
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    out
}

fn access_log_lines(ctx: &Ctx) {
    let marker = format!("/log-marker-{}", std::process::id());
    let mut c = Client::connect(ctx.addr);
    c.send(format!("GET {marker}?q=1 HTTP/1.1\r\nHost: t\r\nReferer: http://ref/\r\nUser-Agent: conf/1.0 \"q\"\r\nConnection: close\r\n\r\n").as_bytes());
    let r = c.response(false);
    assert_eq!(r.status, 404);
    let expected_tail = format!(
        "] \"GET {marker}?q=1 HTTP/1.1\" 404 {} \"http://ref/\" \"conf/1.0 \\\"q\\\"\"",
        PAGE_404.len()
    );
    // The writer flushes a few times a second; wait for the line (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&ctx.access_log).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains(&marker)) {
            assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
            assert!(
                line.ends_with(&expected_tail),
                "{line}\nexpected to end with {expected_tail}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no access-log line for {marker} in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn curl_agrees(ctx: &Ctx) {
    if !super::require_tool(&["curl", "--version"], "curl", "the curl checks") {
        return;
    }
    let curl = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let base = format!("http://{}", ctx.addr);
    let fmt = "%{http_code} %{content_type} %{size_download}";
    let out = curl(&["-o", "/dev/null", "-w", fmt, &format!("{base}/")]).unwrap();
    let index_len = std::fs::metadata(ctx.root.join("index.html"))
        .unwrap()
        .len();
    assert_eq!(out, format!("200 text/html; charset=utf-8 {index_len}"));
    let out = curl(&["-r", "0-4", &format!("{base}/range.txt")]).unwrap();
    assert_eq!(out, "01234");
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("{base}/dir"),
    ])
    .unwrap();
    assert_eq!(out, format!("301 {base}/dir/"));
    let out = curl(&["-L", &format!("{base}/dir")]).unwrap();
    assert_eq!(out, "<p>dir index</p>\n");
    let out = curl(&["-I", &format!("{base}/style.css")]).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    // Several requests over one keep-alive connection.
    let out = curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects} ",
        &format!("{base}/range.txt"),
        &format!("{base}/style.css"),
    ])
    .unwrap();
    assert_eq!(out, "1 0 ", "curl should reuse the connection");
    let out = curl(&[
        "--path-as-is",
        &format!("{base}/../secret.txt"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .unwrap();
    assert_eq!(out, "400");
}

fn status_page(ctx: &Ctx) {
    let fetch = || {
        get(
            ctx.addr,
            "GET /server-status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
    };
    let first = fetch();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let value = |r: &Response, name: &str| -> u64 {
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{}", r.text()))
    };
    for name in [
        "http_requests_total",
        "http_response_bytes_total",
        "http_connections_accepted_total",
        "http_connections_active",
        "http_connections_idle",
        "http_uptime_seconds",
    ] {
        value(&first, name);
    }
    assert!(
        first.text().contains("http_responses_total{class=\"2xx\"}"),
        "{}",
        first.text()
    );
    assert!(
        first
            .text()
            .contains("http_timeouts_total{kind=\"header\"}"),
        "{}",
        first.text()
    );
    // The status request itself is counted once it is answered.
    let second = fetch();
    assert!(value(&second, "http_requests_total") > value(&first, "http_requests_total"));
    // A HEAD has the headers and no body; other methods are refused.
    let mut c = Client::connect(ctx.addr);
    c.send(b"HEAD /server-status HTTP/1.1\r\nHost: t\r\n\r\nPOST /server-status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(true).status, 200);
    assert_eq!(c.response(false).status, 405);
    drop(c);
    // Prometheus's own checker (Debian: prometheus, which .ci/run installs).
    if !super::require_tool(
        &["promtool", "--version"],
        "prometheus",
        "`promtool check metrics`",
    ) {
        return;
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(&second.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
