//! `cargo run --release -p bench`: build every stage that exists, start
//! each one (and nginx, when installed) on the bundled site, run the
//! scenarios in interleaved rounds, and write the report.
//!
//! [`run`] is the outline of a bench run, one step a line; the steps live
//! in the library (`lineup`, `rounds`, `wrk`, `report`, `charts`). See the
//! crate docs (`src/lib.rs`) for the layout and the benchmarks chapter of
//! the course for how to read the results.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bench::lineup::{self, Lineup};
use bench::machine::{self, Machine, Pinning};
use bench::report::{self, Results, RunRecord, WrkCheck};
use bench::rounds::Rounds;
use bench::scenarios::{self, GenSettings, Profile, Scenario};
use bench::targets::{self, Target, TempDir};
use bench::{charts, cluster, wrk};
use clap::Parser;

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
    /// conn-per-request, large-file, pipeline, idle, slow-clients, workers,
    /// fixed-rate, proxy; `tls` (needs wrk: stages 4 and 5 and nginx over
    /// HTTPS with one certificate, keep-alive and handshakes per second)
    /// and `cluster` (needs root and HAProxy: the stage named by `--stage`,
    /// default stage4-epoll, on `--backends` hosts behind HAProxy), which
    /// only run when named.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,

    /// `--scenario cluster`: backend hosts.
    #[arg(long, value_name = "N", default_value_t = 3)]
    backends: usize,

    /// Run only this server (repeatable): a stage package name, `nginx`,
    /// `nginx-nosendfile`, `h2o`, `lighttpd`, `floor` (the ceiling, not a server), or a `--peer` name. Default: all.
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
    /// Stage 5's self-sizing pool under a load step (idle, full load,
    /// idle): the number of workers over time, in load-step.json and a
    /// chart, load-step.svg.
    LoadStep(bench::load_step::LoadStepArgs),
    /// Stage 4's reverse proxy (`--proxy-pass`) against nginx's
    /// `proxy_pass`, both in front of the same stage 4 upstream, and the
    /// upstream alone: proxy.json and proxy.md.
    Proxy(bench::proxy::ProxyArgs),
}

fn main() {
    let args = Args::parse();
    match &args.command {
        Some(Cmd::Check(check)) => std::process::exit(bench::check::main(check)),
        Some(Cmd::LoadStep(step)) => std::process::exit(bench::load_step::main(step)),
        Some(Cmd::Proxy(proxy)) => std::process::exit(bench::proxy::main(proxy)),
        None => {}
    }
    if let Err(e) = run(&args) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

/// A bench run, step by step: the scenarios that compare servers, then
/// the cluster lab if it was asked for.
fn run(args: &Args) -> io::Result<()> {
    raise_fd_limit();
    let cluster = args.scenarios.iter().any(|s| s == CLUSTER);
    let tls = args.scenarios.iter().any(|s| s == TLS);
    let rest: Vec<String> = args
        .scenarios
        .iter()
        .filter(|s| *s != CLUSTER && *s != TLS)
        .cloned()
        .collect();
    let compared = !cluster || !rest.is_empty() || args.wrk_check_only || tls;
    if compared {
        compare(args, &rest, tls)?;
    }
    if cluster {
        run_cluster(args, compared)?;
    }
    Ok(())
}

/// The name `--scenario` gives the cluster lab.
const CLUSTER: &str = "cluster";

/// The name `--scenario` gives the TLS comparison ([`bench::tls`]).
const TLS: &str = "tls";

/// The comparison of the servers, step by step.
fn compare(args: &Args, scenarios: &[String], tls: bool) -> io::Result<()> {
    // `--scenario tls` alone runs the TLS comparison only.
    let plan = Plan::new(args, scenarios, tls && scenarios.is_empty())?;
    // The bench runs on the load generator's CPUs from here on; each
    // server is started on the servers' (see `targets::start`).
    if let Some(p) = &plan.pinning {
        machine::pin_current_thread(&p.loadgen)?;
    }

    // The servers: every stage built and described, nginx, the peers.
    let lineup = discover(args, &plan)?;
    let selected = lineup.select(&args.stages);
    if selected.is_empty() {
        return Err(io::Error::other("no server to measure (see --stage)"));
    }

    // What they serve, and where the report and their logs go.
    let scratch = TempDir::new("bench")?;
    let site = targets::make_site(&args.root, &scratch.path)?;
    let out = report_dir(&args.out)?;
    let logs = out.join("logs");
    fs::create_dir_all(&logs)?;

    // The measurements: the wrk check if asked for, then the rounds.
    let wrk_check = wrk_check(args, &plan, &selected, &site, &logs)?;
    let runs = Rounds {
        profile: &plan.profile,
        scenarios: &plan.scenarios,
        targets: &selected,
        site: &site,
        logs: &logs,
        pinning: plan.pinning.as_ref(),
        load: GenSettings {
            threads: plan.loadgen_threads,
            warmup: plan.profile.warmup,
            duration: plan.profile.duration,
        },
    }
    .run()?;

    // The report.
    let tls = if tls {
        let duration = plan.profile.duration.as_secs_f64().round().max(1.0) as u64;
        let comparison = bench::tls::TlsRun {
            targets: &selected,
            site: &site,
            logs: &logs,
            pinning: plan.pinning.as_ref(),
            threads: plan.loadgen_threads,
            duration_secs: duration,
            // wrk counts whole seconds: the quick profile's 0.2 s is none.
            warmup_secs: plan.profile.warmup.as_secs_f64().round() as u64,
            rounds: plan.profile.rounds,
        }
        .run()?;
        Some(comparison)
    } else {
        None
    };
    let mut results = plan.results(&lineup, &selected, runs, wrk_check);
    results.tls = tls;
    let chart_list = charts::write_all(&out, &results);
    report::write_files(&out, &results, &chart_list)?;
    print!("{}", report::terminal_text(&results));
    println!(
        "\nreport: {}/summary.md, results.json, {} chart(s)",
        out.display(),
        chart_list.len()
    );
    Ok(())
}

/// What a run will do, from the command line and the machine: how long,
/// which scenarios, and how the CPUs are shared.
struct Plan {
    /// The profile, with `--rounds`, `--duration` and `--warmup` applied.
    profile: Profile,
    /// The scenarios to run, in report order (none with
    /// `--wrk-check-only`).
    scenarios: Vec<&'static Scenario>,
    /// The machine the numbers come from.
    machine: Machine,
    /// Which CPUs the servers and the load generator get (`--pin`).
    pinning: Option<Pinning>,
    /// Worker processes / event loops of the multi-core servers.
    server_workers: usize,
    /// The load generator's threads.
    loadgen_threads: usize,
}

impl Plan {
    fn new(args: &Args, names: &[String], extras_only: bool) -> io::Result<Plan> {
        let profile = profile(args);
        let scenarios = if args.wrk_check_only || extras_only {
            Vec::new()
        } else if names.is_empty() {
            profile.default_scenarios()
        } else {
            names
                .iter()
                .map(|n| {
                    scenarios::scenario(n).ok_or_else(|| {
                        io::Error::other(format!(
                            "unknown scenario {n:?}; known: {}, {TLS}, {CLUSTER}",
                            report::scenario_names()
                        ))
                    })
                })
                .collect::<io::Result<_>>()?
        };
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
        let loadgen_cpus = pinning
            .as_ref()
            .map_or((cpus.len() / 2).max(1), |p| p.loadgen.len());
        Ok(Plan {
            profile,
            scenarios,
            machine: Machine::detect(),
            server_workers: args.server_workers.unwrap_or(server_cpus).max(1),
            loadgen_threads: args.threads.unwrap_or(loadgen_cpus).max(1),
            pinning,
        })
    }

    /// What was measured, as the report shows it.
    fn results(
        &self,
        lineup: &Lineup,
        selected: &[Target],
        runs: Vec<RunRecord>,
        wrk_check: Option<WrkCheck>,
    ) -> Results {
        let reference = selected
            .iter()
            .any(|t| t.name == "nginx")
            .then(|| "nginx".to_string());
        let names: Vec<String> = selected.iter().map(|t| t.name.clone()).collect();
        let command = std::env::args()
            .skip(1)
            .fold("cargo run --release -p bench --".to_string(), |a, b| {
                format!("{a} {b}")
            });
        Results {
            machine: self.machine.clone(),
            command,
            profile: self.profile.clone(),
            pinning: self
                .pinning
                .as_ref()
                .map_or_else(|| "not pinned".to_string(), Pinning::describe),
            loadgen_threads: self.loadgen_threads,
            server_workers: self.server_workers,
            targets: lineup.listed_for(selected),
            scenarios: report::summarize(
                &runs,
                &self.scenarios,
                &names,
                self.profile.rounds,
                reference.as_deref(),
            ),
            reference,
            wrk_check,
            tls: None,
            runs,
        }
    }
}

/// The profile `--quick` names, with `--rounds`, `--duration` and
/// `--warmup` applied.
fn profile(args: &Args) -> Profile {
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
    profile
}

/// Builds (or, with `--no-build`, finds) and describes the stages, and
/// adds nginx and the peers.
fn discover(args: &Args, plan: &Plan) -> io::Result<Lineup> {
    let root = targets::workspace_root();
    eprintln!(
        "bench: finding and building the stages in {}",
        root.display()
    );
    lineup::discover(&lineup::Options {
        root: &root,
        no_build: args.no_build,
        no_nginx: args.no_nginx,
        peers: &args.peers,
        workers: plan.server_workers,
        variant_workers: plan.profile.workers,
    })
}

/// The wrk agreement check, when `--wrk-check` or `--wrk-check-only` asks
/// for it.
fn wrk_check(
    args: &Args,
    plan: &Plan,
    selected: &[Target],
    site: &Path,
    logs: &Path,
) -> io::Result<Option<WrkCheck>> {
    if !(args.wrk_check || args.wrk_check_only) {
        return Ok(None);
    }
    let pinning = plan.pinning.as_ref();
    let threads = plan.loadgen_threads;
    let check = wrk::check(selected, site, logs, pinning, threads, args.quick)?;
    if let Some(w) = &check {
        eprintln!("{}", report::wrk_text(w));
    }
    Ok(check)
}

/// `--scenario cluster`: builds (or finds) the stage, runs the lab, prints
/// its tables and writes `cluster.json`, its charts and its section of
/// `summary.md` (appended when the comparison wrote one in this run).
fn run_cluster(args: &Args, after_compare: bool) -> io::Result<()> {
    let stage = match args.stages.as_slice() {
        [] => cluster::DEFAULT_STAGE.to_string(),
        [one] if targets::STAGES.contains(&one.as_str()) => one.clone(),
        _ => {
            return Err(io::Error::other(format!(
                "--scenario cluster runs one stage: give at most one --stage, one of {}",
                targets::STAGES.join(", ")
            )));
        }
    };
    if stage == "stage2-http-seq" {
        // The balancer keeps connections to its backends open and reuses
        // them; a server that serves one connection at a time would make
        // every other connection, the health checks' too, wait behind it.
        return Err(io::Error::other(
            "--scenario cluster: stage 2 serves one connection at a time, so behind a balancer that keeps its connections open the health checks wait forever; use stage 3, 4 or 5",
        ));
    }
    if args.backends == 0 || args.backends > 200 {
        return Err(io::Error::other("--backends takes 1 to 200"));
    }
    let root = targets::workspace_root();
    let bin = if args.no_build {
        targets::release_binary(&root, &stage)
    } else {
        eprintln!("bench: building {stage}");
        targets::build_release(&root, &stage)
    }
    .map_err(|e| io::Error::other(format!("{stage}: {e}")))?;
    let profile = profile(args);
    let cpus = machine::allowed_cpus().len();
    let scratch = TempDir::new("bench-cluster")?;
    let site = targets::make_site(&args.root, &scratch.path)?;
    let out = report_dir(&args.out)?;
    let settings = cluster::Settings {
        stage,
        bin,
        backends: args.backends,
        rounds: profile.rounds,
        warmup: profile.warmup,
        duration: profile.duration,
        conns: 64,
        kill_rate: if args.quick { 1000.0 } else { 2000.0 },
        site,
        logs: out.join("logs").join("cluster"),
        scratch: scratch.path.clone(),
        lb_threads: cpus.max(1),
    };
    let results = cluster::run(&settings)?;
    let m = Machine::detect();
    let footer = format!(
        "{} · cluster lab, median of {} rounds, whiskers min–max",
        m.label(),
        profile.rounds
    );
    let charts = cluster::report::write_charts(&out, &results, &footer);
    cluster::report::write_json(&out, &results)?;
    let section = cluster::report::markdown(&results, &charts);
    let summary = out.join("summary.md");
    if after_compare {
        let mut text = fs::read_to_string(&summary).unwrap_or_default();
        text.push_str(&section);
        fs::write(&summary, text)?;
    } else {
        let command = std::env::args()
            .skip(1)
            .fold("cargo run --release -p bench --".to_string(), |a, b| {
                format!("{a} {b}")
            });
        fs::write(
            &summary,
            format!(
                "# Benchmark report\n\nMachine: {} cores ({}), {:.0} GiB, Linux {}. Date: {}.\n\nCommand: `{command}`\n{section}",
                m.cores, m.cpu, m.memory_gib, m.kernel, m.date
            ),
        )?;
    }
    println!("{}", m.label());
    print!("{}", cluster::report::text(&results));
    println!(
        "\nreport: {}/summary.md, cluster.json, {} chart(s)",
        out.display(),
        charts.len()
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
