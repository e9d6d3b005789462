//! The document root both fuzz targets work over, built once per process.
//!
//! ```text
//! common-fuzz-<pid>/
//!   secret.txt          just outside the root; no response may contain it
//!   root/
//!     index.html  range.txt  style.css  empty.txt
//!     dir/index.html     list/a.txt  list/b.txt   (a directory listing)
//!     gz/page.html  gz/page.html.gz               (a precompressed sibling)
//!     errors/404.html                             (a custom error page)
//!     link-in.txt   -> root/range.txt             (a symlink that stays inside)
//!     link-out.txt  -> secret.txt                 (a symlink that leaves the root)
//!     link-out-dir  -> common-fuzz-<pid>/         (a directory symlink that leaves it)
//! ```

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The secret's content: it must never appear in a response.
pub const SECRET: &[u8] = b"TOP-SECRET-fuzz-7d31";

/// The fixture's paths.
#[derive(Debug)]
pub struct Fixture {
    /// The canonical document root.
    pub root: PathBuf,
    /// The canonical path of the secret file just outside the root.
    pub secret: PathBuf,
}

/// Builds the fixture on first use (in the system temp directory, one per
/// fuzzing process) and returns it. libFuzzer ends the process with
/// `exit`, so the folder is left behind; it is a few hundred bytes.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("common-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        let w = |rel: &str, data: &[u8]| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("fixture paths have a parent"))
                .expect("create fixture dir");
            std::fs::write(p, data).expect("write fixture file");
        };
        std::fs::create_dir_all(&root).expect("create fixture root");
        std::fs::write(base.join("secret.txt"), SECRET).expect("write secret");
        w("index.html", b"<!DOCTYPE html>\n<p>fuzz index</p>\n");
        w("range.txt", b"0123456789abcdefghij");
        w("style.css", b"body { color: #123; }\n");
        w("empty.txt", b"");
        w("dir/index.html", b"<p>dir index</p>\n");
        w("list/a.txt", b"a\n");
        w("list/b.txt", b"b\n");
        w("gz/page.html", b"<p>identity</p>\n");
        w("gz/page.html.gz", b"pretend gzip bytes");
        w("errors/404.html", b"<p>custom 404</p>\n");
        symlink(root.join("range.txt"), root.join("link-in.txt")).expect("symlink in");
        symlink(base.join("secret.txt"), root.join("link-out.txt")).expect("symlink out");
        symlink(&base, root.join("link-out-dir")).expect("dir symlink out");
        Fixture {
            root: canonical(&root),
            secret: canonical(&base.join("secret.txt")),
        }
    })
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().expect("fixture path exists")
}
