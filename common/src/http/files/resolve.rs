//! Step 1: which file a request path names, and opening it.
//!
//! The rules that keep a path inside the root live in
//! [`path`]; this module asks the file system what is there once they have
//! accepted the path. `resolve` is the step as the plain path runs it;
//! `under_root` and `resolve_joined` are its two halves, for the open-file
//! cache, which takes a `stat` of the joined path between them (see
//! [`cache`](super::super::cache)).

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::super::path::{self, PathError};
use super::super::site::{INDEX_FILE, Site};

/// What a request path names under the root.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// A regular file inside the root.
    File(Found),
    /// A directory, asked for with its trailing slash: its index file is
    /// served ([`index`]), or else it is listed.
    Directory(PathBuf),
    /// A directory asked for without its trailing slash: `301` to the
    /// slash, so that relative links in its page resolve against it.
    Redirect,
    /// `400` (refused before the file system is asked), `403` or `404`.
    Refused(PathError),
}

/// A regular file inside the root, as `stat` found it.
#[derive(Debug)]
pub(crate) struct Found {
    /// Its canonical path (symlinks resolved, inside the root).
    pub(crate) path: PathBuf,
    /// What `stat` said about it while resolving.
    pub(crate) meta: Metadata,
}

/// Resolves a raw request path: decode and normalize it, join it to the
/// root, canonicalize and check containment, then `stat` what is there.
pub(crate) fn resolve(site: &Site, raw: &str) -> Resolved {
    match under_root(site, raw) {
        Ok(joined) => resolve_joined(site, raw, &joined),
        Err(e) => Resolved::Refused(e),
    }
}

/// The request path decoded, normalized and joined to the root, without
/// touching the file system (symlinks not followed yet).
pub(crate) fn under_root(site: &Site, raw: &str) -> Result<PathBuf, PathError> {
    Ok(site.root.join(path::normalize(raw)?))
}

/// Resolves the path [`under_root`] made of `raw`.
pub(crate) fn resolve_joined(site: &Site, raw: &str, joined: &Path) -> Resolved {
    let canonical = match path::contain(&site.root, joined) {
        Ok(p) => p,
        Err(e) => return Resolved::Refused(e),
    };
    let meta = match std::fs::metadata(&canonical) {
        Ok(m) => m,
        Err(e) => return Resolved::Refused(path::io_to_path_error(&e)),
    };
    if meta.is_dir() {
        if raw.ends_with('/') {
            return Resolved::Directory(canonical);
        }
        return Resolved::Redirect;
    }
    if !meta.is_file() || path::names_directory(raw) {
        // FIFOs, sockets and devices are never opened: a FIFO would block.
        // A file is not a directory: `/page.html/` is not found.
        return Resolved::Refused(PathError::NotFound);
    }
    Resolved::File(Found {
        path: canonical,
        meta,
    })
}

/// The index file of the directory at canonical `dir`, if it has one that
/// is a regular file inside the root.
pub(crate) fn index(site: &Site, dir: &Path) -> Option<Found> {
    let path = path::contain(&site.root, &dir.join(INDEX_FILE)).ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    meta.is_file().then_some(Found { path, meta })
}

// ANCHOR: mime_type
/// The MIME type of a file, from its name (the original file's name also
/// for a `.gz` sibling).
pub(crate) fn mime_type(path: &Path) -> &'static str {
    mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream")
}
// ANCHOR_END: mime_type

/// Opens a file for reading and checks that it still is a regular file.
/// `O_NONBLOCK` makes opening a FIFO swapped in since the path was resolved
/// return at once instead of blocking the thread (it changes nothing for a
/// regular file).
pub(crate) fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    Ok((file, meta))
}
