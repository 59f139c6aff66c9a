//! dtk-model's integration tests: the original dtk's files, malformed inputs with their
//! exact messages, and round-trip properties.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod fixtures;

mod expand_props;
mod fuzz;
mod malformed;
mod roundtrip;
