//! The `dtk` command line.
fn main() {}
