//! Loading a head from a `.rvne` blob (v1 and v2) through `aether-rvne`.
