//! Command transports: how an action's shell lines reach the node that runs them.

pub mod ssh;
