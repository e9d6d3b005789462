//! The results: what was run, medians and spreads, and the three ways they
//! are shown (a terminal table, `results.json`, a Markdown summary).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::latency::fmt_micros;
use crate::machine::Machine;
use crate::scenarios::{Figures, Profile, SCENARIOS, Scenario};
use crate::stats::{Spread, median, paired_ratio};

/// The floor's name in the report (see [`crate::floor`]).
pub const FLOOR: &str = "floor";

/// What became of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// It ran and was measured.
    Measured,
    /// The target cannot take this point by design (the note says why).
    NotApplicable,
    /// The server did not start, died, or the load generator failed.
    Failed,
}

/// One run: one round, one scenario point, one target.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The round, from 0.
    pub round: usize,
    /// The scenario's name.
    pub scenario: String,
    /// The point's label.
    pub point: String,
    /// The point's x value (connections).
    pub x: f64,
    /// The target's name.
    pub target: String,
    /// Measured, not applicable, or failed.
    pub status: Status,
    /// Why not applicable, or what failed.
    pub note: String,
    /// The figures, when measured.
    pub figures: Option<Figures>,
}

/// A target and whether it could be run at all.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// Its name.
    pub name: String,
    /// What it is.
    pub about: String,
    /// `ok`, `not built: ...`, `not installed`.
    pub status: String,
}

/// The medians of one target at one point, over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The target.
    pub target: String,
    /// Measured in at least one round, else the first reason.
    pub status: Status,
    /// Why not measured.
    pub note: String,
    /// Responses per second.
    pub rps: Option<Spread>,
    /// Body MiB per second.
    pub mib_per_sec: Option<Spread>,
    /// Median latency percentiles over the rounds, µs.
    pub p50: Option<f64>,
    /// 90th.
    pub p90: Option<f64>,
    /// 99th.
    pub p99: Option<f64>,
    /// 99.9th.
    pub p999: Option<f64>,
    /// Max.
    pub max: Option<f64>,
    /// Errors per round (median).
    pub errors: Option<f64>,
    /// Non-2xx per round (median).
    pub non_2xx: Option<f64>,
    /// Starved connections (median).
    pub starved: Option<f64>,
    /// Jain's fairness index (median).
    pub jain: Option<f64>,
    /// Server CPU, cores (median).
    pub server_cpu: Option<f64>,
    /// Responses per server CPU-second (median).
    pub rps_per_cpu: Option<f64>,
    /// Load generator CPU, cores (median).
    pub loadgen_cpu: Option<f64>,
    /// Server PSS in mid-run, MiB (median).
    pub pss_mib: Option<f64>,
    /// Server open fds in mid-run (median).
    pub fds: Option<f64>,
    /// Throughput relative to the reference server, paired by round.
    pub vs_reference: Option<Spread>,
    /// Throughput as a fraction of the floor's in the same round (when the
    /// floor took this point).
    pub vs_floor: Option<Spread>,
    /// Scenario 5: idle connections held (median).
    pub idle_held: Option<f64>,
    /// Scenario 5: server PSS per idle connection, KiB.
    pub pss_per_idle_conn_kib: Option<Spread>,
    /// Scenario 7: connections per worker process (median per worker,
    /// workers sorted by their share within each round).
    pub per_worker_conns: Vec<f64>,
    /// Scenario 7: share of CPU per worker process, percent.
    pub per_worker_cpu_pct: Vec<f64>,
}

/// A scenario point and every target's cell.
#[derive(Debug, Clone, Serialize)]
pub struct PointSummary {
    /// The point's label.
    pub label: String,
    /// Its x value.
    pub x: f64,
    /// One cell per target, in target order.
    pub cells: Vec<Cell>,
}

/// A scenario's summary.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSummary {
    /// Its name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// What it shows.
    pub about: String,
    /// Its points.
    pub points: Vec<PointSummary>,
}

/// The wrk agreement check: the same server, the same connections and
/// duration, wrk and this load generator taking turns.
#[derive(Debug, Clone, Serialize)]
pub struct WrkCheck {
    /// The server measured.
    pub server: String,
    /// The wrk command line used (one of the rounds).
    pub wrk_command: String,
    /// Connections.
    pub connections: usize,
    /// Threads (wrk's `-t`, our event loops).
    pub threads: usize,
    /// Seconds per run.
    pub duration_secs: f64,
    /// wrk's requests/s, one per round.
    pub wrk_rps: Vec<f64>,
    /// Ours, one per round.
    pub bench_rps: Vec<f64>,
    /// Ours / wrk's, paired by round.
    pub ratio: Option<Spread>,
}

/// Everything a run produced; written as `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// The command line that produced these results.
    pub command: String,
    /// The profile.
    pub profile: Profile,
    /// What was pinned where, or `not pinned`.
    pub pinning: String,
    /// Load generator threads.
    pub loadgen_threads: usize,
    /// Workers/loops/processes given to the multi-core servers.
    pub server_workers: usize,
    /// The server ratios are computed against.
    pub reference: Option<String>,
    /// Every target and its status.
    pub targets: Vec<TargetInfo>,
    /// Medians by scenario and point.
    pub scenarios: Vec<ScenarioSummary>,
    /// The wrk agreement check, if it was run.
    pub wrk_check: Option<WrkCheck>,
    /// The TLS comparison (`--scenario tls`), if it was run.
    pub tls: Option<crate::tls::TlsComparison>,
    /// Every individual run.
    pub runs: Vec<RunRecord>,
}

/// Builds the per-point summaries from the individual runs.
pub fn summarize(
    runs: &[RunRecord],
    scenarios: &[&Scenario],
    targets: &[String],
    rounds: usize,
    reference: Option<&str>,
) -> Vec<ScenarioSummary> {
    let mut out = Vec::new();
    for sc in scenarios {
        let mut points: Vec<(String, f64)> = Vec::new();
        for r in runs.iter().filter(|r| r.scenario == sc.name) {
            if !points.iter().any(|(l, _)| *l == r.point) {
                points.push((r.point.clone(), r.x));
            }
        }
        let mut ps = Vec::new();
        for (label, x) in points {
            let at = |t: &str| -> Vec<&RunRecord> {
                runs.iter()
                    .filter(|r| r.scenario == sc.name && r.point == label && r.target == t)
                    .collect()
            };
            let per_round = |t: &str| -> Vec<Option<f64>> {
                let rs = at(t);
                (0..rounds)
                    .map(|round| {
                        rs.iter()
                            .find(|r| r.round == round)
                            .and_then(|r| r.figures.as_ref())
                            .map(|f| f.rps)
                    })
                    .collect()
            };
            let reference_rps = reference.map(per_round);
            let floor_rps = targets
                .iter()
                .any(|t| t == FLOOR)
                .then(|| per_round(FLOOR))
                .filter(|b| b.iter().any(Option::is_some));
            let mut cells = Vec::new();
            for t in targets {
                let rs = at(t);
                if rs.is_empty() {
                    continue;
                }
                let figs: Vec<&Figures> = rs.iter().filter_map(|r| r.figures.as_ref()).collect();
                let first_note = rs
                    .iter()
                    .find(|r| r.status != Status::Measured)
                    .map(|r| (r.status, r.note.clone()));
                let status = if figs.is_empty() {
                    first_note.as_ref().map_or(Status::Failed, |n| n.0)
                } else {
                    Status::Measured
                };
                let med = |f: &dyn Fn(&Figures) -> f64| -> Option<f64> {
                    median(&figs.iter().map(|x| f(x)).collect::<Vec<_>>())
                };
                // Latency only from rounds that completed something.
                let lat = |f: &dyn Fn(&Figures) -> f64| -> Option<f64> {
                    median(
                        &figs
                            .iter()
                            .filter(|x| x.latency.count > 0)
                            .map(|x| f(x))
                            .collect::<Vec<_>>(),
                    )
                };
                let spread = |f: &dyn Fn(&Figures) -> f64| -> Option<Spread> {
                    Spread::of(&figs.iter().map(|x| f(x)).collect::<Vec<_>>())
                };
                let vs_reference = match (&reference_rps, reference) {
                    (Some(b), Some(name)) if name != t => paired_ratio(&per_round(t), b),
                    _ => None,
                };
                let vs_floor = match &floor_rps {
                    Some(b) if t != FLOOR => paired_ratio(&per_round(t), b),
                    _ => None,
                };
                let idle: Vec<_> = figs.iter().filter_map(|f| f.idle.as_ref()).collect();
                let (per_worker_conns, per_worker_cpu_pct) = worker_split(&figs);
                cells.push(Cell {
                    target: t.clone(),
                    status,
                    note: first_note.map(|n| n.1).unwrap_or_default(),
                    rps: spread(&|f| f.rps),
                    mib_per_sec: spread(&|f| f.mib_per_sec),
                    p50: lat(&|f| f.latency.p50 as f64),
                    p90: lat(&|f| f.latency.p90 as f64),
                    p99: lat(&|f| f.latency.p99 as f64),
                    p999: lat(&|f| f.latency.p999 as f64),
                    max: lat(&|f| f.latency.max as f64),
                    errors: med(&|f| f.errors.total() as f64),
                    non_2xx: med(&|f| f.non_2xx as f64),
                    starved: med(&|f| f.fairness.starved as f64),
                    jain: med(&|f| f.fairness.jain),
                    server_cpu: med(&|f| f.server_cpu),
                    rps_per_cpu: med(&|f| f.rps_per_cpu),
                    loadgen_cpu: med(&|f| f.loadgen_cpu),
                    pss_mib: med(&|f| f.server.pss_kib as f64 / 1024.0),
                    fds: med(&|f| f.server.fds as f64),
                    vs_reference,
                    vs_floor,
                    idle_held: median(&idle.iter().map(|i| i.held as f64).collect::<Vec<_>>()),
                    pss_per_idle_conn_kib: Spread::of(
                        &idle
                            .iter()
                            .filter(|i| i.held * 10 >= i.requested && i.held > 0)
                            .map(|i| i.pss_per_conn_kib)
                            .collect::<Vec<_>>(),
                    ),
                    per_worker_conns,
                    per_worker_cpu_pct,
                });
            }
            ps.push(PointSummary { label, x, cells });
        }
        out.push(ScenarioSummary {
            name: sc.name.to_string(),
            title: sc.title.to_string(),
            about: sc.about.to_string(),
            points: ps,
        });
    }
    out
}

/// Per-worker connection counts and CPU shares, each round's workers
/// sorted by share (worker pids differ between rounds), then the median
/// per rank. The master (first process) is left out when there are
/// workers.
fn worker_split(figs: &[&Figures]) -> (Vec<f64>, Vec<f64>) {
    let mut conns: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut cpu: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for f in figs {
        if f.workers.len() < 2 {
            continue;
        }
        let ws = &f.workers[1..];
        let mut c: Vec<f64> = ws.iter().map(|w| w.connections.max(0) as f64).collect();
        c.sort_by(|a, b| b.total_cmp(a));
        let total: f64 = ws.iter().map(|w| w.cpu_secs.max(0.0)).sum();
        let mut p: Vec<f64> = ws
            .iter()
            .map(|w| {
                if total > 0.0 {
                    w.cpu_secs.max(0.0) / total * 100.0
                } else {
                    0.0
                }
            })
            .collect();
        p.sort_by(|a, b| b.total_cmp(a));
        for (i, v) in c.into_iter().enumerate() {
            conns.entry(i).or_default().push(v);
        }
        for (i, v) in p.into_iter().enumerate() {
            cpu.entry(i).or_default().push(v);
        }
    }
    let med = |m: BTreeMap<usize, Vec<f64>>| -> Vec<f64> {
        m.values().filter_map(|v| median(v)).collect()
    };
    (med(conns), med(cpu))
}

/// A plain table, printed aligned on the terminal or as Markdown.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
    /// Footnotes printed under the table.
    pub notes: Vec<String>,
}

impl Table {
    /// Aligned text: first column left, the others right.
    pub fn to_text(&self) -> String {
        let n = self.headers.len();
        let mut w = vec![0; n];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, c) in row.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut s = String::new();
        let line = |s: &mut String, row: &[String]| {
            for (i, c) in row.iter().enumerate().take(n) {
                let pad = w[i] - c.chars().count();
                if i < 2 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
                s.push_str("  ");
            }
            s.truncate(s.trim_end().len());
            s.push('\n');
        };
        line(&mut s, &self.headers);
        let rule: Vec<String> = w.iter().map(|&k| "-".repeat(k)).collect();
        line(&mut s, &rule);
        for r in &self.rows {
            line(&mut s, r);
        }
        for n in &self.notes {
            s.push_str(n);
            s.push('\n');
        }
        s
    }

    /// A Markdown (GitHub) table.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let esc = |c: &str| c.replace('|', "\\|");
        let _ = writeln!(
            s,
            "| {} |",
            self.headers
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(
            s,
            "|{}|",
            (0..self.headers.len())
                .map(|i| if i < 2 { "---" } else { "---:" })
                .collect::<Vec<_>>()
                .join("|")
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} |",
                r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            );
        }
        if !self.notes.is_empty() {
            s.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s
    }
}

/// `12,345`.
pub fn fmt_count(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_string(), f)
}

fn spread_text(s: &Option<Spread>, f: impl Fn(f64) -> String) -> String {
    match s {
        Some(s) => format!("{} ±{:.0}%", f(s.median), s.relative_pct()),
        None => "–".into(),
    }
}

/// The table of one scenario.
pub fn scenario_table(s: &ScenarioSummary, reference: Option<&str>) -> Table {
    let bandwidth = s.name == "large-file";
    let idle = s.name == "idle";
    let workers = s.name == "workers";
    let fixed = s.name == "fixed-rate";
    // At a fixed rate every server is asked the same: a throughput ratio
    // says nothing there (the latency columns do).
    let reference = if fixed { None } else { reference };
    let mut headers: Vec<String> = vec!["point".into(), "server".into()];
    if bandwidth {
        headers.push("MiB/s".into());
    }
    headers.extend(["req/s", "p50", "p99", "p99.9"].map(String::from));
    if fixed {
        headers.push("max".into());
    }
    headers.extend(["errors", "non-2xx", "starved"].map(String::from));
    if idle {
        headers.extend(["idle held", "KiB/idle conn"].map(String::from));
    }
    if workers {
        headers.extend(["conns per worker", "CPU % per worker"].map(String::from));
    }
    headers.extend(["srv CPU", "req/CPU-s", "PSS MiB"].map(String::from));
    if let Some(r) = reference {
        headers.push(format!("vs {r}"));
    }
    let floor = s
        .points
        .iter()
        .any(|p| p.cells.iter().any(|c| c.vs_floor.is_some()));
    if floor {
        headers.push(format!("vs {FLOOR}"));
    }
    let mut rows = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for p in &s.points {
        for c in &p.cells {
            let mut row = vec![p.label.clone(), c.target.clone()];
            if c.status != Status::Measured {
                let what = match c.status {
                    Status::NotApplicable => "n/a",
                    _ => "failed",
                };
                let note = format!("{what}: {} ({}): {}", c.target, p.label, c.note);
                let k = match notes.iter().position(|n| *n == note) {
                    Some(k) => k,
                    None => {
                        notes.push(note);
                        notes.len() - 1
                    }
                };
                row.push(format!("{what} [{}]", k + 1));
                row.resize(headers.len(), "–".into());
                rows.push(row);
                continue;
            }
            if bandwidth {
                row.push(spread_text(&c.mib_per_sec, |v| format!("{v:.0}")));
            }
            row.push(spread_text(&c.rps, fmt_count));
            for v in [c.p50, c.p99, c.p999] {
                row.push(opt(v, |v| fmt_micros(v as u64)));
            }
            if fixed {
                row.push(opt(c.max, |v| fmt_micros(v as u64)));
            }
            row.push(opt(c.errors, fmt_count));
            row.push(opt(c.non_2xx, fmt_count));
            row.push(opt(c.starved, fmt_count));
            if idle {
                row.push(opt(c.idle_held, fmt_count));
                row.push(spread_text(&c.pss_per_idle_conn_kib, |v| format!("{v:.1}")));
            }
            if workers {
                let join = |v: &[f64]| {
                    if v.is_empty() {
                        "–".to_string()
                    } else {
                        v.iter()
                            .map(|x| format!("{x:.0}"))
                            .collect::<Vec<_>>()
                            .join("/")
                    }
                };
                row.push(join(&c.per_worker_conns));
                row.push(join(&c.per_worker_cpu_pct));
            }
            row.push(opt(c.server_cpu, |v| format!("{v:.2}")));
            row.push(opt(c.rps_per_cpu, fmt_count));
            row.push(opt(c.pss_mib, |v| format!("{v:.1}")));
            if reference.is_some() {
                row.push(match (&c.vs_reference, reference) {
                    (Some(r), _) => format!("{:.2}×", r.median),
                    (None, Some(name)) if name == c.target => "1.00×".into(),
                    _ => "–".into(),
                });
            }
            if floor {
                row.push(match &c.vs_floor {
                    Some(r) => format!("{:.2}×", r.median),
                    None if c.target == FLOOR => "1.00×".into(),
                    None => "–".into(),
                });
            }
            rows.push(row);
        }
    }
    let notes = notes
        .into_iter()
        .enumerate()
        .map(|(i, n)| format!("[{}] {n}", i + 1))
        .collect();
    Table {
        headers,
        rows,
        notes,
    }
}

/// The headline table: one row per server, one column per headline
/// figure (the README shows it).
pub fn headline_table(results: &Results) -> Table {
    let mut headers = vec!["server".to_string()];
    let mut cols: Vec<(String, String, bool)> = Vec::new(); // (scenario, point, bandwidth)
    for s in &results.scenarios {
        if matches!(
            s.name.as_str(),
            "idle" | "slow-clients" | "workers" | "fixed-rate"
        ) {
            continue;
        }
        for p in &s.points {
            let bw = s.name == "large-file";
            let short = match s.name.as_str() {
                "sweep" => format!("keep-alive {}", p.label),
                "conn-per-request" => format!("conn/request {}", p.label),
                "large-file" => format!("1 MiB {} (MiB/s)", p.label),
                "pipeline" => format!("pipelined {}", p.label),
                _ => p.label.clone(),
            };
            headers.push(short);
            cols.push((s.name.clone(), p.label.clone(), bw));
        }
    }
    if let Some(s) = results.scenarios.iter().find(|s| s.name == "idle") {
        headers.push("KiB per idle conn".into());
        cols.push((s.name.clone(), String::new(), false));
    }
    if let Some(s) = results.scenarios.iter().find(|s| s.name == "slow-clients")
        && let Some(p) = s.points.last()
    {
        headers.push("p99 under slow clients".into());
        cols.push((s.name.clone(), p.label.clone(), false));
    }
    if let Some(s) = results.scenarios.iter().find(|s| s.name == "fixed-rate")
        && let Some(p) = s.points.last()
    {
        headers.push(format!("p99 at {}", p.label));
        cols.push((s.name.clone(), p.label.clone(), false));
    }
    let mut rows = Vec::new();
    for t in &results.targets {
        // Variants are for the workers scenario; the floor is not a
        // server (its fractions are in the scenario tables).
        if t.name.contains('/') || t.name == FLOOR {
            continue;
        }
        let mut row = vec![t.name.clone()];
        let mut any = false;
        for (sc, point, bw) in &cols {
            let s = results.scenarios.iter().find(|s| &s.name == sc);
            let cell = s.and_then(|s| {
                s.points
                    .iter()
                    .filter(|p| point.is_empty() || &p.label == point)
                    .flat_map(|p| p.cells.iter())
                    .find(|c| c.target == t.name)
            });
            row.push(match cell {
                Some(c) if c.status == Status::Measured => {
                    any = true;
                    if sc == "idle" {
                        opt(c.pss_per_idle_conn_kib.map(|s| s.median), |v| {
                            format!("{v:.1}")
                        })
                    } else if sc == "slow-clients" || sc == "fixed-rate" {
                        c.p99
                            .map_or_else(|| "no response".into(), |v| fmt_micros(v as u64))
                    } else if *bw {
                        opt(c.mib_per_sec.map(|s| s.median), |v| format!("{v:.0}"))
                    } else {
                        opt(c.rps.map(|s| s.median), fmt_count)
                    }
                }
                Some(c) if c.status == Status::NotApplicable => "n/a".into(),
                Some(_) => "failed".into(),
                None => "–".into(),
            });
        }
        if any {
            rows.push(row);
        }
    }
    Table {
        headers,
        rows,
        notes: Vec::new(),
    }
}

/// Charts written for the summary, `(file name, caption)`.
pub type ChartList = Vec<(String, String)>;

/// The Markdown summary the course links to.
pub fn markdown(results: &Results, charts: &ChartList) -> String {
    let mut s = String::new();
    let m = &results.machine;
    let _ = writeln!(s, "# Benchmark report\n");
    let _ = writeln!(
        s,
        "Machine: {} cores ({}), {:.0} GiB, Linux {}. Date: {}.\n",
        m.cores, m.cpu, m.memory_gib, m.kernel, m.date
    );
    let _ = writeln!(s, "Command: `{}`\n", results.command);
    let _ = writeln!(
        s,
        "Profile `{}`: {} rounds, each run {:.2} s of warm-up then {:.2} s measured; every figure is the median of the rounds (± half the range between the lowest and highest round); targets take turns within each round. Pinning: {}. Load generator: {} event-loop thread(s). Multi-core servers get {} worker(s)/loop(s).\n",
        results.profile.name,
        results.profile.rounds,
        results.profile.warmup.as_secs_f64(),
        results.profile.duration.as_secs_f64(),
        results.pinning,
        results.loadgen_threads,
        results.server_workers,
    );
    if let Some(r) = &results.reference {
        let _ = writeln!(
            s,
            "Ratios (`vs {r}`) are computed round by round and their median is shown.\n"
        );
    }
    let _ = writeln!(s, "## Servers\n");
    for t in &results.targets {
        let _ = writeln!(s, "- `{}`: {} — {}", t.name, t.about, t.status);
    }
    let _ = writeln!(s, "\n## Summary\n");
    let _ = writeln!(
        s,
        "Requests per second unless stated otherwise (n/a: the server cannot take this load by design).\n"
    );
    s.push_str(&headline_table(results).to_markdown());
    for (file, caption) in charts {
        let _ = writeln!(s, "\n![{caption}]({file})");
    }
    for sc in &results.scenarios {
        let _ = writeln!(s, "\n## {} (`{}`)\n\n{}\n", sc.title, sc.name, sc.about);
        s.push_str(&scenario_table(sc, results.reference.as_deref()).to_markdown());
    }
    if let Some(w) = &results.wrk_check {
        let _ = writeln!(s, "\n## Load generator vs wrk\n");
        s.push_str(&wrk_text(w));
    }
    if let Some(t) = &results.tls {
        let _ = writeln!(s, "\n## TLS (`tls`)\n\n{}\n", tls_about(t));
        s.push_str(&tls_table(t).to_markdown());
    }
    let _ = writeln!(
        s,
        "\nColumns: p50/p99/p99.9 are latencies (closed loop: from send; open loop: from the intended send time). `starved`: connections that completed no request in the window. `srv CPU`: cores the server used; `req/CPU-s`: responses per CPU-second of server time. PSS: the server's proportional set size, summed over its processes, in mid-run."
    );
    s
}

/// Writes `results.json` and `summary.md` into `out`.
pub fn write_files(out: &Path, results: &Results, charts: &ChartList) -> io::Result<()> {
    fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(results).map_err(io::Error::other)?,
    )?;
    fs::write(out.join("summary.md"), markdown(results, charts))
}

/// What the terminal shows at the end of a run: the machine and profile,
/// the servers that could not be run, each scenario's table, the wrk check.
pub fn terminal_text(results: &Results) -> String {
    let mut s = String::new();
    let p = &results.profile;
    let _ = writeln!(s, "{}", results.machine.label());
    let _ = writeln!(
        s,
        "profile {}: {} rounds × {:.2} s (+{:.2} s warm-up); {}; load generator threads: {}\n",
        p.name,
        p.rounds,
        p.duration.as_secs_f64(),
        p.warmup.as_secs_f64(),
        results.pinning,
        results.loadgen_threads
    );
    for t in results
        .targets
        .iter()
        .filter(|t| !t.status.starts_with("ok"))
    {
        let _ = writeln!(s, "{}: {}", t.name, t.status);
    }
    for sc in &results.scenarios {
        let _ = writeln!(s, "\n== {} ({})", sc.title, sc.name);
        s.push_str(&scenario_table(sc, results.reference.as_deref()).to_text());
    }
    if let Some(w) = &results.wrk_check {
        let _ = writeln!(s, "\n== Load generator vs wrk\n{}", wrk_text(w));
    }
    if let Some(t) = &results.tls {
        let _ = writeln!(s, "\n== TLS (tls)\n{}\n", tls_about(t));
        s.push_str(&tls_table(t).to_text());
    }
    s
}

/// What the TLS table measured, one paragraph.
pub fn tls_about(t: &crate::tls::TlsComparison) -> String {
    format!(
        "wrk with {} connections and {} thread(s), {} s per run after {} s of warm-up, {} round(s), each server in turn; certificate: {}. Keep-alive: `{}`; handshakes: the same with `Connection: close`, so every request is a new TLS connection (wrk does not resume sessions). Medians over rounds; ratios paired by round.",
        t.connections,
        t.threads,
        t.duration_secs,
        t.warmup_secs,
        t.rounds,
        t.certificate,
        t.commands.first().map_or("–", String::as_str),
    )
}

/// The TLS comparison as a table: one row per server.
pub fn tls_table(t: &crate::tls::TlsComparison) -> Table {
    use crate::tls::Way;
    let nginx = t.rows.iter().find(|r| r.server == "nginx");
    let num = |v: Option<Spread>| v.map_or_else(|| "–".into(), |s| fmt_count(s.median));
    let ratio = |v: Option<Spread>| v.map_or_else(|| "–".into(), |s| format!("{:.2}", s.median));
    let rows = t
        .rows
        .iter()
        .map(|r| {
            let vs = |way| match nginx {
                Some(n) if n.server != r.server => ratio(r.over(n, way)),
                _ => "–".into(),
            };
            let errors = if r.failures.is_empty() {
                r.errors.to_string()
            } else {
                format!("{} ({} failed run(s))", r.errors, r.failures.len())
            };
            vec![
                r.server.clone(),
                num(r.median(Way::Plain)),
                num(r.median(Way::Tls)),
                ratio(r.tls_over_plain()),
                vs(Way::Tls),
                num(r.median(Way::Handshakes)),
                vs(Way::Handshakes),
                errors,
            ]
        })
        .collect();
    Table {
        headers: [
            "server",
            "plain req/s",
            "TLS req/s",
            "TLS/plain",
            "TLS vs nginx",
            "handshakes/s",
            "handshakes vs nginx",
            "errors",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect(),
        rows,
        notes: t
            .rows
            .iter()
            .flat_map(|r| r.failures.iter().map(move |f| format!("{}: {f}", r.server)))
            .collect(),
    }
}

/// The wrk check as a short paragraph.
pub fn wrk_text(w: &WrkCheck) -> String {
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| fmt_count(*x))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "Against `{}` with {} connections, {} thread(s), {:.0} s per run, taking turns:\n\n- wrk: {} req/s (`{}`)\n- bench: {} req/s\n- bench / wrk: {}\n",
        w.server,
        w.connections,
        w.threads,
        w.duration_secs,
        list(&w.wrk_rps),
        w.wrk_command,
        list(&w.bench_rps),
        w.ratio.map_or_else(
            || "–".into(),
            |r| format!("median {:.3} (range {:.3}–{:.3})", r.median, r.min, r.max)
        ),
    )
}

/// Every scenario name, for `--help`.
pub fn scenario_names() -> String {
    SCENARIOS
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_tables() {
        assert_eq!(fmt_count(1234567.4), "1,234,567");
        assert_eq!(fmt_count(999.0), "999");
        assert_eq!(fmt_count(-1000.0), "-1,000");
        let t = Table {
            headers: vec!["a".into(), "b".into(), "n".into()],
            rows: vec![vec!["x".into(), "y|z".into(), "10".into()]],
            notes: vec!["[1] n/a: why".into()],
        };
        assert!(t.to_text().contains("x  y|z  10"));
        assert!(t.to_markdown().contains("| x | y\\|z | 10 |"));
    }

    fn run(round: usize, target: &str, rps: f64) -> RunRecord {
        RunRecord {
            round,
            scenario: "sweep".into(),
            point: "c=1".into(),
            x: 1.0,
            target: target.into(),
            status: Status::Measured,
            note: String::new(),
            figures: Some(Figures {
                rps,
                ..Figures::default()
            }),
        }
    }

    /// Medians over rounds, and ratios paired by round against the
    /// reference.
    #[test]
    fn summaries_pair_rounds() {
        let runs = vec![
            run(0, "a", 100.0),
            run(0, "ref", 200.0),
            run(1, "a", 50.0),
            run(1, "ref", 100.0),
            run(2, "a", 90.0),
            run(2, "ref", 100.0),
        ];
        let sc = crate::scenarios::scenario("sweep").unwrap();
        let s = summarize(&runs, &[sc], &["a".into(), "ref".into()], 3, Some("ref"));
        let cell = &s[0].points[0].cells[0];
        assert_eq!(cell.rps.unwrap().median, 90.0);
        let r = cell.vs_reference.unwrap();
        assert_eq!((r.median, r.min, r.max), (0.5, 0.5, 0.9));
        assert!(s[0].points[0].cells[1].vs_reference.is_none());
    }
}
