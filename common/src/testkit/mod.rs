//! Test support: start a server binary on port 0 and talk to it.
//!
//! Compiled only with the `testkit` feature, which the stages enable for
//! their tests (`[dev-dependencies] common = { features = ["testkit"] }`).
//! Nothing here is used by a server at run time.
//!
//! [`ServerProcess`] starts a binary with `--addr 127.0.0.1:0`, reads the one
//! `listening on …` line the contract promises, and from it the real port.
//! Dropping it kills the process, so a failing test never leaks a server.

/// One entry of a rubric: a check function `name`, its milestone (a
/// constant of the calling module's `milestone` module), its [`Level`]
/// (`check::Level`) and a one-line description. Defined before the
/// modules below, so that every rubric's table is written the same way.
macro_rules! check {
    ($name:ident, $milestone:ident, $level:ident, $about:literal) => {
        Check {
            name: stringify!($name),
            milestone: milestone::$milestone,
            level: Level::$level,
            about: $about,
            run: $name,
        }
    };
}

pub mod abuse;
pub mod browser;
pub mod check;
pub mod client;
pub mod concurrency;
pub mod conformance;
pub mod echo;
pub mod fdlock;
pub mod files;
pub mod goaccess;
pub mod privs;
pub mod procfs;
pub mod reload;
pub mod status;
pub mod tls;
pub mod valgrind;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a server may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A server binary running for a test.
#[derive(Debug)]
pub struct ServerProcess {
    /// The child; killed on drop if it is still running.
    child: Child,
    /// The address parsed from the `listening on` line.
    pub addr: SocketAddr,
    /// What the server printed to stdout after its `listening on` line.
    stdout_rest: Option<ChildStdout>,
}

impl ServerProcess {
    /// Starts `bin` with `args` plus `--addr 127.0.0.1:0` and waits for its
    /// `listening on` line. Stderr goes to the test's stderr, so a failing
    /// test shows the server's log.
    pub fn start(bin: impl AsRef<Path>, args: &[&str]) -> ServerProcess {
        let mut cmd = Command::new(bin.as_ref());
        cmd.arg("--addr").arg("127.0.0.1:0").args(args);
        Self::start_command(cmd)
    }

    /// Starts HTTP stage `bin` serving the document root `root`, with the
    /// access log off and then `args`: what most stage tests run. (A test
    /// that reads the access log starts the server with [`start`](Self::start)
    /// and its own `--access-log`.)
    pub fn serving(bin: impl AsRef<Path>, root: impl AsRef<Path>, args: &[&str]) -> ServerProcess {
        let root = root.as_ref().to_str().expect("temporary paths are UTF-8");
        let mut all = vec!["--root", root, "--access-log", "off"];
        all.extend_from_slice(args);
        Self::start(bin, &all)
    }

    /// Starts a prepared command (which must choose port 0 itself) and waits
    /// for its `listening on` line.
    pub fn start_command(mut cmd: Command) -> ServerProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        // Read the first line on a thread, so that a server that never prints
        // it fails the test after STARTUP_TIMEOUT instead of hanging it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let res = read_line_unbuffered(&mut stdout);
            let _ = tx.send((res, stdout));
        });
        let (line, stdout) = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok((Ok(line), stdout)) => (line, stdout),
            Ok((Err(e), _)) => panic!("reading the server's stdout: {e}"),
            Err(_) => {
                let _ = child.kill();
                panic!("{cmd:?} printed no `listening on` line in {STARTUP_TIMEOUT:?}");
            }
        };
        let addr = parse_listening_line(&line)
            .unwrap_or_else(|| panic!("unexpected first line from {cmd:?}: {line:?}"));
        ServerProcess {
            child,
            addr,
            stdout_rest: Some(stdout),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Opens a new TCP connection to the server, with a 10 s read timeout so
    /// that a server that never answers fails the test instead of hanging it.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to the server");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, sig).expect("signal the server");
    }

    /// Waits up to `timeout` for the server to exit; `None` if it did not.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (up to 30 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_timeout(Duration::from_secs(30))
            .expect("the server did not exit within 30 s of SIGTERM")
    }

    /// The next line the server prints on stdout (without its newline),
    /// waiting up to `timeout`; `None` if none came (the rest of stdout is
    /// then given up).
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let mut out = self.stdout_rest.take()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let line = read_line_unbuffered(&mut out);
            let _ = tx.send((line, out));
        });
        let (line, out) = rx.recv_timeout(timeout).ok()?;
        self.stdout_rest = Some(out);
        let line = line.ok()?;
        line.strip_suffix('\n').map(str::to_string)
    }

    /// Everything the server printed on stdout after the `listening on`
    /// line; call it after the server exited.
    pub fn remaining_stdout(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut out) = self.stdout_rest.take() {
            let _ = out.read_to_string(&mut s);
        }
        s
    }
}

/// One line from a pipe, newline included (none at end of file), read
/// byte by byte: a buffered reader would read ahead, and what it read past
/// the line (the next line a test waits for) would be lost with it.
fn read_line_unbuffered(from: &mut impl Read) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while from.read(&mut b)? == 1 {
        line.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `ready` holds, checking every 20 ms, and panics naming
/// `what` if it still does not after `timeout`: the way a test waits for a
/// state it cannot be told about (a closed listener, a line in a log), with
/// an upper bound instead of a sleep and a hope.
pub fn eventually(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} until {what}, in vain"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes closing `socket` abort the connection with `RST` instead of `FIN`
/// (`SO_LINGER` with a zero timeout), as a crashed peer would.
pub fn reset_on_close(socket: &impl AsFd) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Linger, &linger)
        .expect("set SO_LINGER");
}

/// Whether a test that needs an outside tool may run. `probe` is the command
/// line that shows the tool is there (`["chromium", "--version"]`); `package`
/// is the Debian package that provides it.
///
/// - The tool runs: `true`.
/// - It is missing and the `CI` environment variable is set: the test
///   *fails*, naming the package, because `.ci/run` promised to install it
///   and a skipped check would be a pass that means nothing.
/// - It is missing on a developer's machine: a loud `SKIPPED` line on stderr
///   and `false`; the caller returns without asserting anything.
pub fn require_tool(probe: &[&str], package: &str, what: &str) -> bool {
    let runs = Command::new(probe[0])
        .args(&probe[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return true;
    }
    missing(
        &format!(
            "`{}` is not installed (Debian package `{package}`: apt-get install {package})",
            probe[0]
        ),
        what,
    )
}

/// Like [`require_tool`] for a test that needs root (the privilege drop):
/// under `CI` not being root is a failure, elsewhere a loud skip.
pub fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    missing("not running as root", what)
}

fn missing(reason: &str, what: &str) -> bool {
    match verdict(std::env::var_os("CI").is_some(), reason, what) {
        Ok(run) => run,
        Err(failure) => panic!("{failure}"),
    }
}

/// What a missing tool means: under CI a failure (the message), elsewhere
/// a skip (`Ok(false)`, announced on stderr).
fn verdict(ci: bool, reason: &str, what: &str) -> Result<bool, String> {
    if ci {
        return Err(format!(
            "{reason}: {what} cannot run, and CI is set (.ci/run installs it)"
        ));
    }
    eprintln!("SKIPPED: {reason}: {what} did not run (under CI=true this fails)");
    Ok(false)
}

/// The file name of a binary path, for naming temporary folders.
pub(crate) fn name_of(bin: &str) -> String {
    Path::new(bin)
        .file_name()
        .map_or_else(|| "server".into(), |n| n.to_string_lossy().into_owned())
}

/// Parses `listening on http://127.0.0.1:8080/` or `listening on 127.0.0.1:7878`.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim_end().strip_prefix("listening on ")?;
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    rest.trim_end_matches('/').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_listening_line;

    /// A tool that runs is there; a missing one fails under CI, naming the
    /// package, and is a skip elsewhere.
    #[test]
    fn a_missing_tool_fails_under_ci_and_skips_elsewhere() {
        assert!(super::require_tool(
            &["sh", "-c", "true"],
            "dash",
            "a shell"
        ));
        let reason = "`no-such-tool` is not installed (Debian package `no-such-package`: apt-get install no-such-package)";
        let failure = super::verdict(true, reason, "the check").unwrap_err();
        assert!(
            failure.contains("Debian package `no-such-package`"),
            "{failure}"
        );
        assert_eq!(super::verdict(false, reason, "the check"), Ok(false));
    }

    #[test]
    fn listening_lines_of_both_kinds_parse() {
        let a = parse_listening_line("listening on http://127.0.0.1:8080/\n").unwrap();
        assert_eq!(a.port(), 8080);
        let b = parse_listening_line("listening on 127.0.0.1:7878\n").unwrap();
        assert_eq!(b.port(), 7878);
        assert!(parse_listening_line("hello").is_none());
    }
}
