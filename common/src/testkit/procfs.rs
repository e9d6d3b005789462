//! What `/proc` says about a server the checker started, whatever it is
//! written in and whatever wraps it (`cargo run`, a shell script, a master
//! that forks workers).
//!
//! - [`tree`]: the processes descended from the one the checker spawned,
//!   from the parent pid field of every `/proc/PID/stat`.
//! - [`port_sockets`]: which TCP sockets belong to the port, from
//!   `/proc/net/tcp` and `/proc/net/tcp6` (a listening socket has the port
//!   as its local port; so does every connection the server accepted).
//! - [`holders`]: which of the processes hold those sockets, from the
//!   `socket:[INODE]` links in `/proc/PID/fd`: the processes that *serve*
//!   the port, told apart from a wrapper that only waits for its child.
//! - [`threads`] and [`rss_kib`]: `/proc/PID/task` and `VmRSS`.
//!
//! Everything here is a reading at one instant; a process that exits
//! between two readings is simply not there.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One process of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// The command name (`comm`, at most 15 bytes).
    pub name: String,
    /// How many ancestors it has below the spawned process (which is 0).
    pub depth: usize,
}

/// `(pid, ppid, name, state)` from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(u32, String, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces or parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_string();
    let mut rest = text[close + 2..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, name, state))
}

/// Every live (not zombie) process: pid → (ppid, name).
fn all_processes() -> HashMap<u32, (u32, String)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some((ppid, name, state)) = stat(pid)
            && state != 'Z'
            && state != 'X'
        {
            out.insert(pid, (ppid, name));
        }
    }
    out
}

/// `root` and every live process descended from it, shallowest first.
pub fn tree(root: u32) -> Vec<Proc> {
    let all = all_processes();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &(ppid, _)) in &all {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut level = vec![root];
    let mut depth = 0;
    while !level.is_empty() {
        let mut next = Vec::new();
        level.sort_unstable();
        for pid in level {
            if let Some((ppid, name)) = all.get(&pid) {
                out.push(Proc {
                    pid,
                    ppid: *ppid,
                    name: name.clone(),
                    depth,
                });
                next.extend(children.get(&pid).into_iter().flatten());
            }
        }
        level = next;
        depth += 1;
    }
    out
}

/// The state of a socket of the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockState {
    /// A listening socket.
    Listen,
    /// An accepted connection.
    Established,
    /// Any other state (closing, time-wait ...).
    Other,
}

/// The sockets whose local port is `port`: inode → state.
pub fn port_sockets(port: u16) -> HashMap<u64, SockState> {
    let mut out = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port != Some(port) {
                continue;
            }
            let state = match f[3] {
                "0A" => SockState::Listen,
                "01" => SockState::Established,
                _ => SockState::Other,
            };
            if let Ok(inode) = f[9].parse::<u64>()
                && inode != 0
            {
                out.insert(inode, state);
            }
        }
    }
    out
}

/// The socket inodes among `pid`'s open descriptors.
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// What one process holds of the port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Listening sockets.
    pub listening: usize,
    /// Accepted connections.
    pub connections: usize,
}

/// The processes of `root`'s tree that hold a socket of `port`, with what
/// they hold, by pid. (Two processes may hold the same socket: a listener
/// inherited across `fork`, a connection passed with `SCM_RIGHTS` and not
/// yet closed by the sender.)
pub fn holders(root: u32, port: u16) -> BTreeMap<u32, Held> {
    let sockets = port_sockets(port);
    let mut out = BTreeMap::new();
    for p in tree(root) {
        let mut held = Held::default();
        for inode in socket_inodes(p.pid) {
            match sockets.get(&inode) {
                Some(SockState::Listen) => held.listening += 1,
                Some(SockState::Established) => held.connections += 1,
                _ => {}
            }
        }
        if held != Held::default() {
            out.insert(p.pid, held);
        }
    }
    out
}

/// The server's processes: those of the tree that hold a socket of the
/// port, or, when none does (yet), the whole tree.
pub fn server_pids(root: u32, port: u16) -> BTreeSet<u32> {
    let held: BTreeSet<u32> = holders(root, port).into_keys().collect();
    if held.is_empty() {
        tree(root).into_iter().map(|p| p.pid).collect()
    } else {
        held
    }
}

/// The process to signal: the shallowest one of the tree that holds a
/// socket of the port (the server itself under a `cargo run` or a shell,
/// the master of a prefork server), or the spawned process.
pub fn main_pid(root: u32, port: u16) -> u32 {
    let held = holders(root, port);
    tree(root)
        .into_iter()
        .find(|p| held.contains_key(&p.pid))
        .map_or(root, |p| p.pid)
}

/// How many threads `pid` has.
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// The resident memory of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Whether `pid` is alive (a zombie is not).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, _, state)| state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test process holds a listener and an accepted connection, and
    /// `/proc` says so; its tree holds itself and its threads are counted.
    #[test]
    fn a_listener_and_a_connection_of_this_process_are_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_accepted, _) = listener.accept().unwrap();
        let me = std::process::id();
        let held = holders(me, port);
        assert_eq!(
            held.get(&me),
            Some(&Held {
                listening: 1,
                connections: 1
            }),
            "{held:?}"
        );
        assert_eq!(main_pid(me, port), me);
        assert!(threads(me) >= 1);
        assert!(rss_kib(me) > 0);
        assert_eq!(tree(me)[0].pid, me);
    }
}
