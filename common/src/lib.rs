//! `common`: everything the five servers share that is *not* their
//! concurrency model.
//!
//! The course's claim is that the difference between two stages *is* the
//! lesson. That only holds if HTTP parsing, file serving, logging and
//! configuration are written once, here, and every stage merely moves bytes
//! between sockets and this crate.
//!
//! # Layout
//! - [`http`]: the sans-IO HTTP/1.1 core — parser, connection state
//!   machine, request handler, static files, response serialization.
//!   It never touches a socket.
//! - [`server`]: the settings and start-up every HTTP stage shares.
//! - [`config`]: command-line flags layered over a TOML file.
//! - [`logging`]: error log (`log` facade) and Combined Log Format access log.
//! - [`signals`]: SIGINT/SIGTERM/SIGUSR1/SIGHUP as flags plus a self-pipe.
//! - [`limits`]: the open-files limit and the listen backlog.
//! - [`stats`]: the counters every stage keeps and the status page.
//! - [`time`]: calendar arithmetic and per-second date caches.
//! - [`tls`]: TLS with rustls (`--tls-cert`, `--tls-key`), one sans-IO
//!   adapter between a socket and the core that every stage drives.
//! - `testkit` (feature `testkit`): start a stage on port 0, and the shared
//!   conformance suite every HTTP stage must pass.
//!
//! This is teaching code that tries hard to be correct, not a hardened
//! production server: TLS is there (rustls) but no HTTP/2, and no request bodies are
//! ever processed.
#![warn(missing_docs)]

pub mod config;
pub mod http;
pub mod limits;
pub mod logging;
pub mod privs;
pub mod redirect;
pub mod sendfile;
pub mod server;
pub mod signals;
pub mod stats;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod time;
pub mod tls;
