//! Benchmarks of the web view.
fn main() {}
