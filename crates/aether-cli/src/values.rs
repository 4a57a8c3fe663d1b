//! The ranges and parsers of the options only the command line has (folds, seeds,
//! simulator sizes, stream positions, durations, pattern positions, the cluster's
//! partitions), beside the training ranges and the parsers of
//! [`aether_pipeline::values`] (re-exported here, so every verb names them `values::…`).
//!
//! A value outside its documented range is refused while the arguments are parsed,
//! before any work, with a one-line message naming the option and its range (exit code
//! 1; crates/aether-cli/README.md lists every range).

pub use aether_pipeline::values::*;

/// Largest `--kfold`.
pub const MAX_FOLDS: usize = 1_000;
/// Largest `gate --seeds`.
pub const MAX_SEEDS: usize = 100;
/// Largest `gate --repeats`.
pub const MAX_REPEATS: usize = 100_000;
/// Largest recordings per class (`simulate --recordings`, `demo --recordings`, `--held-out`).
pub const MAX_RECORDINGS: usize = 20_000;
/// Largest `--bands` (a node frame has at most 512 subcarriers).
pub const MAX_BANDS: usize = 512;
/// Largest `--motion-lags` (lags 1, 2, 4, … 2^11 frames): the extractor's limit.
pub const MAX_MOTION_LAGS: usize = aether_data::features::MAX_MOTION_LAGS;
/// Largest stream horizon or KV capacity (`--horizon`, `--capacity`, `--recent`).
pub const MAX_POSITIONS: usize = 1 << 20;
/// Longest duration in seconds (`--stale`, `--expire`, `replay --duration`): a year.
pub const MAX_SECONDS: f64 = 31_536_000.0;
/// Largest sparse-pattern position (`convert --window`, `--block-size`, `--globals`).
pub const MAX_PATTERN: usize = 1 << 20;

/// Largest partition count of a cluster (`serve --partitions`); indices are below it.
pub const MAX_PARTITIONS: usize = aether_serve::cluster::MAX_PARTITIONS as usize;

/// `serve --partitions`: a gateway's partition count `P`, or a worker's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitions {
    /// A single number: a gateway's count, or a worker's one partition.
    One(usize),
    /// `A-B` ranges and lists (a worker's partitions), sorted, without repeats.
    List(Vec<u32>),
}

/// Parses `--partitions`: a whole number `0..=MAX_PARTITIONS`, or a list of indices
/// below [`MAX_PARTITIONS`] (`0-7`, `0,2,4-6`).
pub fn partitions(s: &str) -> Result<Partitions, String> {
    let t = s.trim();
    let msg = || {
        format!(
            "must be a whole number from 0 to {MAX_PARTITIONS}, or partitions A-B / A,B,C below {MAX_PARTITIONS}"
        )
    };
    if t.contains(['-', ',']) && !t.starts_with('-') {
        return aether_serve::cluster::parse_partition_list(t)
            .map(Partitions::List)
            .map_err(|_| msg());
    }
    count(0, MAX_PARTITIONS)(t)
        .map(Partitions::One)
        .map_err(|_| msg())
}

/// Parses `--partition-of I/N`: worker `I` of `N`, `0 ≤ I < N ≤ MAX_PARTITIONS`.
pub fn partition_of(s: &str) -> Result<(u32, u32), String> {
    let msg = || format!("must be I/N with whole numbers 0 ≤ I < N ≤ {MAX_PARTITIONS}");
    let (i, n) = s.trim().split_once('/').ok_or_else(msg)?;
    let i = count(0, MAX_PARTITIONS - 1)(i).map_err(|_| msg())?;
    let n = count(1, MAX_PARTITIONS)(n).map_err(|_| msg())?;
    if i >= n {
        return Err(msg());
    }
    Ok((i as u32, n as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_take_counts_and_lists() {
        assert_eq!(partitions("8"), Ok(Partitions::One(8)));
        assert_eq!(partitions("0"), Ok(Partitions::One(0)));
        assert_eq!(partitions("0-3"), Ok(Partitions::List(vec![0, 1, 2, 3])));
        assert_eq!(partitions("5,1"), Ok(Partitions::List(vec![1, 5])));
        for bad in ["-1", "1025", "2.5", "x", "", "3-1", "0-1024", "1e3"] {
            assert!(partitions(bad).unwrap_err().starts_with("must be"), "{bad}");
        }
        assert_eq!(partition_of("1/4"), Ok((1, 4)));
        for bad in ["4/4", "1", "-1/2", "1/0", "a/b", "1/1025", "0.5/2"] {
            assert!(partition_of(bad).is_err(), "{bad}");
        }
    }
}
