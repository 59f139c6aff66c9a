//! The integration tests of dtk-workflow: one binary.

mod exec;
mod planner;
mod support;
