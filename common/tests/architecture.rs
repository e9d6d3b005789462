//! The architecture invariants of `ARCHITECTURE.md` that a test can check,
//! checked: the sans-IO core touches no socket, `common` depends on no
//! stage, and a stage builds only on earlier stages.

use std::path::{Path, PathBuf};

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The code lines of a Rust file: comments and doc comments left out, so
/// that prose about `sendfile` does not count.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// The `.rs` files under `dir`, in its subfolders too (`http/files/`,
/// `http/cache/`).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// `common::http` takes bytes and returns decisions: no socket type, no
/// event loop, no system call on a socket appears in its code. (It does
/// open and read files: serving them is its job.)
#[test]
fn the_http_core_does_no_socket_io() {
    const FORBIDDEN: &[&str] = &[
        "TcpStream",
        "TcpListener",
        "UdpSocket",
        "UnixStream",
        "UnixListener",
        "mio::",
        "nix::sys::socket",
        "nix::poll",
        "libc::",
        "sendfile",
        "set_nonblocking",
    ];
    let dir = checkout().join("common/src/http");
    let mut files = 0;
    let mut found = Vec::new();
    for path in rust_files(&dir) {
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in code_lines(&text) {
            for word in FORBIDDEN {
                if line.contains(word) {
                    found.push(format!("{}:{n}: {word}: {}", path.display(), line.trim()));
                }
            }
        }
    }
    assert!(files >= 16, "only {files} files under {}", dir.display());
    assert!(
        found.is_empty(),
        "socket I/O in the sans-IO core:\n{}",
        found.join("\n")
    );
}

/// The stage crates a package depends on, by number (`stage3-threadpool` → 3).
fn stage_dependencies(manifest: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let mut stages = Vec::new();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(deps) = doc.get(section).and_then(|d| d.as_table()) else {
            continue;
        };
        for name in deps.keys() {
            if let Some(n) = name
                .strip_prefix("stage")
                .and_then(|rest| rest.split('-').next())
                .and_then(|n| n.parse().ok())
            {
                stages.push(n);
            }
        }
    }
    stages
}

/// `common` is below every stage, and stage N builds only on stages before
/// N (stage 3 runs stage 2's connection loop, stage 5's workers run stage
/// 4's event loop), never on a later one.
#[test]
fn stages_build_only_on_earlier_stages() {
    let root = checkout();
    assert_eq!(
        stage_dependencies(&root.join("common/Cargo.toml")),
        Vec::<u32>::new()
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().join("Cargo.toml").is_file() {
            continue;
        }
        let Some(n) = name
            .strip_prefix("stage")
            .and_then(|rest| rest.split('-').next())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        seen += 1;
        for dep in stage_dependencies(&entry.path().join("Cargo.toml")) {
            assert!(
                dep < n,
                "{name} depends on stage {dep}, which is not earlier"
            );
        }
    }
    assert_eq!(seen, 5, "five stage crates");
}
