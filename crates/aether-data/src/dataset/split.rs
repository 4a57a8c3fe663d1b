//! Splits by recording: train / validation / test, k-fold, and groups (domains) taken
//! from the recording names.

use std::collections::BTreeMap;

use super::{DataError, Dataset};
use crate::rng::SplitMix64;

impl Dataset {
    /// Train / validation / test split by recording, stratified by class and
    /// seeded. Per class of `n` recordings (shuffled): `n_test = round(n·test)`,
    /// `n_val = round(n·val)`; at least one test recording when `test > 0` and
    /// `n ≥ 2`, at least one validation recording when `val > 0` and `n ≥ 3`;
    /// training always keeps at least one (validation gives way first).
    pub fn split(&self, val: f64, test: f64, seed: u64) -> Result<Split, DataError> {
        let ok = |f: f64| f.is_finite() && (0.0..1.0).contains(&f);
        if !ok(val) || !ok(test) || val + test >= 1.0 {
            return Err(DataError::BadFractions { val, test });
        }
        let mut s = Split::default();
        for (c, mut members) in self.by_class().into_iter().enumerate() {
            SplitMix64::derive(seed, &[0x5B11, c as u64]).shuffle(&mut members);
            let n = members.len();
            let mut n_test = (n as f64 * test).round() as usize;
            let mut n_val = (n as f64 * val).round() as usize;
            if test > 0.0 && n >= 2 {
                n_test = n_test.max(1);
            }
            if val > 0.0 && n >= 3 {
                n_val = n_val.max(1);
            }
            while n_test + n_val >= n && n_val > 0 {
                n_val -= 1;
            }
            while n_test + n_val >= n && n_test > 0 {
                n_test -= 1;
            }
            s.test.extend(&members[..n_test]);
            s.val.extend(&members[n_test..n_test + n_val]);
            s.train.extend(&members[n_test + n_val..]);
        }
        s.train.sort_unstable();
        s.val.sort_unstable();
        s.test.sort_unstable();
        Ok(s)
    }

    /// Recording indices of each class, in order.
    pub fn by_class(&self) -> Vec<Vec<usize>> {
        let mut v = vec![Vec::new(); self.classes.len()];
        for (i, r) in self.recordings.iter().enumerate() {
            if let Some(x) = v.get_mut(r.class) {
                x.push(i);
            }
        }
        v
    }

    /// Stratified k-fold by recording, seeded: each class's recordings are
    /// shuffled and dealt round-robin to the folds, continuing where the
    /// previous class stopped so fold sizes differ by at most one. Fold `f`
    /// tests on its recordings and trains on all others. A class with fewer
    /// than `k` recordings is absent from some test folds.
    pub fn kfold(&self, k: usize, seed: u64) -> Result<Vec<Split>, DataError> {
        let n = self.recordings.len();
        if k < 2 || k > n {
            return Err(DataError::BadFolds { k, recordings: n });
        }
        let mut fold_of = vec![0usize; n];
        let mut next = 0usize;
        for (c, mut members) in self.by_class().into_iter().enumerate() {
            SplitMix64::derive(seed, &[0xF01D, c as u64]).shuffle(&mut members);
            for m in members {
                fold_of[m] = next % k;
                next += 1;
            }
        }
        Ok((0..k)
            .map(|f| Split {
                train: (0..n).filter(|&i| fold_of[i] != f).collect(),
                val: Vec::new(),
                test: (0..n).filter(|&i| fold_of[i] == f).collect(),
            })
            .collect())
    }

    /// Recordings grouped by [`group_key`] of their names (e.g. session `D1`).
    pub fn groups(&self) -> BTreeMap<String, Vec<usize>> {
        let mut m: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in self.recordings.iter().enumerate() {
            m.entry(group_key(&r.name).to_string()).or_default().push(i);
        }
        m
    }

    /// Recording indices by [`group_field`] `field` of their names; the first recording
    /// whose name has fewer fields is named in the error.
    pub fn groups_by(&self, field: usize) -> Result<BTreeMap<String, Vec<usize>>, DataError> {
        let mut m: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in self.recordings.iter().enumerate() {
            let g = group_field(&r.name, field).ok_or_else(|| DataError::NoGroupField {
                recording: r.name.clone(),
                field,
            })?;
            m.entry(g.to_string()).or_default().push(i);
        }
        Ok(m)
    }

    /// Train on the recordings of `train` groups, test on those of `test`
    /// groups (e.g. train `["D1"]`, test `["D2"]`); every group must exist.
    pub fn split_by_groups(&self, train: &[&str], test: &[&str]) -> Result<Split, DataError> {
        let g = self.groups();
        let pick = |names: &[&str]| -> Result<Vec<usize>, DataError> {
            let mut v = Vec::new();
            for n in names {
                v.extend(
                    g.get(*n)
                        .ok_or_else(|| DataError::UnknownGroup(n.to_string()))?,
                );
            }
            v.sort_unstable();
            v.dedup();
            Ok(v)
        };
        Ok(Split {
            train: pick(train)?,
            val: Vec::new(),
            test: pick(test)?,
        })
    }
}

/// The group of a recording name: the prefix before the first `_` (the whole
/// name if it has none). `D1_e06_tx_rx_s5` → `D1`.
pub fn group_key(name: &str) -> &str {
    name.split('_').next().unwrap_or(name)
}

/// Field `field` (0-based) of a recording name split at `_`, e.g. the chip `c3` is
/// field 1 of `baseline_c3_64sc_20260329_130303`; `None` if the name has fewer fields.
pub fn group_field(name: &str, field: usize) -> Option<&str> {
    name.split('_').nth(field)
}

/// Recording indices of a split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Training recordings.
    pub train: Vec<usize>,
    /// Validation recordings.
    pub val: Vec<usize>,
    /// Test recordings.
    pub test: Vec<usize>,
}
