//! `bench load-step`: a self-sizing pool under a load step — idle, then
//! full load, then idle again — with the number of workers sampled from
//! `/server-status` over time, written as `load-step.json` and drawn as
//! `load-step.svg`: stage 5's process pool (`--stage 5`, the default), or
//! stage 3's thread pool (`--stage 3`, written as `load-step-stage3.*`).
//!
//! The full load is keep-alive connections that each live about a second
//! (`--conn-life`), as a browser's do: a new connection goes to the worker
//! the master picks, so workers forked during the step get their share. A
//! load of connections that all opened before the pool grew would stay on
//! the first worker forever and show nothing but that worker's limit.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use plotters::prelude::*;
use serde::Serialize;

use crate::loadgen::{self, Control, Errors, Spec};
use crate::targets::{self, SMALL_PATH, TempDir};

/// How often `/server-status` is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// `bench load-step`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadStepArgs {
    /// Whose pool: 5 (stage 5's worker processes) or 3 (stage 3's worker
    /// threads).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u8).range(3..=5))]
    pub stage: u8,
    /// Seconds of idle before the load.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub idle: f64,
    /// Seconds of full load.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub load: f64,
    /// Seconds of idle after the load (the pool shrinks one worker a
    /// second).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub after: f64,
    /// Keep-alive connections during the load.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub connections: usize,
    /// Seconds each load connection lives before it is replaced by a new
    /// one.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub conn_life: f64,
    /// The pool's bound (stage 5's `--max-workers`, stage 3's
    /// `--max-threads`); it starts with one.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_workers: usize,
    /// Passed to stage 5.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_spare: usize,
    /// Passed to stage 5.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_spare: usize,
    /// Passed to stage 3 (`--thread-idle-timeout`): seconds a thread above
    /// the minimum may idle before it exits. The default is 0.3, not stage
    /// 3's 60: the sampler's own five requests a second wake the idle
    /// threads in turn (they wait on one condition variable, which wakes
    /// its waiters in order), so with N threads each is woken every N/5 s,
    /// and a longer idle timeout than that would never expire.
    #[arg(long, value_name = "SECS", default_value_t = 0.3)]
    pub thread_idle: f64,
    /// Load generator threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Where to write load-step.json and load-step.svg.
    #[arg(long, value_name = "DIR", default_value = "bench-report")]
    pub out: PathBuf,
    /// Use the stage's binary in target/release as built, instead of
    /// building it.
    #[arg(long)]
    pub no_build: bool,
    /// Run this binary of the stage (implies --no-build).
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
}

/// One reading of the status page.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub t: f64,
    /// `prefork_workers` (stage 3: `threadpool_workers`).
    pub workers: u64,
    /// `prefork_workers_spare` (stage 3: the workers not busy, the
    /// status request's own excepted).
    pub spare: u64,
    /// Responses per second since the previous sample.
    pub rps: f64,
}

/// What `load-step.json` holds.
#[derive(Debug, Serialize)]
pub struct LoadStep {
    /// The command line the stage ran with.
    pub server: Vec<String>,
    /// When the load started and ended, in seconds since the start.
    pub load_from: f64,
    /// See `load_from`.
    pub load_to: f64,
    /// Every sample.
    pub samples: Vec<Sample>,
    /// Responses the load generator counted.
    pub requests: u64,
    /// Errors it saw, by kind.
    pub errors: Errors,
    /// Fewest and most workers seen in each phase: before, during, after.
    pub workers: [(u64, u64); 3],
}

/// What differs between the two pools.
struct Pool {
    package: &'static str,
    /// The gauges: workers, and spare workers (stage 5) or busy ones
    /// (stage 3).
    workers: &'static str,
    spare: Option<&'static str>,
    busy: Option<&'static str>,
    /// The name of the files written.
    file: &'static str,
    caption: &'static str,
    axis: &'static str,
    series: [&'static str; 2],
}

fn pool(stage: u8) -> Pool {
    if stage == 3 {
        Pool {
            package: "stage3-threadpool",
            workers: "threadpool_workers",
            spare: None,
            busy: Some("threadpool_busy_workers"),
            file: "load-step-stage3",
            caption: "Stage 3, self-sizing thread pool: idle → full load → idle",
            axis: "worker threads",
            series: ["worker threads", "idle worker threads"],
        }
    } else {
        Pool {
            package: "stage5-prefork",
            workers: "prefork_workers",
            spare: Some("prefork_workers_spare"),
            busy: None,
            file: "load-step",
            caption: "Stage 5, self-sizing pool: idle → full load → idle",
            axis: "worker processes",
            series: ["workers", "spare workers"],
        }
    }
}

/// The pool's flags: from one worker up to `--max-workers`.
fn pool_flags(args: &LoadStepArgs) -> Vec<String> {
    let flags: Vec<(&str, String)> = if args.stage == 3 {
        vec![
            ("--min-threads", "1".into()),
            ("--max-threads", args.max_workers.to_string()),
            ("--thread-idle-timeout", args.thread_idle.to_string()),
        ]
    } else {
        vec![
            ("--min-workers", "1".into()),
            ("--max-workers", args.max_workers.to_string()),
            ("--min-spare", args.min_spare.to_string()),
            ("--max-spare", args.max_spare.to_string()),
        ]
    };
    flags
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
}

/// Runs the load step; returns the process exit status.
pub fn main(args: &LoadStepArgs) -> i32 {
    match run(args) {
        Ok(step) => {
            print_summary(&step);
            0
        }
        Err(e) => {
            eprintln!("bench load-step: {e}");
            1
        }
    }
}

fn run(args: &LoadStepArgs) -> io::Result<LoadStep> {
    if args.stage != 3 && args.stage != 5 {
        return Err(io::Error::other(format!(
            "--stage {}: stages 3 and 5 have self-sizing pools",
            args.stage
        )));
    }
    let root = targets::workspace_root();
    let pool = pool(args.stage);
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None if args.no_build => {
            targets::release_binary(&root, pool.package).map_err(io::Error::other)?
        }
        None => targets::build_release(&root, pool.package).map_err(io::Error::other)?,
    };
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        std::env::current_dir()?.join(&args.out)
    };
    std::fs::create_dir_all(&out)?;
    let scratch = TempDir::new("bench-load-step")?;
    let site = targets::make_site(&root.join("www"), &scratch.path)?;
    let server_args: Vec<String> = ["--addr", "127.0.0.1:0", "--access-log", "off"]
        .iter()
        .map(|s| s.to_string())
        .chain(pool_flags(args))
        .chain(["--root".into(), site.display().to_string()])
        .collect();
    let mut server = Server::start(&bin, &server_args)?;
    let addr = server.addr;

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        let gauges = (pool.workers, pool.spare, pool.busy);
        thread::spawn(move || sample_until(addr, started, &stop, gauges))
    };
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    thread::sleep(secs(args.idle));
    let load_from = started.elapsed().as_secs_f64();
    let (requests, errors) = full_load(addr, args, secs(args.load))?;
    let load_to = started.elapsed().as_secs_f64();
    thread::sleep(secs(args.after));
    stop.store(true, Ordering::SeqCst);
    let samples = sampler
        .join()
        .map_err(|_| io::Error::other("the sampler thread panicked"))?;
    server.stop();

    let phase = |from: f64, to: f64| {
        let seen = samples.iter().filter(|s| s.t >= from && s.t < to);
        let min = seen.clone().map(|s| s.workers).min().unwrap_or(0);
        let max = seen.map(|s| s.workers).max().unwrap_or(0);
        (min, max)
    };
    let step = LoadStep {
        server: std::iter::once(bin.display().to_string())
            .chain(server_args)
            .collect(),
        load_from,
        load_to,
        workers: [
            phase(0.0, load_from),
            phase(load_from, load_to),
            phase(load_to, f64::MAX),
        ],
        samples,
        requests,
        errors,
    };
    let json = serde_json::to_string_pretty(&step).map_err(io::Error::other)?;
    let (json_path, svg_path) = (
        out.join(format!("{}.json", pool.file)),
        out.join(format!("{}.svg", pool.file)),
    );
    std::fs::write(&json_path, json)?;
    chart(&svg_path, &step, &pool).map_err(io::Error::other)?;
    println!("wrote {} and {}", json_path.display(), svg_path.display());
    Ok(step)
}

/// The full load: `connections` keep-alive connections, replaced by new
/// ones every `conn_life` seconds, until `length` has passed.
fn full_load(addr: SocketAddr, args: &LoadStepArgs, length: Duration) -> io::Result<(u64, Errors)> {
    let end = Instant::now() + length;
    let life = Duration::from_secs_f64(args.conn_life.max(0.1));
    let mut requests = 0;
    let mut errors = Errors::default();
    while Instant::now() < end {
        let mut spec = Spec::get(
            addr,
            SMALL_PATH,
            args.connections,
            life.min(end.saturating_duration_since(Instant::now())),
        );
        spec.threads = args.threads.max(1);
        let outcome = loadgen::run(&spec, &Arc::new(Control::default()))?;
        requests += outcome.requests;
        errors.add(&outcome.errors);
    }
    Ok((requests, errors))
}

/// The gauges a sample reads: workers, then spare workers or busy ones.
type Gauges = (&'static str, Option<&'static str>, Option<&'static str>);

/// Reads the status page every [`SAMPLE_EVERY`] until `stop`.
fn sample_until(
    addr: SocketAddr,
    started: Instant,
    stop: &AtomicBool,
    (workers_gauge, spare_gauge, busy_gauge): Gauges,
) -> Vec<Sample> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut last: Option<(f64, u64)> = None;
    while !stop.load(Ordering::SeqCst) {
        let t = started.elapsed().as_secs_f64();
        if let Ok(page) = status_page(addr) {
            let value = |name: &str| {
                page.lines().find_map(|l| {
                    l.strip_prefix(name)?
                        .strip_prefix(' ')?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            };
            let workers = value(workers_gauge);
            // Stage 3 counts busy workers; the status request being
            // answered is one of them, and not load.
            let spare = match (spare_gauge, busy_gauge, workers) {
                (Some(g), _, _) => value(g),
                (None, Some(g), Some(w)) => value(g).map(|b| w.saturating_sub(b.saturating_sub(1))),
                _ => None,
            };
            if let (Some(workers), Some(spare), Some(total)) =
                (workers, spare, value("http_requests_total"))
            {
                let rps = match last {
                    Some((t0, n0)) if t > t0 => total.saturating_sub(n0) as f64 / (t - t0),
                    _ => 0.0,
                };
                last = Some((t, total));
                samples.push(Sample {
                    t,
                    workers,
                    spare,
                    rps,
                });
            }
        }
        thread::sleep(SAMPLE_EVERY);
    }
    samples
}

/// One `GET /server-status`, on a connection of its own.
fn status_page(addr: SocketAddr) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /server-status HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

/// The server (stage 5's master, or stage 3), started on a free port.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(bin: &Path, args: &[String]) -> io::Result<Server> {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", bin.display())))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        match targets::parse_listening_line(&line) {
            Some(addr) => Ok(Server { child, addr }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!(
                    "{} did not start (its first line: {line:?})",
                    bin.display()
                )))
            }
        }
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// The terminal summary.
fn print_summary(step: &LoadStep) {
    let [before, during, after] = step.workers;
    println!(
        "load {:.1}–{:.1} s: {} responses, {} errors",
        step.load_from,
        step.load_to,
        step.requests,
        step.errors.total()
    );
    println!("| phase | workers (fewest–most) |");
    println!("|---|---|");
    println!("| idle before | {}–{} |", before.0, before.1);
    println!("| full load | {}–{} |", during.0, during.1);
    println!("| idle after | {}–{} |", after.0, after.1);
}

/// Workers (and spare workers) over time, with the responses per second on
/// a second axis and the load's window shaded.
fn chart(path: &Path, step: &LoadStep, pool: &Pool) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let tmax = step.samples.last().map_or(1.0, |s| s.t).max(1.0);
    let wmax = step.samples.iter().map(|s| s.workers).max().unwrap_or(1) + 1;
    let rmax = step.samples.iter().map(|s| s.rps).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(pool.caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..tmax, 0u64..wmax)
        .map_err(|e| err(&e))?
        .set_secondary_coord(0f64..tmax, 0f64..rmax);
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(pool.axis)
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .configure_secondary_axes()
        .y_desc("responses per second")
        .label_style(("sans-serif", 13))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(step.load_from, 0), (step.load_to, wmax)],
            RGBColor(255, 200, 120).mix(0.25).filled(),
        )))
        .map_err(|e| err(&e))?
        .label("full load")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 20, y + 5)],
                RGBColor(255, 200, 120).mix(0.5).filled(),
            )
        });
    let blue = RGBColor(31, 119, 180);
    let green = RGBColor(44, 160, 44);
    let grey = RGBColor(120, 120, 120);
    chart
        .draw_secondary_series(LineSeries::new(
            step.samples.iter().map(|s| (s.t, s.rps)),
            grey.stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label("responses per second (right axis)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1)));
    for (name, colour, value) in [
        (
            pool.series[0],
            blue,
            (|s: &Sample| s.workers) as fn(&Sample) -> u64,
        ),
        (pool.series[1], green, |s: &Sample| s.spare),
    ] {
        let mut pts = Vec::new();
        for pair in step.samples.windows(2) {
            pts.push((pair[0].t, value(&pair[0])));
            pts.push((pair[1].t, value(&pair[0])));
        }
        if let Some(s) = step.samples.last() {
            pts.push((s.t, value(s)));
        }
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
