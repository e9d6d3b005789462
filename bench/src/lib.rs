//! `bench`: measuring the five servers.
//!
//! The product's main job is the comparison: one command builds every stage
//! that exists, starts each one (and nginx, when installed) on the bundled
//! site, drives it with the same load, reads what it cost the server from
//! `/proc`, and writes a table, `results.json`, SVG charts and a Markdown
//! summary. `cargo bench -p bench` runs the criterion micro-benchmarks of
//! the sans-IO core instead.
//!
//! # Layout
//! - [`loadgen`]: the load generator: closed loop, open loop (no
//!   coordinated omission), connection per request, pipelining, idle
//!   connections held open; [`loadgen::reader`] splits a byte stream into
//!   responses.
//! - [`latency`]: HdrHistogram recording and the percentile summary.
//! - [`stats`]: medians, spreads, paired ratios, fairness.
//! - [`procfs`]: CPU time, RSS/PSS and open fds of a process tree.
//! - [`targets`]: finding and building the stages, starting and stopping
//!   servers (stages, nginx, `--peer` commands).
//! - [`lineup`]: which servers a run compares: the table of the flags the
//!   bench gives each stage (and stage 5's variants) and of the nginx
//!   configurations, and each server's description, read from its
//!   binary's `--help`.
//! - [`scenarios`]: the nine scenarios, their points, and what one run
//!   measures; [`rounds`]: running them in interleaved rounds.
//! - [`report`]: the results model, the terminal table, `results.json`,
//!   the Markdown summary; [`charts`]: the SVG figures.
//! - [`wrk`]: the wrk agreement check (`--wrk-check`).
//! - [`machine`]: what the machine is, and CPU pinning.
//! - [`check`]: `bench check --stage N -- COMMAND`, the stage checker that
//!   grades anyone's server with the checks of `common::testkit`.
//! - [`cluster`]: `--scenario cluster`, the stages as a cluster behind
//!   HAProxy on hosts made of network namespaces ([`cluster::netns`]),
//!   with HAProxy's configuration and runtime API ([`cluster::haproxy`]).
//! - [`floor`]: the `floor` binary's loop, the smallest responder this
//!   machine can run: the report's ceiling, not a server.
//! - [`load_step`]: `bench load-step`, stage 5's self-sizing pool under a
//!   load step, with the worker count over time as a chart.
//! - [`proxy`]: `bench proxy`, stage 4's reverse proxy against nginx's
//!   `proxy_pass` in front of the same upstream.
//!
//! # Interface
//!
//! Scripts drive the `bench` binary, so these are a public interface: the
//! flags `--quick`, `--scenario NAME`, `--stage NAME`, `--out DIR` and
//! `--no-build`, and the layout of the tables in `summary.md` (the
//! headline table under `## Summary`, one table per scenario under a
//! heading that ends in its `--scenario` name, their columns and cell
//! formats), as [`report::headline_table`] and [`report::scenario_table`]
//! write them. The benchmarks chapter of the course spells them out.
//! Changing any of them goes through a deprecation: the old flag or column
//! keeps working next to its replacement for at least one release, with a
//! warning on stderr, and the chapter announces the change first.
//! `tests/smoke.rs` runs the binary with these flags and checks the tables.
//!
//! The load generator is good enough to measure these servers on one
//! machine (it keeps up with wrk, see the benchmarks chapter), not a
//! general-purpose tool: HTTP/1.1 over plain TCP, `Content-Length` bodies.

pub mod charts;
pub mod check;
pub mod cluster;
pub mod floor;
pub mod latency;
pub mod lineup;
pub mod load_step;
pub mod loadgen;
pub mod machine;
pub mod procfs;
pub mod proxy;
pub mod report;
pub mod rounds;
pub mod scenarios;
pub mod slow;
pub mod stats;
pub mod targets;
pub mod tls;
pub mod wrk;
