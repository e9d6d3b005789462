//! The book's break-it labs that change code ship the change as a patch,
//! `docs/labs/*.patch`, and this test proves each one still does what its
//! chapter says it does.
//!
//! A lab patch begins with a header (text before the diff, which
//! `git apply` ignores):
//!
//! ```text
//! Lab: docs/src/stage4-epoll.md, Break it 1 (retry accept on EMFILE)
//! Run: cargo test -p stage4-epoll --test abuse -- descriptor_exhaustion
//! Fails with: stage 4 used
//! ```
//!
//! The workspace is copied once to a scratch folder (without `target` and
//! `.git`); then, for each patch in turn, the patch is applied with
//! `git apply`, the `Run:` command is run there (with a target folder that
//! every lab shares) and must fail with the `Fails with:` text in its
//! output, and the patch is taken back out with `git apply -R`. Each
//! patch's chapter must name it. The same commands pass on the code as it
//! is: they are tests of the normal suite.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::testkit::files::TempDir;
use common::testkit::require_tool;

/// How long one lab's command may take, its build included.
const LAB_TIMEOUT: Duration = Duration::from_secs(600);

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// One lab: its patch, chapter, command and expected failure.
struct Lab {
    patch: PathBuf,
    chapter: String,
    run: Vec<String>,
    fails_with: String,
}

fn field<'t>(header: &'t str, name: &str, patch: &Path) -> &'t str {
    header
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{}: no `{name}` line in its header", patch.display()))
}

fn labs(root: &Path) -> Vec<Lab> {
    let mut patches: Vec<PathBuf> = std::fs::read_dir(root.join("docs/labs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    patches.sort();
    patches
        .into_iter()
        .map(|patch| {
            let text = std::fs::read_to_string(&patch).unwrap();
            let header = text.split("\ndiff --git ").next().unwrap_or("");
            let chapter = field(header, "Lab:", &patch)
                .split(',')
                .next()
                .unwrap()
                .to_string();
            let run: Vec<String> = field(header, "Run:", &patch)
                .split_whitespace()
                .map(String::from)
                .collect();
            assert_eq!(
                run.first().map(String::as_str),
                Some("cargo"),
                "{}: `Run:` is a cargo command",
                patch.display()
            );
            let fails_with = field(header, "Fails with:", &patch).to_string();
            Lab {
                patch,
                chapter,
                run,
                fails_with,
            }
        })
        .collect()
}

/// Copies the checkout without its build output and its history.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        let skip = ["target", ".git", "book", "bench-report"].map(std::ffi::OsString::from);
        if skip.contains(&name) {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&path, &to.join(&name));
        } else if kind.is_file() {
            std::fs::copy(&path, to.join(&name)).unwrap();
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&path).unwrap(), to.join(&name)).unwrap();
        }
    }
}

fn git_apply(dir: &Path, patch: &Path, reverse: bool) {
    let mut cmd = Command::new("git");
    cmd.arg("apply");
    if reverse {
        cmd.arg("-R");
    }
    let out = cmd.arg(patch).current_dir(dir).output().expect("git runs");
    assert!(
        out.status.success(),
        "git apply{} {} failed (does the patch still fit the code?):\n{}",
        if reverse { " -R" } else { "" },
        patch.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the lab's command in `dir`; its exit status and its output (both
/// streams), or `None` if it ran past [`LAB_TIMEOUT`].
fn run_lab(dir: &Path, target: &Path, run: &[String]) -> Option<(bool, String)> {
    let log = dir.join(".lab-output");
    let file = std::fs::File::create(&log).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(&run[1..])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("cargo runs");
    let deadline = Instant::now() + LAB_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    status.map(|s| (s.success(), output))
}

#[test]
fn every_lab_patch_shows_its_symptom() {
    if !require_tool(&["git", "--version"], "git", "applying the labs' patches") {
        return;
    }
    let root = checkout();
    let labs = labs(&root);
    assert!(!labs.is_empty(), "no docs/labs/*.patch");
    for lab in &labs {
        let name = format!(
            "docs/labs/{}",
            lab.patch.file_name().unwrap().to_string_lossy()
        );
        let chapter = std::fs::read_to_string(root.join(&lab.chapter))
            .unwrap_or_else(|e| panic!("{name}: its chapter {}: {e}", lab.chapter));
        assert!(
            chapter.contains(&name),
            "{} does not name its lab patch {name}",
            lab.chapter
        );
    }
    let scratch = TempDir::new("labs");
    let work = scratch.join("workspace");
    copy_tree(&root, &work);
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("labs");
    for lab in &labs {
        git_apply(&work, &lab.patch, false);
        let command = lab.run.join(" ");
        let (passed, output) = run_lab(&work, &target, &lab.run).unwrap_or_else(|| {
            panic!(
                "{}: `{command}` ran past {LAB_TIMEOUT:?}",
                lab.patch.display()
            )
        });
        let tail: String = {
            let lines: Vec<&str> = output.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        assert!(
            !passed,
            "{}: with the patch applied, `{command}` should fail, and it passed:\n{tail}",
            lab.patch.display()
        );
        assert!(
            output.contains(&lab.fails_with),
            "{}: `{command}` failed, but without {:?}:\n{tail}",
            lab.patch.display(),
            lab.fails_with
        );
        git_apply(&work, &lab.patch, true);
    }
}
