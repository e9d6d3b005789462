//! What is particular to stage 2: one connection at a time, and the
//! operational contract (config file, `--help`, signals).

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::testkit::client::{Client, find};
use common::testkit::files::{TempDir, big_bytes};
use common::testkit::{ServerProcess, eventually};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_stage2-http-seq");
const GET: &[u8] = b"GET /files/notes.txt HTTP/1.1\r\nHost: t\r\n\r\n";

/// The lesson of the stage: while one client holds its keep-alive
/// connection, a second client is not served at all; it is served as soon as
/// the first one leaves.
#[test]
fn a_second_client_waits_for_the_first() {
    let server = ServerProcess::start(BIN, &["--keepalive-timeout", "30", "--access-log", "off"]);
    let mut a = Client::connect(server.addr);
    a.send(GET);
    assert_eq!(a.response(false).status, 200);

    let mut b = Client::connect(server.addr);
    b.send(GET);
    // The server is blocked in a read on A's connection: nothing can come.
    b.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let waited = b.stream.read(&mut byte);
    assert!(
        matches!(&waited, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "B was served while A held the server: {waited:?}"
    );
    b.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    drop(a);
    assert_eq!(b.response(false).status, 200);
}

/// The keep-alive timeout is what frees a sequential server from an idle
/// client: the waiting client is served once it expires.
#[test]
fn the_keepalive_timeout_frees_the_server() {
    let server = ServerProcess::start(BIN, &["--keepalive-timeout", "0.5", "--access-log", "off"]);
    let mut a = Client::connect(server.addr);
    a.send(GET);
    assert_eq!(a.response(false).status, 200);
    let started = Instant::now();
    let mut b = Client::connect(server.addr);
    b.send(GET);
    assert_eq!(b.response(false).status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "B was served before A idled out"
    );
    assert!(a.closed(), "A's idle connection was closed by the server");
}

/// SIGTERM during a download: the response in flight is finished, then the
/// server exits with status 0.
#[test]
fn sigterm_finishes_the_response_in_flight() {
    const BIG: usize = 8 << 20;
    let root = TempDir::site("stage2-sigterm", BIG);
    let mut server = ServerProcess::serving(BIN, &root, &[]);
    let mut c = Client::connect(server.addr);
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.read_some() > 0);
    // The server is now blocked sending the rest into a full socket.
    server.signal(Signal::SIGTERM);
    let (all, end) = c.read_until_closed();
    end.expect("the download ends with a FIN");
    let body_at = find(&all, b"\r\n\r\n").unwrap() + 4;
    assert!(
        all[body_at..] == big_bytes(BIG)[..],
        "the body was cut short"
    );
    let head = String::from_utf8_lossy(&all[..body_at]);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let status = server
        .wait_timeout(Duration::from_secs(10))
        .expect("the server exits");
    assert!(status.success(), "{status}");
}

/// A TOML config file sets what it names, and command-line flags win over it.
#[test]
fn config_file_then_flags() {
    let dir = TempDir::new("stage2-config");
    dir.write("site-a/which.txt", "a\n");
    dir.write("site-b/which.txt", "b\n");
    let cfg = dir.write(
        "stage2.toml",
        format!(
            "root = \"{}\"\naccess_log = \"off\"\nautoindex = false\n",
            dir.join("site-a").display()
        ),
    );
    let cfg_arg = cfg.to_str().unwrap();
    let server = ServerProcess::start(BIN, &["--config", cfg_arg]);
    let r = common::testkit::client::get(
        server.addr,
        "GET /which.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.text(), "a\n");
    let r = common::testkit::client::get(
        server.addr,
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 403, "autoindex = false in the file");
    drop(server);

    let b = dir.join("site-b");
    let server = ServerProcess::start(BIN, &["--config", cfg_arg, "--root", b.to_str().unwrap()]);
    let r = common::testkit::client::get(
        server.addr,
        "GET /which.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.text(), "b\n");
    drop(server);

    std::fs::write(&cfg, "root_dir = \"/\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", cfg_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown setting `root_dir`"), "{err}");
}

/// `--help` explains every flag with its default.
#[test]
fn help_shows_flags_and_defaults() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--addr <HOST:PORT>",
        "[default: 127.0.0.1:8080]",
        "--root <DIR>",
        "--config <FILE>",
        "--header-timeout <SECS>",
        "[default: 10]",
        "--keepalive-timeout <SECS>",
        "--access-log <FILE>",
        "--max-body <BYTES>",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

/// A port already in use is a clear start-up error, not a panic.
#[test]
fn a_busy_port_is_a_clean_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN).args(["--addr", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}

/// SIGUSR1 reopens the access log, so `logrotate` can move it away.
#[test]
fn sigusr1_reopens_the_access_log() {
    let dir = TempDir::new("stage2-reopen");
    let log = dir.join("access.log");
    let server = ServerProcess::start(BIN, &["--access-log", log.to_str().unwrap()]);
    let fetch = |path: &str| {
        let r = common::testkit::client::get(
            server.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 404);
    };
    let holds = |file: &Path, needle: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .contains(needle)
    };
    fetch("/before-rotation");
    eventually("the first line is written", Duration::from_secs(10), || {
        holds(&log, "/before-rotation")
    });
    let moved = dir.join("access.log.1");
    std::fs::rename(&log, &moved).unwrap();
    server.signal(Signal::SIGUSR1);
    // Until the writer thread notices, lines may still go to the moved file;
    // keep asking until one lands in the new file.
    let mut i = 0;
    eventually("the log is reopened", Duration::from_secs(10), || {
        fetch(&format!("/after-rotation-{i}"));
        i += 1;
        holds(&log, "/after-rotation")
    });
    assert!(holds(&moved, "/before-rotation"));
}
