//! Temporary folders for tests: a document root, a config file, a log.
//!
//! Every test that needs files on disk takes a [`TempDir`]: a fresh folder
//! of its own (tests of one binary run side by side, so a name is never
//! shared), removed when the test ends, whether it passed or panicked.
//! [`TempDir::site`] is the document root most stage tests serve: a small
//! `index.html` and a large `big.bin` whose bytes follow [`big_byte`], so
//! that a body which arrives reordered, short or with a gap is told apart
//! from the file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The `index.html` of [`TempDir::site`].
pub const INDEX_HTML: &[u8] = b"<!DOCTYPE html>\n<p>hello</p>\n";

/// A size for `big.bin` that no socket buffers hold: 16 MiB is far more
/// than a send buffer plus a small receive window, so a server that sends
/// it must stop and resume.
pub const BIG: usize = 16 << 20;

/// The byte at offset `i` of `big.bin`: a pattern with a period of neither
/// a power of two nor a page, that catches reordering and gaps.
pub fn big_byte(i: usize) -> u8 {
    ((i % 251) ^ (i >> 12)) as u8
}

/// The first `len` bytes of the [`big_byte`] pattern: the content of a
/// `big.bin` of that size.
pub fn big_bytes(len: usize) -> Vec<u8> {
    (0..len).map(big_byte).collect()
}

/// A fresh folder in the temporary directory; removed, with everything in
/// it, on drop.
#[derive(Debug)]
pub struct TempDir {
    /// The folder.
    pub path: PathBuf,
}

impl TempDir {
    /// Creates an empty folder named after `tag`, this process and a
    /// counter, so that no two tests share one.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        // A folder left by a killed run of an earlier process with our pid.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// A document root with [`INDEX_HTML`] as `/index.html` and `big` bytes
    /// of the [`big_byte`] pattern as `/big.bin`.
    pub fn site(tag: &str, big: usize) -> TempDir {
        let dir = TempDir::new(tag);
        dir.write("index.html", INDEX_HTML);
        dir.write("big.bin", big_bytes(big));
        dir
    }

    /// Writes `data` to `rel` inside the folder (creating the folders on
    /// the way) and returns the file's path.
    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&path, data)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// The path of `rel` inside the folder.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// The folder as a command-line argument (`--root`).
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("temporary paths are UTF-8")
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two folders with one tag are two folders; a site holds its two
    /// files; dropping removes everything.
    #[test]
    fn folders_are_fresh_and_removed_on_drop() {
        let a = TempDir::site("testkit-files", 10_000);
        let b = TempDir::new("testkit-files");
        assert_ne!(a.path, b.path);
        assert_eq!(std::fs::read(a.join("index.html")).unwrap(), INDEX_HTML);
        assert_eq!(std::fs::read(a.join("big.bin")).unwrap(), big_bytes(10_000));
        let nested = b.write("x/y/z.txt", "z");
        assert_eq!(std::fs::read_to_string(nested).unwrap(), "z");
        let (pa, pb) = (a.path.clone(), b.path.clone());
        drop((a, b));
        assert!(!pa.exists() && !pb.exists());
    }

    /// The pattern is not periodic at a page or a power of two: a body
    /// shifted by one of those sizes differs from the file.
    #[test]
    fn the_pattern_catches_shifts() {
        let body = big_bytes(1 << 16);
        for shift in [1, 251, 4096, 8192] {
            assert_ne!(&body[shift..], &big_bytes((1 << 16) - shift)[..], "{shift}");
        }
    }
}
