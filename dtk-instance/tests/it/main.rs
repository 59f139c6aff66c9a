//! dtk-instance's integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used)]

mod converge;
mod ssh_target;
mod stage;
mod support;
