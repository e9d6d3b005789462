//! The book's transcripts, re-run: every ```` ```console ```` block in
//! `docs/src` is replayed by `transcripts/runner.rs` and its output compared
//! with what the chapter shows, so a chapter cannot drift from the code.
//! One test per chapter (`cargo test -p common --test transcripts stage2`);
//! a failure names the chapter, the line and the command, with a diff.
//!
//! The conventions a chapter follows are in the runner's module docs: `[..]`
//! and `...` for what varies, servers left running "in a terminal of their
//! own", `<!-- transcript: not run: REASON -->` for what cannot run here.

#[path = "transcripts/runner.rs"]
mod runner;

use std::path::{Path, PathBuf};

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn check(chapter: &str) {
    let root = checkout();
    let report = runner::run_chapter(&root, &root.join("docs/src").join(chapter));
    for line in &report.not_run {
        eprintln!("not run here: {line}");
    }
    eprintln!("{chapter}: {} commands checked", report.checked);
    assert!(
        report.failures.is_empty(),
        "{} of {} transcript commands in docs/src/{chapter} differ from the book:\n\n{}",
        report.failures.len(),
        report.checked,
        report.failures.join("\n")
    );
}

/// One test per chapter, in a module `chapter` (so that
/// `cargo test chapter::` runs them all, and `--skip chapter::` none).
macro_rules! chapters {
    ($($name:ident => $file:literal,)*) => {
        mod chapter {
            $(
                #[test]
                fn $name() {
                    super::check($file);
                }
            )*
        }

        /// Every chapter with a console block has its test above.
        #[test]
        fn every_chapter_with_transcripts_is_listed() {
            let listed = [$($file),*];
            let dir = checkout().join("docs/src");
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".md") {
                    continue;
                }
                let text = std::fs::read_to_string(entry.path()).unwrap();
                if text.contains("```console") {
                    assert!(
                        listed.contains(&name.as_str()),
                        "docs/src/{name} has transcripts: list it in tests/transcripts.rs"
                    );
                }
            }
        }
    };
}

chapters! {
    stage1_echo => "stage1-echo.md",
    stage2_http_seq => "stage2-http-seq.md",
    stage3_threadpool => "stage3-threadpool.md",
    stage4_epoll => "stage4-epoll.md",
    stage5_prefork => "stage5-prefork.md",
    checking => "checking.md",
    hardening => "hardening.md",
    debugging => "debugging.md",
    fuzzing => "fuzzing.md",
    tls => "tls.md",
    troubleshooting => "troubleshooting.md",
}

/// The exceptions are visible: every block the book marks as not run here
/// says why, and the list is printed (`--nocapture`).
#[test]
fn blocks_not_run_are_listed_with_a_reason() {
    let dir = checkout().join("docs/src");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let blocks = runner::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for block in blocks {
            if let Some(reason) = block.not_run {
                assert!(
                    !reason.is_empty(),
                    "{}:{}: no reason",
                    path.display(),
                    block.line
                );
                eprintln!("not run: {}:{}: {reason}", path.display(), block.line);
                count += 1;
            }
        }
    }
    eprintln!("{count} block(s) not run here");
}

/// The runner can fail: a page whose shown output differs from what its
/// command prints by one character fails, naming the file, the line and the
/// command; the same page with the right output passes.
#[test]
fn one_changed_character_fails_naming_the_line() {
    let dir = std::env::temp_dir().join(format!("transcript-self-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.md");
    let write = |shown: &str| {
        std::fs::write(
            &page,
            format!("# A page\n\n```console\n$ printf 'Date: %s\\nhello\\n' \"$(date)\"\nDate: [..]\n{shown}\n```\n"),
        )
        .unwrap();
    };
    write("hello");
    let report = runner::run_chapter(&dir, &page);
    assert_eq!(
        (report.checked, report.failures.len()),
        (1, 0),
        "{:?}",
        report.failures
    );
    write("hellp");
    let report = runner::run_chapter(&dir, &page);
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0].starts_with("page.md:4: `printf"),
        "{}",
        report.failures[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
