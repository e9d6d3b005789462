//! The sans-IO HTTP/1.1 core: parse, decide, serialize. No sockets here.
//!
//! # Layout
//! - [`parse`]: `httparse` plus limits and RFC 9112 framing rules.
//! - [`chunked`]: finding the end of a chunked request body, incrementally.
//! - [`conn`]: the per-connection state machine every stage drives.
//! - [`site`]: the [`Site`] and [`respond`], the request handler.
//! - [`files`]: static files the plain way, one module per step: resolve,
//!   precompressed siblings, conditionals, ranges; and directory listings.
//! - [`path`]: request path → file under the root, safely.
//! - [`cache`]: the per-thread open-file cache, a layer over [`files`]
//!   (same answers, fewer system calls; `--open-file-cache` switches it).
//! - [`api`]: the `/api/add` route.
//! - [`response`]: writing a response head into a caller-owned buffer.

pub mod api;
pub mod cache;
pub mod chunked;
pub mod conn;
pub mod files;
pub mod parse;
pub mod path;
pub mod ratelimit;
pub mod response;
pub mod site;

pub use conn::{Conn, Step};
pub use site::{FileRegion, Freshness, Reply, Site, StatusPage, StatusSource, respond};

/// The HTTP versions this server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: connections close unless the client asks otherwise.
    Http10,
    /// HTTP/1.1: persistent connections by default.
    Http11,
}

impl Version {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}
