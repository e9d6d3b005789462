//! Hostile clients for the abuse tests every concurrent stage runs: a
//! slowloris crowd, normal clients whose latency is recorded, a slow reader,
//! and `/proc` readings of the server.
//!
//! The figures these helpers return are *printed* by the tests (run them
//! with `--nocapture` to see them) and quoted in the course; they are never
//! compared with a speed threshold. What the tests assert is that normal
//! clients are answered at all, within generous upper bounds that only a
//! starved server would exceed.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::Client;

/// Many connections that each send a request head one byte at a time and
/// never finish it.
///
/// A crowd holds the [many-connections lock](super::fdlock) while it
/// lives, so two crowds (or a crowd and another test that opens thousands
/// of connections) never share the open-files limit.
#[derive(Debug)]
pub struct Slowloris {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
    /// Released when the crowd is dropped, after its thread has closed
    /// every connection (fields drop after `Drop::drop` has run).
    _lock: super::fdlock::ManyConnections,
}

impl Slowloris {
    /// Opens `n` connections to `addr` and trickles a header byte on each
    /// every `every` until stopped. Connections the server closes are not
    /// reopened.
    pub fn start(addr: SocketAddr, n: usize, every: Duration) -> Slowloris {
        Slowloris::spawn(addr, n, every, false)
    }

    /// Like [`Slowloris::start`], but every round the crowd reconnects
    /// until it holds `n` connections again, as a real attacker does: a
    /// server that cuts the crowd off with a header timeout stays under
    /// siege for as long as the crowd lives. [`Slowloris::stop`] then
    /// counts every connection opened, reopened ones included.
    pub fn start_refilling(addr: SocketAddr, n: usize, every: Duration) -> Slowloris {
        Slowloris::spawn(addr, n, every, true)
    }

    fn spawn(addr: SocketAddr, n: usize, every: Duration, refill: bool) -> Slowloris {
        let lock = super::fdlock::many_connections();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let open = |k: usize| -> Vec<TcpStream> {
                (0..k)
                    .filter_map(|_| {
                        let mut s = TcpStream::connect(addr).ok()?;
                        s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").ok()?;
                        Some(s)
                    })
                    .collect()
            };
            let mut conns = open(n);
            let mut opened = conns.len();
            while !flag.load(Ordering::SeqCst) {
                // A failed write means the server dropped it (a timeout).
                conns.retain_mut(|s| s.write_all(b"a").is_ok());
                if refill {
                    let more = open(n - conns.len());
                    opened += more.len();
                    conns.extend(more);
                }
                std::thread::sleep(every);
            }
            opened
        });
        Slowloris {
            stop,
            thread: Some(thread),
            _lock: lock,
        }
    }

    /// Stops trickling and closes every connection; returns how many were
    /// opened.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What normal clients saw.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// Time to a complete response, per request, sorted.
    pub samples: Vec<Duration>,
    /// Responses by status.
    pub statuses: Vec<u16>,
    /// Requests that got no response at all.
    pub failed: usize,
}

impl Latencies {
    /// The `p`-th percentile (0–100) of the samples.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let i = ((p / 100.0) * (self.samples.len() - 1) as f64).round() as usize;
        self.samples[i.min(self.samples.len() - 1)]
    }

    /// How many responses had `status`.
    pub fn count(&self, status: u16) -> usize {
        self.statuses.iter().filter(|&&s| s == status).count()
    }
}

/// Sends `n` requests for `path`, each on a new connection, one after the
/// other, and records how long each took.
pub fn normal_clients(addr: SocketAddr, path: &str, n: usize) -> Latencies {
    let mut l = Latencies::default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    for _ in 0..n {
        let started = Instant::now();
        let result = Client::try_connect(addr).and_then(|mut c| {
            c.stream.write_all(request.as_bytes())?;
            c.try_response(false)
        });
        match result {
            Ok(r) => {
                l.samples.push(started.elapsed());
                l.statuses.push(r.status);
            }
            Err(_) => l.failed += 1,
        }
    }
    l.samples.sort();
    l
}

/// CPU time (user + system, in clock ticks) `pid` has used so far.
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The fields after the command name (in parentheses, may hold spaces).
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Starts downloading `/big.bin` on a new connection with a small receive
/// window ([`Client::connect_small_window`]), waits for the first bytes,
/// then stops reading: the server is left with a full socket. The bytes
/// received stay in the client, so reading on later gets the whole
/// response. Keep the client alive for as long as the stall should last.
pub fn stalled_download(addr: SocketAddr) -> Client {
    let mut slow = Client::connect_small_window(addr);
    slow.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(slow.read_some() > 0, "the download starts");
    slow
}

/// Whether `HEAD /big.bin` on a new connection is answered `200`.
pub fn head_is_answered(addr: SocketAddr) -> bool {
    let mut c = Client::connect(addr);
    c.send(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    c.try_response(true).is_ok_and(|r| r.status == 200)
}

/// Opens more connections than a server started with `--max-fds 48` has
/// descriptors for, holds them for one second, and returns the CPU ticks the
/// server used meanwhile (spinning on `accept` would burn about 100). The
/// connections are closed on return.
pub fn ticks_while_out_of_descriptors(pid: u32, addr: SocketAddr) -> u64 {
    let held: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    let used = ticks_in_one_second(pid);
    drop(held);
    used
}

/// The CPU ticks (1/100 s) `pid` uses in the next second: a measuring
/// window, not a wait for something to happen. A loop that spins uses
/// about 100.
pub fn ticks_in_one_second(pid: u32) -> u64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    cpu_ticks(pid).saturating_sub(before)
}

/// Starts `bin` with `extra_args` serving a root with a large `/big.bin`,
/// stalls one download of it, and checks that another client is still
/// answered meanwhile.
pub fn slow_reader_does_not_block_others(bin: &str, extra_args: &[&str]) {
    let root = super::files::TempDir::site(&super::name_of(bin), super::files::BIG);
    let server = super::ServerProcess::serving(bin, &root, extra_args);
    // The slow reader's connection is now stalled on a full socket.
    let slow = stalled_download(server.addr);
    assert!(
        head_is_answered(server.addr),
        "another client was not served"
    );
    drop(slow);
}

/// The slowloris check every concurrent stage runs, against a server
/// started with a header timeout longer than the test: `crowd` slowloris
/// connections are opened, and once the status page counts them all (the
/// status request is one more), 200 normal clients must all get 200; then
/// the crowd must still be connected, none of it timed out — the normal
/// clients were served alongside it, not after it was let go. Prints the
/// latency figures (tagged `stage`) and returns the status page as it was
/// while the crowd was connected, for checks of the stage's own.
pub fn slowloris_crowd_is_served_alongside(addr: SocketAddr, crowd: u64, stage: &str) -> String {
    use super::status;
    let before = normal_clients(addr, "/files/notes.txt", 200);
    let slow = Slowloris::start(addr, crowd as usize, Duration::from_millis(200));
    let page = status::wait_until_at_least(
        addr,
        "http_connections_active",
        crowd + 1,
        Duration::from_secs(30),
    );
    let during = normal_clients(addr, "/files/notes.txt", 200);
    let after = status::scrape(addr).expect("the status page");
    let still_open = status::value(&after, "http_connections_active").unwrap_or(0);
    // A connection cut off by the header timeout lingers (and is counted
    // open) for a while after its 408: the timeout counter is what says
    // that none of the crowd was let go.
    let timed_out = status::samples(&after, "http_timeouts_total")
        .into_iter()
        .find(|&(labels, _)| labels == "kind=\"header\"")
        .map(|(_, n)| n);
    let opened = slow.stop();
    eprintln!(
        "{stage}, {opened} slowloris connections: normal p50 {:?} -> {:?}, p99 {:?} -> {:?}",
        before.percentile(50.0),
        during.percentile(50.0),
        before.percentile(99.0),
        during.percentile(99.0),
    );
    assert_eq!(opened as u64, crowd, "every slowloris connection opened");
    assert_eq!(during.count(200), 200, "{during:?}");
    assert!(
        still_open > crowd && timed_out == Some(0),
        "the crowd was still connected after the normal clients:\n{after}"
    );
    page
}

/// The out-of-descriptors check every concurrent stage runs: `bin` started
/// with `extra_args`, `--max-fds 48` and no access log gets more
/// connections than it has descriptors for; in the second that follows it
/// must use under half a core (spinning on `accept` would use all of it),
/// and once the held connections are gone (the status page shows only its
/// own) it must serve 10 normal clients with 200. Prints the ticks used.
pub fn descriptor_exhaustion_does_not_spin_and_recovers(
    bin: &str,
    extra_args: &[&str],
    stage: &str,
) {
    use super::status;
    let mut args = extra_args.to_vec();
    args.extend_from_slice(&["--max-fds", "48", "--access-log", "off"]);
    let server = super::ServerProcess::start(bin, &args);
    let used = ticks_while_out_of_descriptors(server.pid(), server.addr);
    eprintln!("{stage} out of descriptors: {used} CPU ticks in 1 s");
    assert!(used < 50, "{stage} used {used} ticks of CPU in 1 s");
    status::wait_for(
        server.addr,
        "the held connections to close",
        Duration::from_secs(30),
        |page| status::value(page, "http_connections_active") == Some(1),
    );
    let after = normal_clients(server.addr, "/files/notes.txt", 10);
    assert_eq!(after.count(200), 10, "{stage} did not recover: {after:?}");
}
