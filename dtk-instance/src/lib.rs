//! dtk-instance: see ARCHITECTURE.md.

pub mod transport;
