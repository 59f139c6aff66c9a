//! The integration tests of dtk-workflow: one binary.

mod exec;
mod harness;
mod planner;
mod support;
