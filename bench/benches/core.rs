//! Micro-benchmarks of the sans-IO core (`cargo bench -p bench`).
//!
//! What one request costs the server before any socket is involved:
//! parsing (ours against plain `httparse`, so the cost of our limits and
//! framing rules shows), a whole request turned into a response by
//! `Conn::next`, writing a response head, resolving a path, the cached
//! `Date`, and the two queues of stage 3 under contention.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::http::parse::{Limits, parse};
use common::http::response::{HeadWriter, Persist};
use common::http::{Conn, Site, Version, path};
use common::logging::AccessLog;
use common::server::DEFAULT_ROOT;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stage3_threadpool::queue::{PushError, QueueKind, bounded};

/// What wrk sends.
const WRK: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// A short request from a command-line client.
const SHORT: &[u8] = b"GET /css/style.css HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// A browser's request, about 700 bytes.
const BROWSER: &[u8] = b"GET /gallery.html HTTP/1.1\r\n\
Host: localhost:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.7,fr;q=0.3\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: http://localhost:8080/index.html\r\n\
Connection: keep-alive\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=yes\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-User: ?1\r\n\
If-None-Match: \"5e1-18c1a2b3c4d\"\r\n\
Priority: u=0, i\r\n\r\n";

fn requests() -> [(&'static str, &'static [u8]); 3] {
    [("wrk", WRK), ("short", SHORT), ("browser", BROWSER)]
}

fn parsing(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse");
    for (name, req) in requests() {
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_with_input(BenchmarkId::new("common", name), req, |b, req| {
            b.iter(|| {
                matches!(
                    parse(black_box(req), &limits),
                    Ok(httparse::Status::Complete(_))
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("httparse", name), req, |b, req| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Request::new(&mut headers);
                matches!(r.parse(black_box(req)), Ok(httparse::Status::Complete(_)))
            })
        });
    }
    g.finish();
}

fn site() -> Site {
    // The bundled site exists in every checkout; the bench cannot run
    // without it.
    Site::new(
        Path::new(DEFAULT_ROOT),
        "bench",
        None,
        AccessLog::disabled(),
    )
    .expect("the bundled site")
}

fn responding(c: &mut Criterion) {
    let site = site();
    let mut g = c.benchmark_group("respond");
    for (name, req) in requests() {
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_with_input(BenchmarkId::new("conn_next", name), req, |b, req| {
            let mut out = Vec::with_capacity(4096);
            b.iter(|| {
                out.clear();
                let mut conn = Conn::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
                black_box(conn.next(black_box(req), &site, false, &mut out))
            })
        });
    }
    // One head per iteration: the bytes-per-second of a request make no
    // sense here.
    g.throughput(Throughput::Elements(1));
    g.bench_function("head_writer", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            let mut w = HeadWriter::new(&mut out, 200, "bench");
            w.header("Content-Length", black_box(1520u64))
                .content_type("text/html")
                .header("ETag", "\"5f0-18c1a2b3c4d\"");
            w.finish(Persist::new(Version::Http11, true)).len()
        })
    });
    g.finish();
}

fn paths(c: &mut Criterion) {
    let site = site();
    let mut g = c.benchmark_group("path");
    g.bench_function("normalize", |b| {
        b.iter(|| path::normalize(black_box("/files/sub/../a%20file%20%26%20more.txt")))
    });
    g.bench_function("resolve", |b| {
        b.iter(|| path::resolve(&site.root, black_box("/css/style.css")))
    });
    g.finish();
}

fn date(c: &mut Criterion) {
    c.bench_function("http_date_cached", |b| {
        b.iter(|| common::time::with_http_date(|d| black_box(d.len())))
    });
}

/// Pushes `items` through a queue from one producer (the acceptor) to
/// `consumers` worker threads, as stage 3 does; returns the elapsed time.
fn through_queue(kind: QueueKind, consumers: usize, items: u64) -> Duration {
    let (tx, rx) = bounded::<u64>(kind, 1024);
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..consumers {
            let rx = rx.clone();
            s.spawn(move || {
                let mut sum = 0u64;
                while let Some(v) = rx.pop() {
                    sum = sum.wrapping_add(v);
                }
                black_box(sum)
            });
        }
        drop(rx);
        for i in 0..items {
            let mut item = i;
            loop {
                match tx.try_push(item) {
                    Ok(()) => break,
                    Err(PushError::Full(v)) => {
                        item = v;
                        thread::yield_now();
                    }
                    Err(PushError::Closed(_)) => return,
                }
            }
        }
        // Dropping the producer closes the queue; the consumers drain it
        // and return.
        drop(tx);
    });
    start.elapsed()
}

fn queues(c: &mut Criterion) {
    const ITEMS: u64 = 10_000;
    let mut g = c.benchmark_group("stage3_queue");
    g.throughput(Throughput::Elements(ITEMS));
    for kind in [QueueKind::Mutex, QueueKind::Crossbeam] {
        for consumers in [1, 4] {
            g.bench_function(BenchmarkId::new(kind.name(), consumers), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| through_queue(kind, consumers, ITEMS))
                        .sum()
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = parsing, responding, paths, date, queues
}
criterion_main!(benches);
