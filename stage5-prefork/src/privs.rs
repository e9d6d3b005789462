//! Dropping privileges: bind as root, serve as nobody.
//!
//! The master must be root to bind port 80; the workers, which parse what
//! strangers send, should not be. So the master resolves `--user` before it
//! forks (an unknown name stops the start at once), and each worker, right
//! after `fork`, optionally `chroot`s and then gives up root for good:
//! supplementary groups first, then the group, then the user — in that
//! order, because after `setuid` it would no longer be allowed to change
//! the others. Then it checks that it cannot get root back.

use std::io;
use std::path::Path;

use nix::unistd::{Gid, Uid, User, chdir, chroot, geteuid, getuid, setgid, setgroups, setuid};

/// Who the workers become.
#[derive(Debug, Clone)]
pub struct Target {
    /// The user's name, for messages.
    pub name: String,
    /// Its user id.
    pub uid: Uid,
    /// Its primary group id.
    pub gid: Gid,
}

/// Resolves `--user` in the master. `Ok(None)`: no drop (with a warning if
/// running as root).
pub fn resolve(user: Option<&str>) -> io::Result<Option<Target>> {
    let root = geteuid().is_root();
    let Some(name) = user else {
        if root {
            log::warn!("running as root without --user: the workers will run as root too");
        }
        return Ok(None);
    };
    if !root {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("--user {name} needs the master to start as root"),
        ));
    }
    match User::from_name(name) {
        Ok(Some(u)) => Ok(Some(Target {
            name: name.to_string(),
            uid: u.uid,
            gid: u.gid,
        })),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("unknown user {name}"),
        )),
        Err(e) => Err(io::Error::other(format!("looking up user {name}: {e}"))),
    }
}

// ANCHOR: drop
/// In a worker: chroot (if asked), then drop to `target` for good.
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
