//! The shared conformance suite: black-box HTTP checks that every HTTP
//! stage must pass, and the stage 2 rubric the checker grades a learner's
//! server with (`bench check --stage 2 -- COMMAND`).
//!
//! Each check is a value ([`Check`]): a named function returning
//! `Result<(), Failure>`, with a milestone and a [`Level`]. Each stage's
//! `tests/conformance.rs` calls [`conformance_tests!`](crate::conformance_tests),
//! which makes one `#[test]` per check, named after it, against one server
//! per test binary, started on first use.
//!
//! The suite builds a fixture document root in a temporary folder (files of
//! every type, a listing folder with awkward names, symlinks that stay in and
//! that leave the root, a secret file just outside it, a FIFO, precompressed
//! siblings, a custom 404 page), starts the stage on port 0 with short
//! timeouts, and runs the checks on fresh connections, one check at a time
//! (so that stage 2, which serves one connection at a time, is tested on the
//! same terms).
//!
//! Every check runs at one of two strengths, set by [`Ctx::strict`]:
//! *strict* for our stages (our exact statuses and headers, every assertion
//! the suite has always made), *contract* for anyone's server (every answer
//! the RFCs permit: 400 or 431 for an oversized head, 405 or 501 for an
//! unknown method, an absolute or relative `Location`, with or without
//! `charset`, `Allow` optional). Checks of [`Level::Reference`] (byte
//! identity with the core, our flags, our log format) run strict only.
//!
//! Besides status codes and headers, [`identical_to_core`] sends a list of
//! requests and compares the bytes on the wire with what the sans-IO core
//! in this crate produces for the same request in-process. That is how the
//! design's promise "stages 2–5 give byte-identical responses" is held:
//! each stage is identical to the core, hence to each other.
//!
//! Adding a case: write a `fn(&Ctx) -> CheckResult` that returns a
//! [`Failure`] (with [`ensure!`](crate::ensure) and
//! [`ensure_eq!`](crate::ensure_eq)), list it in [`CHECKS`] and in
//! [`conformance_tests!`](crate::conformance_tests) (a unit test keeps the
//! two lists equal). Every stage and the checker pick it up.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ServerProcess;
use super::check::{Check, CheckResult, Failure, Level, Outcome, fail, run_here};
use super::client::{Client, Response, fetch, find};
use crate::http::{Conn, Site, Step};
use crate::logging::AccessLog;
use crate::{ensure, ensure_eq};

/// What a check gets.
#[derive(Debug)]
pub struct Ctx {
    /// The server under test.
    pub addr: SocketAddr,
    /// The fixture root it serves.
    pub root: PathBuf,
    /// The access log file it writes (reference checks only).
    pub access_log: PathBuf,
    /// The binary under test and the arguments it was started with, for
    /// checks that need a second instance with other flags (reference
    /// checks only).
    pub bin: String,
    /// See `bin`.
    pub args: Vec<String>,
    /// True for our stages: every check demands our exact answers. False
    /// for the checker: every answer the RFCs permit.
    pub strict: bool,
    /// For a server under test that speaks TLS: the certificate (PEM) its
    /// clients trust. The test client speaks TLS to it (see
    /// [`speak_tls_to`](super::client::speak_tls_to)), and curl gets
    /// `--cacert` and `https://`.
    pub tls_ca: Option<PathBuf>,
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
        let server = ServerProcess::start(&self.bin, &args);
        if let Some(ca) = &self.tls_ca {
            trust_for(server.addr, ca);
        }
        server
    }

    /// `strict` for our stages, `contract` for anyone's.
    fn pick<'a, T: ?Sized>(&self, strict: &'a T, contract: &'a T) -> &'a T {
        if self.strict { strict } else { contract }
    }
}

/// The secret just outside the root; no response may ever contain it.
pub const SECRET: &str = "TOP-SECRET-4f1c9e";
/// A 20-byte file for range checks.
const RANGE_TXT: &str = "0123456789abcdefghij";
/// The fixture's custom 404 page.
const PAGE_404: &str = "<!DOCTYPE html><title>custom 404</title><p>fixture not-found page</p>\n";

/// Stage 2's milestones, as the course names them (the checker groups its
/// output by them).
pub mod milestone {
    /// Parsing requests: framing, bodies, versions, split writes.
    pub const PARSING: &str = "HTTP request parsing";
    /// Responses with proper headers; GET and HEAD.
    pub const RESPONSES: &str = "HTTP response generation with proper headers";
    /// Files, MIME types, directories.
    pub const FILES: &str = "Static file serving with correct MIME types";
    /// Directory listings and redirects.
    pub const LISTING: &str = "Directory listing functionality";
    /// Error statuses; bad input leaves the server serving.
    pub const STATUS: &str = "Proper status code handling";
    /// Nothing outside the root is ever served.
    pub const SAFETY: &str = "Path traversal and containment";
    /// Keep-alive, HTTP/1.0, pipelining.
    pub const CONNECTIONS: &str = "Persistent connections and pipelining";
    /// Ranges, conditionals, precompressed files.
    pub const FEATURES: &str = "HTTP features (extra credit)";
    /// This workspace's own flags, log and bytes.
    pub const OURS: &str = "This workspace's reference behaviour";
}

/// Every check, by name, in the order they run. Adding one here adds it to
/// every stage and to the stage 2 rubric (unless it is a reference check).
pub static CHECKS: &[Check<Ctx>] = &[
    check!(
        get_index,
        RESPONSES,
        Required,
        "GET / serves index.html with a correct Content-Type and Content-Length"
    ),
    check!(
        head_has_get_headers_and_no_body,
        RESPONSES,
        Required,
        "HEAD has the headers of GET and no body"
    ),
    check!(
        keep_alive_http11,
        CONNECTIONS,
        Required,
        "HTTP/1.1 connections stay open for the next request"
    ),
    check!(
        http10_closes_by_default,
        CONNECTIONS,
        Required,
        "an HTTP/1.0 request without keep-alive gets its answer, then a close"
    ),
    check!(
        http10_keep_alive_on_request,
        CONNECTIONS,
        Extra,
        "HTTP/1.0 with Connection: keep-alive keeps the connection open"
    ),
    check!(
        connection_close_is_honoured,
        CONNECTIONS,
        Required,
        "Connection: close closes after the answer"
    ),
    check!(
        pipelined_requests_in_order,
        CONNECTIONS,
        Required,
        "pipelined requests are answered in order, none after Connection: close"
    ),
    check!(
        body_on_get_is_skipped_not_parsed,
        PARSING,
        Required,
        "a Content-Length body is skipped, never parsed as a request"
    ),
    check!(
        body_split_across_writes_is_skipped,
        PARSING,
        Required,
        "a body that arrives in two writes is skipped"
    ),
    check!(
        chunked_body_then_pipelined_get,
        PARSING,
        Required,
        "a chunked body is decoded and the request behind it answered"
    ),
    check!(
        chunked_body_split_at_every_byte,
        PARSING,
        Required,
        "a chunked body split at any byte is read whole"
    ),
    check!(
        chunked_body_too_large_gets_413,
        OURS,
        Reference,
        "our --max-body counts decoded chunked bytes"
    ),
    check!(
        chunked_body_malformed_gets_400,
        STATUS,
        Required,
        "a malformed chunked body gets 400 and a close"
    ),
    check!(
        framing_attacks_get_400_and_close,
        STATUS,
        Required,
        "conflicting or bad framing gets 400 (or 501) and a close"
    ),
    check!(
        malformed_heads_get_400,
        PARSING,
        Required,
        "malformed request heads get 400"
    ),
    check!(
        limits_give_414_431_413,
        STATUS,
        Required,
        "overlong target, head and body get 414, 431 (or 400) and 413"
    ),
    check!(
        versions,
        PARSING,
        Required,
        "HTTP/2.0 gets 505; HTTP/1.0, leading empty lines and absolute-form work"
    ),
    check!(
        methods_405_and_501,
        STATUS,
        Required,
        "other methods get 405 (or 501)"
    ),
    check!(
        traversal_never_leaks,
        SAFETY,
        Required,
        "no spelling of .. ever reaches the secret outside the root"
    ),
    check!(
        symlinks,
        SAFETY,
        Extra,
        "a symlink inside the root is served, one leading out is not"
    ),
    check!(
        fifo_is_not_opened,
        FILES,
        Required,
        "a FIFO is refused, not opened (which would hang)"
    ),
    check!(
        directories_redirect_index_and_list,
        LISTING,
        Required,
        "/dir redirects to /dir/, which serves index.html or a safe listing"
    ),
    check!(
        file_followed_by_slash_is_404,
        FILES,
        Required,
        "a file under a trailing slash is 404"
    ),
    check!(
        mime_types,
        FILES,
        Required,
        "each file type gets its MIME type"
    ),
    check!(
        conditional_requests,
        FEATURES,
        Extra,
        "If-None-Match and If-Modified-Since give 304"
    ),
    check!(
        no_caching_headers_by_default,
        OURS,
        Reference,
        "no Cache-Control or Expires unless asked"
    ),
    check!(
        expires_sets_max_age_and_expires,
        OURS,
        Reference,
        "--expires sets max-age and Expires"
    ),
    check!(
        cache_control_is_sent_verbatim,
        OURS,
        Reference,
        "--cache-control is sent verbatim"
    ),
    check!(
        rate_limit_gives_429_then_serves_again,
        OURS,
        Reference,
        "--rate-limit answers 429 with Retry-After, then serves again"
    ),
    check!(
        ranges,
        FEATURES,
        Extra,
        "Range requests get 206, 416, multipart, If-Range"
    ),
    check!(
        precompressed_siblings,
        FEATURES,
        Extra,
        "file.br and file.gz are served by Accept-Encoding, with Vary"
    ),
    check!(
        error_pages,
        OURS,
        Reference,
        "the custom 404 page and the built-in error pages"
    ),
    check!(api_add, OURS, Reference, "/api/add adds"),
    check!(
        large_file_read_slowly,
        FILES,
        Required,
        "a 3 MiB file read slowly arrives whole"
    ),
    check!(
        junk_and_resets_leave_server_serving,
        STATUS,
        Required,
        "binary junk and resets leave the server serving"
    ),
    check!(
        header_timeout_gives_408,
        OURS,
        Reference,
        "--header-timeout gives 408, trickling does not extend it"
    ),
    check!(
        stalled_chunked_body_gets_408,
        OURS,
        Reference,
        "a stalled chunked body gets 408"
    ),
    check!(
        idle_keep_alive_is_closed,
        OURS,
        Reference,
        "--keepalive-timeout closes idle connections"
    ),
    check!(
        head_split_across_writes,
        PARSING,
        Required,
        "a head that arrives in pieces is answered once"
    ),
    check!(
        identical_to_core,
        OURS,
        Reference,
        "the bytes on the wire are the core's"
    ),
    check!(
        access_log_lines,
        OURS,
        Reference,
        "the access log line in Combined Log Format"
    ),
    check!(curl_agrees, OURS, Reference, "curl sees what we mean"),
    check!(
        status_page,
        OURS,
        Reference,
        "/server-status in Prometheus format"
    ),
];

/// The stage 2 rubric: every check that is not a reference check.
pub fn rubric() -> impl Iterator<Item = &'static Check<Ctx>> {
    CHECKS.iter().filter(|c| c.level != Level::Reference)
}

/// The flags our stages get in the suite (the timeouts the reference
/// checks rely on).
fn suite_args(root: &str, log: &str) -> Vec<String> {
    [
        "--root",
        root,
        "--access-log",
        log,
        "--header-timeout",
        "1",
        "--keepalive-timeout",
        "1",
        "--send-timeout",
        "5",
        "--grace-period",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Makes the test client speak TLS to `addr`, trusting the certificate in
/// the PEM file `ca`.
fn trust_for(addr: SocketAddr, ca: &Path) {
    let pem = std::fs::read_to_string(ca).expect("the test certificate");
    super::client::speak_tls_to(addr, super::tls::client_config(&pem));
}

/// One stage binary under test, shared by the `#[test]`s of a test binary:
/// started on first use, checks run one at a time, killed when the test
/// binary exits.
#[derive(Debug)]
pub struct Shared {
    ctx: Ctx,
    /// One check at a time: stage 2 serves one connection at a time, and
    /// checks that count time must not wait behind another check.
    turn: Mutex<()>,
    /// Kept so that the fixture lives as long as the server.
    _fixture: Fixture,
    /// The TLS certificate and key, for a TLS configuration.
    _certs: Option<super::tls::Certs>,
    /// Kept so that the server lives until the test binary exits.
    _server: ServerProcess,
}

/// Servers and fixtures to remove when the test binary exits (statics are
/// never dropped).
static AT_EXIT: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

extern "C" fn clean_up_at_exit() {
    let list = AT_EXIT.lock().map(|l| l.clone()).unwrap_or_default();
    for (pid, dir) in list {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Shared {
    /// Builds a fixture and starts `bin` with the suite's flags and
    /// `extra_args` on it; with `tls`, also with a fresh certificate
    /// (`--tls-cert`, `--tls-key`), and every check speaks TLS to it.
    #[allow(
        unsafe_code,
        reason = "atexit(3): statics are never dropped, and the shared servers must not outlive the test binary"
    )]
    pub fn start(bin: &str, extra_args: &[&str], tls: bool) -> Shared {
        static REGISTER: std::sync::Once = std::sync::Once::new();
        REGISTER.call_once(|| {
            // SAFETY: `atexit` only stores the function pointer; the
            // function touches nothing that exit has already torn down
            // (a static mutex, kill, the file system).
            unsafe { nix::libc::atexit(clean_up_at_exit) };
        });
        let fixture = Fixture::create();
        let certs = tls.then(|| super::tls::Certs::new("conformance-tls"));
        let (server, ctx) = start_on(&fixture, bin, extra_args, certs.as_ref());
        if let Ok(mut l) = AT_EXIT.lock() {
            l.push((server.pid(), fixture.base.clone()));
        }
        Shared {
            ctx,
            turn: Mutex::new(()),
            _fixture: fixture,
            _certs: certs,
            _server: server,
        }
    }

    /// Runs the check called `name`, strictly; panics with the failure.
    pub fn run(&self, name: &str) {
        let check = CHECKS
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check named {name}"));
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        super::check::set_strict_framing(true);
        let outcome = run_here(check, &self.ctx);
        eprintln!("conformance {name}: {:?}", started.elapsed());
        match outcome {
            Outcome::Pass => {}
            Outcome::Skip(why) => eprintln!("SKIPPED {name}: {why}"),
            Outcome::Fail(f) => panic!("{name} failed against {}:\n{f}", self.ctx.bin),
        }
    }
}

fn start_on(
    fixture: &Fixture,
    bin: &str,
    extra_args: &[&str],
    certs: Option<&super::tls::Certs>,
) -> (ServerProcess, Ctx) {
    let log = fixture.base.join("access.log");
    let mut args = suite_args(
        &fixture.root.display().to_string(),
        &log.display().to_string(),
    );
    if let Some(certs) = certs {
        args.extend(certs.args(&[]).iter().map(|a| a.to_string()));
    }
    args.extend(extra_args.iter().map(|a| a.to_string()));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(bin, &arg_refs);
    let tls_ca = certs.map(|c| c.cert.clone());
    if let Some(ca) = &tls_ca {
        trust_for(server.addr, ca);
    }
    let ctx = Ctx {
        addr: server.addr,
        root: fixture.root.clone(),
        access_log: log,
        bin: bin.to_string(),
        args,
        strict: true,
        tls_ca,
    };
    (server, ctx)
}

/// The checks the end-of-suite test runs on a server of its own before it
/// stops it: the ones that leave the oddest lines in the access log.
const LOG_WRITERS: &[&str] = &[
    "get_index",
    "pipelined_requests_in_order",
    "malformed_heads_get_400",
    "limits_give_414_431_413",
    "framing_attacks_get_400_and_close",
    "traversal_never_leaks",
    "junk_and_resets_leave_server_serving",
    "header_timeout_gives_408",
    "access_log_lines",
];

/// The end of the suite, on a server of its own: after a run of the checks
/// that write the oddest access-log lines, SIGTERM must give exit status 0,
/// and a real log analyser (goaccess) must read every line of the log.
pub fn graceful_shutdown_and_access_log(bin: &str, extra_args: &[&str], tls: bool) {
    let fixture = Fixture::create();
    let certs = tls.then(|| super::tls::Certs::new("conformance-tls"));
    let (mut server, ctx) = start_on(&fixture, bin, extra_args, certs.as_ref());
    let mut failures = Vec::new();
    super::check::set_strict_framing(true);
    for name in LOG_WRITERS {
        let check = CHECKS
            .iter()
            .find(|c| c.name == *name)
            .expect("a listed check");
        if let Outcome::Fail(f) = run_here(check, &ctx) {
            failures.push(format!("{name}: {f}"));
        }
    }
    let status = server.terminate();
    if !status.success() {
        failures.push(format!("graceful shutdown: exit status {status}"));
    }
    if let Err(e) = super::goaccess::check_log(&ctx.access_log) {
        failures.push(format!("goaccess reads the access log: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{} end-of-suite check(s) failed for {bin}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One `#[test]` per conformance check and server configuration, in the
/// style of httparse's test tables, plus `graceful_shutdown_and_access_log`.
/// A test is named `CHECK::CONFIG`, so that libtest, which runs tests in
/// name order on several threads, runs the configurations side by side.
/// Each configuration's server is started once, on the first test that
/// needs it: `cargo test --test conformance ranges` starts one per
/// configuration and runs one check on each.
///
/// A configuration written `(BIN, ARGS, tls)` runs every check over TLS:
/// the server gets a fresh certificate and the test client (and curl)
/// speak TLS to it.
///
/// ```ignore
/// common::conformance_tests! {
///     one_loop => (env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "1"]),
///     two_loops => (env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "2"]),
///     over_tls => (env!("CARGO_BIN_EXE_stage4-epoll"), &["--loops", "1"], tls),
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($($config:ident => ($bin:expr, $args:expr $(, $tls:ident)?)),+ $(,)?) => {
        $(
            fn $config() -> &'static $crate::testkit::conformance::Shared {
                static SERVER: ::std::sync::OnceLock<$crate::testkit::conformance::Shared> =
                    ::std::sync::OnceLock::new();
                SERVER.get_or_init(|| {
                    $crate::testkit::conformance::Shared::start(
                        $bin,
                        $args,
                        $crate::conformance_tests!(@tls $($tls)?),
                    )
                })
            }
        )+
        $crate::conformance_tests!(@checks [$($config)+];
            get_index head_has_get_headers_and_no_body keep_alive_http11
            http10_closes_by_default http10_keep_alive_on_request
            connection_close_is_honoured pipelined_requests_in_order
            body_on_get_is_skipped_not_parsed body_split_across_writes_is_skipped
            chunked_body_then_pipelined_get chunked_body_split_at_every_byte
            chunked_body_too_large_gets_413 chunked_body_malformed_gets_400
            framing_attacks_get_400_and_close malformed_heads_get_400
            limits_give_414_431_413 versions methods_405_and_501
            traversal_never_leaks symlinks fifo_is_not_opened
            directories_redirect_index_and_list file_followed_by_slash_is_404
            mime_types conditional_requests no_caching_headers_by_default
            expires_sets_max_age_and_expires cache_control_is_sent_verbatim
            rate_limit_gives_429_then_serves_again ranges precompressed_siblings error_pages api_add
            large_file_read_slowly junk_and_resets_leave_server_serving
            header_timeout_gives_408 stalled_chunked_body_gets_408
            idle_keep_alive_is_closed head_split_across_writes
            identical_to_core access_log_lines curl_agrees status_page
        );
        /// SIGTERM exits 0, and goaccess reads the access log.
        mod graceful_shutdown_and_access_log {
            $(
                #[test]
                fn $config() {
                    $crate::testkit::conformance::graceful_shutdown_and_access_log(
                        $bin,
                        $args,
                        $crate::conformance_tests!(@tls $($tls)?),
                    );
                }
            )+
        }
    };
    (@tls) => { false };
    (@tls tls) => { true };
    (@checks $configs:tt; $($name:ident)*) => {
        $( $crate::conformance_tests!(@one $name $configs); )*
    };
    (@one $name:ident [$($config:ident)+]) => {
        mod $name {
            $(
                #[test]
                fn $config() {
                    super::$config().run(stringify!($name));
                }
            )+
        }
    };
}

/// The check names [`conformance_tests!`](crate::conformance_tests) lists,
/// for the unit test that keeps it equal to [`CHECKS`].
#[cfg(test)]
fn macro_names() -> Vec<String> {
    super::check::macro_list(include_str!("conformance.rs"), "(@checks [$($config)+];")
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

fn status_of(ctx: &Ctx, raw: &str) -> Result<u16, Failure> {
    Ok(fetch(ctx.addr, raw)?.status)
}

/// Sends `raw` on a new connection and demands the status `expect`.
fn expect_status(ctx: &Ctx, raw: &str, expect: u16) -> Result<Response, Failure> {
    expect_status_in(ctx, raw, &[expect])
}

/// Sends `raw` on a new connection and demands one of the statuses in
/// `allowed`.
fn expect_status_in(ctx: &Ctx, raw: &str, allowed: &[u16]) -> Result<Response, Failure> {
    let r = fetch(ctx.addr, raw)?;
    let want = allowed
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    ensure!(
        allowed.contains(&r.status),
        "status {want} for {:?}, not {}",
        super::check::shorten(raw.lines().next().unwrap_or(""), 80),
        r.status
    );
    Ok(r)
}

fn get_index(ctx: &Ctx) -> CheckResult {
    let r = expect_status(ctx, &req("/"), 200)?;
    ensure!(
        r.body == std::fs::read(ctx.root.join("index.html")).unwrap(),
        "the body of GET / to be the bytes of index.html"
    );
    ensure_eq!(
        r.header("Content-Length"),
        Some(r.body.len().to_string().as_str()),
        "Content-Length"
    );
    if !ctx.strict {
        // Any text/html, with or without a charset.
        let ty = media_type(&r);
        ensure_eq!(ty, "text/html", "the media type of Content-Type");
        return Ok(());
    }
    ensure_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    ensure_eq!(r.header("Accept-Ranges"), Some("bytes"));
    ensure_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    ensure!(r.header("ETag").is_some_and(|e| e.starts_with('"')));
    ensure!(r.header("Server").is_some());
    let date = r.header("Date").ok_or_else(|| fail("a Date header"))?;
    let lm = r
        .header("Last-Modified")
        .ok_or_else(|| fail("a Last-Modified header"))?;
    ensure!(crate::time::parse_http_date(date).is_some(), "{date}");
    ensure!(crate::time::parse_http_date(lm).is_some(), "{lm}");
    Ok(())
}

fn head_has_get_headers_and_no_body(ctx: &Ctx) -> CheckResult {
    let mut c = Client::open(ctx.addr)?;
    c.send(
        b"HEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let head = c.answer(true)?;
    let get = c.answer(false)?;
    ensure_eq!(head.status, 200);
    ensure!(head.body.is_empty());
    let strip = |r: &Response| -> Vec<(String, String)> {
        r.headers
            .iter()
            .filter(|(n, _)| n != "Date")
            .filter(|(n, _)| {
                ctx.strict
                    || n.eq_ignore_ascii_case("Content-Type")
                    || n.eq_ignore_ascii_case("Content-Length")
            })
            .cloned()
            .collect()
    };
    ensure_eq!(
        strip(&head),
        strip(&get),
        "the headers of HEAD to be those of GET"
    );
    ensure_eq!(get.body, b"body { color: #123; }\n");
    Ok(())
}

fn keep_alive_http11(ctx: &Ctx) -> CheckResult {
    let mut c = Client::open(ctx.addr)?;
    for _ in 0..3 {
        c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.answer(false)?;
        ensure_eq!(r.status, 200, "status");
        if ctx.strict {
            ensure_eq!(r.header("Connection"), None);
        } else {
            ensure!(
                !r.header("Connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close")),
                "an HTTP/1.1 connection to stay open (no Connection: close)"
            );
        }
        ensure_eq!(r.body, RANGE_TXT.as_bytes(), "the body");
    }
    Ok(())
}

fn http10_closes_by_default(ctx: &Ctx) -> CheckResult {
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /range.txt HTTP/1.0\r\n\r\n");
    let r = c.answer(false)?;
    ensure_eq!(r.status, 200, "status");
    if ctx.strict {
        ensure_eq!(r.header("Connection"), Some("close"));
    }
    ensure!(
        c.closed(),
        "an HTTP/1.0 connection without keep-alive must close"
    );
    Ok(())
}

fn http10_keep_alive_on_request(ctx: &Ctx) -> CheckResult {
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /range.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.answer(false)?;
    ensure_eq!(
        r.header("Connection"),
        Some("keep-alive"),
        "the answer to an HTTP/1.0 request with Connection: keep-alive to say Connection"
    );
    c.send(b"GET /style.css HTTP/1.0\r\n\r\n");
    let r = c.answer(false)?;
    ensure_eq!(r.status, 200);
    ensure!(c.closed());
    Ok(())
}

fn connection_close_is_honoured(ctx: &Ctx) -> CheckResult {
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.answer(false)?;
    if ctx.strict {
        ensure_eq!(r.header("Connection"), Some("close"));
    }
    ensure!(
        c.closed(),
        "the connection to close after Connection: close"
    );
    Ok(())
}

fn pipelined_requests_in_order(ctx: &Ctx) -> CheckResult {
    let mut c = Client::open(ctx.addr)?;
    c.send(
        b"GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\nHEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /data.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
          GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    ensure_eq!(c.answer(false)?.body, RANGE_TXT.as_bytes());
    let h = c.answer(true)?;
    ensure_eq!((h.status, h.body.len()), (200, 0));
    ensure_eq!(c.answer(false)?.status, 404);
    let last = c.answer(false)?;
    ensure_eq!(last.body, b"{\"fixture\": true}\n");
    ensure!(
        c.closed(),
        "nothing may be answered after Connection: close"
    );
    Ok(())
}

fn body_on_get_is_skipped_not_parsed(ctx: &Ctx) -> CheckResult {
    // The body looks like a request; it must be skipped as a body.
    let smuggled = "GET /data.json HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut c = Client::open(ctx.addr)?;
    let first = format!(
        "GET /range.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    c.send(first.as_bytes());
    c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ensure_eq!(c.answer(false)?.body, RANGE_TXT.as_bytes());
    let second = c.answer(false)?;
    ensure_eq!(
        second.body,
        b"body { color: #123; }\n",
        "the body was parsed as a request"
    );
    ensure!(c.closed());
    Ok(())
}

fn body_split_across_writes_is_skipped(ctx: &Ctx) -> CheckResult {
    let mut c = Client::open(ctx.addr)?;
    c.send(b"POST /range.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
    let r = c.answer(false)?;
    if ctx.strict {
        ensure_eq!(r.status, 405);
        ensure_eq!(r.header("Allow"), Some("GET, HEAD"));
    } else {
        ensure!(
            matches!(r.status, 405 | 501),
            "405 or 501 for a POST, not {}",
            r.status
        );
        if says_close(&r) {
            // A server may close after an error instead of skipping the body.
            return Ok(());
        }
    }
    c.send(b"56789GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    ensure_eq!(c.answer(false)?.body, RANGE_TXT.as_bytes());
    Ok(())
}

/// A chunked request body (RFC 9112 7.1), with an extension and a trailer.
const CHUNKED_POST: &str = "POST /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
    5;note=x\r\nhello\r\nB\r\n, chunked!!\r\n0\r\nX-Trailer: 1\r\n\r\n";

fn chunked_body_then_pipelined_get(ctx: &Ctx) -> CheckResult {
    // The body is decoded, so the request behind it is found and answered
    // on the same connection (the response to the POST keeps it open).
    let mut c = Client::open(ctx.addr)?;
    c.send(CHUNKED_POST.as_bytes());
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.answer(false)?;
    if ctx.strict {
        ensure_eq!(r.status, 405, "{r:?}");
        ensure_eq!(
            r.header("Connection"),
            None,
            "the connection must stay open"
        );
    } else {
        ensure!(
            matches!(r.status, 405 | 501),
            "405 or 501 for a chunked POST, not {}",
            r.status
        );
        if says_close(&r) {
            // Allowed: closing after an error. The GET part is then tested
            // on a fresh connection.
            drop(c);
            c = Client::open(ctx.addr)?;
            c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        }
    }
    let r = c.answer(false)?;
    ensure_eq!(
        (r.status, &r.body[..]),
        (200, RANGE_TXT.as_bytes()),
        "the request after a chunked body"
    );
    // A chunked body on a GET is read and ignored, like a Content-Length one.
    c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nGET\r\n0\r\n\r\n");
    c.send(b"GET /data.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ensure_eq!(c.answer(false)?.body, b"body { color: #123; }\n");
    ensure_eq!(c.answer(false)?.body, b"{\"fixture\": true}\n");
    ensure!(c.closed());
    Ok(())
}

fn chunked_body_split_at_every_byte(ctx: &Ctx) -> CheckResult {
    // Each split point of the body goes out as two segments (Nagle is off),
    // so the server sees the body end in a later read than it began.
    let head_len = CHUNKED_POST.find("\r\n\r\n").unwrap() + 4;
    let next = "GET /range.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let whole = format!("{CHUNKED_POST}{next}");
    for cut in head_len..CHUNKED_POST.len() + 1 {
        let mut c = Client::open(ctx.addr)?;
        c.send(&whole.as_bytes()[..cut]);
        c.send(&whole.as_bytes()[cut..]);
        let r = c.answer(false)?;
        if ctx.strict {
            ensure_eq!(r.status, 405, "split at byte {cut}: {r:?}");
        } else {
            ensure!(
                matches!(r.status, 405 | 501),
                "405 or 501 for a chunked POST split at byte {cut}, not {}",
                r.status
            );
            if says_close(&r) {
                continue;
            }
        }
        let r = c.answer(false)?;
        ensure_eq!(r.body, RANGE_TXT.as_bytes(), "split at byte {cut}");
        ensure!(c.closed(), "split at byte {cut}");
    }
    Ok(())
}

fn chunked_body_too_large_gets_413(ctx: &Ctx) -> CheckResult {
    // The limit (--max-body, 1 MiB by default) counts decoded bytes: one
    // chunk that is too large, and chunks that only together are.
    let one = "GET /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n";
    let mut c = Client::open(ctx.addr)?;
    c.send(one.as_bytes());
    let r = c.answer(false)?;
    ensure_eq!(r.status, 413, "{r:?}");
    ensure_eq!(r.header("Connection"), Some("close"));
    ensure!(c.closed());
    // Closed on our side too, so that a sequential server is not left
    // lingering on it.
    drop(c);

    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n80000\r\n");
    c.send(&vec![b'x'; 0x80000]);
    c.send(b"\r\n80000\r\n");
    c.send(&vec![b'y'; 0x80000]);
    c.send(b"\r\n1\r\n");
    let r = c.answer(false)?;
    ensure_eq!(r.status, 413, "2 x 512 KiB + 1 byte: {r:?}");
    ensure!(c.closed());
    Ok(())
}

fn chunked_body_malformed_gets_400(ctx: &Ctx) -> CheckResult {
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
        // A recipient may take a bare LF for a line end (RFC 9112 2.2),
        // and must ignore chunk extensions it does not know (7.1.1).
        if !ctx.strict
            && (body.starts_with("5\n") || body.ends_with("1\n\r\n") || body.starts_with("5;"))
        {
            continue;
        }
        let mut c = Client::open(ctx.addr)?;
        let raw = format!(
            "GET /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        c.send(raw.as_bytes());
        c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.answer(false)?;
        ensure_eq!(r.status, 400, "status for the chunked body {body:?}");
        if ctx.strict {
            ensure_eq!(r.header("Connection"), Some("close"), "body {body:?}");
        }
        ensure!(c.closed(), "body {body:?}: the connection must close");
    }
    // The answer to a HEAD has no body, an error's neither (found by the
    // fuzzer): after the head, the connection just closes.
    let mut c = Client::open(ctx.addr)?;
    c.send(b"HEAD /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX");
    let r = c.answer(true)?;
    ensure_eq!(r.status, 400, "status for a HEAD with a bad chunked body");
    ensure!(c.closed(), "bytes after the head of a 400 to a HEAD");
    Ok(())
}

fn framing_attacks_get_400_and_close(ctx: &Ctx) -> CheckResult {
    for raw in [
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let mut c = Client::open(ctx.addr)?;
        c.send(raw.as_bytes());
        let r = c.answer(false)?;
        if ctx.strict {
            ensure_eq!(r.status, 400, "{raw:?}");
            ensure_eq!(r.header("Connection"), Some("close"), "{raw:?}");
        } else {
            // 501 for a transfer coding the server does not know.
            ensure!(
                matches!(r.status, 400 | 501),
                "400 (or 501) for bad framing, not {}",
                r.status
            );
        }
        ensure!(c.closed(), "{raw:?}: the connection must close");
    }
    Ok(())
}

fn file_followed_by_slash_is_404(ctx: &Ctx) -> CheckResult {
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
        let r = expect_status(ctx, &req(path), 404)?;
        if ctx.strict {
            ensure_eq!(r.body, PAGE_404.as_bytes(), "{path}");
        }
    }
    expect_status(ctx, &req("/dir/"), 200)?;
    expect_status(ctx, &req("/style.css"), 200)?;
    Ok(())
}

fn malformed_heads_get_400(ctx: &Ctx) -> CheckResult {
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
        ensure_eq!(status_of(ctx, raw)?, 400, "status for {raw:?}");
    }
    Ok(())
}

fn limits_give_414_431_413(ctx: &Ctx) -> CheckResult {
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    expect_status(ctx, &long, 414)?;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(17000)
    );
    expect_status_in(ctx, &big, ctx.pick(&[431], &[400, 431]))?;
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    // Seventy small headers are within what many servers accept.
    expect_status_in(
        ctx,
        &format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n"),
        ctx.pick(&[431], &[200, 400, 431]),
    )?;
    // A server that takes no POST may say so before it looks at the length.
    expect_status_in(
        ctx,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
        ctx.pick(&[413], &[413, 405, 501]),
    )?;
    Ok(())
}

fn versions(ctx: &Ctx) -> CheckResult {
    expect_status_in(
        ctx,
        "GET / HTTP/2.0\r\nHost: t\r\n\r\n",
        ctx.pick(&[505], &[505, 400]),
    )?;
    expect_status(ctx, "GET / HTTP/1.0\r\n\r\n", 200)?;
    // Empty lines before a request line are ignored (RFC 9112 2.2).
    expect_status(
        ctx,
        "\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        200,
    )?;
    // Absolute-form targets are served by path.
    expect_status(
        ctx,
        "GET http://t/range.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        200,
    )?;
    Ok(())
}

fn methods_405_and_501(ctx: &Ctx) -> CheckResult {
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"] {
        let r = expect_status_in(
            ctx,
            &format!("{m} /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
            ctx.pick(&[405], &[405, 501]),
        )?;
        if ctx.strict {
            ensure_eq!(r.header("Allow"), Some("GET, HEAD"), "{m}");
        } else if let Some(allow) = r.header("Allow") {
            ensure!(
                allow.contains("GET") && !allow.contains(m),
                "Allow, when sent, to list GET and not {m}: {allow:?}"
            );
        }
    }
    expect_status_in(
        ctx,
        "BREW /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ctx.pick(&[501], &[405, 501]),
    )?;
    Ok(())
}

fn traversal_never_leaks(ctx: &Ctx) -> CheckResult {
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
        // Following a symlink out of the root is a policy (nginx's
        // default); the `symlinks` check grades it as extra credit.
        if !ctx.strict && path.starts_with("/link-") {
            continue;
        }
        let mut c = Client::open(ctx.addr)?;
        c.send(req(path).as_bytes());
        let all = c.read_to_end();
        ensure!(
            find(&all, SECRET.as_bytes()).is_none(),
            "{path} leaked the secret"
        );
        let status = std::str::from_utf8(&all[..12.min(all.len())]).unwrap_or("");
        if ctx.strict {
            ensure!(
                status.starts_with("HTTP/1.1 400") || status.starts_with("HTTP/1.1 404"),
                "{path}: {status:?}"
            );
        } else {
            // Any refusal: 400, 403, 404 (or a redirect that stays inside).
            ensure!(
                status.starts_with("HTTP/1.") && matches!(status.get(9..10), Some("3" | "4")),
                "a 4xx refusal for {path}, not {status:?}"
            );
        }
    }
    Ok(())
}

fn symlinks(ctx: &Ctx) -> CheckResult {
    let r = expect_status(ctx, &req("/link-in.txt"), 200)?;
    ensure_eq!(r.body, RANGE_TXT.as_bytes());
    expect_status_in(ctx, &req("/link-out.txt"), ctx.pick(&[404], &[403, 404]))?;
    if !ctx.strict {
        let r = fetch(ctx.addr, &req("/link-out-dir/secret.txt"))?;
        ensure!(
            !r.text().contains(SECRET),
            "a symlink to a folder outside the root not to be followed"
        );
    }
    Ok(())
}

fn fifo_is_not_opened(ctx: &Ctx) -> CheckResult {
    // Opening a FIFO for reading blocks until a writer appears: a server
    // that tried would hang here until the read timeout.
    expect_status_in(ctx, &req("/fifo"), ctx.pick(&[404], &[403, 404]))?;
    expect_status(ctx, &req("/range.txt"), 200)?;
    Ok(())
}

fn directories_redirect_index_and_list(ctx: &Ctx) -> CheckResult {
    if !ctx.strict {
        return directories_contract(ctx);
    }
    let r = expect_status(ctx, &req("/dir"), 301)?;
    ensure_eq!(r.header("Location"), Some("/dir/"));
    let r = expect_status(ctx, &req("/list?x=1"), 301)?;
    ensure_eq!(r.header("Location"), Some("/list/?x=1"));
    // Never a scheme-relative Location (`//host/`): an open redirect.
    let r = expect_status(ctx, &req("//list"), 301)?;
    ensure_eq!(r.header("Location"), Some("/list/"));
    let r = expect_status(ctx, &req("//."), 301)?;
    ensure_eq!(r.header("Location"), Some("/"));
    for attack in ["//evil.example/..", "/\\evil.example/.."] {
        let r = expect_status(ctx, &req(attack), 301)?;
        ensure_eq!(r.header("Location"), Some("/"), "{attack}");
    }
    let r = expect_status(ctx, &req("/dir/"), 200)?;
    ensure_eq!(r.body, b"<p>dir index</p>\n");
    let r = expect_status(ctx, &req("/list/"), 200)?;
    ensure_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
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
    ensure!(zdir < awkward && awkward < b && b < space, "order:\n{html}");
    ensure!(
        html.contains("a&amp;b &lt;c&gt;.txt"),
        "names must be HTML-escaped:\n{html}"
    );
    ensure!(!html.contains("<c>"), "raw name leaked into HTML");
    // The links work.
    expect_status(ctx, &req("/list/a%26b%20%3Cc%3E.txt"), 200)?;
    expect_status(ctx, &req("/caf%C3%A9.txt"), 200)?;
    Ok(())
}

/// The contract of `directories_redirect_index_and_list`: a redirect (any
/// of 301, 302, 307, 308) to the path with a slash, relative or absolute,
/// never to another host; `index.html` for a folder that has one; a
/// listing whose names are escaped and whose links work.
fn directories_contract(ctx: &Ctx) -> CheckResult {
    let redirect = |path: &str, to: &str| -> CheckResult {
        let r = expect_status_in(ctx, &req(path), &[301, 302, 307, 308])?;
        let loc = r.header("Location").unwrap_or("");
        // An absolute Location names this server: strip the scheme and host.
        let rel = loc
            .strip_prefix("http://")
            .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or(loc);
        ensure!(
            rel == to || rel.starts_with(&format!("{to}?")),
            "Location {to:?} (or http://HOST{to}) for {path}, not {loc:?}"
        );
        Ok(())
    };
    redirect("/dir", "/dir/")?;
    redirect("/list?x=1", "/list/")?;
    // Never a scheme-relative Location (`//host/`, which a browser reads
    // as another host): an open redirect.
    for attack in ["//evil.example/..", "/\\evil.example/..", "//list"] {
        let r = fetch(ctx.addr, &req(attack))?;
        let loc = r.header("Location").unwrap_or("/");
        // An absolute Location may name the Host we sent (`t`), with or
        // without a port, or the server's own address.
        let host = loc
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
        let host = host.map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name));
        let other_host = loc.starts_with("//")
            || loc.starts_with("/\\")
            || host.is_some_and(|h| !matches!(h, "t" | "127.0.0.1" | "localhost"));
        ensure!(
            !other_host,
            "no redirect to another host for {attack:?}, not Location {loc:?}"
        );
    }
    let r = expect_status(ctx, &req("/dir/"), 200)?;
    ensure_eq!(
        r.body,
        b"<p>dir index</p>\n",
        "the body of /dir/ (its index.html)"
    );
    let r = expect_status(ctx, &req("/list/"), 200)?;
    ensure_eq!(media_type(&r), "text/html", "the media type of a listing");
    let html = r.text();
    for name in ["zdir", "b.txt", "space", "inner"] {
        if name == "inner" {
            ensure!(
                !html.contains("inner.txt"),
                "a listing of /list/ only, not of zdir/"
            );
        } else {
            ensure!(
                html.contains(name),
                "the listing of /list/ to name {name:?}"
            );
        }
    }
    ensure!(
        !html.contains("<c>"),
        "the name `a&b <c>.txt` HTML-escaped in the listing (a raw `<c>` is markup)"
    );
    // The links work.
    expect_status(ctx, &req("/list/a%26b%20%3Cc%3E.txt"), 200)?;
    expect_status(ctx, &req("/caf%C3%A9.txt"), 200)?;
    Ok(())
}

/// The media type of a response, without parameters, in lower case.
fn media_type(r: &Response) -> String {
    r.header("Content-Type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// True if the response says `Connection: close`, or is HTTP/1.0 without
/// keep-alive (the parsed response does not keep its version, so a
/// missing header counts as open).
fn says_close(r: &Response) -> bool {
    r.header("Connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
}

fn mime_types(ctx: &Ctx) -> CheckResult {
    if !ctx.strict {
        for (path, ty) in [
            ("/style.css", "text/css"),
            ("/data.json", "application/json"),
            ("/logo.svg", "image/svg+xml"),
            ("/pic.png", "image/png"),
            ("/range.txt", "text/plain"),
            ("/index.html", "text/html"),
        ] {
            let r = expect_status(ctx, &req(path), 200)?;
            ensure_eq!(media_type(&r), ty, "the media type of {path}");
        }
        let js = expect_status(ctx, &req("/app.js"), 200)?;
        ensure!(
            media_type(&js).ends_with("javascript"),
            "a JavaScript media type for /app.js, not {:?}",
            js.header("Content-Type")
        );
        return Ok(());
    }
    for (path, ty) in [
        ("/style.css", "text/css; charset=utf-8"),
        ("/data.json", "application/json; charset=utf-8"),
        ("/logo.svg", "image/svg+xml; charset=utf-8"),
        ("/pic.png", "image/png"),
        ("/range.txt", "text/plain; charset=utf-8"),
        ("/blob.zzqx", "application/octet-stream"),
    ] {
        let r = expect_status(ctx, &req(path), 200)?;
        ensure_eq!(r.header("Content-Type"), Some(ty), "{path}");
    }
    let js = expect_status(ctx, &req("/app.js"), 200)?;
    let ty = js.header("Content-Type").unwrap_or("");
    ensure!(ty.ends_with("javascript; charset=utf-8"), "{ty}");
    Ok(())
}

fn conditional_requests(ctx: &Ctx) -> CheckResult {
    let r = expect_status(ctx, &req("/range.txt"), 200)?;
    let etag = r
        .header("ETag")
        .ok_or_else(|| fail("an ETag header on a file"))?
        .to_string();
    let lm = r
        .header("Last-Modified")
        .ok_or_else(|| fail("a Last-Modified header on a file"))?
        .to_string();
    let cond =
        |h: &str| format!("GET /range.txt HTTP/1.1\r\nHost: t\r\n{h}\r\nConnection: close\r\n\r\n");
    let nm = expect_status(ctx, &cond(&format!("If-None-Match: {etag}")), 304)?;
    ensure!(nm.body.is_empty());
    ensure_eq!(nm.header("ETag"), Some(etag.as_str()));
    expect_status(
        ctx,
        &cond(&format!("If-None-Match: \"other\", W/{etag}")),
        304,
    )?;
    expect_status(ctx, &cond("If-None-Match: *"), 304)?;
    expect_status(ctx, &cond("If-None-Match: \"other\""), 200)?;
    expect_status(ctx, &cond(&format!("If-Modified-Since: {lm}")), 304)?;
    expect_status(
        ctx,
        &cond("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"),
        200,
    )?;
    expect_status(ctx, &cond("If-Modified-Since: not a date"), 200)?;
    // If-None-Match takes precedence over If-Modified-Since.
    expect_status(
        ctx,
        &cond(&format!(
            "If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}"
        )),
        200,
    )?;
    // HEAD is conditional too.
    let mut c = Client::open(ctx.addr)?;
    c.send(
        format!("HEAD /range.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
    );
    ensure_eq!(c.answer(true)?.status, 304);
    Ok(())
}

fn no_caching_headers_by_default(ctx: &Ctx) -> CheckResult {
    // As nginx: without --expires or --cache-control, clients revalidate
    // with the validators (or use a heuristic of their own).
    let r = expect_status(ctx, &req("/style.css"), 200)?;
    ensure_eq!(r.header("Cache-Control"), None);
    ensure_eq!(r.header("Expires"), None);
    Ok(())
}

/// `Expires` must be `Date` plus `secs`, and `Cache-Control` `max-age=secs`
/// (or `cache_control` when given).
fn assert_fresh_for(r: &Response, secs: u64, cache_control: &str, what: &str) -> CheckResult {
    let date = r.header("Date").and_then(crate::time::parse_http_date);
    let expires = r.header("Expires").and_then(crate::time::parse_http_date);
    let (Some(date), Some(expires)) = (date, expires) else {
        return Err(fail(format!(
            "{what}: a valid Date and Expires, not {:?}",
            r.headers
        )));
    };
    ensure_eq!(expires, date + secs, "{what}: Expires is not Date + {secs}");
    ensure_eq!(r.header("Cache-Control"), Some(cache_control), "{what}");
    Ok(())
}

fn expires_sets_max_age_and_expires(ctx: &Ctx) -> CheckResult {
    let mut server = ctx.start_variant(&["--expires", "600"]);
    let at = |raw: &str| fetch(server.addr, raw);
    let ok = at(&req("/style.css"))?;
    ensure_eq!(ok.status, 200);
    assert_fresh_for(&ok, 600, "max-age=600", "200")?;
    let etag = ok.header("ETag").unwrap().to_string();
    let not_modified = at(&format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    ))?;
    ensure_eq!(not_modified.status, 304);
    assert_fresh_for(&not_modified, 600, "max-age=600", "304")?;
    let part =
        at("GET /range.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n")?;
    ensure_eq!(part.status, 206);
    assert_fresh_for(&part, 600, "max-age=600", "206")?;
    // Errors, redirects and listings are not static files.
    for (path, status) in [("/nope", 404), ("/dir", 301), ("/list/", 200)] {
        let r = at(&req(path))?;
        ensure_eq!(r.status, status, "{path}");
        ensure_eq!(r.header("Expires"), None, "{path}");
        ensure_eq!(r.header("Cache-Control"), None, "{path}");
    }
    ensure!(server.terminate().success());
    Ok(())
}

fn cache_control_is_sent_verbatim(ctx: &Ctx) -> CheckResult {
    let value = "public, max-age=60, immutable";
    let mut server = ctx.start_variant(&["--cache-control", value]);
    let r = fetch(server.addr, &req("/style.css"))?;
    ensure_eq!(r.header("Cache-Control"), Some(value));
    ensure_eq!(r.header("Expires"), None);
    ensure!(server.terminate().success());
    // Both: the verbatim value replaces max-age; Expires stays.
    let mut server = ctx.start_variant(&["--expires", "30", "--cache-control", "no-cache"]);
    let r = fetch(server.addr, &req("/style.css"))?;
    assert_fresh_for(&r, 30, "no-cache", "--expires 30 --cache-control no-cache")?;
    ensure!(server.terminate().success());
    Ok(())
}

fn rate_limit_gives_429_then_serves_again(ctx: &Ctx) -> CheckResult {
    let mut server = ctx.start_variant(&["--rate-limit", "2", "--rate-burst", "3"]);
    // One keep-alive connection for everything (stage 2 serves one
    // connection at a time): the burst, three requests, is served.
    let mut c = Client::open(server.addr)?;
    for n in 1..=3 {
        c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        ensure_eq!(c.answer(false)?.status, 200, "request {n} of the burst");
    }
    // The fourth is limited, and the connection stays usable.
    c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
    let limited = c.answer(false)?;
    ensure_eq!(limited.status, 429, "the request after the burst");
    ensure_eq!(
        limited.header("Retry-After"),
        Some("1"),
        "2 a second: the next token within 1 s"
    );
    ensure_eq!(
        limited.header("Connection"),
        None,
        "a 429 keeps the connection"
    );
    c.send(b"HEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.answer(true)?;
    ensure_eq!(head.status, 429, "a HEAD right after");
    ensure!(head.body.is_empty(), "the 429 to a HEAD has no body");
    // The status page is not limited, and counts the two.
    c.send(b"GET /server-status HTTP/1.1\r\nHost: t\r\n\r\n");
    let page = c.answer(false)?;
    ensure_eq!(page.status, 200, "the status page under the limit");
    ensure!(
        page.text().contains("http_requests_rate_limited_total 2\n"),
        "the status page counts the 429s: {}",
        page.text()
    );
    // The bucket refills at 2 a second: the same connection is served
    // again within a second or so (asked every 100 ms, up to 3 s; a 429
    // takes no token).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.answer(false)?;
        if r.status == 200 {
            break;
        }
        ensure_eq!(r.status, 429, "while limited");
        ensure!(Instant::now() < deadline, "still 429 three seconds later");
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(server.terminate().success());
    Ok(())
}

fn ranges(ctx: &Ctx) -> CheckResult {
    let range = |spec: &str| {
        fetch(
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
        let r = range(spec)?;
        ensure_eq!(r.status, 206, "{spec}");
        ensure_eq!(r.text(), body, "{spec}");
        ensure_eq!(r.header("Content-Range"), Some(cr), "{spec}");
    }
    let r = range("bytes=20-")?;
    ensure_eq!(r.status, 416);
    ensure_eq!(r.header("Content-Range"), Some("bytes */20"));
    let invalid = range("bytes=5-2")?.status;
    if ctx.strict {
        ensure_eq!(invalid, 200, "invalid ranges are ignored");
    } else {
        // RFC 9110 14.2: a server may ignore or reject an invalid range.
        ensure!(
            matches!(invalid, 200 | 416),
            "200 (range ignored) or 416 for bytes=5-2, not {invalid}"
        );
    }
    ensure_eq!(range("lines=1-2")?.status, 200);
    let r = range("bytes=0-1,5-6")?;
    ensure_eq!(r.status, 206);
    let ty = r.header("Content-Type").unwrap_or("").to_string();
    let boundary = ty
        .strip_prefix("multipart/byteranges; boundary=")
        .ok_or_else(|| fail(format!("multipart/byteranges for two ranges, not {ty:?}")))?
        .to_string();
    let text = r.text();
    ensure!(
        text.contains("Content-Range: bytes 0-1/20\r\n\r\n01\r\n"),
        "{text}"
    );
    ensure!(
        text.contains("Content-Range: bytes 5-6/20\r\n\r\n56\r\n"),
        "{text}"
    );
    ensure!(text.ends_with(&format!("--{boundary}--\r\n")), "{text}");
    // If-Range: a matching validator keeps the range, a stale one gets 200.
    let etag = fetch(ctx.addr, &req("/range.txt"))?
        .header("ETag")
        .unwrap()
        .to_string();
    let ir = |v: &str| {
        fetch(
            ctx.addr,
            &format!(
                "GET /range.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\nIf-Range: {v}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    ensure_eq!(ir(&etag)?.status, 206);
    ensure_eq!(ir("\"stale\"")?.status, 200);
    // A range on HEAD is ignored.
    let mut c = Client::open(ctx.addr)?;
    c.send(b"HEAD /range.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\n\r\n");
    ensure_eq!(c.answer(true)?.status, 200);
    // Close it: stage 2 serves one connection at a time.
    drop(c);
    // A range in a large file.
    let r = fetch(
        ctx.addr,
        "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000000-1000009\r\nConnection: close\r\n\r\n",
    )?;
    let big = std::fs::read(ctx.root.join("big.bin")).unwrap();
    ensure_eq!(r.body, &big[1_000_000..1_000_010]);
    Ok(())
}

fn precompressed_siblings(ctx: &Ctx) -> CheckResult {
    let ae = |path: &str, enc: &str| {
        fetch(
            ctx.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {enc}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    let r = ae("/gz/page.html", "gzip, deflate, br")?;
    ensure_eq!(
        (r.header("Content-Encoding"), r.text().as_str()),
        (Some("br"), "pretend brotli bytes")
    );
    ensure_eq!(r.header("Vary"), Some("Accept-Encoding"));
    ensure_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let r = ae("/gz/page.html", "gzip")?;
    ensure_eq!(
        (r.header("Content-Encoding"), r.text().as_str()),
        (Some("gzip"), "pretend gzip bytes")
    );
    let r = ae("/gz/page.html", "identity")?;
    ensure_eq!(
        (r.header("Content-Encoding"), r.text().as_str()),
        (None, "<p>identity</p>\n")
    );
    ensure_eq!(r.header("Vary"), Some("Accept-Encoding"));
    let r = ae("/gz/only-gzip.txt", "br, gzip;q=0")?;
    ensure_eq!(r.header("Content-Encoding"), None);
    let r = ae("/range.txt", "gzip")?;
    ensure_eq!(
        (r.header("Content-Encoding"), r.header("Vary")),
        (None, None)
    );
    Ok(())
}

fn error_pages(ctx: &Ctx) -> CheckResult {
    let r = expect_status(ctx, &req("/no/such/file"), 404)?;
    ensure_eq!(r.text(), PAGE_404);
    ensure_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    // No custom 405 page: the built-in one.
    let r = expect_status(
        ctx,
        "DELETE / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        405,
    )?;
    ensure!(r.text().contains("405 Method Not Allowed"), "{}", r.text());
    // HEAD of an error: headers only.
    let mut c = Client::open(ctx.addr)?;
    c.send(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.answer(true)?;
    ensure_eq!(h.status, 404);
    ensure_eq!(
        h.header("Content-Length"),
        Some(PAGE_404.len().to_string().as_str())
    );
    ensure_eq!(
        c.answer(false)?.body,
        RANGE_TXT.as_bytes(),
        "HEAD must not send the error body"
    );
    Ok(())
}

fn api_add(ctx: &Ctx) -> CheckResult {
    let r = expect_status(ctx, &req("/api/add?a=2&b=40"), 200)?;
    ensure_eq!(r.text(), "{\"a\":2,\"b\":40,\"sum\":42}\n");
    ensure_eq!(
        r.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    let r = expect_status(ctx, &req("/api/add?a=-7&b=%2B3"), 200)?;
    ensure_eq!(r.text(), "{\"a\":-7,\"b\":3,\"sum\":-4}\n");
    for q in [
        "",
        "?a=1",
        "?a=x&b=1",
        "?a=9223372036854775807&b=1",
        "?a=1.5&b=1",
    ] {
        let r = expect_status(ctx, &req(&format!("/api/add{q}")), 400)?;
        ensure!(r.text().starts_with("{\"error\":"), "{q}: {}", r.text());
    }
    expect_status(
        ctx,
        "POST /api/add?a=1&b=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        405,
    )?;
    Ok(())
}

fn large_file_read_slowly(ctx: &Ctx) -> CheckResult {
    let big = std::fs::read(ctx.root.join("big.bin")).unwrap();
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut all = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut reads = 0;
    loop {
        let n = c.read_raw(&mut chunk).map_err(|e| {
            fail(format!(
                "the whole of /big.bin, but the download stalled: {e}"
            ))
        })?;
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
    let body_at = find(&all, b"\r\n\r\n").ok_or_else(|| fail("a response head"))? + 4;
    if ctx.strict {
        ensure!(all.starts_with(b"HTTP/1.1 200 OK\r\n"));
    } else {
        ensure!(
            all.starts_with(b"HTTP/1.1 200") || all.starts_with(b"HTTP/1.0 200"),
            "a 200 for /big.bin"
        );
    }
    ensure_eq!(all.len() - body_at, big.len());
    ensure!(all[body_at..] == big[..], "the body differs from the file");
    // Close our side as a real client does on EOF (stage 2 lingers until then).
    drop(c);
    expect_status(ctx, &req("/range.txt"), 200)?;
    Ok(())
}

fn junk_and_resets_leave_server_serving(ctx: &Ctx) -> CheckResult {
    // Binary junk.
    let mut c = Client::open(ctx.addr)?;
    c.send(&[0u8, 255, 1, 2, 3, b'\r', b'\n', b'\r', b'\n']);
    let all = c.read_to_end();
    ensure!(
        all.is_empty()
            || all.starts_with(b"HTTP/1.1 400")
            || (!ctx.strict && all.starts_with(b"HTTP/1.0 400")),
        "a 400 or a plain close for binary junk, not {:?}",
        super::check::shorten(&String::from_utf8_lossy(&all), 60)
    );
    drop(c);
    // A client that sends half a request and resets the connection.
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /big.bin HTTP/1.1\r\nHo");
    set_linger_zero(&c.stream);
    drop(c);
    // A client that asks for a large file and resets mid-body.
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut first = [0u8; 1024];
    let got = c.read_raw(&mut first);
    if ctx.strict {
        ensure!(
            got.is_ok_and(|n| n > 0),
            "the first bytes of /big.bin before the reset"
        );
    }
    set_linger_zero(&c.stream);
    drop(c);
    // A client that connects and closes without a byte.
    drop(Client::open(ctx.addr)?);
    expect_status(ctx, &req("/range.txt"), 200)?;
    Ok(())
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
    // Without it the close is an ordinary FIN, which the server copes
    // with too: nothing to report.
    .ok();
}

fn stalled_chunked_body_gets_408(ctx: &Ctx) -> CheckResult {
    // A chunked body is read before its request is answered, under the same
    // deadline as the head: a client that stops half-way gets a 408, not a
    // thread (or a connection slot) held for ever.
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    let r = c.answer(false)?;
    ensure_eq!(r.status, 408, "{r:?}");
    ensure_eq!(r.header("Connection"), Some("close"));
    ensure!(c.closed());
    Ok(())
}

fn header_timeout_gives_408(ctx: &Ctx) -> CheckResult {
    let started = Instant::now();
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    let r = c.answer(false)?;
    ensure_eq!(r.status, 408);
    ensure_eq!(r.header("Connection"), Some("close"));
    ensure!(c.closed());
    drop(c);
    // The suite runs the server with --header-timeout 1.
    ensure!(
        started.elapsed() >= Duration::from_millis(900),
        "408 came too early: {:?}",
        started.elapsed()
    );
    // Trickling bytes does not extend the deadline.
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET / HTTP/1.1\r\n");
    let started = Instant::now();
    let mut got = None;
    for _ in 0..40 {
        if c.write_raw(b"X").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(true) = c.answered_or_closed() {
            got = Some(());
            break;
        }
    }
    ensure!(
        got.is_some() || started.elapsed() < Duration::from_secs(4),
        "a trickling client was not cut off"
    );
    Ok(())
}

fn idle_keep_alive_is_closed(ctx: &Ctx) -> CheckResult {
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /range.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    ensure_eq!(c.answer(false)?.status, 200);
    let started = Instant::now();
    ensure!(c.closed(), "an idle keep-alive connection must be closed");
    // The suite runs the server with --keepalive-timeout 1.
    ensure!(
        started.elapsed() >= Duration::from_millis(500),
        "closed too early: {:?}",
        started.elapsed()
    );
    Ok(())
}

fn head_split_across_writes(ctx: &Ctx) -> CheckResult {
    let mut c = Client::open(ctx.addr)?;
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
    ensure_eq!(c.answer(false)?.body, RANGE_TXT.as_bytes());
    Ok(())
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

fn identical_to_core(ctx: &Ctx) -> CheckResult {
    let site = Site::new(
        &ctx.root,
        "core",
        Some(Path::new("errors")),
        AccessLog::disabled(),
    )
    .unwrap();
    for raw in IDENTICAL {
        // All requests on one connection, answered in order, then a close.
        let mut c = Client::open(ctx.addr)?;
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
        ensure!(
            wire == expected,
            "{raw:?}: the stage's bytes differ from the core's\n--- stage:\n{}\n--- core:\n{}",
            String::from_utf8_lossy(&wire),
            String::from_utf8_lossy(&expected)
        );
    }
    Ok(())
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

fn access_log_lines(ctx: &Ctx) -> CheckResult {
    let marker = format!("/log-marker-{}", std::process::id());
    let mut c = Client::open(ctx.addr)?;
    c.send(format!("GET {marker}?q=1 HTTP/1.1\r\nHost: t\r\nReferer: http://ref/\r\nUser-Agent: conf/1.0 \"q\"\r\nConnection: close\r\n\r\n").as_bytes());
    let r = c.answer(false)?;
    ensure_eq!(r.status, 404);
    let expected_tail = format!(
        "] \"GET {marker}?q=1 HTTP/1.1\" 404 {} \"http://ref/\" \"conf/1.0 \\\"q\\\"\"",
        PAGE_404.len()
    );
    // The writer flushes a few times a second; wait for the line (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&ctx.access_log).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains(&marker)) {
            ensure!(line.starts_with("127.0.0.1 - - ["), "{line}");
            ensure!(
                line.ends_with(&expected_tail),
                "{line}\nexpected to end with {expected_tail}"
            );
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "no access-log line for {marker} in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn curl_agrees(ctx: &Ctx) -> CheckResult {
    if !super::require_tool(&["curl", "--version"], "curl", "the curl checks") {
        return Err(Failure::skip("curl is not installed"));
    }
    let mut trust = Vec::new();
    if let Some(ca) = &ctx.tls_ca {
        trust.push("--cacert".to_string());
        trust.push(ca.display().to_string());
    }
    let curl = |args: &[&str]| -> Result<String, Failure> {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(&trust)
            .args(args)
            .output()
            .expect("run curl");
        ensure!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let scheme = if ctx.tls_ca.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{}", ctx.addr);
    let fmt = "%{http_code} %{content_type} %{size_download}";
    let out = curl(&["-o", "/dev/null", "-w", fmt, &format!("{base}/")])?;
    let index_len = std::fs::metadata(ctx.root.join("index.html"))
        .unwrap()
        .len();
    ensure_eq!(out, format!("200 text/html; charset=utf-8 {index_len}"));
    let out = curl(&["-r", "0-4", &format!("{base}/range.txt")])?;
    ensure_eq!(out, "01234");
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("{base}/dir"),
    ])
    .unwrap();
    ensure_eq!(out, format!("301 {base}/dir/"));
    let out = curl(&["-L", &format!("{base}/dir")])?;
    ensure_eq!(out, "<p>dir index</p>\n");
    let out = curl(&["-I", &format!("{base}/style.css")])?;
    ensure!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
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
    ])?;
    ensure_eq!(out, "1 0 ", "curl should reuse the connection");
    let out = curl(&[
        "--path-as-is",
        &format!("{base}/../secret.txt"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .unwrap();
    ensure_eq!(out, "400");
    Ok(())
}

fn status_page(ctx: &Ctx) -> CheckResult {
    let status = || {
        fetch(
            ctx.addr,
            "GET /server-status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
    };
    let first = status()?;
    ensure_eq!(first.status, 200, "{}", first.text());
    ensure_eq!(
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
    ensure!(
        first.text().contains("http_responses_total{class=\"2xx\"}"),
        "{}",
        first.text()
    );
    ensure!(
        first
            .text()
            .contains("http_timeouts_total{kind=\"header\"}"),
        "{}",
        first.text()
    );
    // The status request itself is counted once it is answered.
    let second = status()?;
    ensure!(value(&second, "http_requests_total") > value(&first, "http_requests_total"));
    // A HEAD has the headers and no body; other methods are refused.
    let mut c = Client::open(ctx.addr)?;
    c.send(b"HEAD /server-status HTTP/1.1\r\nHost: t\r\n\r\nPOST /server-status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    ensure_eq!(c.answer(true)?.status, 200);
    ensure_eq!(c.answer(false)?.status, 405);
    drop(c);
    // Prometheus's own checker (Debian: prometheus, which .ci/run installs).
    if !super::require_tool(
        &["promtool", "--version"],
        "prometheus",
        "`promtool check metrics`",
    ) {
        return Ok(());
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
    ensure!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The macro makes a test for every check, in the order of [`CHECKS`].
    #[test]
    fn the_macro_lists_every_check() {
        let names: Vec<String> = CHECKS.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(macro_names(), names);
    }

    /// Every check has a milestone and a sentence.
    #[test]
    fn checks_are_described() {
        for c in CHECKS {
            assert!(!c.about.is_empty() && !c.milestone.is_empty(), "{}", c.name);
        }
    }
}
