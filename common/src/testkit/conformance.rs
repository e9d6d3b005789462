//! The shared conformance suite (filled in with the HTTP core).
