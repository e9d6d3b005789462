//! The reverse proxy (`--proxy-pass`): the conformance suite through it,
//! a large file from stage 2 through it, and what a client gets when the
//! upstream is down, too slow, or sends odd headers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::testkit::abuse::stalled_download;
use common::testkit::check::{Outcome, run_here, set_strict_framing};
use common::testkit::client::{Client, find};
use common::testkit::conformance::{CHECKS, Ctx, Fixture};
use common::testkit::files::BIG;
use common::testkit::files::{TempDir, big_bytes};
use common::testkit::{ServerProcess, eventually};
use common::testkit::{procfs, status};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_stage4-epoll");

/// The checks that do not apply through the proxy, and why.
const NOT_THROUGH_THE_PROXY: &[(&str, &str)] = &[
    (
        "status_page",
        "the status page is the proxy's own: its counters count what the proxy did",
    ),
    (
        "expires_sets_max_age_and_expires",
        "a variant of the proxy with --expires sits in front of an upstream without it",
    ),
    (
        "cache_control_is_sent_verbatim",
        "the same for --cache-control: caching headers are the upstream's",
    ),
];

/// Starts stage 4 as a proxy in front of `upstream`, with `args`.
fn proxy(upstream: SocketAddr, args: &[&str]) -> ServerProcess {
    let pass = format!("http://{upstream}");
    let mut all = vec!["--access-log", "off", "--proxy-pass", &pass];
    all.extend_from_slice(args);
    ServerProcess::start(BIN, &all)
}

/// A status-page figure of `server`, or 0.
fn figure(server: &ServerProcess, name: &str) -> u64 {
    let page = status::scrape(server.addr).expect("the status page");
    status::samples(&page, name).first().map_or(0, |(_, v)| *v)
}

/// A status-page sample of `server` by its full name with labels.
fn labelled(server: &ServerProcess, name: &str, labels: &str) -> u64 {
    let page = status::scrape(server.addr).expect("the status page");
    status::samples(&page, name)
        .into_iter()
        .find(|(l, _)| l.contains(labels))
        .map_or(0, |(_, v)| v)
}

/// The conformance suite, run against the proxy with stage 4 serving the
/// fixture behind it: every check except the ones listed in
/// [`NOT_THROUGH_THE_PROXY`]. The upstream's keep-alive timeout is the
/// suite's 1 s, so pooled connections expire under the proxy during the
/// run and the resend path is taken too. The proxy's counter proves the
/// requests went upstream (the proxy has the same `--root`, which it needs
/// for its own error pages).
#[test]
fn the_conformance_suite_passes_through_the_proxy() {
    conformance_through_the_proxy(&["--loops", "1"]);
}

/// The same with two event loops in the proxy, each with its own pool of
/// upstream connections.
#[test]
fn the_conformance_suite_passes_through_a_proxy_with_two_loops() {
    conformance_through_the_proxy(&["--loops", "2"]);
}

/// Runs the suite through a proxy started with `proxy_args` (see
/// [`the_conformance_suite_passes_through_the_proxy`]).
fn conformance_through_the_proxy(proxy_args: &[&str]) {
    let fixture = Fixture::create();
    let root = fixture.root.display().to_string();
    let upstream = ServerProcess::start(
        BIN,
        &[
            "--root",
            &root,
            "--access-log",
            "off",
            "--header-timeout",
            "1",
            "--keepalive-timeout",
            "1",
            "--send-timeout",
            "5",
        ],
    );
    let log = fixture.base.join("proxy-access.log");
    let pass = format!("http://{}", upstream.addr);
    let args: Vec<String> = [
        "--root",
        &root,
        "--access-log",
        &log.display().to_string(),
        "--header-timeout",
        "1",
        "--keepalive-timeout",
        "1",
        "--send-timeout",
        "5",
        "--grace-period",
        "5",
        "--proxy-pass",
        &pass,
        "--proxy-timeout",
        "10",
    ]
    .iter()
    .chain(proxy_args)
    .map(|s| s.to_string())
    .collect();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(BIN, &arg_refs);
    let ctx = Ctx {
        addr: server.addr,
        root: fixture.root.clone(),
        access_log: log,
        bin: BIN.to_string(),
        args,
        strict: true,
        tls_ca: None,
    };
    for (name, _) in NOT_THROUGH_THE_PROXY {
        assert!(CHECKS.iter().any(|c| c.name == *name), "no check {name}");
    }
    set_strict_framing(true);
    let mut failures = Vec::new();
    let mut ran = 0;
    for check in CHECKS {
        if NOT_THROUGH_THE_PROXY.iter().any(|(n, _)| *n == check.name) {
            continue;
        }
        ran += 1;
        match run_here(check, &ctx) {
            Outcome::Pass => {}
            Outcome::Skip(why) => eprintln!("SKIPPED {}: {why}", check.name),
            Outcome::Fail(f) => failures.push(format!("{}: {f}", check.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} checks failed through the proxy:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let forwarded = figure(&server, "http_proxy_requests_total");
    assert!(
        forwarded >= ran,
        "only {forwarded} requests went upstream in {ran} checks"
    );
}

/// Builds stage 2 (a debug build, quick when the workspace is built) and
/// returns its binary, next to this crate's.
fn stage2() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "stage2-http-seq"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build -p stage2-http-seq failed");
    let bin = PathBuf::from(BIN).with_file_name("stage2-http-seq");
    assert!(bin.exists(), "no {}", bin.display());
    bin
}

/// A 24 MiB file served by stage 2 arrives through the proxy byte for
/// byte, twice on one connection (the second time over the pooled
/// upstream connection).
#[test]
fn a_24_mib_file_from_stage_2_arrives_intact() {
    let root = TempDir::new("proxy-big");
    let data = big_bytes(24 << 20);
    root.write("big.bin", &data);
    let upstream = ServerProcess::serving(stage2(), &root, &[]);
    let server = proxy(upstream.addr, &[]);
    let mut c = Client::connect(server.addr);
    for _ in 0..2 {
        let r = c.get("/big.bin");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), data.len());
        assert!(r.body == data, "the bytes differ");
    }
    assert_eq!(
        figure(&server, "http_proxy_upstream_connections_opened_total"),
        1
    );
}

/// A client that stops reading a 24 MiB download does not make the proxy
/// buffer it: the proxy stops reading the upstream, whose send then times
/// out (stage 2, `--send-timeout 1`, counts it on its status page). The
/// proxy's memory stays far below the file's size; a proxy that read on
/// regardless would hold the file, and the upstream would never time out.
#[test]
fn a_client_that_stops_reading_does_not_grow_the_proxy() {
    let root = TempDir::new("proxy-slow-client");
    root.write("big.bin", big_bytes(24 << 20));
    let upstream = ServerProcess::serving(stage2(), &root, &["--send-timeout", "1"]);
    let server = proxy(upstream.addr, &["--send-timeout", "30"]);
    let mut c = Client::connect_small_window(server.addr);
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    // Stage 2 counts the send that made no progress for a second.
    status::wait_for(
        upstream.addr,
        "a send timeout upstream",
        Duration::from_secs(30),
        |page| {
            status::samples(page, "http_timeouts_total")
                .iter()
                .any(|(l, v)| l.contains("send") && *v >= 1)
        },
    );
    let rss = procfs::rss_kib(server.pid());
    assert!(rss < 12 * 1024, "the proxy holds {rss} KiB");
    drop(c);
}

/// With nothing listening upstream, a request gets `502 Bad Gateway`
/// from the proxy, the connection stays open for the next one, and the
/// status page counts refused connections.
#[test]
fn upstream_down_gives_502() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The listener is closed: connecting to `port` is refused.
    let server = proxy(port, &[]);
    let mut c = Client::connect(server.addr);
    for _ in 0..2 {
        let r = c.get("/index.html");
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(r.text().contains("502 Bad Gateway"), "{}", r.text());
    }
    assert_eq!(
        labelled(&server, "http_proxy_upstream_errors_total", "refused"),
        2
    );
}

/// A test-made upstream that accepts and never answers: the request gets
/// `504 Gateway Timeout` once `--proxy-timeout` has passed (not before),
/// and the status page counts a timeout.
#[test]
fn a_slow_upstream_gives_504_after_the_proxy_timeout() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<TcpStream>();
    std::thread::spawn(move || {
        for s in silent.incoming().flatten() {
            // Held open, never answered.
            let _ = tx.send(s);
        }
    });
    let server = proxy(addr, &["--proxy-timeout", "0.5"]);
    let mut c = Client::connect(server.addr);
    let asked = Instant::now();
    let r = c.get("/slow");
    let took = asked.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    // After the proxy timeout, and because of it: not at once, and not at
    // some other, longer timer (the header and keep-alive timeouts are 10 s
    // and more; the bound is ten times the proxy timeout, for a busy
    // machine).
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "504 after {took:?}"
    );
    assert!(rx.try_recv().is_ok(), "the upstream got the connection");
    assert_eq!(
        labelled(&server, "http_proxy_upstream_errors_total", "timeout"),
        1
    );
}

/// What the upstream sees and what the client gets, with a test-made
/// upstream: `X-Forwarded-For` and `Forwarded` are added, hop-by-hop
/// fields are removed both ways (also those the `Connection` header
/// names), and a chunked response is passed on whole.
#[test]
fn forwarded_fields_are_added_and_hop_by_hop_fields_removed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while find(&head, b"\r\n\r\n").is_none() {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the proxy closed before the end of the head");
            head.extend_from_slice(&buf[..n]);
        }
        tx.send(head).unwrap();
        s.write_all(
            b"HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\n\
              Transfer-Encoding: chunked\r\nX-Kept: yes\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
    });
    let server = proxy(addr, &[]);
    let mut c = Client::connect(server.addr);
    c.send(
        b"GET /a?b=c HTTP/1.1\r\nHost: site\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
          TE: trailers\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n",
    );
    let r = c.response(false);
    let head = String::from_utf8(rx.recv().unwrap()).unwrap();
    assert!(
        head.starts_with("GET /a?b=c HTTP/1.1\r\nHost: site\r\n"),
        "{head}"
    );
    for gone in ["X-Hop", "TE:", "Connection"] {
        assert!(!head.contains(gone), "{gone} reached the upstream:\n{head}");
    }
    assert!(
        head.contains("X-Forwarded-For: 10.1.2.3, 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Forwarded: for=127.0.0.1;proto=http;host=\"site\"\r\n"),
        "{head}"
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
    assert_eq!(r.header("X-Kept"), Some("yes"));
    for gone in ["X-Private", "Keep-Alive", "Connection"] {
        assert_eq!(r.header(gone), None, "{gone} reached the client");
    }
}

/// With `--proxy-prefix /app/` only paths under it go upstream; the rest
/// come from the proxy's own `--root`.
#[test]
fn only_the_prefix_is_forwarded() {
    let up_root = TempDir::new("proxy-up");
    up_root.write("app/x.txt", "from upstream\n");
    up_root.write("index.html", "upstream index\n");
    let upstream = ServerProcess::serving(BIN, &up_root, &[]);
    let own_root = TempDir::new("proxy-own");
    own_root.write("index.html", "local index\n");
    let server = proxy(
        upstream.addr,
        &["--root", own_root.arg(), "--proxy-prefix", "/app/"],
    );
    let mut c = Client::connect(server.addr);
    assert_eq!(c.get("/app/x.txt").text(), "from upstream\n");
    assert_eq!(c.get("/index.html").text(), "local index\n");
    assert_eq!(c.get("/app/none").status, 404);
    assert_eq!(figure(&server, "http_proxy_requests_total"), 2);
}

/// Reads one request from `s` (head, then a `Content-Length` body or a
/// chunked one, as raw bytes up to the empty line that ends it); returns
/// the head and the body bytes as they arrived.
fn read_request(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = find(&data, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the proxy closed inside the head");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
    let mut body = data.split_off(head_end);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let chunked = head.contains("Transfer-Encoding: chunked\r\n");
    // The test's chunked bodies have no empty line before their end.
    let done = |body: &[u8]| {
        if chunked {
            body.ends_with(b"\r\n\r\n")
        } else {
            body.len() >= length.unwrap_or(0)
        }
    };
    while !done(&body) {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the proxy closed inside the body ({} of {length:?})",
            body.len()
        );
        body.extend_from_slice(&buf[..n]);
    }
    (head, body)
}

/// Request bodies stream up unchanged: a 1 MiB `Content-Length` body and
/// a chunked one (forwarded chunked, as it came) reach a test-made
/// upstream byte for byte, on one pooled upstream connection, and the
/// client's connection carries a third request after them.
#[test]
fn request_bodies_stream_to_the_upstream_unchanged() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        for _ in 0..3 {
            let got = read_request(&mut s);
            let answer = format!("got {} bytes", got.1.len());
            tx.send(got).unwrap();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
            s.write_all(reply.as_bytes()).unwrap();
        }
    });
    let server = proxy(addr, &[]);
    let mut c = Client::connect(server.addr);
    let body = big_bytes(1 << 20);
    c.send(
        format!(
            "PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    assert_eq!(
        c.response(false).text(),
        format!("got {} bytes", body.len())
    );
    let (head, got) = rx.recv().unwrap();
    assert!(head.starts_with("PUT /up HTTP/1.1\r\n"), "{head}");
    assert!(got == body, "the body changed on the way");
    let chunked = b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\n";
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(chunked);
    assert_eq!(c.response(false).status, 200);
    let (head, got) = rx.recv().unwrap();
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert_eq!(got, chunked);
    assert_eq!(c.get("/after").text(), "got 0 bytes");
    assert_eq!(
        figure(&server, "http_proxy_upstream_connections_opened_total"),
        1
    );
}

/// An upstream that answers before it has read the request body, and
/// closes (as a server does with a 413): the client gets that answer
/// whole, with `Connection: close`, and then the close; not a 502.
#[test]
fn an_early_answer_and_close_from_the_upstream_reaches_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while find(&head, b"\r\n\r\n").is_none() {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n",
        )
        .unwrap();
        // Closing with the body unread makes the kernel send a reset.
    });
    let server = proxy(addr, &[]);
    let mut c = Client::connect(server.addr);
    let body = big_bytes(1 << 20);
    c.send(
        format!(
            "PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let r = c.response(false);
    assert_eq!((r.status, r.text().as_str()), (413, "too big\n"));
    assert_eq!(r.header("Connection"), Some("close"));
    c.expect_closed();
}

/// SIGTERM on the proxy in the middle of a proxied download: the proxy
/// stops accepting, the download (16 MiB from a stage 4 upstream, read
/// through a small window) still arrives whole and ends with a FIN, and
/// the proxy exits 0.
#[test]
fn sigterm_lets_a_proxied_download_finish() {
    let root = TempDir::site("proxy-sigterm", BIG);
    let upstream = ServerProcess::serving(BIN, &root, &[]);
    let mut server = proxy(upstream.addr, &["--grace-period", "30"]);
    let mut download = stalled_download(server.addr);
    server.signal(Signal::SIGTERM);
    eventually(
        "new connections are refused after SIGTERM",
        Duration::from_secs(5),
        || TcpStream::connect(server.addr).is_err(),
    );
    let (all, end) = download.read_until_closed();
    assert!(end.is_ok(), "the download ends with a FIN, not {end:?}");
    let head_end = find(&all, b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&all[..head_end]);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(all.len() - head_end, BIG, "the whole file arrives");
    let status = server.wait_timeout(Duration::from_secs(30)).expect("exit");
    assert!(status.success(), "{status}");
}
