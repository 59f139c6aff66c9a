//! The integration tests of dtk-workflow: one binary.

mod planner;
mod support;
