//! dtk-target-ssh's integration tests: the OpenSSH transport against private sshds.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

// The private sshd fixture, shared by every crate whose tests need one.
use dtk_tests::sshd;

mod transport;
