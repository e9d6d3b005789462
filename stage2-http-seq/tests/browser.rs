//! A real browser (headless Chromium, when installed) loads the bundled
//! sample site from this stage; screenshots land in the target folder.

/// Every resource of the sample site arrives (200, or 206 for the video's
/// range requests), the page's script runs, and the console stays clean.
#[test]
fn chromium_loads_the_sample_site() {
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    common::testkit::browser::load_sample_site(
        env!("CARGO_BIN_EXE_stage2-http-seq"),
        &[],
        &artifacts,
    );
}

/// A page loaded twice in one browser profile: without caching headers the
/// second load revalidates every resource (304s); with `--expires 600` it
/// sends no request at all. The stage 2 chapter quotes this run.
#[test]
fn second_load_is_served_from_the_browser_cache() {
    let runs = common::testkit::browser::second_load_from_cache(
        env!("CARGO_BIN_EXE_stage2-http-seq"),
        &[],
    );
    if let Some(runs) = runs {
        for run in runs {
            eprintln!("{run:#?}");
        }
    }
}
