//! The stage 3, 4 and 5 rubrics can pass and can fail, through the real
//! `bench check` command line, on real sockets.
//!
//! - Stage 4 passes rubrics 3 and 4 and fails exactly the stage 5 process
//!   checks; stage 5 passes 3, 4 and 5; stage 2 fails exactly the stage 3
//!   concurrency checks; stage 3 passes the stage 3 rubric with its
//!   extra credit, and its classic pool (`--idle classic`) passes the
//!   requirements and fails the extra credit.
//! - Servers written here fail what they should: one thread per connection
//!   that never times out a slow head fails the stage 4 timeout and thread
//!   checks; a "prefork" that never replaces a dead worker fails the
//!   `kill -9` check.
//!
//! Each run holds the tests' many-connections lock (`fdlock`): the rubrics
//! open up to a thousand connections here (the default is 10,000; the
//! tests ask for fewer with `--idle-connections`), and their bounds are
//! not to be shared with another crowd of connections on two cores.

use std::collections::BTreeSet;

use common::testkit::fdlock;
use common::testkit::files::TempDir;
use common::testkit::require_tool;

mod check_common;
use check_common::{bench_check, build};

/// What one run of the checker gave.
struct Run {
    code: i32,
    report: String,
    required_failed: BTreeSet<String>,
    extra_failed: BTreeSet<String>,
    passed: BTreeSet<String>,
}

/// The loads the tests use: fewer idle connections than the default
/// 10,000, the short timeouts the servers are started with, a short
/// performance window (none unless asked).
const SMALL: &[&str] = &[
    "--idle-connections",
    "1000",
    "--header-timeout",
    "1",
    "--grace-period",
    "5",
    "--perf-seconds",
    "0",
];

/// Runs `bench check --stage N` with `options` on `command`, and reads the
/// results back from `--json`.
fn check(stage: &str, options: &[&str], command: &[&str]) -> Run {
    let dir = TempDir::new("check-concurrency");
    let json = dir.join("results.json");
    let json_arg = json.to_string_lossy().into_owned();
    let mut args = vec!["--stage", stage, "--json", &json_arg];
    args.extend_from_slice(options);
    args.push("--");
    args.extend_from_slice(command);
    let (code, report) = bench_check(&args);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON results ({e}); the report:\n{report}"));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let names = |level: &str, outcome: &str| -> BTreeSet<String> {
        doc["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["level"] == level && c["outcome"] == outcome)
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect()
    };
    let mut passed = names("required", "pass");
    passed.extend(names("extra credit", "pass"));
    Run {
        code,
        required_failed: names("required", "fail"),
        extra_failed: names("extra credit", "fail"),
        passed,
        report,
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// One of our stages, on `{port}` and `{root}`, with `args`.
fn our(bin: &str, args: &[&str]) -> Vec<String> {
    let mut cmd: Vec<String> = [bin, "--addr", "127.0.0.1:{port}", "--root", "{root}"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    cmd.extend(args.iter().map(|s| s.to_string()));
    cmd
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The stage 5 checks that only a server of several processes passes.
const PROCESS_CHECKS: &[&str] = &[
    "several_processes_serve_the_port",
    "killed_worker_is_replaced",
];

/// Stage 4 passes every check of rubrics 3 and 4 (the stage 5 rubric holds
/// them all, stage 3's extra credit required) and fails exactly the two
/// process checks of stage 5: one process serves the port, and there is
/// no worker to kill. Its SIGHUP re-reads the configuration and loses
/// nothing.
#[test]
fn stage4_passes_rubrics_3_and_4_and_fails_exactly_the_stage5_process_checks() {
    let bin = build("stage4-epoll");
    let _lock = fdlock::many_connections();
    let cmd = our(
        &bin.to_string_lossy(),
        &[
            "--header-timeout",
            "1",
            "--grace-period",
            "5",
            "--access-log",
            "off",
        ],
    );
    let run = check("5", SMALL, &refs(&cmd));
    assert_eq!(run.code, 1, "{}", run.report);
    assert_eq!(run.required_failed, set(PROCESS_CHECKS), "{}", run.report);
    assert!(run.extra_failed.is_empty(), "{}", run.report);
    for c in common::testkit::concurrency::rubric(4) {
        assert!(run.passed.contains(c.name), "{}: {}", c.name, run.report);
    }
    assert!(
        run.report.contains("found 1: pid "),
        "the failure names the one process: {}",
        run.report
    );
}

/// Stage 5 passes every check of rubrics 3, 4 and 5, extra credit
/// included, and the report carries the performance line next to our
/// stage 5 (built next to the checker).
#[test]
fn stage5_passes_rubrics_3_4_and_5() {
    let bin = build("stage5-prefork");
    let _lock = fdlock::many_connections();
    let cmd = our(
        &bin.to_string_lossy(),
        &[
            "--workers",
            "2",
            "--header-timeout",
            "1",
            "--grace-period",
            "5",
            "--access-log",
            "off",
        ],
    );
    let mut options = SMALL.to_vec();
    // A short performance window instead of none.
    let perf = options.len() - 1;
    options[perf] = "0.3";
    let run = check("5", &options, &refs(&cmd));
    assert_eq!(run.code, 0, "{}", run.report);
    assert!(run.required_failed.is_empty(), "{}", run.report);
    assert!(run.extra_failed.is_empty(), "{}", run.report);
    assert!(
        run.report
            .contains("Performance (information, never graded)")
            && run.report.contains("our stage5-prefork"),
        "{}",
        run.report
    );
    assert!(
        run.report.contains("KiB per connection"),
        "the memory per connection is reported: {}",
        run.report
    );
}

/// The checks a server fails when it serves one connection at a time.
const CONCURRENCY: &[&str] = &[
    "half_request_does_not_stop_others",
    "keepalive_holders_do_not_stop_a_new_client",
];
/// Stage 3's extra credit: what a classic pool cannot do.
const STAGE3_EXTRA: &[&str] = &[
    "hundreds_of_keepalive_connections_progress",
    "slowloris_leaves_clients_served",
];

/// Stage 2 fails exactly the stage 3 concurrency checks (and the extra
/// credit, which needs concurrency too): its overload is a wait in the
/// kernel's queue, and its SIGTERM drains. It runs with its default 10 s
/// header timeout and 5 s keep-alive timeout, which are what make the
/// others wait.
#[test]
fn stage2_fails_exactly_the_stage3_concurrency_checks() {
    let bin = build("stage2-http-seq");
    let _lock = fdlock::many_connections();
    let cmd = our(
        &bin.to_string_lossy(),
        &["--grace-period", "5", "--access-log", "off"],
    );
    let run = check("3", SMALL, &refs(&cmd));
    assert_eq!(run.code, 1, "{}", run.report);
    assert_eq!(run.required_failed, set(CONCURRENCY), "{}", run.report);
    assert_eq!(run.extra_failed, set(STAGE3_EXTRA), "{}", run.report);
    assert!(
        run.report
            .contains("while another connection holds half a request head"),
        "{}",
        run.report
    );
}

/// Stage 3's classic model (`--idle classic`): a pool whose workers each
/// hold a connection for as long as it lives.
const STAGE3_CLASSIC: &[&str] = &[
    "--idle",
    "classic",
    "--grace-period",
    "5",
    "--access-log",
    "off",
];

/// The classic pool passes the stage 3 requirements (its fairness policy
/// closes idle keep-alive connections when others wait, and it queues an
/// overload) and fails its extra credit: hundreds of keep-alive
/// connections cannot all progress on a few threads, and trickling heads
/// hold every worker until the header timeout. Both explained.
#[test]
fn classic_stage3_passes_the_stage3_requirements_and_fails_its_extra_credit() {
    let bin = build("stage3-threadpool");
    let _lock = fdlock::many_connections();
    let cmd = our(&bin.to_string_lossy(), STAGE3_CLASSIC);
    let run = check("3", SMALL, &refs(&cmd));
    assert_eq!(run.code, 0, "{}", run.report);
    assert!(run.required_failed.is_empty(), "{}", run.report);
    assert_eq!(run.extra_failed, set(STAGE3_EXTRA), "{}", run.report);
    assert!(
        run.report
            .contains("serves only as many connections as it has threads"),
        "{}",
        run.report
    );
    assert!(run.report.contains("a slowloris attack"), "{}", run.report);
}

/// Stage 3 with the poller (issue 17) passes the stage 3 rubric with its
/// extra credit: idle keep-alive connections wait in one poller thread,
/// not in the workers.
#[test]
fn stage3_poller_passes_the_stage3_rubric_with_extra_credit() {
    let bin = build("stage3-threadpool");
    let _lock = fdlock::many_connections();
    let cmd = our(
        &bin.to_string_lossy(),
        &["--grace-period", "5", "--access-log", "off"],
    );
    let run = check("3", SMALL, &refs(&cmd));
    assert_eq!(run.code, 0, "{}", run.report);
    assert!(run.required_failed.is_empty(), "{}", run.report);
    assert!(run.extra_failed.is_empty(), "{}", run.report);
}

/// Python's `ThreadingHTTPServer` speaking HTTP/1.1: a thread per
/// connection, and no timeout on a request head.
const THREAD_PER_CONNECTION: &str = "\
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Handler(SimpleHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *args):
        pass
ThreadingHTTPServer.request_queue_size = 1024
port, root = int(sys.argv[1]), sys.argv[2]
server = ThreadingHTTPServer(('127.0.0.1', port), functools.partial(Handler, directory=root))
print(f'listening on http://127.0.0.1:{port}/', flush=True)
server.serve_forever()
";

/// One thread per connection that never times out a slow head fails the
/// stage 4 checks that say so: its threads grow with its connections, and
/// a stalled head is held for ever.
#[test]
fn a_thread_per_connection_server_fails_the_timeout_and_thread_checks() {
    if !require_tool(
        &["python3", "--version"],
        "python3",
        "the thread-per-connection test",
    ) {
        return;
    }
    let _lock = fdlock::many_connections();
    let options = [
        "--idle-connections",
        "200",
        "--header-timeout",
        "1",
        "--grace-period",
        "5",
        "--perf-seconds",
        "0",
    ];
    let run = check(
        "4",
        &options,
        &["python3", "-c", THREAD_PER_CONNECTION, "{port}", "{root}"],
    );
    assert_eq!(run.code, 1, "{}", run.report);
    for name in [
        "threads_do_not_grow_with_connections",
        "stalled_head_gets_408_or_close",
    ] {
        assert!(run.required_failed.contains(name), "{name}: {}", run.report);
    }
    assert!(
        run.report.contains("a thread per connection"),
        "{}",
        run.report
    );
    assert!(run.report.contains("nothing came"), "{}", run.report);
}

/// A "prefork": the parent listens, forks two workers that accept on the
/// shared listener (a thread per connection each), and never replaces one
/// that dies.
const PREFORK_NO_RESPAWN: &str = "\
import functools, os, signal, socket, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Handler(SimpleHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *args):
        pass
port, root = int(sys.argv[1]), sys.argv[2]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(('127.0.0.1', port))
listener.listen(1024)
for _ in range(2):
    if os.fork() == 0:
        server = ThreadingHTTPServer(('127.0.0.1', port), functools.partial(Handler, directory=root), bind_and_activate=False)
        server.socket.close()
        server.socket = listener
        server.serve_forever()
print(f'listening on http://127.0.0.1:{port}/', flush=True)
while True:
    signal.pause()
";

/// The prefork that never replaces a worker is seen as several processes,
/// and fails the `kill -9` check, saying what a master must do.
#[test]
fn a_prefork_that_never_replaces_a_worker_fails_the_kill9_check() {
    if !require_tool(&["python3", "--version"], "python3", "the prefork test") {
        return;
    }
    let _lock = fdlock::many_connections();
    let cmd = ["python3", "-c", PREFORK_NO_RESPAWN, "{port}", "{root}"];
    let several = check("5", &["--only", "several_processes_serve_the_port"], &cmd);
    assert_eq!(several.code, 0, "{}", several.report);
    let killed = check("5", &["--only", "killed_worker_is_replaced"], &cmd);
    assert_eq!(killed.code, 1, "{}", killed.report);
    assert_eq!(
        killed.required_failed,
        set(&["killed_worker_is_replaced"]),
        "{}",
        killed.report
    );
    assert!(
        killed.report.contains("A master must notice a dead worker"),
        "{}",
        killed.report
    );
}

/// `--list` prints each rubric without starting anything: stage 4's holds
/// stage 3's checks with the extra credit now required, and stage 5's
/// holds stage 4's; the shutdown is last.
#[test]
fn the_stage3_to_5_rubrics_list_and_build_on_each_other() {
    let (code, three) = bench_check(&["--stage", "3", "--list"]);
    assert_eq!(code, 0);
    assert!(
        three.contains("slowloris_leaves_clients_served (extra credit)"),
        "{three}"
    );
    let (_, four) = bench_check(&["--stage", "4", "--list"]);
    assert!(
        four.contains("  slowloris_leaves_clients_served: "),
        "{four}"
    );
    assert!(four.contains("stalled_head_gets_408_or_close"), "{four}");
    let (_, five) = bench_check(&["--stage", "5", "--list"]);
    assert!(five.contains("killed_worker_is_replaced"), "{five}");
    assert!(
        five.contains("sighup_loses_nothing (extra credit)"),
        "{five}"
    );
    for list in [&three, &four, &five] {
        let last = list.lines().last().unwrap_or("");
        assert!(last.starts_with("  sigterm_drains_under_load"), "{list}");
    }
}
