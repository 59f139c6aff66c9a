//! The `ssh` target provider of dtk (hosts you already have) and the OpenSSH transport that
//! runs actions on remote nodes.
//!
//! - [`provider`]: [`SshProvider`], registered under kind `ssh`, with the bundled `dtk/ssh`
//!   module ([`DTK_SSH_MODULE`]): its `target` assembly lists hosts; services staged on it
//!   place each node on one host.
//! - [`transport`]: [`SshPool`](transport::SshPool), one multiplexed OpenSSH connection per
//!   host; any node whose outputs carry `ssh_host` (an EC2 node, say) runs its actions
//!   through it.
//!
//! This crate depends on `dtk-model` and what it needs; it knows nothing of instances,
//! catalogs or the terminal.

mod content;
mod errors;
pub mod provider;
pub mod transport;

pub use provider::{DTK_SSH_MODULE, KIND, SshProvider};
