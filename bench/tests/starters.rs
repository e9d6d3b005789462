//! The starters a learner builds from (`docs/starters/*`) turn the checker
//! green one step at a time, exactly as their chapters say.
//!
//! For each starter, on a scratch copy: the bare starter builds with no
//! warning (and, in Rust, is as rustfmt formats it) and fails its rubric (a starter that passes would be a
//! solution); then each `steps/NN-*.patch` is applied in order with
//! `patch -p1`, the copy rebuilt and the checker run again, and the checks
//! that went from fail (or skip) to pass must be exactly those the patch's
//! `Turns green:` line names, with none going back from pass; after the
//! last step every required check passes. The chapter names every step's
//! patch and every check it turns green, so the book cannot drift from
//! the steps. One shared target folder serves every starter; the runs are
//! serial (`.config/nextest.toml`'s `starters` group).
//!
//! A check whose outcome differs from the patch's list is run once more
//! (same build, whole rubric) before the test fails: the machine is shared
//! and has two cores, and the failure message shows both runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::testkit::fdlock;
use common::testkit::files::TempDir;
use common::testkit::require_tool;

mod check_common;
use check_common::{bench_check, workspace_root};

/// How a starter is built.
#[derive(Clone, Copy, PartialEq)]
enum Build {
    /// `cargo build` (debug) in the shared target folder; the binary is
    /// `<name>-starter`.
    Cargo,
    /// `make`; the binary is `./server`.
    Make,
}

/// Every starter: its folder under `docs/starters`, how it builds, and the
/// chapter whose "Build it yourself" section walks through its steps.
const STARTERS: &[(&str, Build, &str)] = &[
    ("stage1", Build::Cargo, "stage1-echo.md"),
    ("stage2", Build::Cargo, "stage2-http-seq.md"),
    ("c-stage2", Build::Make, "stage2-http-seq.md"),
    ("stage3", Build::Cargo, "stage3-threadpool.md"),
    ("stage4", Build::Cargo, "stage4-epoll.md"),
    ("stage5", Build::Cargo, "stage5-prefork.md"),
];

fn starters_dir() -> PathBuf {
    workspace_root().join("docs/starters")
}

/// One step: its patch and the checks it turns green.
struct Step {
    patch: PathBuf,
    name: String,
    turns_green: BTreeSet<String>,
}

/// The steps of a starter, in order, with their `Turns green:` lists.
fn steps(starter: &Path) -> Vec<Step> {
    let mut patches: Vec<PathBuf> = std::fs::read_dir(starter.join("steps"))
        .expect("the starter has a steps folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    patches.sort();
    assert!(!patches.is_empty(), "{}: no steps", starter.display());
    patches
        .into_iter()
        .map(|patch| {
            let text = std::fs::read_to_string(&patch).unwrap();
            let header = text.split("\n--- ").next().unwrap_or("");
            let green: BTreeSet<String> = header
                .lines()
                .find_map(|l| l.strip_prefix("Turns green:"))
                .unwrap_or_else(|| {
                    panic!("{}: no `Turns green:` line in its header", patch.display())
                })
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            assert!(
                !green.is_empty(),
                "{}: a step must turn a check green",
                patch.display()
            );
            let name = patch.file_name().unwrap().to_string_lossy().into_owned();
            Step {
                patch,
                name,
                turns_green: green,
            }
        })
        .collect()
}

/// The words of a one-line file of the starter's `steps` folder (none if
/// it is absent).
fn words(starter: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(starter.join("steps").join(file))
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Copies the starter, without its build output and its steps.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        let skip = ["target", "steps", "server"].map(std::ffi::OsString::from);
        if skip.contains(&name) || name.to_string_lossy().ends_with(".o") {
            continue;
        }
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the copy in `dir`; returns its server binary.
fn build(dir: &Path, build: Build, name: &str) -> PathBuf {
    match build {
        Build::Cargo => {
            let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("starters");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
            run(
                Command::new(cargo)
                    .args(["build", "--quiet", "--locked", "--manifest-path"])
                    .arg(dir.join("Cargo.toml"))
                    .arg("--target-dir")
                    .arg(&target)
                    // A warning in the starter is a failure; the
                    // dependencies' lints are capped by cargo.
                    .env("CARGO_ENCODED_RUSTFLAGS", "-Dwarnings"),
                &format!("cargo build of the {name} starter"),
            );
            // Each step's solution is what a learner reads as the
            // answer: formatted as rustfmt would.
            run(
                Command::new(std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into()))
                    .args(["fmt", "--check", "--manifest-path"])
                    .arg(dir.join("Cargo.toml")),
                &format!("cargo fmt --check of the {name} starter"),
            );
            target.join("debug").join(format!("{name}-starter"))
        }
        Build::Make => {
            run(
                Command::new("make").arg("-s").arg("-C").arg(dir),
                &format!("make in the {name} starter"),
            );
            dir.join("server")
        }
    }
}

/// What one checker run gave.
struct Graded {
    passed: BTreeSet<String>,
    required_passed: bool,
    report: String,
}

fn grade(starter: &Path, bin: &Path, scratch: &Path, label: &str) -> Graded {
    let json = scratch.join(format!("{label}.json"));
    let mut args: Vec<String> = words(starter, "checker-args");
    let stage1 = args.windows(2).any(|w| w[0] == "--stage" && w[1] == "1");
    args.extend(["--json".into(), json.to_string_lossy().into_owned()]);
    args.extend([
        "--".into(),
        bin.to_string_lossy().into_owned(),
        "--addr".into(),
        "127.0.0.1:{port}".into(),
    ]);
    if !stage1 {
        args.extend(["--root".into(), "{root}".into()]);
    }
    args.extend(words(starter, "server-args"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, report) = bench_check(&refs);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("{label}: no JSON results ({e}); the report:\n{report}"));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let passed = doc["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["outcome"] == "pass")
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    Graded {
        passed,
        required_passed: doc["required_passed"] == true,
        report,
    }
}

/// The step's verdict: `None` when exactly its checks turned green and
/// none went back.
fn mismatch(before: &Graded, after: &Graded, step: &Step) -> Option<String> {
    let green: BTreeSet<String> = after.passed.difference(&before.passed).cloned().collect();
    let lost: BTreeSet<String> = before.passed.difference(&after.passed).cloned().collect();
    if green == step.turns_green && lost.is_empty() {
        return None;
    }
    Some(format!(
        "{}: turned green {green:?} (the patch says {:?}); no longer passing: {lost:?}",
        step.name, step.turns_green
    ))
}

/// Replays one starter's steps, as the module docs say.
fn replay(name: &str) {
    let &(_, how, chapter) = STARTERS
        .iter()
        .find(|s| s.0 == name)
        .expect("a listed starter");
    let needed: &[(&[&str], &str, &str)] = match how {
        Build::Cargo => &[(&["patch", "--version"], "patch", "applying the steps")],
        Build::Make => &[
            (&["patch", "--version"], "patch", "applying the steps"),
            (&["cc", "--version"], "build-essential", "the C starter"),
            (&["make", "--version"], "make", "the C starter"),
        ],
    };
    for (probe, package, what) in needed {
        if !require_tool(probe, package, what) {
            return;
        }
    }
    let starter = starters_dir().join(name);
    let steps = steps(&starter);
    check_chapter(name, chapter, &steps);
    let heavy = !words(&starter, "checker-args")
        .windows(2)
        .any(|w| w[0] == "--stage" && (w[1] == "1" || w[1] == "2"));
    let _lock = heavy.then(fdlock::many_connections);

    let scratch = TempDir::new(&format!("starter-{name}"));
    let work = scratch.join("copy");
    copy_tree(&starter, &work);
    let bin = build(&work, how, name);
    let mut before = grade(&starter, &bin, scratch.as_ref(), "00-bare");
    assert!(
        !before.required_passed,
        "the bare {name} starter passes its rubric: it is a solution, not a starter\n{}",
        before.report
    );
    for step in &steps {
        let patch = std::fs::File::open(&step.patch).unwrap();
        run(
            Command::new("patch")
                .args(["-p1", "--batch", "--forward", "--quiet"])
                .current_dir(&work)
                .stdin(patch),
            &format!("patch -p1 < {}", step.patch.display()),
        );
        let bin = build(&work, how, name);
        let mut after = grade(&starter, &bin, scratch.as_ref(), &step.name);
        if let Some(first) = mismatch(&before, &after, step) {
            // Once more, the same build: a shared two-core machine.
            let again = grade(
                &starter,
                &bin,
                scratch.as_ref(),
                &format!("{}-again", step.name),
            );
            if let Some(second) = mismatch(&before, &again, step) {
                panic!(
                    "{name} starter, {first}\nrun again: {second}\n\nthe checker's report \
                     before the step:\n{}\nafter it:\n{}",
                    before.report, again.report
                );
            }
            after = again;
        }
        before = after;
    }
    assert!(
        before.required_passed,
        "after its last step the {name} starter still fails a required check:\n{}",
        before.report
    );
}

/// The chapter's "Build it yourself" names every step's patch and every
/// check the step turns green.
fn check_chapter(name: &str, chapter: &str, steps: &[Step]) {
    let text = std::fs::read_to_string(workspace_root().join("docs/src").join(chapter)).unwrap();
    let section = text
        .split("\n## Build it yourself")
        .nth(1)
        .unwrap_or_else(|| panic!("docs/src/{chapter} has no `## Build it yourself` section"));
    let section = section.split("\n## ").next().unwrap_or(section);
    for step in steps {
        let path = format!("docs/starters/{name}/steps/{}", step.name);
        assert!(
            section.contains(&path),
            "docs/src/{chapter}'s `Build it yourself` does not name {path}"
        );
        for check in &step.turns_green {
            assert!(
                section.contains(check.as_str()),
                "docs/src/{chapter}'s `Build it yourself` does not say that {} turns \
                 {check} green",
                step.name
            );
        }
    }
}

#[test]
fn stage1_steps_turn_the_checks_green() {
    replay("stage1");
}

#[test]
fn stage2_steps_turn_the_checks_green() {
    replay("stage2");
}

#[test]
fn c_stage2_steps_turn_the_checks_green() {
    replay("c-stage2");
}

#[test]
fn stage3_steps_turn_the_checks_green() {
    replay("stage3");
}

#[test]
fn stage4_steps_turn_the_checks_green() {
    replay("stage4");
}

#[test]
fn stage5_steps_turn_the_checks_green() {
    replay("stage5");
}

/// Every folder under `docs/starters` is a starter the tests replay.
#[test]
fn every_starter_is_replayed() {
    for entry in std::fs::read_dir(starters_dir()).unwrap().flatten() {
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            STARTERS.iter().any(|s| s.0 == name),
            "docs/starters/{name} is not in tests/starters.rs's STARTERS"
        );
    }
}

/// Stages 3 to 5 are given the same HTTP answerer; a fix to one copy is
/// made to all.
#[test]
fn stages_3_to_5_share_one_http_answerer() {
    let read = |s: &str| std::fs::read(starters_dir().join(s).join("src/http.rs")).unwrap();
    let three = read("stage3");
    for s in ["stage4", "stage5"] {
        assert!(
            read(s) == three,
            "docs/starters/{s}/src/http.rs differs from stage3's: keep the copies the same"
        );
    }
}
