//! The built-in peers (h2o, lighttpd) start from the configuration the
//! bench writes, serve the site the stages serve, keep the connection
//! alive across requests, and stop. `.ci/run` installs both; elsewhere a
//! missing one is skipped with a note, and under `CI` it fails the test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bench::targets::{self, Builtin, Launch, StartOptions, Target, TempDir};
use common::testkit::require_tool;

fn serves_the_site(server: Builtin, probe: &str) {
    if !require_tool(
        &[server.program(), probe],
        server.name(),
        "the bench's built-in peers",
    ) {
        return;
    }
    let dir = TempDir::new("bench-peer").expect("a temp dir");
    let www = targets::workspace_root().join("www");
    let root = targets::make_site(&www, &dir.path).expect("the bench's site copy");
    let logs = dir.path.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let target = Target {
        name: server.name().into(),
        about: String::new(),
        stage: None,
        launch: Launch::Builtin { server, workers: 1 },
    };
    let running = targets::start(&target, &StartOptions::new(&root, &logs, None))
        .unwrap_or_else(|e| panic!("{} does not start: {e}", server.name()));
    let index = std::fs::read(root.join("index.html")).unwrap();
    let mut s = TcpStream::connect(running.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Two requests on one connection, then a close: both answered with
    // the file, the first kept alive.
    s.write_all(
        b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\nGET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert_eq!(
        text.matches("HTTP/1.1 200 OK\r\n").count(),
        2,
        "two 200s from {}:\n{text}",
        server.name()
    );
    let body = String::from_utf8_lossy(&index);
    assert_eq!(text.matches(body.as_ref()).count(), 2, "the file twice");
    assert!(running.stop(), "{} stops on SIGTERM", server.name());
}

#[test]
fn h2o_serves_the_site_with_keep_alive() {
    serves_the_site(Builtin::H2o, "--version");
}

#[test]
fn lighttpd_serves_the_site_with_keep_alive() {
    serves_the_site(Builtin::Lighttpd, "-v");
}
