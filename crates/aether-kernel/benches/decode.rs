//! Criterion benchmarks (under construction).
fn main() {}
