//! The transcript runner: reads the ```` ```console ```` blocks of a chapter
//! and replays them in a shell, comparing what each command prints with
//! what the book shows.
//!
//! # What a transcript is
//!
//! A `console` block holds commands (lines starting with `$ `; a line ending
//! in `\` continues on the next) and, under each, the output the book
//! shows. Every block of a page runs in one `bash`, in order, from the root
//! of the checkout, so a variable or a background job one block starts is
//! there in the next, as in one terminal session.
//!
//! # How output is compared
//!
//! With [`snapbox`], on the command's standard output (standard error is
//! kept only to explain a failure; a command that wants its errors shown
//! says `2>&1`). In the expected text `[..]` stands for any part of a line
//! and a line `...` for any number of lines: the parts that change from
//! run to run (dates, ports, pids, timings) are written that way, never
//! left out. Blanks at the ends of lines and trailing blank lines are
//! ignored on both sides: they cannot be seen on the page.
//!
//! # Servers and background jobs
//!
//! - A command whose shown output begins with `listening on` is a server
//!   the reader leaves running in a terminal of its own. The runner starts
//!   it in the background (stopping, as Ctrl-C would, the one it started
//!   like that before), waits for that line, and lets the rest of the page
//!   talk to it.
//! - A command the book itself puts in the background (`cmd &`, `cmd & PID=$!`)
//!   may print later; the runner keeps reading until the output shown under
//!   it has arrived. That is the only wait there is: no sleeps.
//! - Every job still running when the page ends is stopped.
//!
//! # Isolation
//!
//! The book's servers use their default ports (8080, 7878). Run as root,
//! each page gets a network namespace of its own (`unshare --net`), so pages
//! run side by side and never meet a server of the machine's, and a PID
//! namespace, so that nothing a page started outlives it; otherwise pages
//! take turns, holding a lock file, and the page's jobs are stopped at its
//! end.
//!
//! # Exceptions
//!
//! A block that cannot run here (it needs a second machine or a screen) is
//! preceded by `<!-- transcript: not run: REASON -->`; the test lists every
//! such block with its reason, so the exceptions stay visible. Before a
//! block, `<!-- transcript: timeout SECS -->` gives each of its commands
//! longer than the default 60 s.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long one command may take unless its block says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One command of a transcript and the output the book shows for it.
#[derive(Debug, Clone)]
pub struct Step {
    /// The chapter line the command starts on (1-based).
    pub line: usize,
    /// The command, continuation lines joined.
    pub command: String,
    /// The output shown under it.
    pub expected: String,
    /// How long it may take.
    pub timeout: Duration,
}

/// One ```` ```console ```` block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The line of its opening fence (1-based).
    pub line: usize,
    /// Its commands.
    pub steps: Vec<Step>,
    /// `Some(reason)` if the chapter marks it as not run here.
    pub not_run: Option<String>,
}

/// Reads the console blocks of a chapter; an error names the line of a
/// block the runner cannot read.
pub fn parse(text: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```console" {
            if lines[i].trim() == "```console" {
                // Inside a list item: mdBook shows it, and it would silently
                // never run.
                return Err(format!(
                    "line {}: an indented console block; move it out of the list so that it runs",
                    i + 1
                ));
            }
            i += 1;
            continue;
        }
        let fence = i;
        // Directives are HTML comments on the lines just above the fence.
        let mut not_run = None;
        let mut timeout = DEFAULT_TIMEOUT;
        let mut d = fence;
        while d > 0 {
            let above = lines[d - 1].trim();
            let Some(directive) = above
                .strip_prefix("<!-- transcript:")
                .and_then(|r| r.strip_suffix("-->"))
            else {
                break;
            };
            let directive = directive.trim();
            if let Some(reason) = directive.strip_prefix("not run:") {
                not_run = Some(reason.trim().to_string());
            } else if let Some(secs) = directive.strip_prefix("timeout") {
                let secs: u64 = secs
                    .trim()
                    .parse()
                    .map_err(|_| format!("line {d}: bad timeout directive {above:?}"))?;
                timeout = Duration::from_secs(secs);
            } else {
                return Err(format!("line {d}: unknown transcript directive {above:?}"));
            }
            d -= 1;
        }
        i += 1;
        let mut steps: Vec<Step> = Vec::new();
        while i < lines.len() && lines[i].trim_end() != "```" {
            let line = lines[i];
            if let Some(cmd) = line.strip_prefix("$ ") {
                let start = i;
                let mut command = cmd.to_string();
                while command.ends_with('\\') && i + 1 < lines.len() {
                    i += 1;
                    command.push('\n');
                    command.push_str(lines[i]);
                }
                steps.push(Step {
                    line: start + 1,
                    command,
                    expected: String::new(),
                    timeout,
                });
            } else if let Some(step) = steps.last_mut() {
                step.expected.push_str(line);
                step.expected.push('\n');
            } else if !line.trim().is_empty() {
                return Err(format!(
                    "line {}: output before any command in a console block",
                    i + 1
                ));
            }
            i += 1;
        }
        blocks.push(Block {
            line: fence + 1,
            steps,
            not_run,
        });
        i += 1;
    }
    Ok(blocks)
}

/// A command is put in the background by the book: `cmd &`, or `cmd & X=$!`
/// (the job's pid kept in a variable).
fn backgrounded(command: &str) -> bool {
    let c = command.split(" #").next().unwrap_or(command).trim_end();
    let Some(at) = c.rfind('&') else {
        return false;
    };
    if c[..at].ends_with('&') {
        return false;
    }
    let rest = c[at + 1..].trim();
    rest.is_empty()
        || rest.strip_suffix("=$!").is_some_and(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        })
}

/// The page's shell: a `bash` (in a network namespace of its own when we
/// are root) fed one command at a time.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    /// Lines of its standard output, read on a thread.
    lines: Receiver<String>,
    /// Its standard error, read on a thread, for failure reports.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// Where command scripts are written.
    dir: PathBuf,
    /// Commands run so far (names the scripts and the end markers).
    count: usize,
    /// Held while a page runs outside a namespace of its own.
    _lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl Shell {
    fn start(root: &Path, name: &str) -> Shell {
        let dir = std::env::temp_dir().join(format!("transcripts-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let isolated = nix::unistd::geteuid().is_root()
            && Command::new("unshare")
                .args(["--net", "--pid", "--fork", "--mount-proc", "true"])
                .status()
                .is_ok_and(|s| s.success());
        let lock = (!isolated).then(|| {
            let path = std::env::temp_dir().join("five-servers-transcripts.lock");
            eprintln!(
                "not root: pages take turns on the real loopback ({})",
                path.display()
            );
            let file = std::fs::File::create(&path).unwrap();
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .unwrap_or_else(|(_, e)| panic!("lock {}: {e}", path.display()))
        });
        let mut cmd = if isolated {
            // A network namespace (its own loopback, so port 8080 is free)
            // and a PID namespace in which bash is process 1: when it ends,
            // the kernel ends every process the page started, however it
            // was started. `--kill-child` ends bash if `unshare` is killed.
            let mut c = Command::new("unshare");
            c.args([
                "--net",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "bash",
                "--noprofile",
                "--norc",
            ]);
            c
        } else {
            let mut c = Command::new("bash");
            c.args(["--noprofile", "--norc"]);
            c
        };
        cmd.current_dir(root)
            .env("CARGO_TERM_COLOR", "never")
            .env("NO_COLOR", "1")
            .env("TERM", "dumb")
            .env("LC_ALL", "C.UTF-8")
            .env_remove("RUST_LOG")
            // Scratch files a page makes (`mktemp -d`) go in the runner's
            // folder, which is removed when the page ends.
            .env("TMPDIR", &dir)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start bash for the transcripts");
        let mut stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // Job control: each background job gets a process group of its own,
        // so that stopping one is Ctrl-C in its terminal.
        let mut setup = String::from("set -m\n");
        // Descriptors the test harness left open (cargo's jobserver, a
        // CI runner's pipes) are closed, so the numbers a page shows
        // (`fd=3` in `ss`, a listener's descriptor) are the same on every
        // machine.
        setup.push_str(
            "for __fd in /proc/$$/fd/*; do __fd=${__fd##*/}; \
             if [ \"$__fd\" -gt 2 ]; then eval \"exec $__fd>&-\" 2>/dev/null; fi; done; unset __fd\n",
        );
        if isolated {
            setup.push_str("ip link set lo up\n");
        }
        stdin.write_all(setup.as_bytes()).unwrap();
        Shell {
            child,
            stdin,
            lines,
            stderr,
            dir,
            count: 0,
            _lock: lock,
        }
    }

    /// Runs one command; returns its output (lines until its end marker,
    /// and then, for a background command, until `expected` has arrived).
    fn run(&mut self, command: &str, expected: &str, timeout: Duration) -> Result<String, String> {
        self.count += 1;
        let n = self.count;
        let script = self.dir.join(format!("step-{n}.sh"));
        let server = expected.starts_with("listening on");
        let background = server || backgrounded(command);
        let mut text = String::new();
        if server && !backgrounded(command) {
            // A server in a terminal of its own: stop the previous one as
            // Ctrl-C would, then start this one in the background.
            let _ = writeln!(
                text,
                "if [ -n \"$__terminal\" ]; then kill -INT -- -$__terminal 2>/dev/null; wait $__terminal 2>/dev/null; fi"
            );
            let _ = writeln!(text, "{command} &");
            let _ = writeln!(text, "__terminal=$!");
        } else {
            let _ = writeln!(text, "{command}");
        }
        std::fs::write(&script, text).unwrap();
        let marker = format!("__transcript_step_{n}_done__");
        // The script is sourced (so variables and jobs stay in this shell)
        // with standard input from /dev/null: nothing it runs can read the
        // commands that follow.
        let line = format!(
            "source {} </dev/null; printf '%s\\n' {marker}\n",
            script.display()
        );
        self.stdin
            .write_all(line.as_bytes())
            .map_err(|e| format!("the shell is gone: {e}"))?;
        let deadline = Instant::now() + timeout;
        let mut out = String::new();
        let mut partial = String::new();
        let mut done = false;
        loop {
            if done && (!background || matches(&out, expected)) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if !done && l.ends_with(&marker) => {
                    // The marker is printed in one write, with no newline of
                    // its own before it: bash writes `printf '\\n…'` in two
                    // pieces, and a background job's line could land between
                    // them. Output without a final newline ends on the
                    // marker's line.
                    let rest = &l[..l.len() - marker.len()];
                    if background {
                        // A background job's line cut in two by the
                        // marker: its end comes on the next line.
                        partial = rest.to_string();
                    } else if !rest.is_empty() {
                        out.push_str(rest);
                        out.push('\n');
                    }
                    done = true;
                }
                Ok(l) => {
                    out.push_str(&std::mem::take(&mut partial));
                    out.push_str(&l);
                    out.push('\n');
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no {} within {timeout:?}; output so far:\n{out}",
                        if done { "expected output" } else { "end" }
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("the shell exited; output so far:\n{out}"));
                }
            }
        }
        Ok(out)
    }

    fn stderr_tail(&self) -> String {
        let all = self.stderr.lock().unwrap();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // Stop every job the page left running (each in its own process
        // group), then the shell.
        let _ = self.stdin.write_all(
            b"for j in $(jobs -p); do kill -TERM -- -$j 2>/dev/null; done; wait; exit\n",
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `actual` matches the pattern `expected` (snapbox's `[..]` and
/// `...`), ignoring trailing blank lines.
fn matches(actual: &str, expected: &str) -> bool {
    compare(actual, expected).is_ok()
}

fn compare(actual: &str, expected: &str) -> Result<(), String> {
    // Blanks at the end of a line cannot be seen on the page (tools that
    // pad their columns, `ss`, `column -t`, print them), nor can trailing
    // empty lines: neither is compared.
    let tidy = |text: &str| {
        let mut t: String = text
            .lines()
            .map(|l| l.trim_end().to_string() + "\n")
            .collect();
        while t.ends_with("\n\n") {
            t.pop();
        }
        if t.is_empty() {
            t.push('\n');
        }
        t
    };
    let actual = tidy(actual);
    let expected = tidy(expected);
    // Paths are compared as written: a `\` in an strace line is not a
    // Windows path separator.
    snapbox::Assert::new()
        .normalize_paths(false)
        .try_eq(
            None,
            snapbox::Data::text(actual),
            snapbox::Data::text(expected),
        )
        .map_err(|e| e.to_string())
}

/// What running a chapter found.
#[derive(Debug, Default)]
pub struct Report {
    /// Commands run and compared.
    pub checked: usize,
    /// `line: reason` of each block marked as not run.
    pub not_run: Vec<String>,
    /// One message per command whose output differed or that failed.
    pub failures: Vec<String>,
}

/// Runs every console block of `chapter` (a path under the checkout
/// `root`), in order, in one shell.
pub fn run_chapter(root: &Path, chapter: &Path) -> Report {
    let text = std::fs::read_to_string(chapter).unwrap();
    let rel = chapter
        .strip_prefix(root)
        .unwrap_or(chapter)
        .display()
        .to_string();
    let name = chapter.file_stem().unwrap().to_string_lossy().into_owned();
    let mut report = Report::default();
    let blocks = match parse(&text) {
        Ok(blocks) => blocks,
        Err(e) => {
            report.failures.push(format!("{rel}: {e}"));
            return report;
        }
    };
    if blocks
        .iter()
        .all(|b| b.not_run.is_some() || b.steps.is_empty())
    {
        for b in &blocks {
            if let Some(reason) = &b.not_run {
                report.not_run.push(format!("{rel}:{}: {reason}", b.line));
            }
        }
        return report;
    }
    let mut shell = Shell::start(root, &name);
    for block in &blocks {
        if let Some(reason) = &block.not_run {
            report
                .not_run
                .push(format!("{rel}:{}: {reason}", block.line));
            continue;
        }
        for step in &block.steps {
            report.checked += 1;
            let result = shell
                .run(&step.command, &step.expected, step.timeout)
                .and_then(|actual| compare(&actual, &step.expected));
            if let Err(e) = result {
                report.failures.push(format!(
                    "{rel}:{}: `{}`\n{e}\n--- the shell's last stderr lines:\n{}\n",
                    step.line,
                    step.command,
                    shell.stderr_tail()
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_steps_and_directives_are_read() {
        let md = "text\n```console\n$ echo a \\\n  b\na b\n$ true\n```\n\n<!-- transcript: not run: needs two machines -->\n```console\n$ ssh x\n```\n";
        let blocks = parse(md).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].line, 2);
        assert_eq!(blocks[0].steps[0].command, "echo a \\\n  b");
        assert_eq!(blocks[0].steps[0].expected, "a b\n");
        assert_eq!(blocks[0].steps[0].line, 3);
        assert_eq!(blocks[0].steps[1].expected, "");
        assert_eq!(blocks[1].not_run.as_deref(), Some("needs two machines"));
        assert!(
            parse(
                "1. a list

   ```console
   $ true
   ```
"
            )
            .is_err()
        );
    }

    #[test]
    fn background_commands_are_recognised() {
        assert!(backgrounded("cargo run -p x &"));
        assert!(backgrounded("cargo run -p x & PID=$!"));
        assert!(backgrounded("strace -o t x & TRACED=$!"));
        assert!(!backgrounded("a & b"));
        assert!(backgrounded("cargo run -p x &     # --backlog 1024"));
        assert!(!backgrounded("a && b"));
        assert!(!backgrounded("curl -s 'http://x/?a=1&b=2'"));
    }

    #[test]
    fn wildcards_match_and_one_changed_character_does_not() {
        assert!(matches("Date: Tue, 01 Dec 2026\nok\n", "Date: [..]\nok\n"));
        assert!(matches("a\nb\nc\n\n", "a\n...\nc\n"));
        assert!(!matches("ok\n", "ok!\n"));
        assert!(!matches("Date: x\nok\n", "Date: [..]\nOK\n"));
    }
}
