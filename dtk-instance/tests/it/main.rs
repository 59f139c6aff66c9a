//! dtk-instance's integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used)]

mod converge;
mod ssh;
mod ssh_target;
mod sshd;
mod stage;
mod support;
