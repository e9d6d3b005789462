//! `cargo run --release -p bench`: build every stage that exists, start
//! each one (and nginx, when installed) on the bundled site, run the
//! scenarios in interleaved rounds, and write the report.
//!
//! See the crate docs (`src/lib.rs`) for the layout and the benchmarks
//! chapter of the course for how to read the results.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bench::charts;
use bench::loadgen::{self, Control, Mode, Spec};
use bench::machine::{self, Machine, Pinning};
use bench::report::{self, ChartList, RunRecord, Status, TargetInfo, WrkCheck};
use bench::scenarios::{self, GenSettings, Profile, Scenario};
use bench::stats::paired_ratio;
use bench::targets::{self, Launch, StartOptions, Target};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

// `--quick`, `--scenario`, `--stage`, `--out` and `--no-build` are a public
// interface (see "Interface" in the crate docs): scripts call them, so they
// keep their names and meaning, and a change goes through a deprecation.
/// Compare the servers of this workspace (and nginx) under load.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Args {
    /// `check`: grade any server against a stage's rubric instead of
    /// measuring (`bench check --stage 2 -- COMMAND {port} {root}`).
    #[command(subcommand)]
    command: Option<Cmd>,

    /// The short profile (about two minutes on two cores) instead of the
    /// full one.
    #[arg(long)]
    quick: bool,

    /// Run only this scenario (repeatable). Scenarios: sweep,
    /// conn-per-request, large-file, pipeline, idle, slow-clients, workers.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,

    /// Run only this server (repeatable): a stage package name, `nginx`,
    /// `nginx-nosendfile`, or a `--peer` name. Default: all.
    #[arg(long = "stage", value_name = "NAME")]
    stages: Vec<String>,

    /// Rounds (default: 3 quick, 5 full).
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,

    /// Seconds measured per run (default: 0.6 quick, 3 full).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// Seconds of warm-up before each measured window (default: 0.2
    /// quick, 1 full).
    #[arg(long, value_name = "SECS")]
    warmup: Option<f64>,

    /// Where to write results.json, summary.md and the charts.
    #[arg(long, value_name = "DIR", default_value = "bench-report")]
    out: PathBuf,

    /// Pin the servers and the load generator to separate halves of the
    /// CPUs (server on CPU 0 and load generator on CPU 1 on two cores).
    #[arg(long)]
    pin: bool,

    /// Load generator threads (default: the CPUs it is pinned to, or
    /// half the CPUs).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Worker processes / event loops for stages 4 and 5 and nginx
    /// (default: the CPUs the servers may use).
    #[arg(long, value_name = "N")]
    server_workers: Option<usize>,

    /// Leave nginx out even when it is installed.
    #[arg(long)]
    no_nginx: bool,

    /// Add another installed server, as `NAME=COMMAND`; the command gets
    /// `{port}` and `{root}` replaced (repeatable). Example:
    /// `--peer 'busybox=busybox httpd -f -p 127.0.0.1:{port} -h {root}'`.
    #[arg(long = "peer", value_name = "NAME=COMMAND")]
    peers: Vec<String>,

    /// Use the stage binaries already in target/release instead of
    /// running `cargo build --release` for each.
    #[arg(long)]
    no_build: bool,

    /// The site to serve (a copy is made, with a 1 MiB file added).
    #[arg(long, value_name = "DIR", default_value = common::server::DEFAULT_ROOT)]
    root: PathBuf,

    /// Also run the wrk agreement check (needs `wrk`): wrk and this load
    /// generator take turns against the same server.
    #[arg(long)]
    wrk_check: bool,

    /// Run only the wrk agreement check.
    #[arg(long)]
    wrk_check_only: bool,
}

/// The subcommands; without one, the bench measures.
#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Grade a server (any language) against a stage's rubric: the checks
    /// this workspace's stages pass, with each failure explained and a
    /// command that reproduces it. Exits 0 only when every required check
    /// passes.
    Check(bench::check::CheckArgs),
}

fn main() {
    let args = Args::parse();
    if let Some(Cmd::Check(check)) = &args.command {
        std::process::exit(bench::check::main(check));
    }
    if let Err(e) = run(&args) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> io::Result<()> {
    raise_fd_limit();
    let mut profile = if args.quick {
        Profile::quick()
    } else {
        Profile::full()
    };
    if let Some(r) = args.rounds {
        profile.rounds = r.max(1);
    }
    if let Some(d) = args.duration {
        profile.duration = Duration::from_secs_f64(d.max(0.1));
    }
    if let Some(w) = args.warmup {
        profile.warmup = Duration::from_secs_f64(w.max(0.0));
    }
    let scenarios: Vec<&'static Scenario> = if args.scenarios.is_empty() {
        profile.default_scenarios()
    } else {
        args.scenarios
            .iter()
            .map(|n| {
                scenarios::scenario(n).ok_or_else(|| {
                    io::Error::other(format!(
                        "unknown scenario {n:?}; known: {}",
                        report::scenario_names()
                    ))
                })
            })
            .collect::<io::Result<_>>()?
    };

    let machine = Machine::detect();
    let cpus = machine::allowed_cpus();
    let pinning = if args.pin {
        let p = Pinning::split(&cpus);
        if p.is_none() {
            eprintln!("bench: --pin needs at least two CPUs; not pinning");
        }
        p
    } else {
        None
    };
    let server_cpus = pinning.as_ref().map_or(cpus.len(), |p| p.server.len());
    let workers = args.server_workers.unwrap_or(server_cpus).max(1);
    let gen_threads = args
        .threads
        .unwrap_or_else(|| {
            pinning
                .as_ref()
                .map_or((cpus.len() / 2).max(1), |p| p.loadgen.len())
        })
        .max(1);
    if let Some(p) = &pinning {
        machine::pin_current_thread(&p.loadgen)?;
    }

    // The servers.
    let root = targets::workspace_root();
    eprintln!(
        "bench: finding and building the stages in {}",
        root.display()
    );
    let (all_targets, mut infos) = discover(args, &root, workers, profile.workers)?;
    let selected: Vec<Target> = all_targets
        .into_iter()
        .filter(|t| {
            args.stages.is_empty()
                || args.stages.iter().any(|s| {
                    *s == t.name
                        || t.stage == Some(s.as_str())
                        || t.name.starts_with(&format!("{s}/"))
                })
        })
        .collect();
    if selected.is_empty() {
        return Err(io::Error::other("no server to measure (see --stage)"));
    }
    let reference = selected
        .iter()
        .any(|t| t.name == "nginx")
        .then(|| "nginx".to_string());

    let scratch = targets::TempDir::new("bench")?;
    let site = targets::make_site(&args.root, &scratch.path)?;
    let out = report_dir(&args.out)?;
    let logs = out.join("logs");
    fs::create_dir_all(&logs)?;

    let load = GenSettings {
        threads: gen_threads,
        warmup: profile.warmup,
        duration: profile.duration,
    };
    let pin_text = pinning
        .as_ref()
        .map_or_else(|| "not pinned".to_string(), Pinning::describe);

    // The wrk check.
    let mut wrk = None;
    if args.wrk_check || args.wrk_check_only {
        wrk = wrk_check(&selected, &site, &logs, &pinning, gen_threads, args.quick)?;
        if let Some(w) = &wrk {
            eprintln!("{}", report::wrk_text(w));
        }
    }

    // The rounds.
    let mut runs: Vec<RunRecord> = Vec::new();
    let scenarios = if args.wrk_check_only {
        Vec::new()
    } else {
        scenarios
    };
    let total: usize = scenarios
        .iter()
        .map(|sc| {
            let n = scenarios::points(sc, &profile).len();
            n * selected
                .iter()
                .filter(|t| scenarios::relevant(sc, t))
                .count()
        })
        .sum::<usize>()
        * profile.rounds;
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(io::Error::other)?
            .progress_chars("=> "),
    );
    for round in 0..profile.rounds {
        for sc in &scenarios {
            let points = scenarios::points(sc, &profile);
            let mut order: Vec<&Target> = selected
                .iter()
                .filter(|t| scenarios::relevant(sc, t))
                .collect();
            if !order.is_empty() {
                let k = round % order.len();
                order.rotate_left(k);
            }
            let extra = scenarios::stage_args(sc);
            for t in order {
                let record = |point: &scenarios::Point, status, note: String, figures| RunRecord {
                    round,
                    scenario: sc.name.to_string(),
                    point: point.label.clone(),
                    x: point.x,
                    target: t.name.clone(),
                    status,
                    note,
                    figures,
                };
                if points
                    .iter()
                    .all(|p| scenarios::not_applicable(p, t).is_some())
                {
                    for p in &points {
                        let why = scenarios::not_applicable(p, t).unwrap_or_default();
                        runs.push(record(p, Status::NotApplicable, why, None));
                        bar.inc(1);
                    }
                    continue;
                }
                let opts = StartOptions {
                    root: &site,
                    scratch: &logs,
                    extra_args: if matches!(t.launch, Launch::Contract { .. }) {
                        &extra
                    } else {
                        &[]
                    },
                    keepalive_secs: 300,
                    pin: pinning.as_ref().map(|p| p.server.as_slice()),
                    pin_back: pinning.as_ref().map(|p| p.loadgen.as_slice()),
                };
                let mut server = match targets::start(t, &opts) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        for p in &points {
                            runs.push(record(p, Status::Failed, format!("start: {e}"), None));
                            bar.inc(1);
                        }
                        None
                    }
                };
                let Some(running) = server.as_mut() else {
                    continue;
                };
                for p in &points {
                    bar.set_message(format!(
                        "round {} · {} · {} · {}",
                        round + 1,
                        sc.name,
                        p.label,
                        t.name
                    ));
                    if let Some(why) = scenarios::not_applicable(p, t) {
                        runs.push(record(p, Status::NotApplicable, why, None));
                    } else if !running.alive() {
                        runs.push(record(p, Status::Failed, "the server exited".into(), None));
                    } else {
                        match scenarios::measure(running.addr, running.pid(), p, &load) {
                            Ok(f) => runs.push(record(p, Status::Measured, String::new(), Some(f))),
                            Err(e) => runs.push(record(p, Status::Failed, e.to_string(), None)),
                        }
                    }
                    bar.inc(1);
                }
                if let Some(s) = server.take()
                    && !s.stop()
                {
                    bar.println(format!(
                        "{}: did not stop within 5 s of SIGTERM; killed",
                        t.name
                    ));
                }
            }
        }
    }
    bar.finish_and_clear();

    // The report.
    let names: Vec<String> = selected.iter().map(|t| t.name.clone()).collect();
    let summaries = report::summarize(
        &runs,
        &scenarios,
        &names,
        profile.rounds,
        reference.as_deref(),
    );
    infos.retain(|i| selected.iter().any(|t| t.name == i.name) || !i.status.starts_with("ok"));
    let command = std::env::args()
        .skip(1)
        .fold("cargo run --release -p bench --".to_string(), |a, b| {
            format!("{a} {b}")
        });
    let results = report::Results {
        machine: machine.clone(),
        command,
        profile: profile.clone(),
        pinning: pin_text.clone(),
        loadgen_threads: gen_threads,
        server_workers: workers,
        reference: reference.clone(),
        targets: infos,
        scenarios: summaries,
        wrk_check: wrk,
        runs,
    };
    let footer = format!(
        "{} · profile {}, median of {} rounds, whiskers min–max · {}",
        machine.label(),
        profile.name,
        profile.rounds,
        pin_text
    );
    let chart_list = write_charts(&out, &results, &footer);
    fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results).map_err(io::Error::other)?,
    )?;
    fs::write(
        out.join("summary.md"),
        report::markdown(&results, &chart_list),
    )?;

    println!("{}", machine.label());
    println!(
        "profile {}: {} rounds × {:.2} s (+{:.2} s warm-up); {}; load generator threads: {}\n",
        profile.name,
        profile.rounds,
        profile.duration.as_secs_f64(),
        profile.warmup.as_secs_f64(),
        pin_text,
        gen_threads
    );
    for t in &results.targets {
        if !t.status.starts_with("ok") {
            println!("{}: {}", t.name, t.status);
        }
    }
    for s in &results.scenarios {
        println!("\n== {} ({})", s.title, s.name);
        print!(
            "{}",
            report::scenario_table(s, results.reference.as_deref()).to_text()
        );
    }
    if let Some(w) = &results.wrk_check {
        println!("\n== Load generator vs wrk\n{}", report::wrk_text(w));
    }
    println!(
        "\nreport: {}/summary.md, results.json, {} chart(s)",
        out.display(),
        chart_list.len()
    );
    Ok(())
}

/// Creates the report folder `--out` and returns its absolute path.
///
/// This is the one place the report's path is made absolute, and every path
/// the bench hands to a server (logs, nginx's prefix, configuration, pid and
/// error-log files) is derived from what it returns. A relative path would
/// mean something else to the server: nginx resolves `-p`, `-c` and the
/// paths in its configuration against its prefix, not against our working
/// directory, so with the default `--out bench-report` it looked for
/// `bench-report/logs/nginx-nginx/bench-report/logs/...` and every nginx
/// cell failed.
fn report_dir(out: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(out)
        .and_then(|()| fs::canonicalize(out))
        .map_err(|e| io::Error::new(e.kind(), format!("--out {}: {e}", out.display())))
}

/// Raises the soft open-files limit to the hard one: scenario 5 holds
/// 10,000 connections, and the servers inherit the limit.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Finds the stages (building each), nginx and the peers.
fn discover(
    args: &Args,
    root: &Path,
    workers: usize,
    variant_workers: usize,
) -> io::Result<(Vec<Target>, Vec<TargetInfo>)> {
    let packages = if args.no_build {
        Vec::new()
    } else {
        targets::workspace_packages(root).unwrap_or_default()
    };
    let mut out = Vec::new();
    let mut infos = Vec::new();
    let w = workers.to_string();
    let vw = variant_workers.to_string();
    for stage in targets::STAGES {
        let bin = if args.no_build {
            let p = root.join("target/release").join(stage);
            let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
            let p = target_dir.map_or(p, |d| d.join("release").join(stage));
            if p.exists() {
                Ok(p)
            } else {
                Err(format!("not built ({} missing)", p.display()))
            }
        } else if !packages.iter().any(|p| p == stage) {
            Err("not built: no such package in the workspace yet".to_string())
        } else {
            eprintln!("bench: cargo build --release -p {stage}");
            targets::build_release(root, stage).map_err(|e| format!("not built: {e}"))
        };
        let (about, args): (&str, Vec<String>) = match stage {
            "stage2-http-seq" => ("one connection at a time, blocking I/O", vec![]),
            "stage3-threadpool" => (
                "acceptor thread + pool of 8 worker threads (defaults)",
                vec![],
            ),
            "stage4-epoll" => ("mio event loop(s)", vec!["--loops".into(), w.clone()]),
            _ => (
                "master + forked workers",
                vec!["--workers".into(), w.clone()],
            ),
        };
        let about = match stage {
            "stage4-epoll" => format!("{about}, --loops {workers}"),
            "stage5-prefork" => format!("{about}, --workers {workers}"),
            _ => about.to_string(),
        };
        match bin {
            Ok(bin) => {
                infos.push(TargetInfo {
                    name: stage.to_string(),
                    about: about.clone(),
                    status: "ok".into(),
                });
                if stage == "stage5-prefork" {
                    for (accept, balance) in [
                        ("pass", "round-robin"),
                        ("pass", "least-conn"),
                        ("shared", "round-robin"),
                    ] {
                        let name = if accept == "shared" {
                            "stage5 shared/epollexclusive".to_string()
                        } else {
                            format!("stage5 pass/{balance}")
                        };
                        infos.push(TargetInfo {
                            name: name.clone(),
                            about: format!("--workers {vw} --accept {accept} --balance {balance}"),
                            status: "ok".into(),
                        });
                        out.push(Target {
                            name,
                            about: format!("--accept {accept} --balance {balance}"),
                            stage: Some(stage),
                            launch: Launch::Contract {
                                bin: bin.clone(),
                                args: ["--workers", &vw, "--accept", accept, "--balance", balance]
                                    .map(String::from)
                                    .to_vec(),
                            },
                        });
                    }
                }
                out.insert(
                    out.iter()
                        .position(|t| t.name.contains('/'))
                        .unwrap_or(out.len()),
                    Target {
                        name: stage.to_string(),
                        about,
                        stage: Some(stage),
                        launch: Launch::Contract { bin, args },
                    },
                );
            }
            Err(status) => infos.push(TargetInfo {
                name: stage.to_string(),
                about,
                status,
            }),
        }
    }
    if args.no_nginx {
        infos.push(TargetInfo {
            name: "nginx".into(),
            about: "reference".into(),
            status: "left out (--no-nginx)".into(),
        });
    } else if targets::nginx_installed() {
        let v = nginx_version();
        for (name, sendfile, n, about) in [
            (
                "nginx",
                true,
                workers,
                format!("{v}, {workers} worker(s), sendfile on"),
            ),
            (
                "nginx-nosendfile",
                false,
                workers,
                format!("{v}, {workers} worker(s), sendfile off"),
            ),
            (
                "nginx/4 workers",
                true,
                variant_workers,
                format!("{v}, {variant_workers} workers"),
            ),
        ] {
            infos.push(TargetInfo {
                name: name.into(),
                about: about.clone(),
                status: "ok".into(),
            });
            out.push(Target {
                name: name.into(),
                about,
                stage: None,
                launch: Launch::Nginx {
                    sendfile,
                    workers: n,
                },
            });
        }
    } else {
        infos.push(TargetInfo {
            name: "nginx".into(),
            about: "reference".into(),
            status: "not installed (apt-get install nginx-light)".into(),
        });
    }
    for p in &args.peers {
        let Some((name, command)) = p.split_once('=') else {
            return Err(io::Error::other(format!(
                "--peer {p:?}: expected NAME=COMMAND"
            )));
        };
        infos.push(TargetInfo {
            name: name.into(),
            about: format!("peer: {command}"),
            status: "ok".into(),
        });
        out.push(Target {
            name: name.into(),
            about: command.into(),
            stage: None,
            launch: Launch::Peer {
                command: command.into(),
            },
        });
    }
    Ok((out, infos))
}

fn nginx_version() -> String {
    Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .split(':')
                .nth(1)
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "nginx".into())
}

/// wrk and this generator take turns against the same server: nginx if
/// selected, else the last stage.
fn wrk_check(
    selected: &[Target],
    site: &Path,
    logs: &Path,
    pinning: &Option<Pinning>,
    threads: usize,
    quick: bool,
) -> io::Result<Option<WrkCheck>> {
    if Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("bench: wrk is not installed; skipping the wrk check");
        return Ok(None);
    }
    let Some(target) = selected.iter().find(|t| t.name == "nginx").or_else(|| {
        selected
            .iter()
            .rfind(|t| t.stage.is_some() && !t.name.contains('/'))
    }) else {
        return Ok(None);
    };
    let (conns, secs, rounds) = if quick { (64, 3, 3) } else { (64, 5, 5) };
    let opts = StartOptions {
        root: site,
        scratch: logs,
        extra_args: &[],
        keepalive_secs: 300,
        pin: pinning.as_ref().map(|p| p.server.as_slice()),
        pin_back: pinning.as_ref().map(|p| p.loadgen.as_slice()),
    };
    let server = targets::start(target, &opts)?;
    let url = format!("http://{}{}", server.addr, targets::SMALL_PATH);
    let wrk_args = [
        "-t".to_string(),
        threads.to_string(),
        "-c".into(),
        conns.to_string(),
        "-d".into(),
        format!("{secs}s"),
        url.clone(),
    ];
    let mut wrk_rps = Vec::new();
    let mut bench_rps = Vec::new();
    for _ in 0..rounds {
        eprintln!("bench: wrk {}", wrk_args.join(" "));
        let out = Command::new("wrk").args(&wrk_args).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rps = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected wrk output:\n{text}")))?;
        wrk_rps.push(rps);
        let mut spec = Spec::get(
            server.addr,
            targets::SMALL_PATH,
            conns,
            Duration::from_secs(secs),
        );
        spec.threads = threads;
        spec.mode = Mode::Closed { pipeline: 1 };
        let o = loadgen::run(&spec, &Arc::new(Control::default()))?;
        eprintln!(
            "bench: wrk {:.0} req/s, bench {:.0} req/s ({} errors)",
            rps,
            o.rps(),
            o.errors.total()
        );
        bench_rps.push(o.rps());
    }
    server.stop();
    let ratio = paired_ratio(
        &bench_rps.iter().map(|&v| Some(v)).collect::<Vec<_>>(),
        &wrk_rps.iter().map(|&v| Some(v)).collect::<Vec<_>>(),
    );
    Ok(Some(WrkCheck {
        server: target.name.clone(),
        wrk_command: format!("wrk {}", wrk_args.join(" ")),
        connections: conns,
        threads,
        duration_secs: secs as f64,
        wrk_rps,
        bench_rps,
        ratio,
    }))
}

/// Draws the charts the results allow; returns `(file, caption)` for each.
fn write_charts(out: &Path, results: &report::Results, footer: &str) -> ChartList {
    let mut list = ChartList::new();
    let mut add = |file: &str, caption: &str, r: Result<(), String>| match r {
        Ok(()) if out.join(file).exists() => list.push((file.to_string(), caption.to_string())),
        Ok(()) => {}
        Err(e) => eprintln!("bench: chart {file}: {e}"),
    };
    let find = |name: &str| results.scenarios.iter().find(|s| s.name == name);
    for f in [
        "throughput.svg",
        "latency.svg",
        "bandwidth.svg",
        "memory.svg",
        "workers.svg",
    ] {
        let _ = fs::remove_file(out.join(f));
    }
    if let Some(s) = find("sweep") {
        add(
            "throughput.svg",
            "Throughput vs keep-alive connections",
            charts::throughput(&out.join("throughput.svg"), s, footer),
        );
    }
    if let Some(s) = find("slow-clients") {
        let last = s.points.len().saturating_sub(1);
        add(
            "latency.svg",
            "Latency of normal clients next to slow clients (open loop)",
            charts::latency(
                &out.join("latency.svg"),
                s,
                last,
                "Normal clients' latency next to slow clients (open loop)",
                footer,
            ),
        );
    } else if let Some(s) = find("sweep") {
        let i = s.points.iter().position(|p| p.x >= 16.0).unwrap_or(0);
        let title = format!(
            "Latency percentiles, keep-alive {} (closed loop)",
            s.points.get(i).map_or("", |p| p.label.as_str())
        );
        add(
            "latency.svg",
            &title,
            charts::latency(&out.join("latency.svg"), s, i, &title, footer),
        );
    }
    if let Some(s) = find("large-file")
        && let Some(p) = s.points.last()
    {
        let bars: Vec<_> = p
            .cells
            .iter()
            .filter(|c| c.status == Status::Measured)
            .filter_map(|c| {
                c.mib_per_sec
                    .map(|m| (c.target.clone(), m.median, m.min, m.max))
            })
            .collect();
        let title = format!("1 MiB file, {}: bandwidth", p.label);
        add(
            "bandwidth.svg",
            &title,
            charts::bars(&out.join("bandwidth.svg"), &title, "MiB/s", &bars, footer),
        );
    }
    if let Some(s) = find("idle")
        && let Some(p) = s.points.first()
    {
        let bars: Vec<_> = p
            .cells
            .iter()
            .filter(|c| c.status == Status::Measured)
            .filter_map(|c| {
                c.pss_per_idle_conn_kib
                    .map(|m| (c.target.clone(), m.median, m.min, m.max))
            })
            .collect();
        let title = format!("Server memory per idle connection ({})", p.label);
        add(
            "memory.svg",
            &title,
            charts::bars(
                &out.join("memory.svg"),
                &title,
                "KiB of PSS per idle connection",
                &bars,
                footer,
            ),
        );
    }
    if let Some(s) = find("workers")
        && let Some(p) = s.points.first()
    {
        let groups: Vec<_> = p
            .cells
            .iter()
            .filter(|c| c.status == Status::Measured)
            .map(|c| (c.target.clone(), c.per_worker_conns.clone()))
            .collect();
        let title = format!("Connections per worker process ({})", p.label);
        add(
            "workers.svg",
            &title,
            charts::groups(
                &out.join("workers.svg"),
                &title,
                "connections held in mid-run (workers sorted by share)",
                &groups,
                footer,
            ),
        );
    }
    list
}
