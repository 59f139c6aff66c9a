//! dtk-model's integration tests: the corpus of DSL forms, malformed inputs with their
//! exact messages, expansion, and round-trip properties.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod corpus;
mod expand;
mod expand_props;
mod fuzz;
mod malformed;
mod roundtrip;
