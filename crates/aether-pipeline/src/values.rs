//! Range-checked parsers for numeric options, and the ranges themselves.
//!
//! A value outside its documented range — zero where a count must be positive, a
//! negative number, a huge one, a fraction where a whole number is needed, NaN, text —
//! is refused while the arguments are parsed, before any work, with a one-line message
//! naming the range. [`TrainOpts`](crate::TrainOpts) uses these parsers, so a program
//! that builds its options through clap gets the same checks as the `aether` command.
//! Checks that depend on the data (a window longer than every recording, more folds
//! than recordings) come later, still before training.

/// Largest `--epochs`.
pub const MAX_EPOCHS: usize = 10_000;
/// Largest `--patience`.
pub const MAX_PATIENCE: usize = 10_000;
/// Largest `--batch`.
pub const MAX_BATCH: usize = 4_096;
/// Largest window length (`--window` of train, gate, eval, classify, quantize).
pub const MAX_WINDOW: usize = 8_192;
/// Largest window stride (`--stride`).
pub const MAX_STRIDE: usize = 1_000_000;
/// Largest `--threads` (0 means all cores).
pub const MAX_THREADS: usize = 256;
/// Largest `--d-model` of a trained head.
pub const MAX_D_MODEL: usize = 1_024;
/// Largest `--layers` of a trained head.
pub const MAX_TRAIN_LAYERS: usize = 32;
/// Largest augmentation std (`--aug-gain`, `--aug-offset`, `--aug-noise`).
pub const MAX_AUG: f64 = 10.0;

/// A parser of whole numbers in `min..=max`.
pub fn count(
    min: usize,
    max: usize,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let range = || format!("must be a whole number from {min} to {max}");
        // i128 holds every usize and every negative a user types; longer digit strings
        // overflow it and are out of range anyway.
        let v: i128 = s.trim().parse().map_err(|_| range())?;
        if v < min as i128 || v > max as i128 {
            return Err(range());
        }
        Ok(v as usize)
    }
}

/// Parses a seed: decimal or `0x` hex, `_` separators allowed, `0..=2^64−1`.
pub fn seed(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| {
        "must be a whole number from 0 to 18446744073709551615 (decimal or 0x hex)".to_string()
    })
}

/// Which ends of a real interval are included.
#[derive(Clone, Copy)]
pub enum Ends {
    /// `min ≤ x ≤ max`.
    Closed,
    /// `min < x ≤ max`.
    OpenMin,
    /// `min ≤ x < max`.
    OpenMax,
}

/// A parser of finite reals in the interval `min`..`max` with `ends`.
pub fn real(
    min: f64,
    max: f64,
    ends: Ends,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let (lo, hi) = match ends {
            Ends::Closed => ("≤", "≤"),
            Ends::OpenMin => ("<", "≤"),
            Ends::OpenMax => ("≤", "<"),
        };
        let range = || format!("must be a number x with {min} {lo} x {hi} {max}");
        let v: f64 = s.trim().parse().map_err(|_| range())?;
        let inside = v.is_finite()
            && match ends {
                Ends::Closed => (min..=max).contains(&v),
                Ends::OpenMin => v > min && v <= max,
                Ends::OpenMax => v >= min && v < max,
            };
        if inside {
            Ok(v)
        } else {
            Err(range())
        }
    }
}

/// [`real`] narrowed to `f32` (the bounds are representable, so the check holds).
pub fn real32(
    min: f64,
    max: f64,
    ends: Ends,
) -> impl Fn(&str) -> Result<f32, String> + Clone + Send + Sync + 'static {
    let p = real(min, max, ends);
    move |s: &str| p(s).map(|v| v as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_refuse_zero_negative_huge_and_fractions() {
        let p = count(1, 10);
        assert_eq!(p("1"), Ok(1));
        assert_eq!(p(" 10 "), Ok(10));
        for bad in [
            "0",
            "-1",
            "11",
            "99999999999999999999999999999999999999999",
            "2.5",
            "x",
            "",
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e, "must be a whole number from 1 to 10", "{bad}");
        }
        assert_eq!(count(0, 3)("0"), Ok(0));
    }

    #[test]
    fn seeds_take_decimal_and_hex() {
        assert_eq!(seed("0xC5110007DEADBEEF"), Ok(0xC511_0007_DEAD_BEEF));
        assert_eq!(seed("1_000"), Ok(1000));
        assert_eq!(seed("18446744073709551615"), Ok(u64::MAX));
        for bad in ["-1", "18446744073709551616", "0xZ", "1.5"] {
            assert!(seed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reals_check_their_ends() {
        let lr = real(0.0, 1.0, Ends::OpenMin);
        assert_eq!(lr("1"), Ok(1.0));
        assert_eq!(lr("3e-3"), Ok(3e-3));
        for bad in ["0", "-0.1", "1.5", "NaN", "inf", "1e999", "x"] {
            let e = lr(bad).unwrap_err();
            assert_eq!(e, "must be a number x with 0 < x ≤ 1", "{bad}");
        }
        let frac = real(0.0, 1.0, Ends::OpenMax);
        assert_eq!(frac("0"), Ok(0.0));
        assert!(frac("1").is_err());
        assert_eq!(real32(0.0, 10.0, Ends::Closed)("10"), Ok(10.0));
    }
}
