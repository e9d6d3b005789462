//! Hostile clients against the prefork server. Run with `--nocapture` to
//! see the figures the course quotes.

use std::time::Duration;

use common::testkit::ServerProcess;
use common::testkit::abuse::{
    self, normal_clients, slow_reader_does_not_block_others, slowloris_crowd_is_served_alongside,
};
use common::testkit::client::Client;
use common::testkit::fdlock::many_connections;
use common::testkit::status;

const BIN: &str = env!("CARGO_BIN_EXE_stage5-prefork");

/// How long a test waits for the status page to show a state.
const STATE_TIMEOUT: Duration = Duration::from_secs(30);

/// 300 slowloris connections spread over two workers' event loops cost each
/// only a timer and a socket: while the whole crowd is connected (the
/// status page shows it, on both workers), normal clients are all answered
/// with 200, and afterwards the crowd is still connected and none of it has
/// timed out — they were served alongside it, not after it was let go.
#[test]
fn slowloris_crowd_does_not_stop_normal_clients() {
    const CROWD: u64 = 300;
    let server = ServerProcess::start(
        BIN,
        &[
            "--workers",
            "2",
            // Longer than the test: no slowloris connection times out.
            "--header-timeout",
            "120",
            "--access-log",
            "off",
        ],
    );
    let page = slowloris_crowd_is_served_alongside(server.addr, CROWD, "stage 5");
    let per_worker = status::samples(&page, "prefork_worker_connections");
    assert_eq!(per_worker.len(), 2, "two workers:\n{page}");
    assert!(
        per_worker.iter().all(|&(_, n)| n >= CROWD / 4),
        "the crowd is spread over both workers:\n{page}"
    );
}

/// A client reading a large file slowly does not hold up the others.
#[test]
fn a_slow_reader_does_not_hold_up_others() {
    slow_reader_does_not_block_others(BIN, &["--workers", "1"]);
}

/// More clients than `--max-connections` allows across the workers: the
/// master answers the extra ones `503` at once, keeps serving the others,
/// and serves new clients once the flood is gone.
#[test]
fn a_flood_beyond_max_connections_gets_503_not_a_hang() {
    let server = ServerProcess::start(
        BIN,
        &[
            "--workers",
            "2",
            "--max-connections",
            "4",
            "--access-log",
            "off",
        ],
    );
    // Eight keep-alive connections fill both workers.
    let mut held: Vec<Client> = (0..8)
        .map(|_| {
            let mut c = Client::connect(server.addr);
            c.send(b"GET /files/notes.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.response(false).status, 200);
            c
        })
        .collect();
    let flood = normal_clients(server.addr, "/files/notes.txt", 20);
    assert_eq!(flood.count(503), 20, "{flood:?}");

    // The held connections are still served.
    held[0].send(b"GET /files/notes.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(held[0].response(false).status, 200);
    held.clear();
    // Once the workers have noticed the closes (the status page is answered
    // again, and its own request is the only connection open), service
    // resumes.
    let page = status::wait_for(
        server.addr,
        "the held connections to close",
        STATE_TIMEOUT,
        |page| status::value(page, "http_connections_active") == Some(1),
    );
    // The master's 503s are on the status page, with the workers' figures
    // (the flood's 20, and any status request of the wait above that came
    // while the workers were still full).
    let rejected = status::value(&page, "http_connections_rejected_total").unwrap_or(0);
    let errors = status::samples(&page, "http_responses_total");
    let five = errors
        .iter()
        .find(|(l, _)| *l == "class=\"5xx\"")
        .map_or(0, |e| e.1);
    assert!(rejected >= 20 && five == rejected, "{page}");
    let after = normal_clients(server.addr, "/files/notes.txt", 10);
    assert_eq!(after.count(200), 10, "{after:?}");
}

/// Out of descriptors in the master (a low RLIMIT_NOFILE, inherited by the
/// workers), accepting pauses instead of spinning, and resumes.
#[test]
fn descriptor_exhaustion_does_not_spin_and_recovers() {
    abuse::descriptor_exhaustion_does_not_spin_and_recovers(
        BIN,
        &["--workers", "1"],
        "stage 5 master",
    );
}

/// A burst of a thousand connections at one worker is faster than its
/// event loop drains the Unix socket (which holds only a few hundred
/// passed descriptors) — here the worker is even stopped (SIGSTOP) while
/// the burst arrives. The master waits for room, leaving the rest in the
/// kernel's accept queue, and once the worker runs again every client is
/// served: none is refused.
#[test]
fn a_burst_of_connections_is_absorbed_not_refused() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    // A thousand connections: no other such test runs meanwhile.
    let _fds = many_connections();
    let server = ServerProcess::start(BIN, &["--workers", "1", "--access-log", "off"]);
    let pid = server.pid();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let worker: i32 = children
        .split_whitespace()
        .next()
        .expect("one worker")
        .parse()
        .unwrap();
    kill(Pid::from_raw(worker), Signal::SIGSTOP).unwrap();
    let mut clients: Vec<Client> = (0..1000)
        .map(|_| {
            let mut c = Client::connect(server.addr);
            c.send(b"GET /files/notes.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            c
        })
        .collect();
    kill(Pid::from_raw(worker), Signal::SIGCONT).unwrap();
    let statuses: Vec<u16> = clients
        .iter_mut()
        .map(|c| c.try_response(false).map_or(0, |r| r.status))
        .collect();
    let refused = statuses.iter().filter(|&&s| s != 200).count();
    assert_eq!(refused, 0, "{refused} of 1000 clients were not served");
}
