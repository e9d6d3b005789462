//! The cluster lab's results: the model (`cluster.json`), the tables
//! (terminal and Markdown) and the charts.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::charts;
use crate::latency::fmt_micros;
use crate::report::{ChartList, Table, fmt_count};
use crate::stats::Spread;

/// One load through (or around) the balancer, the median of the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    /// What was measured (`2 backends`, `direct to s1`…).
    pub label: String,
    /// Through which proxy (`rr`, `lc`, `close`), or `direct`.
    pub proxy: String,
    /// Backends in service.
    pub backends: usize,
    /// Keep-alive connections of the closed-loop load.
    pub conns: usize,
    /// Responses per second.
    pub rps: Option<Spread>,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Failed requests per window.
    pub failed: f64,
    /// The balancer's CPU, cores.
    pub lb_cpu: f64,
    /// All the backends' CPU together, cores.
    pub backends_cpu: f64,
    /// Each backend's share of the requests, percent (from their status
    /// pages; the health checks are in it).
    pub share_pct: Vec<f64>,
}

/// The rolling restart.
#[derive(Debug, Clone, Serialize)]
pub struct DrainResult {
    /// Failed requests during the whole roll, through `rr` (retries).
    pub failed: u64,
    /// Requests sent through `rr` during it.
    pub requests: u64,
    /// Failed requests through `noretry`, at the same time.
    pub noretry_failed: u64,
    /// Requests sent through `noretry`.
    pub noretry_requests: u64,
    /// How long the roll took, seconds.
    pub secs: f64,
    /// For each backend, how long its drain took to empty, ms.
    pub steps: Vec<f64>,
}

/// What the clients of one proxy saw when a backend host died.
#[derive(Debug, Clone, Serialize)]
pub struct KillResult {
    /// The proxy (`rr`: retries and redispatch; `noretry`: neither).
    pub proxy: String,
    /// The open-loop rate, requests/s.
    pub rate: f64,
    /// Failed requests in the whole run.
    pub failed: u64,
    /// Of those, after the kill.
    pub failed_after_kill: u64,
    /// Requests sent in the whole run.
    pub requests: u64,
    /// When this proxy's health checks marked the backend down, ms after
    /// the kill.
    pub down_ms: Option<f64>,
    /// The first failure a client saw, ms after the kill.
    pub first_failure_ms: Option<f64>,
    /// The last one.
    pub last_failure_ms: Option<f64>,
}

/// Everything the lab measured; written as `cluster.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterResults {
    /// The stage the backends ran.
    pub stage: String,
    /// Backend hosts.
    pub backends: usize,
    /// HAProxy's threads.
    pub lb_threads: usize,
    /// Connections of the scaling load.
    pub conns: usize,
    /// Rounds.
    pub rounds: usize,
    /// Seconds per measured window.
    pub duration_secs: f64,
    /// The health-check interval, ms (`fall 2 rise 2`).
    pub check_inter_ms: u64,
    /// Throughput with 1…N backends, then leastconn and no keep-alive to
    /// the backends at N.
    pub scaling: Vec<ScalePoint>,
    /// Direct against through the balancer, same backend.
    pub hop: Vec<ScalePoint>,
    /// The rolling restart.
    pub drain: DrainResult,
    /// The crash, one line per proxy.
    pub kill: Vec<KillResult>,
}

fn rps(p: &ScalePoint) -> String {
    p.rps.map_or_else(
        || "–".into(),
        |s| format!("{} ±{:.0}%", fmt_count(s.median), s.relative_pct()),
    )
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.0} ms"))
}

/// The scaling table.
pub fn scaling_table(r: &ClusterResults) -> Table {
    let headers = [
        "setup",
        "conns",
        "req/s",
        "p50",
        "p99",
        "failed",
        "balancer CPU",
        "backends CPU",
        "share per backend %",
    ]
    .map(String::from)
    .to_vec();
    let rows = r
        .scaling
        .iter()
        .chain(&r.hop)
        .map(|p| {
            vec![
                p.label.clone(),
                p.conns.to_string(),
                rps(p),
                fmt_micros(p.p50_us as u64),
                fmt_micros(p.p99_us as u64),
                fmt_count(p.failed),
                format!("{:.2}", p.lb_cpu),
                format!("{:.2}", p.backends_cpu),
                p.share_pct
                    .iter()
                    .map(|s| format!("{s:.0}"))
                    .collect::<Vec<_>>()
                    .join("/"),
            ]
        })
        .collect();
    Table {
        headers,
        rows,
        notes: vec![
            "CPU in cores (1.00 = one core busy); balancer, backends and load generator share the machine's cores.".into(),
            "Shares come from each backend's status page (http_requests_total before and after the window; the health checks are in it). Direct rows bypass the balancer.".into(),
        ],
    }
}

/// The crash table.
pub fn kill_table(r: &ClusterResults) -> Table {
    let headers = [
        "proxy",
        "rate req/s",
        "failed after kill",
        "of requests",
        "marked down after",
        "first failure",
        "last failure",
    ]
    .map(String::from)
    .to_vec();
    let rows = r
        .kill
        .iter()
        .map(|k| {
            vec![
                match k.proxy.as_str() {
                    "rr" => "rr (retries + redispatch)".to_string(),
                    "noretry" => "noretry (retries 0)".to_string(),
                    other => other.to_string(),
                },
                fmt_count(k.rate),
                fmt_count(k.failed_after_kill as f64),
                fmt_count(k.requests as f64),
                ms(k.down_ms),
                ms(k.first_failure_ms),
                ms(k.last_failure_ms),
            ]
        })
        .collect();
    Table {
        headers,
        rows,
        notes: vec![format!(
            "Health checks every {} ms, `fall 2`: two failed checks take a server out. Times are from the SIGKILL.",
            r.check_inter_ms
        )],
    }
}

/// The drain line the issue asks for: `cluster drain: N failed of M`.
pub fn drain_line(r: &ClusterResults) -> String {
    format!(
        "cluster drain: {} failed of {}",
        r.drain.failed, r.drain.requests
    )
}

/// The terminal text.
pub fn text(r: &ClusterResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n== Cluster behind HAProxy ({} backends running {}, HAProxy with {} thread(s); {} round(s) × {:.2} s)",
        r.backends, r.stage, r.lb_threads, r.rounds, r.duration_secs
    );
    s.push_str(&scaling_table(r).to_text());
    let _ = writeln!(
        s,
        "\n== Crash: SIGKILL to every process of one backend host"
    );
    s.push_str(&kill_table(r).to_text());
    let _ = writeln!(
        s,
        "\n== Rolling restart: drain, scur 0, SIGTERM, restart, ready; one backend after the other"
    );
    let _ = writeln!(
        s,
        "{:.1} s for {} backends; drains emptied in {} ms",
        r.drain.secs,
        r.backends,
        r.drain
            .steps
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "through noretry (no retries): {} failed of {}",
        r.drain.noretry_failed, r.drain.noretry_requests
    );
    let _ = writeln!(s, "{}", drain_line(r));
    s
}

/// The Markdown section.
pub fn markdown(r: &ClusterResults, charts: &ChartList) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## Cluster behind HAProxy (`cluster`)\n");
    let _ = writeln!(
        s,
        "{} backend hosts (network namespaces on one bridge) running `{}`, HAProxy with {} thread(s) on a balancer host, the load generator on a client host; {} round(s) of {:.2} s per point, medians.\n",
        r.backends, r.stage, r.lb_threads, r.rounds, r.duration_secs
    );
    s.push_str(&scaling_table(r).to_markdown());
    for (file, caption) in charts {
        let _ = writeln!(s, "\n![{caption}]({file})");
    }
    let _ = writeln!(s, "\n### Crash of one backend host\n");
    s.push_str(&kill_table(r).to_markdown());
    let _ = writeln!(s, "\n### Rolling restart\n");
    let _ = writeln!(
        s,
        "Each backend drained through the runtime API, stopped with SIGTERM once `scur` was 0, restarted and set ready: {:.1} s in all, under load through `rr` and `noretry` at once.\n\n- `{}` (through `rr`)\n- through `noretry` (no retries): {} failed of {}",
        r.drain.secs,
        drain_line(r),
        r.drain.noretry_failed,
        r.drain.noretry_requests
    );
    s
}

/// The chart files [`write_charts`] may write.
const FILES: [&str; 2] = ["cluster-throughput.svg", "cluster-balance.svg"];

/// Draws throughput per setup and the split across backends.
pub fn write_charts(out: &Path, r: &ClusterResults, footer: &str) -> ChartList {
    for f in FILES {
        let _ = fs::remove_file(out.join(f));
    }
    let mut list = ChartList::new();
    let bars: Vec<(String, f64, f64, f64)> = r
        .hop
        .iter()
        .filter(|p| p.conns > 1 && p.proxy == "direct")
        .chain(&r.scaling)
        .filter_map(|p| p.rps.map(|s| (p.label.clone(), s.median, s.min, s.max)))
        .collect();
    let title = format!(
        "Cluster throughput, {} keep-alive connections ({})",
        r.conns, r.stage
    );
    let path = out.join(FILES[0]);
    match charts::bars(&path, &title, "responses per second", &bars, footer) {
        Ok(()) if path.exists() => list.push((FILES[0].to_string(), title)),
        Ok(()) => {}
        Err(e) => eprintln!("bench: chart {}: {e}", FILES[0]),
    }
    let groups: Vec<(String, Vec<f64>)> = r
        .scaling
        .iter()
        .filter(|p| p.backends == r.backends && matches!(p.proxy.as_str(), "rr" | "lc"))
        .map(|p| (p.label.clone(), p.share_pct.clone()))
        .collect();
    let title = "Share of requests per backend (s1, s2, …)".to_string();
    let path = out.join(FILES[1]);
    match charts::groups(&path, &title, "percent of requests", &groups, footer) {
        Ok(()) if path.exists() => list.push((FILES[1].to_string(), title)),
        Ok(()) => {}
        Err(e) => eprintln!("bench: chart {}: {e}", FILES[1]),
    }
    list
}

/// Writes `cluster.json`.
pub fn write_json(out: &Path, r: &ClusterResults) -> io::Result<()> {
    fs::write(
        out.join("cluster.json"),
        serde_json::to_string_pretty(r).map_err(io::Error::other)?,
    )
}
