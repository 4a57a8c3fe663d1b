//! Head benchmarks for `aether bench` (forward latency, streaming push cost).
