//! The self-sizing pool, seen from outside: threads in `/proc/PID/task`
//! and gauges on `/server-status` follow a load step up and back down.
//! Every wait is bounded (`eventually`, a status gauge); none is a sleep.

use std::time::Duration;

use common::testkit::abuse::stalled_download;
use common::testkit::files::{BIG, TempDir};
use common::testkit::{ServerProcess, eventually, status};

const BIN: &str = env!("CARGO_BIN_EXE_stage3-threadpool");

/// The server's thread count, from `/proc/PID/task`.
fn threads_of(server: &ServerProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .count()
}

/// A pool of 1 to 4 workers. Three downloads whose clients do not read
/// hold three workers at once: the connections that wait for a worker
/// longer than the growth bound make the pool grow, to 4 at most (3
/// downloads and the status requests). Once the downloads are gone, the
/// idle workers exit after `--thread-idle-timeout` (0.2 s) until one is
/// left. Both the status page and `/proc/PID/task` show it, in both
/// `--idle` models.
#[test]
fn the_pool_grows_under_a_load_step_and_shrinks_back() {
    let root = TempDir::site("stage3-sizing", BIG);
    for idle in ["poller", "classic"] {
        let server = ServerProcess::serving(
            BIN,
            &root,
            &[
                "--idle",
                idle,
                "--min-threads",
                "1",
                "--max-threads",
                "4",
                "--thread-idle-timeout",
                "0.2",
            ],
        );
        let page = status::wait_for(server.addr, "one worker", Duration::from_secs(10), |p| {
            status::value(p, "threadpool_workers") == Some(1)
        });
        assert_eq!(status::value(&page, "threadpool_workers_min"), Some(1));
        assert_eq!(status::value(&page, "threadpool_workers_max"), Some(4));
        let base = threads_of(&server);

        // The load step: each download holds a worker until dropped. The
        // next one waits in the queue until the pool grows.
        let downloads: Vec<_> = (0..3).map(|_| stalled_download(server.addr)).collect();
        let page = status::wait_for(
            server.addr,
            "3 workers or more",
            Duration::from_secs(30),
            |p| status::value(p, "threadpool_workers").is_some_and(|n| n >= 3),
        );
        let grown = status::value(&page, "threadpool_workers").unwrap_or(0);
        assert!(grown <= 4, "{page}");
        assert!(
            status::value(&page, "threadpool_queue_waits_slow_total").is_some_and(|n| n >= 1),
            "growth follows a wait longer than the bound:\n{page}"
        );
        assert!(
            threads_of(&server) >= base + 2,
            "/proc/PID/task after growth"
        );
        eprintln!(
            "{idle}: {grown} workers under 3 stalled downloads, {} threads; {} queue waits over 10 ms",
            threads_of(&server),
            status::value(&page, "threadpool_queue_waits_slow_total").unwrap_or(0)
        );

        // The load goes away: the downloads' sockets close, their workers
        // are free, and idle workers retire down to the minimum. Watched in
        // /proc only: a status request would keep a worker busy.
        drop(downloads);
        eventually(
            "the pool shrinks back to one worker",
            Duration::from_secs(30),
            || threads_of(&server) == base,
        );
        let page = status::scrape(server.addr).expect("the status page");
        assert!(
            status::value(&page, "threadpool_workers_retired_total").is_some_and(|n| n >= 2),
            "{page}"
        );
        assert!(
            status::value(&page, "threadpool_workers").is_some_and(|n| n <= 2),
            "{page}"
        );
    }
}

/// `--threads N` still means a fixed pool: N workers from the start, and
/// neither growth nor retirement (min = max = N).
#[test]
fn threads_means_both_min_and_max() {
    let server = ServerProcess::start(BIN, &["--threads", "3"]);
    let page = status::scrape(server.addr).expect("the status page");
    assert_eq!(
        status::value(&page, "threadpool_workers"),
        Some(3),
        "{page}"
    );
    assert_eq!(
        status::value(&page, "threadpool_workers_min"),
        Some(3),
        "{page}"
    );
    assert_eq!(
        status::value(&page, "threadpool_workers_max"),
        Some(3),
        "{page}"
    );
}

/// A self-sizing pool at its minimum does not spin: with an idle timeout
/// of zero, a worker that times out and may not retire waits for its next
/// item without a timeout. The server, idle, uses well under half a core
/// in a second (spinning would use all of it), and still serves.
#[test]
fn an_idle_pool_at_its_minimum_does_not_spin() {
    let server = ServerProcess::start(
        BIN,
        &[
            "--min-threads",
            "1",
            "--max-threads",
            "4",
            "--thread-idle-timeout",
            "0",
        ],
    );
    let ticks = common::testkit::abuse::ticks_in_one_second(server.pid());
    assert!(ticks < 50, "{ticks} CPU ticks in one idle second");
    let page = status::scrape(server.addr).expect("the status page");
    assert_eq!(
        status::value(&page, "threadpool_workers"),
        Some(1),
        "{page}"
    );
}
