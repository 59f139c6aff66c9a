//! dtk-target-ssh's integration tests: the OpenSSH transport against private sshds.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

// The fixture that `dtk_target_ssh::testing` exports with the `test-support` feature.
#[path = "../../src/testing.rs"]
#[allow(dead_code)] // Not every helper is used by these tests.
mod sshd;

mod transport;
