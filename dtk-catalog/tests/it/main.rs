//! Integration tests of dtk-catalog: real catalogs (bare git repositories) in temporary
//! directories, checked with the ordinary `git` command line.

// Helpers outside `#[test]` functions unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

mod concurrency;
mod publish;
mod read;
mod resolve;
mod support;
