//! dtk-model's integration tests: the original dtk's files, malformed inputs with their
//! exact messages, and round-trip properties.

mod fixtures;

mod malformed;
mod roundtrip;
