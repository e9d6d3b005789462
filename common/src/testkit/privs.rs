//! The privilege-drop test every HTTP stage runs (`--user`, `--group`,
//! `--chroot`): checked from `/proc`, not taken on trust.
//!
//! It needs root (the server must start as root to drop); under `CI` not
//! being root is a failure, elsewhere a loud skip ([`super::require_root`]).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use nix::unistd::{Group, User};

use super::ServerProcess;
use super::client::get;
use super::files::TempDir;

/// The real, effective, saved and file-system ids of `pid`, from the
/// `Uid:` or `Gid:` line of `/proc/PID/status`.
pub fn ids(pid: u32, line: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("no {line} line for {pid}"))
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect()
}

/// The children of `pid` (stage 5's workers).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A site `nobody` may read, with one file only root may.
fn site(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    dir.write("public.txt", "public\n");
    dir.write("secret.txt", "root only\n");
    std::fs::set_permissions(
        dir.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn fetch(server: &ServerProcess, path: &str) -> (u16, String) {
    let r = get(
        server.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    );
    (r.status, r.text())
}

/// Runs the checks against `bin` with `args`; `serving` names the
/// processes that read what clients send (the server itself, or stage 5's
/// workers: its master stays root by design). Returns `false` if it could
/// not run (not root, outside CI).
///
/// 1. `--user nobody --group nogroup`: every serving process has nobody's
///    uid and nogroup's gid in all four slots of `/proc/PID/status`, still
///    serves, and cannot read a root-only file (403).
/// 2. `--chroot DIR --root /`: the serving processes' root is DIR
///    (`/proc/PID/root`), and a file in DIR is served.
/// 3. `SIGUSR1` after a log rotation: the access log is reopened *as
///    nobody* (its folder is writable by nobody), and the new file is
///    nobody's; and `SIGHUP` re-reads the `--config` file (readable by
///    nobody) and applies it (the listing is turned off).
/// 4. An unknown user stops the start with a clear error.
pub fn check(bin: &str, args: &[&str], serving: fn(&ServerProcess) -> Vec<u32>) -> bool {
    if !super::require_root("the privilege-drop test") {
        return false;
    }
    let nobody = User::from_name("nobody").unwrap().expect("a nobody user");
    let nogroup = Group::from_name("nogroup")
        .unwrap()
        .expect("a nogroup group");

    let dir = site("privs");
    let mut with: Vec<&str> = args.to_vec();
    with.extend([
        "--user",
        "nobody",
        "--group",
        "nogroup",
        "--root",
        dir.arg(),
    ]);
    let server = ServerProcess::start(bin, &with);
    let pids = serving(&server);
    assert!(!pids.is_empty(), "no serving process found");
    for &pid in &pids {
        let uid = nobody.uid.as_raw();
        let gid = nogroup.gid.as_raw();
        assert_eq!(ids(pid, "Uid:"), [uid; 4], "pid {pid} runs as nobody");
        assert_eq!(ids(pid, "Gid:"), [gid; 4], "pid {pid} runs as nogroup");
    }
    assert_eq!(fetch(&server, "/public.txt"), (200, "public\n".into()));
    assert_eq!(fetch(&server, "/secret.txt").0, 403);
    drop(server);

    let jail = site("privs-jail");
    let jail_path = jail.path.canonicalize().unwrap();
    let mut with: Vec<&str> = args.to_vec();
    with.extend(["--user", "nobody", "--chroot", jail.arg(), "--root", "/"]);
    let server = ServerProcess::start(bin, &with);
    for pid in serving(&server) {
        let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
        assert_eq!(root, jail_path, "pid {pid} is inside the jail");
    }
    assert_eq!(fetch(&server, "/public.txt"), (200, "public\n".into()));
    drop(server);

    let logs = TempDir::new("privs-logs");
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = logs.join("access.log");
    let config = logs.join("server.toml");
    std::fs::write(&config, "autoindex = true\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    dir.write("list/a.txt", "a\n");
    let mut with: Vec<&str> = args.to_vec();
    let log_arg = log.to_str().expect("a UTF-8 path").to_string();
    let config_arg = config.to_str().expect("a UTF-8 path").to_string();
    with.extend([
        "--user",
        "nobody",
        "--root",
        dir.arg(),
        "--access-log",
        &log_arg,
    ]);
    with.extend(["--config", &config_arg]);
    let server = ServerProcess::start(bin, &with);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    fetch(&server, "/public.txt");
    super::eventually("the first access-log line", Duration::from_secs(15), || {
        read().contains("/public.txt")
    });
    std::fs::rename(&log, logs.join("access.log.1")).unwrap();
    server.signal(nix::sys::signal::Signal::SIGUSR1);
    super::eventually(
        "a line in the reopened log, in a file nobody owns",
        Duration::from_secs(15),
        || {
            fetch(&server, "/after-rotation");
            read().contains("/after-rotation")
                && std::fs::metadata(&log).is_ok_and(|m| m.uid() == nobody.uid.as_raw())
        },
    );
    assert_eq!(fetch(&server, "/list/").0, 200, "listed before the reload");
    std::fs::write(&config, "autoindex = false\n").unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    super::eventually(
        "the reload, as nobody, turns the listing off",
        Duration::from_secs(15),
        || fetch(&server, "/list/").0 != 200,
    );
    drop(server);

    let out = std::process::Command::new(bin)
        .args(["--addr", "127.0.0.1:0", "--user", "no-such-user-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown user no-such-user-here"),
        "{stderr}"
    );
    true
}
