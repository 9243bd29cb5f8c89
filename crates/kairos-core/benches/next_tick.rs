//! Micro-benchmarks of the trigger timeline. PLACEHOLDER.
fn main() {}
