//! The load presets in `stage3-threadpool/presets/` (the curriculum's low,
//! medium and high load configurations) load, size the pool they say, and
//! serve; the low one's bound of 50 connections holds.

use std::net::TcpStream;
use std::time::Duration;

use common::testkit::client::{Client, get};
use common::testkit::{ServerProcess, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_stage3-threadpool");

/// `stage3-threadpool/presets/NAME.toml`.
fn preset(name: &str) -> String {
    format!("{}/presets/{name}.toml", env!("CARGO_MANIFEST_DIR"))
}

/// Worker threads of the running server, by name in `/proc/PID/task`.
fn workers(server: &ServerProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("worker-"))
        .count()
}

/// Each preset starts the pool it describes and serves the site.
#[test]
fn each_preset_sizes_the_pool_it_says() {
    for (name, threads) in [("low-load", 2), ("medium-load", 4), ("high-load", 8)] {
        let config = preset(name);
        let server = ServerProcess::start(BIN, &["--config", &config, "--access-log", "off"]);
        // A new thread names itself, a moment after it exists.
        eventually(
            &format!("{name}: {threads} threads named worker-N"),
            Duration::from_secs(10),
            || workers(&server) == threads,
        );
        let r = get(
            server.addr,
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "{name}: {r:?}");
    }
}

/// Low load: 2 workers and a queue of 48. In the classic model that is
/// at most 50 connections held: with 50 clients connected and silent (two
/// on the workers, waiting for their request head; the rest queued), the
/// 51st is answered `503` at once; once the silent ones leave, a client is
/// served again. In the poller model (the default) silent connections are
/// held by the poller and take no queue slot: the 51st is served at once,
/// the 50 silent ones still connected.
#[test]
fn the_low_load_preset_holds_at_most_fifty_connections() {
    let config = preset("low-load");
    let server = ServerProcess::start(
        BIN,
        &[
            "--config",
            &config,
            "--idle",
            "classic",
            "--access-log",
            "off",
        ],
    );
    let silent: Vec<TcpStream> = (0..50).map(|_| server.connect()).collect();
    let busy = get(server.addr, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(busy.status, 503, "the 51st connection: {busy:?}");
    assert!(busy.header("Retry-After").is_some(), "{busy:?}");
    // The workers see each silent client's close (an end of file) and
    // empty the queue one by one; until then a newcomer may still get 503.
    drop(silent);
    eventually(
        "a new client is served again",
        Duration::from_secs(10),
        || Client::connect(server.addr).get("/").status == 200,
    );

    let server = ServerProcess::start(BIN, &["--config", &config, "--access-log", "off"]);
    let silent: Vec<TcpStream> = (0..50).map(|_| server.connect()).collect();
    let served = get(server.addr, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(served.status, 200, "the 51st connection: {served:?}");
    drop(silent);
}
