//! Opens many connections to a server and holds them open: the tool of the
//! chapter's break-it labs and memory measurements.
//!
//! ```text
//! cargo run --release -p stage3-threadpool --example hold -- ADDR N [idle|keepalive]
//! ```
//!
//! - `idle` (the default): connect and say nothing, like a browser's
//!   preconnect (or a slowloris attack). Each connection occupies a worker
//!   until `--header-timeout`.
//! - `keepalive`: send one request on each connection, read the answer, and
//!   keep the connection open, like a browser between page loads.
//!
//! Prints one line once every connection is open, then holds them until
//! its standard input closes (or it is killed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hold ADDR N [idle|keepalive]";
    let addr = args.next().expect(usage);
    let n: usize = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let keepalive = match args.next().as_deref() {
        None | Some("idle") => false,
        Some("keepalive") => true,
        Some(_) => panic!("{usage}"),
    };
    let start = Instant::now();
    let mut held = Vec::with_capacity(n);
    let mut closed = 0;
    for _ in 0..n {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set a read timeout");
        if keepalive {
            s.write_all(b"GET / HTTP/1.1\r\nHost: hold\r\n\r\n")
                .expect("send a request");
            if read_response(&mut s) {
                closed += 1;
            }
        }
        held.push(s);
    }
    println!(
        "holding {n} connections ({}) after {:.2?}; {closed} answers said Connection: close",
        if keepalive { "keepalive" } else { "idle" },
        start.elapsed()
    );
    // Hold until stdin closes: `hold ... < /dev/null` exits at once, an
    // interactive run waits for Ctrl-D, a script kills it.
    let mut line = String::new();
    while BufReader::new(std::io::stdin())
        .read_line(&mut line)
        .unwrap_or(0)
        > 0
    {
        line.clear();
    }
    drop(held);
}

/// Reads one response (head and `Content-Length` body); true if it said
/// `Connection: close`.
fn read_response(s: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("the body");
    head.contains("connection: close")
}
