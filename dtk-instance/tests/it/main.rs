//! dtk-instance's integration tests: one binary, one module per area.

mod converge;
mod ssh;
mod stage;
mod support;
