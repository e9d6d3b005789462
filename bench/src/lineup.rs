//! The servers a run compares, and what the report says each one is.
//!
//! The flags the bench gives each server are data: [`STAGE_TARGETS`] lists
//! every server made from a stage binary with the flags it adds,
//! [`NGINX_TARGETS`] the nginx configurations. [`discover`] builds (or
//! finds) each stage, and turns the rows whose binary exists into
//! [`Target`]s.
//!
//! What a stage target *is* comes from its binary, never from a sentence
//! written here: `--help` gives the one-line description (the package's
//! `description`) and the default of every flag of the stage's own (those
//! not shared through [`common::server::HttpConfig`]). The report lists the
//! flags the bench passes and the defaults of the others, in the binary's
//! words, so a stage that changes a default or grows a setting is described
//! as it now is. An nginx target is described from the settings of its
//! generated configuration, a `--peer` by its command.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::report::TargetInfo;
use crate::targets::{self, Launch, Target};

/// A count the bench decides when it runs, not in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// The worker processes or event loops of the multi-core servers
    /// (`--server-workers`; default: the CPUs the servers may use).
    Workers,
    /// The worker processes of the `workers` scenario's variants (the
    /// profile's `workers`).
    VariantWorkers,
}

/// The value of a flag the bench passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// This text.
    Is(&'static str),
    /// A count decided at run time.
    Count(Count),
}

/// A server made from a stage binary.
#[derive(Debug, Clone, Copy)]
pub struct StageTarget {
    /// Its name in the report. A name with a `/` is a variant, measured
    /// in the `workers` scenario only (see [`crate::scenarios::relevant`]).
    pub name: &'static str,
    /// The package whose binary it runs (one of [`targets::STAGES`]).
    pub stage: &'static str,
    /// The flags the bench adds to the ones every server gets, in order.
    pub flags: &'static [(&'static str, Value)],
}

/// Every server made from a stage binary, in report order: each stage
/// with the flags that give it the CPUs of the servers, then stage 5's
/// accept models and balance policies for the `workers` scenario.
pub const STAGE_TARGETS: [StageTarget; 7] = [
    StageTarget {
        name: "stage2-http-seq",
        stage: "stage2-http-seq",
        flags: &[],
    },
    StageTarget {
        name: "stage3-threadpool",
        stage: "stage3-threadpool",
        flags: &[],
    },
    StageTarget {
        name: "stage4-epoll",
        stage: "stage4-epoll",
        flags: &[("--loops", Value::Count(Count::Workers))],
    },
    StageTarget {
        name: "stage5-prefork",
        stage: "stage5-prefork",
        flags: &[("--workers", Value::Count(Count::Workers))],
    },
    StageTarget {
        name: "stage5 pass/round-robin",
        stage: "stage5-prefork",
        flags: &[
            ("--workers", Value::Count(Count::VariantWorkers)),
            ("--accept", Value::Is("pass")),
            ("--balance", Value::Is("round-robin")),
        ],
    },
    StageTarget {
        name: "stage5 pass/least-conn",
        stage: "stage5-prefork",
        flags: &[
            ("--workers", Value::Count(Count::VariantWorkers)),
            ("--accept", Value::Is("pass")),
            ("--balance", Value::Is("least-conn")),
        ],
    },
    StageTarget {
        name: "stage5 shared/epollexclusive",
        stage: "stage5-prefork",
        flags: &[
            ("--workers", Value::Count(Count::VariantWorkers)),
            ("--accept", Value::Is("shared")),
            ("--balance", Value::Is("round-robin")),
        ],
    },
];

/// nginx as a reference: its name in the report, `sendfile`, and its
/// `worker_processes`.
#[derive(Debug, Clone, Copy)]
pub struct NginxTarget {
    /// Its name in the report (a `/` makes it a `workers` variant).
    pub name: &'static str,
    /// `sendfile on` or `off`.
    pub sendfile: bool,
    /// `worker_processes`.
    pub workers: Count,
}

/// The nginx configurations, in report order: as many workers as our
/// multi-core servers with `sendfile` on and off (the second only in the
/// `large-file` scenario), and the `workers` scenario's variant.
pub const NGINX_TARGETS: [NginxTarget; 3] = [
    NginxTarget {
        name: "nginx",
        sendfile: true,
        workers: Count::Workers,
    },
    NginxTarget {
        name: "nginx-nosendfile",
        sendfile: false,
        workers: Count::Workers,
    },
    NginxTarget {
        name: "nginx/4 workers",
        sendfile: true,
        workers: Count::VariantWorkers,
    },
];

/// What [`discover`] needs to know.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The workspace whose stages are measured.
    pub root: &'a Path,
    /// Take the binaries from `target/release` instead of building them.
    pub no_build: bool,
    /// Leave nginx out even when it is installed.
    pub no_nginx: bool,
    /// `--peer NAME=COMMAND` arguments.
    pub peers: &'a [String],
    /// What [`Count::Workers`] stands for.
    pub workers: usize,
    /// What [`Count::VariantWorkers`] stands for.
    pub variant_workers: usize,
}

impl Options<'_> {
    fn count(&self, c: Count) -> usize {
        match c {
            Count::Workers => self.workers,
            Count::VariantWorkers => self.variant_workers,
        }
    }

    /// `stage`'s flags as the bench passes them: `[("--loops", "2")]`.
    fn flags(&self, stage: &StageTarget) -> Vec<(&'static str, String)> {
        stage
            .flags
            .iter()
            .map(|&(flag, value)| {
                let value = match value {
                    Value::Is(v) => v.to_string(),
                    Value::Count(c) => self.count(c).to_string(),
                };
                (flag, value)
            })
            .collect()
    }
}

/// The servers a run can measure, and what the report lists.
#[derive(Debug, Clone, Default)]
pub struct Lineup {
    /// Every server that can be started, in report order.
    pub targets: Vec<Target>,
    /// What the report's "Servers" list says: one line per target, and
    /// one for each stage or nginx that cannot be run (its status says
    /// why), in report order.
    pub listed: Vec<TargetInfo>,
}

impl Lineup {
    fn add(&mut self, target: Target) {
        self.listed.push(TargetInfo {
            name: target.name.clone(),
            about: target.about.clone(),
            status: "ok".into(),
        });
        self.targets.push(target);
    }

    fn absent(&mut self, name: &str, about: String, status: String) {
        self.listed.push(TargetInfo {
            name: name.into(),
            about,
            status,
        });
    }

    /// The targets `names` select (`--stage`; none: all): a name selects
    /// the target of that name, every target made from the stage of that
    /// name, and the variants `NAME/...`.
    pub fn select(&self, names: &[String]) -> Vec<Target> {
        self.targets
            .iter()
            .filter(|t| {
                names.is_empty()
                    || names.iter().any(|s| {
                        *s == t.name
                            || t.stage == Some(s.as_str())
                            || t.name.starts_with(&format!("{s}/"))
                    })
            })
            .cloned()
            .collect()
    }

    /// What the report lists for a run of `selected`: their lines, and
    /// every server that could not be run.
    pub fn listed_for(&self, selected: &[Target]) -> Vec<TargetInfo> {
        self.listed
            .iter()
            .filter(|i| selected.iter().any(|t| t.name == i.name) || !i.status.starts_with("ok"))
            .cloned()
            .collect()
    }
}

/// Finds the stages (building each), nginx and the peers.
pub fn discover(opts: &Options<'_>) -> io::Result<Lineup> {
    // A malformed `--peer` is refused before minutes of building.
    let peers = opts
        .peers
        .iter()
        .map(|p| {
            p.split_once('=')
                .ok_or_else(|| io::Error::other(format!("--peer {p:?}: expected NAME=COMMAND")))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut lineup = Lineup::default();
    add_stages(opts, &mut lineup);
    add_nginx(opts, &mut lineup);
    add_builtins(opts, &mut lineup);
    add_floor(opts, &mut lineup);
    for (name, command) in peers {
        lineup.add(Target {
            name: name.into(),
            about: format!("peer: {command}"),
            stage: None,
            launch: Launch::Peer {
                command: command.into(),
            },
        });
    }
    Ok(lineup)
}

/// The rows of [`STAGE_TARGETS`] whose stage builds, each described by
/// its binary's `--help`; a stage that does not build is listed once,
/// under its own name, with why.
fn add_stages(opts: &Options<'_>, lineup: &mut Lineup) {
    let packages = if opts.no_build {
        Vec::new()
    } else {
        targets::workspace_packages(opts.root).unwrap_or_default()
    };
    for stage in targets::STAGES {
        let bin = if opts.no_build {
            targets::release_binary(opts.root, stage)
        } else if !packages.iter().any(|p| p == stage) {
            Err("not built: no such package in the workspace yet".to_string())
        } else {
            eprintln!("bench: cargo build --release -p {stage}");
            targets::build_release(opts.root, stage).map_err(|e| format!("not built: {e}"))
        };
        let rows = STAGE_TARGETS.iter().filter(|r| r.stage == stage);
        match bin {
            Ok(bin) => {
                let help = Help::of(&bin);
                for row in rows {
                    let flags = opts.flags(row);
                    lineup.add(Target {
                        name: row.name.to_string(),
                        about: describe(&help, &flags),
                        stage: Some(stage),
                        launch: Launch::Contract {
                            bin: bin.clone(),
                            args: flags
                                .into_iter()
                                .flat_map(|(flag, value)| [flag.to_string(), value])
                                .collect(),
                        },
                    });
                }
            }
            Err(status) => {
                let flags = rows
                    .into_iter()
                    .find(|r| r.name == stage)
                    .map(|r| opts.flags(r))
                    .unwrap_or_default();
                let about = describe(&Err("no binary to ask".into()), &flags);
                lineup.absent(stage, about, status);
            }
        }
    }
}

/// The rows of [`NGINX_TARGETS`], when nginx is installed and wanted.
fn add_nginx(opts: &Options<'_>, lineup: &mut Lineup) {
    if opts.no_nginx {
        lineup.absent("nginx", "reference".into(), "left out (--no-nginx)".into());
        return;
    }
    let Some(version) = targets::nginx_version() else {
        lineup.absent(
            "nginx",
            "reference".into(),
            "not installed (apt-get install nginx-light)".into(),
        );
        return;
    };
    for row in &NGINX_TARGETS {
        let workers = opts.count(row.workers);
        let sendfile = if row.sendfile { "on" } else { "off" };
        lineup.add(Target {
            name: row.name.into(),
            about: format!("{version}, {workers} worker(s), sendfile {sendfile}"),
            stage: None,
            launch: Launch::Nginx {
                sendfile: row.sendfile,
                workers,
            },
        });
    }
}

/// h2o and lighttpd, each when installed, with as many workers as nginx
/// (the report lists a missing one, with the package that brings it).
fn add_builtins(opts: &Options<'_>, lineup: &mut Lineup) {
    let workers = opts.count(Count::Workers);
    for server in targets::Builtin::ALL {
        match server.version() {
            Some(version) => lineup.add(Target {
                name: server.name().into(),
                about: format!("peer: {version}, {workers} worker(s), configured like nginx"),
                stage: None,
                launch: Launch::Builtin { server, workers },
            }),
            None => lineup.absent(
                server.name(),
                "peer".into(),
                format!("not installed (apt-get install {})", server.name()),
            ),
        }
    }
}

/// What the report says the floor is.
pub const FLOOR_ABOUT: &str = "not a server: the ceiling of this kernel and loopback (one mio loop that counts request ends and writes one pre-built response; see the benchmarks chapter)";

/// The `floor` binary (next to this one, built with it), when it exists
/// or can be built.
fn add_floor(opts: &Options<'_>, lineup: &mut Lineup) {
    let sibling = std::env::current_exe().map(|exe| exe.with_file_name("floor"));
    let bin = match sibling {
        Ok(bin) if bin.exists() => Ok(bin),
        _ if opts.no_build => targets::release_binary(opts.root, "floor"),
        _ => {
            eprintln!("bench: cargo build --release -p bench --bin floor");
            targets::build_release(opts.root, "bench")
                .map(|exe| exe.with_file_name("floor"))
                .and_then(|bin| {
                    if bin.exists() {
                        Ok(bin)
                    } else {
                        Err(format!("not built ({} missing)", bin.display()))
                    }
                })
        }
    };
    match bin {
        Ok(bin) => lineup.add(Target {
            name: "floor".into(),
            about: FLOOR_ABOUT.into(),
            stage: None,
            launch: Launch::Contract { bin, args: vec![] },
        }),
        Err(status) => lineup.absent("floor", FLOOR_ABOUT.into(), status),
    }
}

/// What a binary says about itself in `--help`, as clap writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Help {
    /// The first line: what the program is.
    pub about: String,
    /// Its flags, in the order `--help` lists them.
    pub flags: Vec<FlagHelp>,
}

/// One flag of a `--help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagHelp {
    /// `--threads`.
    pub long: String,
    /// What `[default: ...]` says, if anything.
    pub default: Option<String>,
    /// The explanation, on one line, without the default and the
    /// possible values.
    pub text: String,
}

impl Help {
    /// Runs `bin --help` and reads what it prints.
    pub fn of(bin: &Path) -> Result<Help, String> {
        let out = Command::new(bin)
            .arg("--help")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {} --help: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!("{} --help failed ({})", bin.display(), out.status));
        }
        Ok(Help::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Reads clap's help text, in its short form (a flag and its
    /// explanation on one line) or its long form (the explanation indented
    /// under the flag, the default on a line of its own).
    pub fn parse(text: &str) -> Help {
        let about = text.lines().next().unwrap_or_default().trim().to_string();
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let t = line.trim_start();
            // clap indents a flag by 2 (`-h, --help`) or 6 spaces, and its
            // explanation in the long form by 10.
            let indent = line.len() - t.len();
            if let Some(long) = flag_line(t).filter(|_| indent < 8) {
                let rest = t.split_once(&long).map_or("", |(_, r)| r);
                // Drop the `<VALUE>` placeholder; what follows is the text.
                let rest = rest.trim_start();
                let rest = match rest.strip_prefix('<') {
                    Some(r) => r.split_once('>').map_or("", |(_, r)| r),
                    None => rest,
                };
                entries.push((long, rest.to_string()));
            } else if let Some((_, more)) = entries.last_mut()
                && line.starts_with(' ')
            {
                more.push(' ');
                more.push_str(t);
            } else if !t.is_empty() {
                // `Usage:`, `Options:`: the end of the previous entry.
                entries.push((String::new(), String::new()));
            }
        }
        let flags = entries
            .into_iter()
            .filter(|(long, _)| !long.is_empty())
            .map(|(long, text)| {
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let default = text
                    .split_once("[default: ")
                    .and_then(|(_, d)| d.split_once(']').map(|(d, _)| d.trim().to_string()));
                let cut = ["[default:", "[possible values:", "Possible values:"]
                    .iter()
                    .filter_map(|m| text.find(m))
                    .min()
                    .unwrap_or(text.len());
                FlagHelp {
                    long,
                    default,
                    text: text[..cut].trim().trim_end_matches('.').to_string(),
                }
            })
            .collect();
        Help { about, flags }
    }

    /// The description without a `Stage N: ` label (the report names the
    /// stage already) or the final full stop.
    pub fn summary(&self) -> &str {
        let about = self.about.trim_end_matches('.');
        match about.split_once(": ") {
            Some((label, rest))
                if label
                    .strip_prefix("Stage ")
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())) =>
            {
                rest
            }
            _ => about,
        }
    }

    /// The flags of the binary's own: not those every HTTP stage shares
    /// ([`common::server::HttpConfig`]), nor `--help` and `--version`.
    pub fn own_flags(&self) -> impl Iterator<Item = &FlagHelp> {
        let shared = shared_flags();
        self.flags.iter().filter(move |f| {
            !shared.contains(&f.long) && f.long != "--help" && f.long != "--version"
        })
    }
}

/// `--threads` when `line` (trimmed) introduces a flag (`--threads <N>`,
/// `-h, --help`); `None` for any other line (`- mutex: ...` in a list of
/// possible values, the explanation).
fn flag_line(line: &str) -> Option<String> {
    let line = match line.as_bytes() {
        [b'-', c, b',', b' ', ..] if c.is_ascii_alphanumeric() => &line[4..],
        _ => line,
    };
    let name = line.strip_prefix("--")?;
    let end = name
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(name.len());
    (end > 0).then(|| format!("--{}", &name[..end]))
}

/// The long flags of [`common::server::HttpConfig`]: `--addr`, `--root`...
fn shared_flags() -> Vec<String> {
    use clap::Args as _;
    // The command's name is never shown: only its arguments are read.
    let command = clap::Command::new(env!("CARGO_PKG_NAME"));
    common::server::HttpConfig::augment_args(command)
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

/// What the report says a stage target is: the binary's description, the
/// flags the bench passes, and the defaults of the stage's other flags of
/// its own, in the binary's words (`--threads 0` (0 picks 4 per core)).
pub fn describe(help: &Result<Help, String>, flags: &[(&str, String)]) -> String {
    let mut about = match help {
        Ok(help) => format!("{}.", help.summary()),
        Err(e) => format!("(not described: {e})."),
    };
    if !flags.is_empty() {
        let passed: Vec<String> = flags.iter().map(|(f, v)| format!("{f} {v}")).collect();
        about.push_str(&format!(" Run with `{}`.", passed.join(" ")));
    }
    let defaults: Vec<String> = help
        .iter()
        .flat_map(Help::own_flags)
        .filter(|f| !flags.iter().any(|(passed, _)| *passed == f.long))
        .filter_map(|f| {
            let value = f.default.as_deref()?;
            Some(match default_note(&f.text, value) {
                Some(note) => format!("`{} {value}` ({note})", f.long),
                None => format!("`{} {value}`", f.long),
            })
        })
        .collect();
    if !defaults.is_empty() {
        about.push_str(&format!(" Defaults: {}.", defaults.join(", ")));
    }
    about
}

/// What a flag's explanation says its default means, when the default is
/// a special value that a clause of the explanation starts with: for
/// `--threads`, whose text is "... at once. 0 picks 4 per core (workers
/// mostly wait ...)" and whose default is `0`, "0 picks 4 per core".
fn default_note(text: &str, default: &str) -> Option<String> {
    let at = if text.starts_with(&format!("{default} ")) {
        0
    } else {
        [format!(". {default} "), format!("; {default} ")]
            .iter()
            .filter_map(|s| text.find(s.as_str()).map(|i| i + 2))
            .min()?
    };
    let clause = &text[at..];
    let end = clause.find(['.', ';', '(']).unwrap_or(clause.len());
    Some(clause[..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short form of clap's help: stage 4's, cut down.
    const SHORT: &str = "Stage 4: an HTTP/1.1 static-file server on mio event loops.

Usage: stage4-epoll [OPTIONS]

Options:
      --addr <HOST:PORT>          Address to listen on; port 0 picks a free port (printed at start-up) [default: 127.0.0.1:8080]
      --expires <SECS>            Let clients reuse a static file. Default: neither
      --loops <N>                 Event loops (threads), each with its own SO_REUSEPORT listener [default: 1]
      --max-connections <N>       Connections one event loop holds at most [default: 65536]
  -h, --help                      Print help
";

    /// The long form (explanations with possible values): stage 3's and
    /// stage 5's, cut down.
    const LONG: &str = "Stage 3: an HTTP/1.1 static-file server with an acceptor thread and a fixed pool of workers.

Usage: stage3-threadpool [OPTIONS]

Options:
      --addr <HOST:PORT>
          Address to listen on; port 0 picks a free port (printed at start-up)
          
          [default: 127.0.0.1:8080]

      --threads <N>
          Worker threads: how many connections are served at once. 0 picks 4 per core (workers mostly wait on sockets, not on the CPU)
          
          [default: 0]

      --queue <KIND>
          The queue between the acceptor and the workers

          Possible values:
          - mutex:     The hand-written `Mutex<VecDeque>` + `Condvar` queue
          - crossbeam: `crossbeam_channel::bounded`
          
          [default: mutex]

      --workers <N>
          Worker processes; 0 means one per CPU
          
          [default: 0]

      --user <NAME>
          Run the workers as this user

  -h, --help
          Print help (see a summary with '-h')
";

    fn flag<'a>(help: &'a Help, long: &str) -> &'a FlagHelp {
        help.flags
            .iter()
            .find(|f| f.long == long)
            .unwrap_or_else(|| panic!("{long} in {help:?}"))
    }

    /// Both forms of clap's help give each flag its default and its text.
    #[test]
    fn reads_both_forms_of_help() {
        let short = Help::parse(SHORT);
        assert_eq!(
            short.about,
            "Stage 4: an HTTP/1.1 static-file server on mio event loops."
        );
        assert_eq!(
            short.summary(),
            "an HTTP/1.1 static-file server on mio event loops"
        );
        let longs: Vec<&str> = short.flags.iter().map(|f| f.long.as_str()).collect();
        assert_eq!(
            longs,
            [
                "--addr",
                "--expires",
                "--loops",
                "--max-connections",
                "--help"
            ]
        );
        assert_eq!(flag(&short, "--loops").default.as_deref(), Some("1"));
        assert_eq!(
            flag(&short, "--loops").text,
            "Event loops (threads), each with its own SO_REUSEPORT listener"
        );
        assert_eq!(flag(&short, "--expires").default, None);

        let long = Help::parse(LONG);
        let threads = flag(&long, "--threads");
        assert_eq!(threads.default.as_deref(), Some("0"));
        assert!(threads.text.starts_with("Worker threads:"), "{threads:?}");
        let queue = flag(&long, "--queue");
        assert_eq!(queue.default.as_deref(), Some("mutex"));
        assert_eq!(queue.text, "The queue between the acceptor and the workers");
        assert_eq!(flag(&long, "--user").default, None);
        // `- mutex:` is a possible value, not a flag.
        assert_eq!(long.flags.len(), 6, "{:?}", long.flags);
    }

    /// A stage is described by its own flags: those the bench passes, and
    /// the defaults of the others, with what a special default means;
    /// the flags every stage shares are left out.
    #[test]
    fn describes_a_stage_by_its_own_flags() {
        let long = Help::parse(LONG);
        assert_eq!(
            describe(&Ok(long.clone()), &[]),
            "an HTTP/1.1 static-file server with an acceptor thread and a fixed pool of workers. \
             Defaults: `--threads 0` (0 picks 4 per core), `--queue mutex`, `--workers 0` (0 means one per CPU)."
        );
        let short = Help::parse(SHORT);
        assert_eq!(
            describe(&Ok(short.clone()), &[("--loops", "2".into())]),
            "an HTTP/1.1 static-file server on mio event loops. Run with `--loops 2`. \
             Defaults: `--max-connections 65536`."
        );
        assert_eq!(
            describe(
                &Ok(short.clone()),
                &[("--loops", "2".into()), ("--max-connections", "9".into())]
            ),
            "an HTTP/1.1 static-file server on mio event loops. Run with `--loops 2 --max-connections 9`."
        );
        assert_eq!(
            describe(&Err("no binary".into()), &[("--loops", "2".into())]),
            "(not described: no binary). Run with `--loops 2`."
        );
    }

    /// The table is consistent with the stages the bench builds: every
    /// row's stage is one of them, in their order (the report's), each
    /// stage has a row under its own name (where a stage that does not
    /// build is listed), and exactly the other rows, the variants, have a
    /// `/` in their name.
    #[test]
    fn the_stage_table_follows_the_stages() {
        let order = |stage: &str| targets::STAGES.iter().position(|s| *s == stage);
        let mut last = 0;
        for row in &STAGE_TARGETS {
            let i = order(row.stage).unwrap_or_else(|| panic!("{row:?}: not a stage"));
            assert!(i >= last, "{row:?} is out of the stages' order");
            last = i;
            assert_eq!(row.name.contains('/'), row.name != row.stage, "{row:?}");
        }
        for stage in targets::STAGES {
            assert!(
                STAGE_TARGETS
                    .iter()
                    .any(|r| r.name == stage && r.stage == stage),
                "{stage} has no row of its own"
            );
        }
    }
}
