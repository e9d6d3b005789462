//! Mapping a request path to a file under the document root, safely.
//!
//! This is where static-file servers get broken into, so every step is
//! explicit:
//!
//! 1. The path is percent-decoded **once**. `%252e%252e` stays the literal
//!    name `%2e%2e`, never `..`.
//! 2. An encoded slash (`%2F`) or NUL (`%00`) is refused before decoding: a
//!    slash inside a segment and a NUL never reach the filesystem.
//! 3. Dot-segments are resolved on the decoded segments; `..` above the root
//!    is refused (400), not clamped.
//! 4. The joined path is canonicalized (symlinks followed) and must still be
//!    inside the canonical root: a symlink that leaves the root is served as
//!    if it did not exist (404), and says nothing about what is outside.
//!
//! What remains is the race between this check and `open` (a symlink swapped
//! in between). The course discusses it; `openat2(RESOLVE_BENEATH)` closes
//! it on Linux 5.6+.
//!
//! These steps run for every path the per-thread [`cache`](super::cache)
//! does not know yet. A remembered outcome is reused for at most a second
//! before one `stat` checks that the path still names the same file; a path
//! is never answered from the cache unless these steps accepted it.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a path cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Malformed or hostile: not absolute, encoded slash or NUL, `..` above
    /// the root → 400.
    BadRequest,
    /// Nothing there, or it resolves outside the root → 404.
    NotFound,
    /// There, but the server may not read it → 403.
    Forbidden,
}

impl PathError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            PathError::BadRequest => 400,
            PathError::NotFound => 404,
            PathError::Forbidden => 403,
        }
    }
}

// ANCHOR: normalize
/// Decodes and normalizes a raw request path into the relative path it
/// names under the root (no filesystem access).
pub fn normalize(raw: &str) -> Result<PathBuf, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::BadRequest);
    }
    let lower_has = |needle: &[u8]| {
        raw.as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1..].eq_ignore_ascii_case(needle))
    };
    if lower_has(b"2f") || lower_has(b"00") || lower_has(b"5c") {
        return Err(PathError::BadRequest);
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    if decoded.contains(&0) {
        return Err(PathError::BadRequest);
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::BadRequest);
                }
            }
            s => segments.push(s),
        }
    }
    let mut rel = PathBuf::new();
    for s in segments {
        rel.push(OsStr::from_bytes(s));
    }
    Ok(rel)
    // ANCHOR_END: normalize
}

/// Whether a raw request path names a directory: its last segment is empty
/// (a trailing slash), `.` or `..` (after percent-decoding), so that after
/// dot-segment removal it ends in a slash. Such a path never names a file:
/// `/page.html/` is a 404, as in nginx and Apache (serving the file there
/// would break every relative link on the page).
pub fn names_directory(raw: &str) -> bool {
    let last = raw.rsplit('/').next().unwrap_or(raw);
    let last: Vec<u8> = percent_encoding::percent_decode_str(last).collect();
    matches!(&last[..], b"" | b"." | b"..")
}

/// Resolves a raw request path under `root` (which must be canonical) to the
/// canonical path of an existing file or directory inside it.
pub fn resolve(root: &Path, raw: &str) -> Result<PathBuf, PathError> {
    let rel = normalize(raw)?;
    contain(root, &root.join(rel))
}

// ANCHOR: contain
/// Canonicalizes `path` and checks that it is inside `root`.
pub fn contain(root: &Path, path: &Path) -> Result<PathBuf, PathError> {
    let real = path.canonicalize().map_err(|e| io_to_path_error(&e))?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        log::warn!("refused {}: resolves outside the root", path.display());
        Err(PathError::NotFound)
        // ANCHOR_END: contain
    }
}

/// Maps an I/O error from the filesystem to a response class.
pub fn io_to_path_error(e: &io::Error) -> PathError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => PathError::Forbidden,
        _ => PathError::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let ok = |raw: &str, expect: &str| {
            assert_eq!(normalize(raw), Ok(PathBuf::from(expect)), "{raw}")
        };
        ok("/", "");
        ok("/a/b.html", "a/b.html");
        ok("/a//b/./c", "a/b/c");
        ok("/a/b/../c", "a/c");
        ok("/a%20b", "a b");
        ok("/%252e%252e/x", "%2e%2e/x");
        ok("/caf%C3%A9", "café");
        let bad = |raw: &str| assert_eq!(normalize(raw), Err(PathError::BadRequest), "{raw}");
        bad("");
        bad("a");
        bad("/..");
        bad("/../etc/passwd");
        bad("/a/../../etc/passwd");
        bad("/%2e%2e/etc/passwd");
        bad("/..%2fetc%2fpasswd");
        bad("/a%2Fb");
        bad("/a%00.html");
        bad("/..%5c..%5cwindows");
    }

    #[test]
    fn paths_that_name_directories() {
        for raw in [
            "/",
            "/a/",
            "/a/.",
            "/a/..",
            "/a/%2e",
            "/a/%2E%2e",
            "/a.html/",
        ] {
            assert!(names_directory(raw), "{raw}");
        }
        for raw in ["/a", "/a.html", "/a/.b", "/a/..b", "/a/%2e%2e%2e"] {
            assert!(!names_directory(raw), "{raw}");
        }
    }

    #[test]
    fn dot_dot_that_decodes_to_a_leading_parent_is_refused() {
        // `%2e%2e/x` at the start decodes to `../x`, which leaves the root.
        assert_eq!(normalize("/%2e%2e/x"), Err(PathError::BadRequest));
    }

    #[test]
    fn symlinks_out_of_the_root_are_not_served() {
        let base = std::env::temp_dir().join(format!("pathtest-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(base.join("secret.txt"), "secret").unwrap();
        std::fs::write(root.join("sub/ok.txt"), "ok").unwrap();
        let _ = std::os::unix::fs::symlink(base.join("secret.txt"), root.join("leak.txt"));
        let _ = std::os::unix::fs::symlink(root.join("sub/ok.txt"), root.join("inside.txt"));
        let root = root.canonicalize().unwrap();
        assert_eq!(resolve(&root, "/leak.txt"), Err(PathError::NotFound));
        assert_eq!(
            resolve(&root, "/inside.txt").unwrap(),
            root.join("sub/ok.txt")
        );
        assert_eq!(resolve(&root, "/missing"), Err(PathError::NotFound));
        assert_eq!(resolve(&root, "/sub/").unwrap(), root.join("sub"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    proptest::proptest! {
        /// Whatever the request path, the normalized path never climbs out.
        #[test]
        fn normalized_paths_stay_below(raw in "/[a-z./%0-9A-F]{0,40}") {
            if let Ok(rel) = normalize(&raw) {
                proptest::prop_assert!(rel.components().all(|c| matches!(c, std::path::Component::Normal(_))), "{raw} -> {rel:?}");
            }
        }

        /// Any bytes at all (as a lossy string) are handled without panic.
        #[test]
        fn any_input_is_handled(raw in ".{0,60}") {
            let _ = normalize(&raw);
        }
    }
}
