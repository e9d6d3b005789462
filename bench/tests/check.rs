//! The stage checker can pass and can fail.
//!
//! - Our stages 2 to 5 pass the stage 2 rubric, through the real
//!   `bench check` command line, and so does nginx.
//! - Servers written here, each our own core with one flaw, fail exactly
//!   the checks their flaw breaks, and nothing else: one that serves
//!   `../`, one that ignores keep-alive, one that answers HTTP/1.0 only.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bench::check::{Graded, grade_http_at};
use common::http::{Conn, Site, Step};
use common::logging::AccessLog;
use common::testkit::check::{Level, Outcome};
use common::testkit::conformance::Fixture;
use common::testkit::require_tool;

mod check_common;
use check_common::{bench_check, build};

/// A stage of ours passes every required check of the stage 2 rubric, and
/// the report ends with the counts.
fn our_stage_passes(stage: &str, extra: &[&str]) {
    let bin = build(stage);
    let bin = bin.to_string_lossy();
    let mut args = vec![
        "--stage",
        "2",
        "--",
        &bin,
        "--addr",
        "127.0.0.1:{port}",
        "--root",
        "{root}",
    ];
    args.extend_from_slice(extra);
    let (code, out) = bench_check(&args);
    assert_eq!(code, 0, "{stage} failed the stage 2 rubric:\n{out}");
    assert!(!out.contains("FAIL "), "{out}");
    let last = out.lines().last().unwrap_or("");
    assert!(last.ends_with("passed, 0 failed"), "{last}");
}

/// Stage 2 passes the stage 2 rubric, through the command line.
#[test]
fn stage2_passes_the_stage2_rubric() {
    our_stage_passes("stage2-http-seq", &[]);
}

/// Stage 3 passes it.
#[test]
fn stage3_passes_the_stage2_rubric() {
    our_stage_passes("stage3-threadpool", &[]);
}

/// Stage 4 passes it.
#[test]
fn stage4_passes_the_stage2_rubric() {
    our_stage_passes("stage4-epoll", &[]);
}

/// Stage 5 passes it.
#[test]
fn stage5_passes_the_stage2_rubric() {
    our_stage_passes("stage5-prefork", &["--workers", "2"]);
}

/// nginx, configured as a plain static server with listings on, passes
/// every required check (its policies, such as following a symlink out of
/// the root, cost it only extra credit). The configuration is written by
/// the command, because only the checker knows the port and the root.
#[test]
fn nginx_passes_the_stage2_rubric() {
    if !require_tool(&["nginx", "-v"], "nginx-light", "the nginx rubric test") {
        return;
    }
    let dir = bench::targets::TempDir::new("check-nginx").expect("a temp dir");
    let d = dir.path.display().to_string();
    let template = dir.path.join("nginx.conf.in");
    let basics = bench::targets::nginx_http_basics(&dir.path);
    std::fs::write(
        &template,
        format!(
            "daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{basics}    server {{
        listen 127.0.0.1:PORT;
        root ROOT;
        index index.html;
        autoindex on;
    }}
}}
"
        ),
    )
    .expect("write the nginx template");
    let script = format!(
        "sed -e 's#PORT#{{port}}#' -e 's#ROOT#{{root}}#' {t} > {d}/nginx.conf && \
         exec nginx -p {d} -c {d}/nginx.conf -e {d}/error.log",
        t = template.display()
    );
    let (code, out) = bench_check(&["--stage", "2", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "nginx failed the stage 2 rubric:\n{out}");
    assert!(
        out.contains("FAIL symlinks (extra credit, not required)"),
        "nginx follows symlinks out of the root by default:\n{out}"
    );
}

/// A server that exits at once is reported with its output, and the
/// checker exits non-zero.
#[test]
fn a_server_that_exits_is_reported() {
    let (code, out) = bench_check(&[
        "--stage",
        "2",
        "--",
        "sh",
        "-c",
        "echo 'cannot bind {port}: no such luck' >&2; exit 3",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("exited at start-up"), "{out}");
    assert!(out.contains("no such luck"), "{out}");
}

/// `--list` prints the rubric without starting anything, `--only` runs one
/// check, and `--json` writes the results.
#[test]
fn list_and_only() {
    let (code, out) = bench_check(&["--stage", "2", "--list"]);
    assert_eq!(code, 0);
    assert!(out.contains("traversal_never_leaks"), "{out}");
    assert!(
        !out.contains("identical_to_core"),
        "reference checks are ours only"
    );
    let (code, out) = bench_check(&["--stage", "1", "--list"]);
    assert_eq!(code, 0);
    assert!(out.contains("megabyte_stream_while_reading"), "{out}");
    let bin = build("stage4-epoll");
    let dir = bench::targets::TempDir::new("check-json").expect("a temp dir");
    let json = dir.path.join("results.json");
    let (code, out) = bench_check(&[
        "--stage",
        "2",
        "--only",
        "ranges",
        "--json",
        &json.to_string_lossy(),
        "--",
        &bin.to_string_lossy(),
        "--addr",
        "127.0.0.1:{port}",
        "--root",
        "{root}",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("1 passed, 0 failed\n"), "{out}");
    // `--json` writes the same results as data.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON file"))
            .expect("valid JSON");
    assert_eq!(doc["passed"], 1, "{doc}");
    assert_eq!(doc["required_passed"], true, "{doc}");
    assert_eq!(doc["checks"][0]["name"], "ranges", "{doc}");
    assert_eq!(doc["checks"][0]["outcome"], "pass", "{doc}");
}

/// What is wrong with a server written here.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    /// A target with `/../` in it is read from the file system as it
    /// stands, which walks out of the root.
    ServesDotDot,
    /// The connection is closed after every response, without saying so.
    IgnoresKeepAlive,
    /// Every response says HTTP/1.0 and the connection closes after it.
    AnswersHttp10Only,
}

/// Starts a server with `flaw` on `root`: this crate's core, a thread per
/// connection, one flaw.
fn flawed_server(flaw: Flaw, root: &Path) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("an address");
    let site = Arc::new(
        Site::new(root, "flawed", None, AccessLog::disabled()).expect("a site on the fixture"),
    );
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let site = site.clone();
            let root = root.clone();
            std::thread::spawn(move || {
                // A connection's errors end that connection only.
                let _ = serve(stream, &site, &root, flaw);
            });
        }
    });
    addr
}

fn serve(mut stream: TcpStream, site: &Site, root: &Path, flaw: Flaw) -> std::io::Result<()> {
    let mut conn = Conn::new(stream.peer_addr()?.ip());
    let mut input = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if flaw == Flaw::ServesDotDot
            && let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&input[..end]).into_owned();
            let target = head.split(' ').nth(1).unwrap_or("").to_string();
            if target.contains("/../") {
                let path = root.join(target.trim_start_matches('/'));
                let body = std::fs::read(path).unwrap_or_default();
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )?;
                stream.write_all(&body)?;
                return Ok(());
            }
        }
        let mut out = Vec::new();
        let (used, step) = conn.next(&input, site, false, &mut out);
        input.drain(..used);
        match step {
            Step::Respond(reply) => {
                if flaw == Flaw::AnswersHttp10Only && out.starts_with(b"HTTP/1.1") {
                    out[7] = b'0';
                }
                stream.write_all(&out)?;
                if let Some(region) = reply.file {
                    let mut body = vec![0; region.len as usize];
                    region.file.read_exact_at(&mut body, region.offset)?;
                    stream.write_all(&body)?;
                }
                if !reply.keep_alive || flaw != Flaw::ServesDotDot {
                    stream.shutdown(std::net::Shutdown::Write)?;
                    // Drain what the client still sends, then close.
                    while stream.read(&mut chunk).is_ok_and(|n| n > 0) {}
                    return Ok(());
                }
            }
            Step::NeedInput => {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                input.extend_from_slice(&chunk[..n]);
            }
            Step::Close => return Ok(()),
        }
    }
}

/// Grades the flawed server and returns the names of the required checks
/// it failed and of the extra-credit checks it failed.
fn failures(flaw: Flaw) -> (BTreeSet<&'static str>, BTreeSet<&'static str>, String) {
    let fixture = Fixture::create();
    let addr = flawed_server(flaw, &fixture.root);
    let mut report = Vec::new();
    let graded = grade_http_at(addr, &fixture, &mut report).expect("the rubric runs");
    let failed = |level: Level| -> BTreeSet<&'static str> {
        graded
            .iter()
            .filter(|g: &&Graded| g.level == level && matches!(g.outcome, Outcome::Fail(_)))
            .map(|g| g.name)
            .collect()
    };
    (
        failed(Level::Required),
        failed(Level::Extra),
        String::from_utf8_lossy(&report).into_owned(),
    )
}

/// The checks a server fails when it closes every connection after one
/// response: every check that needs a second answer on a connection.
const NEEDS_KEEP_ALIVE: &[&str] = &[
    "body_on_get_is_skipped_not_parsed",
    "body_split_across_writes_is_skipped",
    "chunked_body_split_at_every_byte",
    "chunked_body_then_pipelined_get",
    "head_has_get_headers_and_no_body",
    "keep_alive_http11",
    "pipelined_requests_in_order",
];

/// A server that serves `../` fails the traversal check, and no other.
#[test]
fn a_server_that_serves_dot_dot_fails_traversal_only() {
    let (required, extra, report) = failures(Flaw::ServesDotDot);
    assert_eq!(
        required,
        BTreeSet::from(["traversal_never_leaks"]),
        "{report}"
    );
    assert!(extra.is_empty(), "{report}");
    assert!(report.contains("leaked the secret"), "{report}");
    assert!(report.contains("| nc 127.0.0.1 "), "{report}");
}

/// A server that ignores keep-alive fails the checks that need a second
/// answer on one connection, and no other.
#[test]
fn a_server_that_ignores_keep_alive_fails_the_keep_alive_checks_only() {
    let report = fails_the_keep_alive_checks_only(Flaw::IgnoresKeepAlive);
    assert!(report.contains("closed it after 1 response(s)"), "{report}");
}

/// A server that answers HTTP/1.0 only fails the same checks: an
/// HTTP/1.0 answer ends its connection.
#[test]
fn a_server_that_answers_http10_only_fails_the_keep_alive_checks_only() {
    fails_the_keep_alive_checks_only(Flaw::AnswersHttp10Only);
}

/// Asserts that the server with `flaw` fails exactly the required checks
/// that need a second answer on one connection, and of the extra credit
/// only `http10_keep_alive_on_request`; returns the checker's report.
fn fails_the_keep_alive_checks_only(flaw: Flaw) -> String {
    let (required, extra, report) = failures(flaw);
    assert_eq!(
        required,
        NEEDS_KEEP_ALIVE.iter().copied().collect(),
        "{report}"
    );
    assert_eq!(
        extra,
        BTreeSet::from(["http10_keep_alive_on_request"]),
        "{report}"
    );
    report
}

/// A server that accepts connections and never answers fails each check
/// by its timeout, and the rubric stops when its budget runs out, saying
/// so: nothing hangs.
#[test]
fn a_silent_server_runs_out_the_budget() {
    if !require_tool(
        &["python3", "--version"],
        "python3",
        "the silent-server test",
    ) {
        return;
    }
    let silent = "import socket, time\n\
                  s = socket.socket()\n\
                  s.bind(('127.0.0.1', {port}))\n\
                  s.listen(512)\n\
                  time.sleep(600)\n";
    let (code, out) = bench_check(&[
        "--stage",
        "2",
        "--timeout",
        "1",
        "--budget",
        "3",
        "--",
        "python3",
        "-c",
        silent,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("time budget of 3s ran out"), "{out}");
    assert!(
        out.contains("SKIP get_index (not run: the time budget ran out)"),
        "{out}"
    );
    assert!(out.contains("(the check timed out"), "{out}");
    assert!(out.ends_with(" failed\n"), "{out}");
}

/// A server that exits in the middle of the rubric (this one reads the
/// first line a check sends and exits without an answer; connections
/// that send nothing, such as a readiness probe, are closed and it goes
/// on) fails the check it was in, with its last output, and every later
/// check is reported as not run: the checker neither hangs nor blames the
/// server's absence on each check in turn.
#[test]
fn a_server_that_exits_mid_rubric_is_reported() {
    if !require_tool(
        &["python3", "--version"],
        "python3",
        "the mid-rubric exit test",
    ) {
        return;
    }
    let once = "import os, socket, sys\n\
                s = socket.socket()\n\
                s.bind(('127.0.0.1', {port}))\n\
                s.listen(16)\n\
                print('listening on http://127.0.0.1:{port}/', flush=True)\n\
                while True:\n\
                \x20   c, _ = s.accept()\n\
                \x20   if c.makefile('rb').readline():\n\
                \x20       break\n\
                \x20   c.close()\n\
                print('read one line; goodbye', file=sys.stderr, flush=True)\n\
                os._exit(3)\n";
    let (code, out) = bench_check(&["--stage", "1", "--", "python3", "-c", once]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL lines_come_back_exactly")
            && out.contains("the server exited during this check: exit status: 3"),
        "{out}"
    );
    assert!(
        out.contains("read one line; goodbye"),
        "its last output: {out}"
    );
    assert!(
        out.contains("SKIP idle_client_is_closed (not run: the server is not running)"),
        "{out}"
    );
}

/// The checker stops the server and everything it started: a server run
/// through a shell that leaves a `sleep` in the background leaves nothing
/// running once the checker is done (it signals the process group).
#[test]
fn nothing_the_server_started_outlives_the_checker() {
    let bin = build("stage1-echo");
    let dir = bench::targets::TempDir::new("check-children").expect("a temp dir");
    let pidfile = dir.path.join("sleep.pid");
    let script = format!(
        "sleep 600 & echo $! > {}; exec {} --addr 127.0.0.1:{{port}}",
        pidfile.display(),
        bin.display()
    );
    let (code, out) = bench_check(&[
        "--stage",
        "1",
        "--only",
        "lines_come_back_exactly",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code, 0, "{out}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("the shell wrote the pid")
        .trim()
        .parse()
        .expect("a pid");
    // Gone, or a zombie waiting for a reaper: not running either way.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = state
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'));
    assert!(
        !running,
        "the server's child {pid} is still running: {state}"
    );
}
