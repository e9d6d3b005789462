//! Dropping privileges: bind as root, serve as nobody (`--user`,
//! `--group`, `--chroot`, on every HTTP stage).
//!
//! A server must be root to bind port 80; the code that parses what
//! strangers send should not be. So every HTTP stage binds first, opens its
//! log files (so that they may live where only root writes), and then —
//! in [`HttpConfig::start_with_status`](crate::server::HttpConfig::start_with_status),
//! before it loads the site — optionally `chroot`s and gives up root for
//! good: supplementary groups first, then the group, then the user, in
//! that order, because after `setuid` it would no longer be allowed to
//! change the others. Then it checks that it cannot get root back. Stage 5
//! does it in each worker; its master stays root, as nginx's does, so that
//! it can bind, fork and re-read its configuration.
//!
//! What this means afterwards, for stages 2–4 and stage 5's workers:
//! `SIGUSR1` reopens the log files *as the new user*, so their folder must
//! be writable by it (or reopening fails, is logged, and the old file is
//! kept); under `--chroot`, `--root` and `--error-pages` are paths inside
//! the jail (the logs were opened before it, outside).

use std::io;
use std::path::Path;

use nix::unistd::{
    Gid, Group, Uid, User, chdir, chroot, getegid, geteuid, getgid, getuid, setgid, setgroups,
    setuid,
};

/// Who the server becomes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The user's name, for messages.
    pub name: String,
    /// Its user id.
    pub uid: Uid,
    /// Its primary group id.
    pub gid: Gid,
}

/// Resolves `--user` (and `--group`, which replaces the user's primary
/// group) while still root. `Ok(None)`: no drop.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> io::Result<Option<Target>> {
    let Some(name) = user else {
        if let Some(g) = group {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--group {g} needs --user"),
            ));
        }
        return Ok(None);
    };
    if !geteuid().is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("--user {name} needs the server to start as root"),
        ));
    }
    let user = match User::from_name(name) {
        Ok(Some(u)) => u,
        Ok(None) => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("unknown user {name}"),
            ));
        }
        Err(e) => return Err(io::Error::other(format!("looking up user {name}: {e}"))),
    };
    let gid = match group {
        None => user.gid,
        Some(g) => match Group::from_name(g) {
            Ok(Some(group)) => group.gid,
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("unknown group {g}"),
                ));
            }
            Err(e) => return Err(io::Error::other(format!("looking up group {g}: {e}"))),
        },
    };
    Ok(Some(Target {
        name: name.to_string(),
        uid: user.uid,
        gid,
    }))
}

// ANCHOR: drop
/// Chroots (if asked), then drops to `target` for good.
pub fn drop_to(target: Option<&Target>, chroot_dir: Option<&Path>) -> io::Result<()> {
    if let Some(dir) = chroot_dir {
        chroot(dir).map_err(|e| io::Error::other(format!("chroot {}: {e}", dir.display())))?;
        chdir("/").map_err(|e| io::Error::other(format!("chdir / after chroot: {e}")))?;
    }
    let Some(t) = target else {
        return Ok(());
    };
    setgroups(&[]).map_err(|e| io::Error::other(format!("setgroups: {e}")))?;
    setgid(t.gid).map_err(|e| io::Error::other(format!("setgid {}: {e}", t.gid)))?;
    setuid(t.uid).map_err(|e| io::Error::other(format!("setuid {}: {e}", t.uid)))?;
    // Never trust a drop without checking it: root must be gone for good.
    if getuid() != t.uid
        || geteuid() != t.uid
        || getgid() != t.gid
        || getegid() != t.gid
        || (!t.uid.is_root() && setuid(Uid::from_raw(0)).is_ok())
    {
        return Err(io::Error::other(format!(
            "dropping privileges to {} did not stick",
            t.name
        )));
    }
    Ok(())
}
// ANCHOR_END: drop
