//! The integration tests of dtk-workflow: one binary.

#![allow(clippy::unwrap_used, missing_docs)]

mod exec;
mod harness;
mod journal;
mod planner;
mod props;
mod select;
mod support;
