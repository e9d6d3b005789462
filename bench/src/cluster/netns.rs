//! The lab's machines: network namespaces on one bridge.
//!
//! Every host is a network namespace named `bcl-PID-ROLE` (`PID` is the
//! bench's process id): `bcl-PID-lb` for the balancer, `bcl-PID-client`
//! for the load generator, `bcl-PID-b1`… for the backends. Each has one
//! veth cable, `eth0`, whose other end is plugged into a bridge, `br0`,
//! that lives in a namespace of its own, `bcl-PID-sw` (the switch). Both
//! ends of every cable are created directly inside their namespaces, so
//! nothing of the lab ever appears in the machine's own network
//! namespace, and deleting the namespaces deletes every cable and the
//! bridge with them.
//!
//! A run that was killed leaves its namespaces (and maybe a balancer or a
//! backend running inside them) behind. [`Lab::create`] first removes
//! every `bcl-PID-*` namespace whose `PID` is no longer a running
//! process: it kills what still runs inside (`ip netns pids`) and deletes
//! the namespace. A lab of another bench that is still running is left
//! alone.

use std::fs::{self, File};
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What every name of the lab starts with.
pub const PREFIX: &str = "bcl-";

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The longest any one `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// The lab's subnet: `198.18.0.0/24`, out of the block reserved for
/// benchmarking (RFC 2544), so it cannot clash with a real network.
pub const SUBNET_PREFIX_LEN: u8 = 24;

/// The balancer's address.
pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// The client's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

/// Backend `i`'s address (from 1): `198.18.0.1i`.
pub fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + i as u8)
}

/// Runs `ip ARGS`, bounded in time; the error names the command and says
/// what `ip` printed.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run `ip` ({e}); the lab needs iproute2 (apt-get install iproute2)"),
            )
        })?;
    let deadline = Instant::now() + IP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(io::Error::other(format!(
                "`ip {}` failed: {}",
                args.join(" "),
                err.trim()
            )));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "`ip {}` did not finish within {IP_TIMEOUT:?}",
                args.join(" ")
            )));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The namespaces `ip netns` knows whose name starts with [`PREFIX`].
pub fn lab_namespaces() -> Vec<String> {
    let Ok(dir) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    names.sort();
    names
}

/// The bench process a lab namespace belongs to (`bcl-PID-ROLE`).
fn owner(name: &str) -> Option<i32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// True while process `pid` exists.
fn alive(pid: i32) -> bool {
    // Signal 0 checks that the process exists without signalling it.
    kill(Pid::from_raw(pid), None).is_ok()
}

/// Sends SIGKILL to every process inside namespace `name` (what
/// `ip netns pids` lists): the host crashes.
pub fn kill_all(name: &str) {
    if let Ok(out) = Command::new("ip")
        .args(["netns", "pids", name])
        .stderr(Stdio::null())
        .output()
    {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Kills every process inside namespace `name` and deletes it. A
/// namespace that is gone by the time it is deleted is no error: another
/// bench starting at the same moment may have cleaned the same stale lab.
fn remove(name: &str) -> io::Result<()> {
    kill_all(name);
    match ip(&["netns", "delete", name]) {
        Err(_) if !Path::new(NETNS_DIR).join(name).exists() => Ok(()),
        done => done,
    }
}

/// Removes what a killed run left behind: every lab namespace whose bench
/// is gone. Returns their names.
pub fn clean_stale() -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in lab_namespaces() {
        if owner(name.as_str()).is_none_or(|pid| !alive(pid)) {
            remove(&name)?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// A host of the lab: its namespace and its address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name.
    pub ns: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
}

/// The lab's namespaces, deleted (with everything in them) when dropped.
#[derive(Debug)]
pub struct Lab {
    /// The switch: the namespace holding the bridge.
    pub switch: String,
    /// The balancer's host.
    pub lb: Host,
    /// The load generator's host.
    pub client: Host,
    /// The backends' hosts, `b1`, `b2`…
    pub backends: Vec<Host>,
    /// Every namespace created, in creation order.
    created: Vec<String>,
}

impl Lab {
    /// Cleans up stale labs, then builds the switch, the balancer's and
    /// the client's hosts and `backends` backend hosts. Needs root; a
    /// machine that cannot make namespaces gets an error that says so.
    pub fn create(backends: usize) -> io::Result<Lab> {
        if !nix::unistd::geteuid().is_root() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the cluster lab needs root (it creates network namespaces); run it with sudo",
            ));
        }
        let stale = clean_stale()?;
        if !stale.is_empty() {
            eprintln!(
                "bench: removed {} namespace(s) a killed run left: {}",
                stale.len(),
                stale.join(", ")
            );
        }
        let name = |role: &str| format!("{PREFIX}{}-{role}", std::process::id());
        let mut lab = Lab {
            switch: name("sw"),
            lb: Host {
                ns: name("lb"),
                addr: LB_ADDR,
            },
            client: Host {
                ns: name("client"),
                addr: CLIENT_ADDR,
            },
            backends: (1..=backends)
                .map(|i| Host {
                    ns: name(&format!("b{i}")),
                    addr: backend_addr(i),
                })
                .collect(),
            created: Vec::new(),
        };
        // A half-built lab is dropped, and so deleted, on any error.
        lab.add_namespace(&lab.switch.clone()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create a network namespace on this machine: {e}"),
            )
        })?;
        let sw = lab.switch.clone();
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        let hosts: Vec<(Host, String)> = [
            (lab.lb.clone(), "lb".to_string()),
            (lab.client.clone(), "client".to_string()),
        ]
        .into_iter()
        .chain(
            lab.backends
                .iter()
                .enumerate()
                .map(|(i, h)| (h.clone(), format!("b{}", i + 1))),
        )
        .collect();
        for (host, port) in hosts {
            lab.add_namespace(&host.ns)?;
            // The cable: `eth0` in the host, `PORT` in the switch.
            ip(&[
                "link", "add", "eth0", "netns", &host.ns, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            let cidr = format!("{}/{SUBNET_PREFIX_LEN}", host.addr);
            ip(&["-n", &host.ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &host.ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    fn add_namespace(&mut self, name: &str) -> io::Result<()> {
        ip(&["netns", "add", name])?;
        self.created.push(name.to_string());
        Ok(())
    }

    /// Deletes the lab's namespaces (killing anything still inside).
    pub fn destroy(mut self) -> io::Result<()> {
        self.delete_all()
    }

    fn delete_all(&mut self) -> io::Result<()> {
        let mut first_error = None;
        for name in self.created.drain(..).rev() {
            if let Err(e) = remove(&name) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.delete_all() {
            eprintln!("bench: cluster lab clean-up: {e}");
        }
    }
}

/// Runs `f` on a new thread that has entered namespace `ns` (what
/// `ip netns exec` does before it runs a program): every socket `f`
/// opens, and every thread it starts, lives in that namespace.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<thread::JoinHandle<io::Result<T>>> {
    let file = File::open(format!("{NETNS_DIR}/{ns}"))?;
    Ok(thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("setns: {e}")))?;
        drop(file);
        f()
    }))
}

/// Runs `f` in namespace `ns` and waits for it.
pub fn run_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    spawn_in(ns, f)?
        .join()
        .map_err(|_| io::Error::other("a thread of the cluster lab panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The owner of a lab namespace is read from its name; other names
    /// have none.
    #[test]
    fn owners_come_from_names() {
        assert_eq!(owner("bcl-1234-lb"), Some(1234));
        assert_eq!(owner("bcl-77-b3"), Some(77));
        assert_eq!(owner("bcl-x-b3"), None);
        assert_eq!(owner("other-1-lb"), None);
    }
}
