//! The integration tests of dtk-workflow: one binary.

mod exec;
mod harness;
mod journal;
mod planner;
mod props;
mod support;
