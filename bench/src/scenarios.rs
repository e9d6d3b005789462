//! The scenarios, the profiles, and what one run of a scenario's point
//! measures ([`measure`]); [`crate::rounds`] runs them in interleaved
//! rounds.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::latency::LatencySummary;
use crate::loadgen::{self, Control, Errors, Mode, Spec};
use crate::procfs::{self, ProcSample, TreeSample};
use crate::slow::SlowClients;
use crate::stats::Fairness;
use crate::targets::{LARGE_PATH, SMALL_PATH, Target};

/// One scenario of the issue, in the order the report shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// The name `--scenario` takes.
    pub name: &'static str,
    /// A title for tables and charts.
    pub title: &'static str,
    /// What it shows, one sentence.
    pub about: &'static str,
}

/// Every scenario.
pub const SCENARIOS: [Scenario; 9] = [
    Scenario {
        name: "sweep",
        title: "Small file, keep-alive, concurrency sweep",
        about: "Closed-loop keep-alive load on the 1.5 KB front page with more and more connections: where each architecture stops scaling.",
    },
    Scenario {
        name: "conn-per-request",
        title: "Small file, one connection per request",
        about: "Every request opens a TCP connection and closes it: the cost of accept and connection set-up.",
    },
    Scenario {
        name: "large-file",
        title: "1 MiB file (bandwidth)",
        about: "Keep-alive downloads of a 1 MiB file: copying bytes, and sendfile against read+write.",
    },
    Scenario {
        name: "pipeline",
        title: "16-deep pipelining",
        about: "Each connection keeps 16 requests in flight: how well a server batches reads and writes.",
    },
    Scenario {
        name: "idle",
        title: "Idle keep-alive connections plus active load",
        about: "Thousands of idle keep-alive connections held open while 64 others run: throughput of the active ones, and server memory per idle connection.",
    },
    Scenario {
        name: "slow-clients",
        title: "Slow clients",
        about: "Slowloris heads and slow readers next to normal clients at a constant rate (open loop): the normal clients' latency, without and with the slow ones.",
    },
    Scenario {
        name: "fixed-rate",
        title: "Latency at a fixed rate",
        about: "Open-loop load on 16 keep-alive connections at 25%, 50% and 75% of the keep-alive maximum nginx reaches in the same round: the latency percentiles each server gives at a rate it can sustain.",
    },
    Scenario {
        name: "workers",
        title: "Stage 5 accept models and balance policies",
        about: "How connections and CPU time are split among worker processes, for each accept model and balance policy (and nginx).",
    },
    Scenario {
        name: "proxy",
        title: "Reverse proxy in front of the same upstream",
        about: "Stage 4 with --proxy-pass and nginx with proxy_pass (16 pooled upstream connections each), in front of one stage 4 upstream started for the turn: keep-alive load on the small file through the proxy. The server-side figures are the proxy's.",
    },
];

/// Looks a scenario up by name.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// How long and how wide a run is.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// `quick` or `full`.
    pub name: &'static str,
    /// Rounds (each figure is the median over them).
    pub rounds: usize,
    /// Load before each measured window.
    pub warmup: Duration,
    /// Each measured window.
    pub duration: Duration,
    /// Scenario 1: connection counts.
    pub sweep: Vec<usize>,
    /// Scenario 2: concurrent connecting clients.
    pub conn_per_request: Vec<usize>,
    /// Scenario 3: connections.
    pub large_file: Vec<usize>,
    /// Scenario 4: connections (16 requests in flight on each).
    pub pipeline: Vec<usize>,
    /// Scenario 5: idle connections held, and active ones.
    pub idle: usize,
    /// Scenario 5: active connections.
    pub active: usize,
    /// Scenario 6: slowloris connections and slow readers.
    pub slowloris: usize,
    /// Scenario 6: slow readers of the 1 MiB file.
    pub slow_readers: usize,
    /// Scenario 6: the normal clients' connections and total rate.
    pub normal_conns: usize,
    /// Scenario 6: the normal clients' rate, requests per second.
    pub normal_rate: f64,
    /// Scenario 7: connections.
    pub workers_conns: usize,
    /// The fixed-rate scenario: connections, and the rates as fractions
    /// of the reference's closed-loop maximum in the same round.
    pub fixed_rate_conns: usize,
    /// See `fixed_rate_conns`.
    pub fixed_rate: Vec<f64>,
    /// Scenario 7: worker processes.
    pub workers: usize,
    /// Scenario 8: connections through the proxy.
    pub proxy: Vec<usize>,
}

impl Profile {
    /// About two minutes on a 2-core machine, for a first look.
    pub fn quick() -> Profile {
        Profile {
            name: "quick",
            rounds: 3,
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(600),
            sweep: vec![1, 16, 256],
            conn_per_request: vec![16],
            large_file: vec![4],
            pipeline: vec![16],
            idle: 1000,
            active: 64,
            slowloris: 32,
            slow_readers: 8,
            normal_conns: 8,
            normal_rate: 2000.0,
            workers_conns: 64,
            workers: 4,
            fixed_rate_conns: 16,
            fixed_rate: vec![0.25, 0.5, 0.75],
            proxy: vec![16],
        }
    }

    /// Every scenario in full.
    pub fn full() -> Profile {
        Profile {
            name: "full",
            rounds: 5,
            warmup: Duration::from_millis(1000),
            duration: Duration::from_secs(3),
            sweep: vec![1, 4, 16, 64, 256, 1000],
            conn_per_request: vec![1, 16, 64],
            large_file: vec![1, 16],
            pipeline: vec![1, 16],
            idle: 10_000,
            active: 64,
            slowloris: 64,
            slow_readers: 16,
            normal_conns: 16,
            normal_rate: 4000.0,
            workers_conns: 256,
            workers: 4,
            fixed_rate_conns: 16,
            fixed_rate: vec![0.25, 0.5, 0.75],
            proxy: vec![16, 64],
        }
    }

    /// The scenarios `--quick` runs when none is named.
    pub fn default_scenarios(&self) -> Vec<&'static Scenario> {
        SCENARIOS.iter().collect()
    }
}

/// One measurement point of a scenario.
#[derive(Debug, Clone)]
pub struct Point {
    /// Its label in tables (`c=16`).
    pub label: String,
    /// Its x value in charts (connections).
    pub x: f64,
    /// Active connections.
    pub conns: usize,
    /// How they send.
    pub mode: Mode,
    /// What they fetch.
    pub path: &'static str,
    /// Idle keep-alive connections held during the run.
    pub idle: usize,
    /// Slowloris connections and slow readers running alongside.
    pub slow: Option<(usize, usize)>,
    /// An open-loop rate given as this fraction of the round's calibrated
    /// maximum ([`calibration`]); [`Point::at_rate`] makes it absolute.
    pub of_max: Option<f64>,
}

impl Point {
    fn closed(label: String, conns: usize, pipeline: usize, path: &'static str) -> Point {
        Point {
            label,
            x: conns as f64,
            conns,
            mode: Mode::Closed { pipeline },
            path,
            idle: 0,
            slow: None,
            of_max: None,
        }
    }

    /// This point with its [`of_max`](Point::of_max) fraction of `max`
    /// requests per second as its open-loop rate.
    pub fn at_rate(&self, max: f64) -> Point {
        let mut p = self.clone();
        if let (Some(f), Mode::Open { .. }) = (p.of_max, p.mode) {
            p.mode = Mode::Open { rate: f * max };
        }
        p
    }
}

/// The closed-loop run whose throughput sets the rates of a scenario's
/// [`Point::of_max`] points, if it has any: the same connections and file.
pub fn calibration(scenario: &Scenario, p: &Profile) -> Option<Point> {
    (scenario.name == "fixed-rate").then(|| Point {
        // Charted at 100% of itself.
        x: 100.0,
        ..Point::closed(
            "max (closed loop)".into(),
            p.fixed_rate_conns,
            1,
            SMALL_PATH,
        )
    })
}

/// The target a scenario's rates are fractions of: nginx when it takes
/// part, else the first target.
pub fn calibration_target<'t>(targets: &[&'t Target]) -> Option<&'t Target> {
    targets
        .iter()
        .find(|t| t.name == "nginx")
        .or(targets.first())
        .copied()
}

/// The points of `scenario` in `profile`.
pub fn points(scenario: &Scenario, p: &Profile) -> Vec<Point> {
    match scenario.name {
        "sweep" => p
            .sweep
            .iter()
            .map(|&c| Point::closed(format!("c={c}"), c, 1, SMALL_PATH))
            .collect(),
        "conn-per-request" => p
            .conn_per_request
            .iter()
            .map(|&c| Point {
                mode: Mode::ConnPerRequest,
                ..Point::closed(format!("c={c}"), c, 1, SMALL_PATH)
            })
            .collect(),
        "large-file" => p
            .large_file
            .iter()
            .map(|&c| Point::closed(format!("c={c}"), c, 1, LARGE_PATH))
            .collect(),
        "pipeline" => p
            .pipeline
            .iter()
            .map(|&c| Point::closed(format!("c={c}×16"), c, 16, SMALL_PATH))
            .collect(),
        "idle" => vec![Point {
            idle: p.idle,
            ..Point::closed(
                format!("{} idle + {} active", p.idle, p.active),
                p.active,
                1,
                SMALL_PATH,
            )
        }],
        "slow-clients" => {
            let normal = Point {
                mode: Mode::Open {
                    rate: p.normal_rate,
                },
                ..Point::closed(
                    format!("{} req/s, no slow clients", p.normal_rate),
                    p.normal_conns,
                    1,
                    SMALL_PATH,
                )
            };
            let attacked = Point {
                label: format!(
                    "{} req/s + {} slowloris + {} slow readers",
                    p.normal_rate, p.slowloris, p.slow_readers
                ),
                slow: Some((p.slowloris, p.slow_readers)),
                ..normal.clone()
            };
            vec![normal, attacked]
        }
        "fixed-rate" => p
            .fixed_rate
            .iter()
            .map(|&f| Point {
                label: format!("{:.0}% of max", f * 100.0),
                x: f * 100.0,
                mode: Mode::Open { rate: 0.0 },
                of_max: Some(f),
                ..Point::closed(String::new(), p.fixed_rate_conns, 1, SMALL_PATH)
            })
            .collect(),
        "workers" => vec![Point::closed(
            format!("c={}", p.workers_conns),
            p.workers_conns,
            1,
            SMALL_PATH,
        )],
        "proxy" => p
            .proxy
            .iter()
            .map(|&c| Point::closed(format!("c={c}"), c, 1, SMALL_PATH))
            .collect(),
        _ => Vec::new(),
    }
}

/// The most keep-alive connections stage 2 is given: it serves one
/// connection at a time, so with more than one the others wait (and the
/// report shows them starved); with many more it only waits.
pub const STAGE2_MAX_KEEPALIVE: usize = 16;

/// True when `target` belongs in `scenario` at all: the stage 5 and nginx
/// worker variants (named `server/variant`) only in `workers`, which only
/// has them; nginx with sendfile off only for the large file; only stage
/// 4 and nginx in `proxy`; the floor only where its one small response is
/// the answer (keep-alive, one connection per request, pipelining).
pub fn relevant(scenario: &Scenario, target: &Target) -> bool {
    if scenario.name == "fixed-rate" && target.name == "nginx-nosendfile" {
        return false;
    }
    if target.name == "floor" {
        // One fixed small response, no files, no idle bookkeeping.
        return matches!(scenario.name, "sweep" | "conn-per-request" | "pipeline");
    }
    let variant = target.name.contains('/');
    if (scenario.name == "workers") != variant {
        return false;
    }
    if scenario.name == "proxy" {
        // The two servers that are reverse proxies.
        return target.stage == Some("stage4-epoll") || target.name == "nginx";
    }
    target.name != "nginx-nosendfile" || scenario.name == "large-file"
}

/// Why `target` cannot take `point` of `scenario` by design, if it cannot.
pub fn not_applicable(point: &Point, target: &Target) -> Option<String> {
    if target.stage == Some("stage2-http-seq") {
        if point.idle > 0 || point.slow.is_some() {
            return Some(
                "by design: one connection at a time cannot hold idle connections or outwait slow ones".into(),
            );
        }
        let keepalive = !matches!(point.mode, Mode::ConnPerRequest);
        if keepalive && point.conns > STAGE2_MAX_KEEPALIVE {
            return Some(format!(
                "by design: one connection at a time; {} keep-alive connections would only wait",
                point.conns
            ));
        }
    }
    None
}

/// Flags a scenario adds to the stages' command lines.
pub fn stage_args(scenario: &Scenario) -> Vec<String> {
    match scenario.name {
        // Idle connections must outlive the run; slow clients meet the
        // default header timeout (10 s), which is part of the lesson.
        "idle" => ["--keepalive-timeout", "300", "--header-timeout", "300"]
            .map(String::from)
            .to_vec(),
        _ => Vec::new(),
    }
}

/// Server-side figures of one process during a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerFigures {
    /// Its pid.
    pub pid: u32,
    /// CPU seconds it used in the measured window.
    pub cpu_secs: f64,
    /// Sockets it held in mid-run beyond those it held before the load:
    /// its share of the connections.
    pub connections: i64,
}

/// Memory cost of idle connections.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleFigures {
    /// Idle connections asked for.
    pub requested: usize,
    /// Idle connections actually held open.
    pub held: usize,
    /// Server memory before and after they were opened, KiB.
    pub pss_before_kib: u64,
    /// After.
    pub pss_after_kib: u64,
    /// Resident set size before, KiB.
    pub rss_before_kib: u64,
    /// After.
    pub rss_after_kib: u64,
    /// `(after - before) / held`, PSS, in KiB per connection (user-space
    /// memory only: the kernel's socket buffers are not in it).
    pub pss_per_conn_kib: f64,
}

/// Everything measured in one run of one point against one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Responses per second in the window.
    pub rps: f64,
    /// Body MiB per second.
    pub mib_per_sec: f64,
    /// Responses counted.
    pub requests: u64,
    /// Latency percentiles, µs.
    pub latency: LatencySummary,
    /// Errors by kind.
    pub errors: Errors,
    /// Non-2xx responses.
    pub non_2xx: u64,
    /// Connections reopened after the server closed them.
    pub reconnects: u64,
    /// Pipelined requests left unanswered behind a `Connection: close`.
    pub dropped_by_close: u64,
    /// How evenly connections were served.
    pub fairness: Fairness,
    /// Responses per connection (for up to 1,000 connections).
    pub per_conn: Vec<u64>,
    /// Server CPU in the window, in cores (1.0 = one core busy).
    pub server_cpu: f64,
    /// Responses per server CPU-second: efficiency.
    pub rps_per_cpu: f64,
    /// Load generator CPU in the window, in cores.
    pub loadgen_cpu: f64,
    /// Server process tree in mid-run (sums).
    pub server: ProcSample,
    /// Server processes (for multi-process servers: master first).
    pub processes: usize,
    /// Per-process figures.
    pub workers: Vec<WorkerFigures>,
    /// Scenario 5 only.
    pub idle: Option<IdleFigures>,
    /// Scenario 6 only: slow connections the server closed.
    pub slow_reconnects: u64,
}

/// The settings of the load generator for a run.
#[derive(Debug, Clone)]
pub struct GenSettings {
    /// Event-loop threads.
    pub threads: usize,
    /// Warm-up and window.
    pub warmup: Duration,
    /// Window.
    pub duration: Duration,
}

/// Runs `point` against the server at `addr` (process `pid`).
pub fn measure(addr: SocketAddr, pid: u32, point: &Point, g: &GenSettings) -> io::Result<Figures> {
    if let Mode::Open { rate } = point.mode
        && rate <= 0.0
    {
        return Err(io::Error::other(
            "no rate to send at: the round's calibration run measured nothing",
        ));
    }
    let small = loadgen::request(addr, SMALL_PATH, false);
    let mut idle = None;
    let mut holder = None;
    if point.idle > 0 {
        let before = procfs::sample_tree(pid).total();
        let control = Arc::new(Control::default());
        let spec = Spec {
            addr,
            request: small.clone(),
            connections: point.idle,
            threads: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(600),
            mode: Mode::Hold,
            timeout: Duration::from_secs(2),
        };
        let c = Arc::clone(&control);
        let handle = thread::spawn(move || loadgen::run(&spec, &c));
        // Wait until all are held, or no progress for 3 s, or 30 s in all.
        let started = Instant::now();
        let mut last = (0, Instant::now());
        loop {
            let held = control.held.load(Ordering::Relaxed);
            if held >= point.idle || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            if held != last.0 {
                last = (held, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(3) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(200));
        let after = procfs::sample_tree(pid).total();
        let held = control.held.load(Ordering::Relaxed);
        idle = Some(IdleFigures {
            requested: point.idle,
            held,
            pss_before_kib: before.pss_kib,
            pss_after_kib: after.pss_kib,
            rss_before_kib: before.rss_kib,
            rss_after_kib: after.rss_kib,
            // Too few held connections make the difference noise.
            pss_per_conn_kib: if held * 10 < point.idle || held == 0 {
                0.0
            } else {
                (after.pss_kib as f64 - before.pss_kib as f64) / held as f64
            },
        });
        holder = Some((control, handle));
    }
    let mut slow = match point.slow {
        Some((loris, readers)) => Some(SlowClients::start(addr, loris, readers, LARGE_PATH)?),
        None => None,
    };
    if slow.is_some() {
        // Let the slow clients take their places first.
        thread::sleep(Duration::from_millis(200));
    }
    let spec = Spec {
        addr,
        request: loadgen::request(addr, point.path, false),
        connections: point.conns,
        threads: g.threads,
        warmup: g.warmup,
        duration: g.duration,
        mode: point.mode,
        timeout: Duration::from_secs(2),
    };
    let control = Arc::new(Control::default());
    let before: TreeSample = procfs::sample_tree(pid);
    let c = Arc::clone(&control);
    let handle = thread::spawn(move || loadgen::run(&spec, &c));
    thread::sleep(g.warmup);
    let s0 = procfs::sample_tree(pid);
    let g0 = procfs::self_cpu_secs();
    let w0 = Instant::now();
    thread::sleep(g.duration / 2);
    let mid = procfs::sample_tree(pid);
    let outcome = handle
        .join()
        .map_err(|_| io::Error::other("load generator panicked"))??;
    let s1 = procfs::sample_tree(pid);
    let g1 = procfs::self_cpu_secs();
    let wall = w0.elapsed().as_secs_f64().max(1e-6);
    let slow_reconnects = slow
        .as_ref()
        .map_or(0, |s| s.reconnects.load(Ordering::Relaxed));
    if let Some(s) = slow.as_mut() {
        s.stop();
    }
    if let Some((control, handle)) = holder {
        control.stop.store(true, Ordering::Relaxed);
        let _ = handle.join();
    }
    let cpu = |t: &TreeSample, pid: u32| {
        t.procs
            .iter()
            .find(|p| p.pid == pid)
            .map_or(0.0, |p| p.cpu_secs)
    };
    let workers: Vec<WorkerFigures> = mid
        .procs
        .iter()
        .map(|p| WorkerFigures {
            pid: p.pid,
            cpu_secs: cpu(&s1, p.pid) - cpu(&s0, p.pid),
            connections: p.sockets as i64
                - before
                    .procs
                    .iter()
                    .find(|b| b.pid == p.pid)
                    .map_or(0, |b| b.sockets as i64),
        })
        .collect();
    let server_cpu_secs = s1.total().cpu_secs - s0.total().cpu_secs;
    let latency = outcome.latency_summary();
    Ok(Figures {
        rps: outcome.rps(),
        mib_per_sec: outcome.body_bytes_per_sec() / (1024.0 * 1024.0),
        requests: outcome.requests,
        latency,
        errors: outcome.errors,
        non_2xx: outcome.non_2xx,
        reconnects: outcome.reconnects,
        dropped_by_close: outcome.dropped_by_close,
        fairness: outcome.fairness(),
        per_conn: if outcome.per_conn.len() <= 1000 {
            outcome.per_conn.clone()
        } else {
            Vec::new()
        },
        server_cpu: server_cpu_secs / wall,
        rps_per_cpu: if server_cpu_secs > 0.0 {
            outcome.requests as f64 / server_cpu_secs
        } else {
            0.0
        },
        loadgen_cpu: (g1 - g0) / wall,
        server: mid.total(),
        processes: mid.procs.len(),
        workers,
        idle,
        slow_reconnects,
    })
}
