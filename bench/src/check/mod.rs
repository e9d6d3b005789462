//! `bench check --stage N -- COMMAND [ARGS...]`: grade anyone's server
//! against a stage's rubric, with the same checks that hold this
//! workspace's stages to account (`common::testkit::echo` for stage 1,
//! `common::testkit::conformance` for stage 2,
//! `common::testkit::concurrency` for stages 3 to 5, with a performance
//! line from [`perf`]).
//!
//! The checker builds the fixture site (mode 0755, so a server running as
//! another user can read it, with a secret file just outside it), replaces
//! `{port}` and `{root}` in the command, starts it in a process group of
//! its own, waits until the port accepts (or the server prints our
//! `listening on` line), runs each check on a thread with a timeout under
//! a time budget for the whole rubric, and stops the server and everything
//! it started. It prints one line per check, grouped by the stage's
//! milestones, with the explanation and a reproduction under each failure,
//! and exits 0 only when every required check passed.

pub mod perf;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::testkit::check::{self, Check, Failure, Level, Outcome};
use common::testkit::concurrency;
use common::testkit::conformance::{self, Ctx, Fixture};
use common::testkit::echo::{self, EchoCtx};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How many lines of the server's output a report quotes.
const TAIL_LINES: usize = 15;

/// The `check` subcommand's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// The stage whose rubric to run: 1 (line echo server), 2 (static
    /// HTTP/1.1 file server: what it answers), 3 (concurrency), 4
    /// (event-driven scale: stage 3's checks and more) or 5 (processes:
    /// stage 4's and more).
    #[arg(long, value_name = "N")]
    pub stage: u8,

    /// Stage 1: the server serves one client at a time (the "several
    /// clients at once" check is skipped).
    #[arg(long)]
    pub blocking: bool,

    /// Stage 1: also check the line protocol (PING, ECHO, ADD, QUIT).
    #[arg(long)]
    pub line_protocol: bool,

    /// Stage 1: also check the chat room (NICK, broadcast).
    #[arg(long)]
    pub chat: bool,

    /// Stage 1: also check that a client idle for SECS is closed.
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<f64>,

    /// Stages 4 and 5: idle keep-alive connections to hold while new
    /// clients are served (the checker raises its soft open-files limit to
    /// the hard one before it starts the server, which inherits it).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub idle_connections: usize,

    /// Stages 4 and 5: the server's header timeout, in seconds; a stalled
    /// request head must get 408 or a close within about this long.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub header_timeout: f64,

    /// Stages 3 to 5: the server's grace period after SIGTERM, in seconds;
    /// it must have exited within this long (plus a second).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub grace_period: f64,

    /// Stages 3 to 5: seconds of the performance measurement (of the
    /// server, then of our stage); 0 leaves it out.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub perf_seconds: f64,

    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Print the rubric and exit, without starting anything.
    #[arg(long)]
    pub list: bool,

    /// Run only the check called NAME.
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,

    /// Seconds one check may take (and any one read or write in it); the
    /// checks of stages 3 to 5 may take longer (at least 60 s, and enough
    /// for the header timeout and the grace period).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,

    /// Seconds the whole rubric may take; checks left when it runs out are
    /// reported as not run.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub budget: f64,

    /// Seconds the server may take to accept connections.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    pub startup_timeout: f64,

    /// The server to check, after `--`; `{port}` and `{root}` are replaced.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// What became of one check, for the report and the JSON.
#[derive(Debug, Clone)]
pub struct Graded {
    /// The check's name.
    pub name: &'static str,
    /// Its milestone.
    pub milestone: &'static str,
    /// How it counts.
    pub level: Level,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// How long it took.
    pub seconds: f64,
    /// It did not run: the budget ran out or the server was gone.
    pub not_run: bool,
    /// What it measured, for the report (never a verdict).
    pub notes: Vec<String>,
}

impl Graded {
    /// A required check that did not pass (a skip of a required check
    /// counts: it did not run).
    pub fn blocks(&self) -> bool {
        self.level == Level::Required && (matches!(self.outcome, Outcome::Fail(_)) || self.not_run)
    }
}

/// Runs `bench check`; returns the process exit status.
pub fn main(args: &CheckArgs) -> i32 {
    match run(args, &mut io::stdout()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench check: {e}");
            2
        }
    }
}

/// The milestones of a rubric, in the order the course teaches them.
fn milestone_order(stage: u8) -> Vec<&'static str> {
    if stage >= 3 {
        return concurrency::milestones(stage);
    }
    if stage == 1 {
        use echo::milestone::*;
        vec![BASIC, ROBUST, ERRORS, CLIENTS, OPTIONS]
    } else {
        use conformance::milestone::*;
        vec![
            PARSING,
            RESPONSES,
            FILES,
            LISTING,
            STATUS,
            SAFETY,
            CONNECTIONS,
            FEATURES,
        ]
    }
}

/// The checks of a rubric in milestone order, or only the one named.
fn select<C>(
    all: impl Iterator<Item = &'static Check<C>>,
    stage: u8,
    only: Option<&str>,
) -> io::Result<Vec<&'static Check<C>>> {
    let all: Vec<&'static Check<C>> = all.collect();
    if let Some(name) = only
        && !all.iter().any(|c| c.name == name)
    {
        let names: Vec<&str> = all.iter().map(|c| c.name).collect();
        return Err(io::Error::other(format!(
            "no check named {name:?} in the stage {stage} rubric; its checks: {}",
            names.join(", ")
        )));
    }
    let mut out = Vec::new();
    for m in milestone_order(stage) {
        out.extend(
            all.iter()
                .filter(|c| c.milestone == m && only.is_none_or(|n| n == c.name)),
        );
    }
    Ok(out)
}

fn level_note(level: Level) -> &'static str {
    match level {
        Level::Required => "",
        Level::Extra => " (extra credit)",
        Level::Reference => " (reference)",
    }
}

/// Prints the rubric (`--list`).
fn list<C>(checks: &[&'static Check<C>], stage: u8, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "The stage {stage} rubric ({} checks):", checks.len())?;
    let mut milestone = "";
    for c in checks {
        if c.milestone != milestone {
            milestone = c.milestone;
            writeln!(out, "\n{milestone}")?;
        }
        writeln!(out, "  {}{}: {}", c.name, level_note(c.level), c.about)?;
    }
    Ok(())
}

/// The whole command, writing its report to `out`.
pub fn run(args: &CheckArgs, out: &mut dyn Write) -> io::Result<i32> {
    if !matches!(args.stage, 1..=5) {
        return Err(io::Error::other(format!(
            "--stage {}: the rubrics are for stages 1 to 5",
            args.stage
        )));
    }
    let stage = args.stage;
    let http = || select(conformance::rubric(), stage, args.only.as_deref());
    let lines = || select(echo::CHECKS.iter(), stage, args.only.as_deref());
    let scale = || {
        select(
            concurrency::rubric(stage).iter(),
            stage,
            args.only.as_deref(),
        )
    };
    if args.list {
        match stage {
            1 => list(&lines()?, 1, out)?,
            2 => list(&http()?, 2, out)?,
            _ => list(&scale()?, stage, out)?,
        }
        return Ok(0);
    }
    if args.command.is_empty() {
        return Err(io::Error::other(
            "no server to check: give its command after `--`, with {port} (and {root}) in it",
        ));
    }
    let per_check = Duration::from_secs_f64(args.timeout.max(0.1));
    let budget = Duration::from_secs_f64(args.budget.max(0.1));
    check::set_io_timeout(per_check);
    let fixture = Fixture::create();
    if stage >= 3 {
        concurrency::add_fixture_files(&fixture.root)?;
        // Thousands of connections: the soft open-files limit goes up to
        // the hard one (no privilege needed).
        let _ = common::limits::raise_fd_limit();
    }
    open_up(&fixture.base)?;
    let port = crate::targets::free_port()?;
    let started = Server::start(
        &args.command,
        port,
        &fixture.root,
        Duration::from_secs_f64(args.startup_timeout),
    )?;
    let mut server = match started {
        Ok(s) => s,
        Err(why) => {
            writeln!(out, "FAIL the server did not start: {why}")?;
            writeln!(out, "0 passed, 1 failed")?;
            return Ok(1);
        }
    };
    let site = if stage == 2 {
        format!("; site {}", fixture.root.display())
    } else {
        String::new()
    };
    writeln!(
        out,
        "Checking `{}` against the stage {stage} rubric (listening on {}{site}).",
        server.command_line, server.addr,
    )?;
    // A check that panics has its panic reported as its failure; the
    // default hook would also print it in the middle of the report.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    if stage >= 3 {
        writeln!(
            out,
            "(What it answers is graded by the stage 2 rubric: --stage 2.)"
        )?;
        if args.perf_seconds > 0.0 && args.only.is_none() {
            writeln!(
                out,
                "\n{}",
                perf::line(server.addr, stage, &fixture.root, args.perf_seconds)
            )?;
        }
    }
    let graded = if stage >= 3 {
        let ctx: &'static concurrency::Ctx = Box::leak(Box::new(concurrency::Ctx {
            addr: server.addr,
            pid: server.pid(),
            header_timeout: Duration::from_secs_f64(args.header_timeout.max(0.0)),
            grace_period: Duration::from_secs_f64(args.grace_period.max(0.0)),
            idle_connections: args.idle_connections.max(1),
        }));
        let per_check = per_check.max(concurrency::time_limit(ctx));
        let ends = concurrency::ends_the_server;
        grade(&scale()?, ctx, per_check, budget, ends, &mut server, out)?
    } else if stage == 1 {
        let ctx: &'static EchoCtx = Box::leak(Box::new(EchoCtx {
            addr: server.addr,
            blocking: args.blocking,
            line_protocol: args.line_protocol,
            chat: args.chat,
            idle_timeout: args.idle_timeout.map(Duration::from_secs_f64),
        }));
        grade(&lines()?, ctx, per_check, budget, never, &mut server, out)?
    } else {
        let ctx: &'static Ctx = Box::leak(Box::new(checker_ctx(server.addr, &fixture)));
        grade(&http()?, ctx, per_check, budget, never, &mut server, out)?
    };
    std::panic::set_hook(hook);
    let stopped = server.stop();
    writeln!(out, "\n{stopped}")?;
    let code = summary(&graded, out)?;
    if let Some(path) = &args.json {
        write_json(path, args, &graded)?;
    }
    Ok(code)
}

/// The context the stage 2 checks get from the checker: contract level.
pub fn checker_ctx(addr: SocketAddr, fixture: &Fixture) -> Ctx {
    Ctx {
        addr,
        root: fixture.root.clone(),
        access_log: fixture.base.join("no-access-log"),
        bin: String::new(),
        args: Vec::new(),
        strict: false,
        tls_ca: None,
    }
}

/// Gives the fixture mode 0755 (folders) and 0644 (files), so that a
/// server running as another user can read it. Symlinks and the FIFO are
/// left as they are.
fn open_up(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            open_up(&path)?;
        } else if meta.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// How long a check that failed waits to see whether the server exited:
/// a server that closes its listener on the way out refuses connections
/// a moment before the process is gone, and the next checks would
/// otherwise fail one by one on "connection refused".
const EXIT_AFTER_FAILURE: Duration = Duration::from_millis(300);

/// Something that may stop running while checks run.
pub trait Watched {
    /// `Some(why)` once the server has exited.
    fn exited(&mut self) -> Option<String>;

    /// `Some(why)` if the server has exited, or does within `wait`.
    fn exited_within(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(why) = self.exited() {
                return Some(why);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// No process to watch (a server in this process, in tests).
impl Watched for () {
    fn exited(&mut self) -> Option<String> {
        None
    }
}

/// No check stops the server (stages 1 and 2).
pub fn never(_: &str) -> bool {
    false
}

/// Runs `checks` in order, printing a line per check grouped by milestone.
/// A check for which `ends_server` is true is expected to stop the server
/// (SIGTERM): its exit is no failure then.
pub fn grade<C: Send + Sync + 'static>(
    checks: &[&'static Check<C>],
    ctx: &'static C,
    per_check: Duration,
    budget: Duration,
    ends_server: fn(&str) -> bool,
    server: &mut dyn Watched,
    out: &mut dyn Write,
) -> io::Result<Vec<Graded>> {
    let started = Instant::now();
    let mut graded = Vec::new();
    let mut milestone = "";
    let mut stop: Option<String> = None;
    for c in checks {
        if c.milestone != milestone {
            milestone = c.milestone;
            writeln!(out, "\n{milestone}")?;
        }
        let left = budget.saturating_sub(started.elapsed());
        let not_run = stop.is_some() || left.is_zero();
        let (outcome, took) = if let Some(why) = &stop {
            (Outcome::Skip(why.clone()), Duration::ZERO)
        } else if left.is_zero() {
            let why = "not run: the time budget ran out".to_string();
            stop = Some(why.clone());
            writeln!(
                out,
                "  the rubric's time budget of {budget:?} ran out (the server was slow to \
                 answer or to close): the remaining checks did not run"
            )?;
            (Outcome::Skip(why), Duration::ZERO)
        } else {
            let _ = check::take_notes();
            let (mut outcome, took) = check::run_with_timeout(c, ctx, per_check.min(left));
            let wait = if matches!(outcome, Outcome::Fail(_)) {
                EXIT_AFTER_FAILURE
            } else {
                Duration::ZERO
            };
            if ends_server(c.name) {
                stop = Some("not run: the server was stopped".into());
            } else if let Some(why) = server.exited_within(wait) {
                let why = format!("the server exited during this check: {why}");
                outcome = Outcome::Fail(Failure::new(why.clone()));
                stop = Some("not run: the server is not running".into());
            }
            (outcome, took)
        };
        let notes = if not_run {
            Vec::new()
        } else {
            check::take_notes()
        };
        print_outcome(c, &outcome, out)?;
        for n in &notes {
            writeln!(out, "       note: {n}")?;
        }
        graded.push(Graded {
            name: c.name,
            milestone: c.milestone,
            level: c.level,
            outcome,
            seconds: took.as_secs_f64(),
            not_run,
            notes,
        });
    }
    Ok(graded)
}

fn print_outcome<C>(c: &Check<C>, outcome: &Outcome, out: &mut dyn Write) -> io::Result<()> {
    let note = level_note(c.level);
    match outcome {
        Outcome::Pass => writeln!(out, "  PASS {}{note}", c.name),
        Outcome::Skip(why) => writeln!(out, "  SKIP {}{note} ({why})", c.name),
        Outcome::Fail(f) => {
            let note = if c.level == Level::Extra {
                " (extra credit, not required)"
            } else {
                note
            };
            writeln!(out, "  FAIL {}{note}: {}", c.name, c.about)?;
            for line in f.to_string().lines() {
                writeln!(out, "       {line}")?;
            }
            Ok(())
        }
    }
}

/// How many checks passed and how many failed (the rest were skipped).
fn passed_and_failed(graded: &[Graded]) -> (usize, usize) {
    let count = |pass: bool| {
        graded
            .iter()
            .filter(|g| match g.outcome {
                Outcome::Pass => pass,
                Outcome::Fail(_) => !pass,
                Outcome::Skip(_) => false,
            })
            .count()
    };
    (count(true), count(false))
}

/// The last lines: counts, and the exit status (0 only when every
/// required check passed).
fn summary(graded: &[Graded], out: &mut dyn Write) -> io::Result<i32> {
    let (passed, failed) = passed_and_failed(graded);
    let skipped = graded.len() - passed - failed;
    // A check the learner did not opt into (a stage 1 option) skips
    // itself and is not counted as required.
    let required = graded
        .iter()
        .filter(|g| g.level == Level::Required)
        .filter(|g| g.not_run || !matches!(g.outcome, Outcome::Skip(_)))
        .count();
    let blocking = graded.iter().filter(|g| g.blocks()).count();
    let extra = graded.iter().filter(|g| g.level == Level::Extra).count();
    let extra_passed = graded
        .iter()
        .filter(|g| g.level == Level::Extra && matches!(g.outcome, Outcome::Pass))
        .count();
    if blocking == 0 {
        write!(out, "Every required check passed ({required})")?;
    } else {
        write!(out, "{blocking} of {required} required checks did not pass")?;
    }
    if extra > 0 {
        write!(out, "; extra credit: {extra_passed} of {extra}")?;
    }
    if skipped > 0 {
        write!(out, "; {skipped} skipped")?;
    }
    writeln!(out, ".")?;
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if blocking == 0 { 0 } else { 1 })
}

fn write_json(path: &Path, args: &CheckArgs, graded: &[Graded]) -> io::Result<()> {
    let checks: Vec<serde_json::Value> = graded
        .iter()
        .map(|g| {
            let (outcome, failure, reason) = match &g.outcome {
                Outcome::Pass => ("pass", serde_json::Value::Null, serde_json::Value::Null),
                Outcome::Skip(why) => ("skip", serde_json::Value::Null, why.clone().into()),
                Outcome::Fail(f) => (
                    "fail",
                    serde_json::json!({
                        "expected": f.expected,
                        "request": String::from_utf8_lossy(&f.request),
                        "request_len": f.request_len,
                        "status_line": f.status_line(),
                        "got": String::from_utf8_lossy(&f.got),
                        "reproduction": f.reproduction(),
                        "script": f.script,
                    }),
                    serde_json::Value::Null,
                ),
            };
            serde_json::json!({
                "name": g.name,
                "milestone": g.milestone,
                "level": g.level.name(),
                "outcome": outcome,
                "seconds": g.seconds,
                "failure": failure,
                "reason": reason,
                "notes": g.notes,
            })
        })
        .collect();
    let (passed, failed) = passed_and_failed(graded);
    let doc = serde_json::json!({
        "stage": args.stage,
        "command": args.command,
        "passed": passed,
        "failed": failed,
        "required_passed": !graded.iter().any(Graded::blocks),
        "checks": checks,
    });
    let text = serde_json::to_string_pretty(&doc).map_err(io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// The server under test: a process group of its own, its output kept.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Where it accepts connections.
    pub addr: SocketAddr,
    /// The command as run, for the report.
    pub command_line: String,
    /// The last lines it wrote to stdout and stderr.
    tail: Arc<Mutex<VecDeque<String>>>,
    /// A message from each output reader when it reaches the end, so that
    /// a report on an exited server waits for its last lines.
    eofs: Vec<mpsc::Receiver<()>>,
}

/// Keeps the last [`TAIL_LINES`] lines of `from` in `tail`; sends the
/// address of a `listening on` line to `announce`.
fn keep_tail(
    from: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    announce: Option<mpsc::Sender<SocketAddr>>,
) -> mpsc::Receiver<()> {
    let (done, eof) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            buf.clear();
            if let Some(tx) = &announce
                && let Some(addr) = crate::targets::parse_listening_line(&line)
            {
                let _ = tx.send(addr);
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
        let _ = done.send(());
    });
    eof
}

impl Server {
    /// Starts `command` with `{port}` and `{root}` replaced, and waits
    /// until it accepts connections. The outer error is the checker's own
    /// (the command cannot be run); the inner one is the server's failure
    /// to start, with its last output.
    pub fn start(
        command: &[String],
        port: u16,
        root: &Path,
        startup: Duration,
    ) -> io::Result<Result<Server, String>> {
        use std::os::unix::process::CommandExt;
        let words: Vec<String> = command
            .iter()
            .map(|w| {
                w.replace("{port}", &port.to_string())
                    .replace("{root}", &root.to_string_lossy())
            })
            .collect();
        let command_line = words.join(" ");
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("cannot run {:?}: {e}", words[0]))),
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let mut eofs = Vec::new();
        if let Some(o) = child.stdout.take() {
            eofs.push(keep_tail(o, tail.clone(), Some(tx)));
        }
        if let Some(e) = child.stderr.take() {
            eofs.push(keep_tail(e, tail.clone(), None));
        }
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            command_line,
            tail,
            eofs,
        };
        let deadline = Instant::now() + startup;
        loop {
            if let Some(why) = server.exited() {
                return Ok(Err(format!("it exited at start-up: {why}")));
            }
            if let Ok(addr) = rx.try_recv() {
                server.addr = addr;
                return Ok(Ok(server));
            }
            if TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_ok() {
                return Ok(Ok(server));
            }
            if Instant::now() >= deadline {
                let tail = server.tail_text();
                server.stop();
                return Ok(Err(format!(
                    "nothing accepted connections on 127.0.0.1:{port} within {startup:?} \
                     (is {{port}} in the command?){tail}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of the process the checker spawned.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of output, indented, or nothing.
    fn tail_text(&self) -> String {
        let t = self.tail.lock().map(|t| t.clone()).unwrap_or_default();
        if t.is_empty() {
            return String::new();
        }
        let lines: Vec<String> = t.iter().map(|l| format!("    | {l}")).collect();
        format!("; its last output:\n{}", lines.join("\n"))
    }

    /// Stops the server and everything it started (its process group):
    /// SIGTERM, then SIGKILL after 5 s. Says how it went.
    pub fn stop(&mut self) -> String {
        let group = Pid::from_raw(self.child.id() as i32);
        if let Ok(Some(status)) = self.child.try_wait() {
            let _ = killpg(group, Signal::SIGKILL);
            return format!("The server had already exited ({status}).");
        }
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Whatever it started and left behind goes too.
                let _ = killpg(group, Signal::SIGKILL);
                return format!("Stopped the server with SIGTERM ({status}).");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        "The server did not exit within 5 s of SIGTERM; killed it.".into()
    }
}

impl Watched for Server {
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                // Its output ends when it (and what it started) exited; a
                // child that keeps the pipes open costs at most a second.
                for eof in &self.eofs {
                    let _ = eof.recv_timeout(Duration::from_millis(500));
                }
                Some(format!("{status}{}", self.tail_text()))
            }
            _ => None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Grades a stage 2 server that is already running at `addr` on
/// `fixture` (a server in the test's own process), printing to `out`.
pub fn grade_http_at(
    addr: SocketAddr,
    fixture: &Fixture,
    out: &mut dyn Write,
) -> io::Result<Vec<Graded>> {
    check::set_io_timeout(Duration::from_secs(10));
    let ctx: &'static Ctx = Box::leak(Box::new(checker_ctx(addr, fixture)));
    let checks = select(conformance::rubric(), 2, None)?;
    grade(
        &checks,
        ctx,
        Duration::from_secs(20),
        Duration::from_secs(300),
        never,
        &mut (),
        out,
    )
}
