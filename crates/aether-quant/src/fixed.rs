//! Fixed-point primitives of the integer path (docs/int8.md). Integer arithmetic only:
//! floats enter as their IEEE-754 bits and leave as bits assembled from integers.
//!
//! - [`rshift`]: arithmetic right shift rounding half up.
//! - [`requant`]: `R(v, m, s) = rshift(clamp(v)·m, 31 + s)`, the requantisation of every
//!   table (`m` an i32 multiplier, `s` in −31..=31).
//! - [`f32_to_fixed`]: `round(u · 2^e)` from the bits of `u`, saturating at ±2³⁰.
//! - [`fixed_to_f32`]: `q · 2^−shift` as an f32 (round to nearest even), from integers.
//! - [`isqrt`], [`div_round`], [`exp2_neg_q16`], [`sin_q15`], [`gelu_q12`].

use crate::lut::{EXP2_Q16, GELU_Q12, SIN_Q15};

/// Saturation bound of the input stage and of i32 intermediates (`±2³⁰`).
pub const SAT30: i64 = 1 << 30;

/// `x / 2^n` rounded half up (`n` in 0..=62); `x` must satisfy `|x| < 2^62`.
#[inline(always)]
pub fn rshift(x: i64, n: u32) -> i64 {
    if n == 0 {
        x
    } else {
        (x + (1i64 << (n - 1))) >> n
    }
}

/// `R(v, m, s)`: `v` clamped to `±(2³¹−1)`, times `m`, shifted right by `31 + s` with
/// rounding (`s` in −31..=31, validated with the file). `|v·m| < 2^62`, so nothing
/// overflows.
#[inline(always)]
pub fn requant(v: i64, m: i32, s: i32) -> i64 {
    let v = v.clamp(-(i32::MAX as i64), i32::MAX as i64) as i32;
    requant32(v, m, s)
}

/// [`requant`] of a `v` already within `±(2³¹−1)`, without 64-bit shifts when the total
/// shift `n = 31 + s` is at least 33 (the usual case: scales below one).
///
/// With `p = v·m = hi·2³² + lo` (`0 ≤ lo < 2³²`) and `n = 32 + k`, `k ≥ 1`:
/// `(p + 2^(n−1)) >> n = (hi + 2^(k−1)) >> k`, because `lo / 2³²` is less than one unit
/// of `hi` and cannot carry past the floor (`|p| < 2⁶²`, so `|hi| < 2³⁰` and the sum
/// fits an i32). The same value as the 64-bit formula for every input (tested).
#[inline(always)]
pub fn requant32(v: i32, m: i32, s: i32) -> i64 {
    let p = v as i64 * m as i64;
    let n = (31 + s) as u32;
    if n >= 33 {
        let hi = (p >> 32) as i32;
        let k = n - 32;
        ((hi + (1 << (k - 1))) >> k) as i64
    } else {
        rshift(p, n)
    }
}

/// `(add + R(v, m, s)).clamp(lo, hi)` for a `v` within `±(2³¹−1)` and `|add| ≤ 2³⁰`: the
/// value of the 64-bit expression, computed in i32 when the shift allows (see
/// [`requant32`]: the rounded quotient is then below 2³⁰ in magnitude, so adding `add`
/// cannot overflow).
#[inline(always)]
pub fn requant_clamp(v: i32, m: i32, s: i32, add: i32, lo: i32, hi: i32) -> i32 {
    debug_assert!(add.unsigned_abs() <= 1 << 30 && lo <= hi);
    let n = (31 + s) as u32;
    if n >= 33 {
        let h = ((v as i64 * m as i64) >> 32) as i32;
        let k = n - 32;
        ((h + (1 << (k - 1))) >> k) + add
    } else {
        (add as i64 + requant32(v, m, s)).clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }
    .clamp(lo, hi)
}

/// `sat16(rshift(v, n))` for `|v| ≤ 2³⁰`, in i32 when `n ≤ 30` (then `v + 2^(n−1)` fits).
#[inline(always)]
pub fn rshift_sat16(v: i32, n: u32) -> i16 {
    debug_assert!(v.unsigned_abs() <= 1 << 30);
    if n == 0 {
        sat16(v as i64)
    } else if n <= 30 {
        ((v + (1 << (n - 1))) >> n).clamp(i16::MIN as i32, i16::MAX as i32) as i16
    } else {
        sat16(rshift(v as i64, n))
    }
}

/// Saturates to i16.
#[inline(always)]
pub fn sat16(v: i64) -> i16 {
    v.clamp(i16::MIN as i64, i16::MAX as i64) as i16
}

/// Saturates to i8.
#[inline(always)]
pub fn sat8(v: i64) -> i8 {
    v.clamp(i8::MIN as i64, i8::MAX as i64) as i8
}

/// Saturates to `±2³⁰`.
#[inline(always)]
pub fn sat30(v: i64) -> i32 {
    v.clamp(-SAT30, SAT30) as i32
}

/// `round(a / b)` (half up) for `b > 0`.
#[inline]
pub fn div_round(a: i64, b: i64) -> i64 {
    // In 32 bits when the operands allow (a hardware divide on 32-bit cores; the same
    // value: `2a + b` and `2b` fit an i32).
    if a.unsigned_abs() < 1 << 29 && b < 1 << 29 {
        return (2 * a as i32 + b as i32).div_euclid(2 * b as i32) as i64;
    }
    (2 * a + b).div_euclid(2 * b)
}

/// `⌊2^k / d⌋` for `k ≤ 63`, `d ≥ 1`: the same value as the 64-bit division. For
/// `d < 2²⁴`, long division in base 256 with 32-bit divides (one hardware `udiv` per
/// digit on 32-bit cores, instead of the 64-bit divide routine); otherwise `/`.
#[inline]
pub fn pow2_div(k: u32, d: u64) -> u64 {
    debug_assert!(k <= 63 && d >= 1);
    if d >= 1 << 24 {
        return (1u64 << k) / d;
    }
    let d = d as u32;
    // 2^k = 2^(k mod 8) · 256^(k / 8): the leading digit, then k / 8 zero digits.
    let mut r: u32 = 1 << (k % 8);
    let mut q = (r / d) as u64;
    r %= d;
    for _ in 0..k / 8 {
        // r < d < 2^24, so r·256 fits.
        let num = r << 8;
        q = (q << 8) | (num / d) as u64;
        r = num % d;
    }
    q
}

/// `⌊√n⌋`.
pub fn isqrt(n: u64) -> u64 {
    let mut x = n;
    let mut r = 0u64;
    let mut bit = 1u64 << 62;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if x >= r + bit {
            x -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    r
}

/// `√n` for a u128, to the precision of a u64 square root of its top 62 bits
/// (`⌊√(n / 4^k)⌋ · 2^k` with the smallest `k` that makes `n / 4^k` fit).
pub fn isqrt128(n: u128) -> u64 {
    let bits = 128 - n.leading_zeros();
    let k = bits.saturating_sub(62).div_ceil(2);
    isqrt((n >> (2 * k)) as u64) << k
}

/// `round(u · 2^e)` from the bits of the f32 `u`, saturating at `±2³⁰` (rounding half
/// away from zero). Non-finite inputs must be refused before (they saturate).
pub fn f32_to_fixed(bits: u32, e: i32) -> i32 {
    let neg = bits >> 31 != 0;
    let ef = ((bits >> 23) & 0xFF) as i32;
    let frac = bits & 0x007F_FFFF;
    let (mant, ex) = if ef == 0 {
        (frac as u64, -149)
    } else {
        ((frac | 0x0080_0000) as u64, ef - 150)
    };
    let k = ex + e;
    let sat = SAT30 as u64;
    let mag = if mant == 0 {
        0
    } else if k >= 0 {
        if k >= 40 {
            sat
        } else {
            (mant << k).min(sat)
        }
    } else {
        let n = (-k) as u32;
        if n >= 40 {
            0
        } else {
            ((mant + (1u64 << (n - 1))) >> n).min(sat)
        }
    };
    if neg {
        -(mag as i64) as i32
    } else {
        mag as i32
    }
}

/// `q · 2^−shift` as an f32, rounded to nearest even, built from integers
/// (`shift` ≤ 30, so the result is always a normal number or zero).
pub fn fixed_to_f32(q: i32, shift: u32) -> f32 {
    if q == 0 {
        return f32::from_bits(0);
    }
    let sign = if q < 0 { 1u32 << 31 } else { 0 };
    let m = q.unsigned_abs();
    let bl = 32 - m.leading_zeros();
    let (mant, e) = if bl > 24 {
        let s = bl - 24;
        let mut t = m >> s;
        let rem = m & ((1u32 << s) - 1);
        let half = 1u32 << (s - 1);
        if rem > half || (rem == half && t & 1 == 1) {
            t += 1;
        }
        if t == 1 << 24 {
            (t >> 1, s as i32 + 1)
        } else {
            (t, s as i32)
        }
    } else {
        (m << (24 - bl), -((24 - bl) as i32))
    };
    // value = mant · 2^(e − shift), mant in [2^23, 2^24)
    let exp = (e - shift as i32 + 23 + 127) as u32;
    f32::from_bits(sign | (exp << 23) | (mant & 0x007F_FFFF))
}

/// `2^(−y / 65536)` in Q16 (65536 = 1) for `y ≥ 0`: table [`EXP2_Q16`] interpolated on
/// the fraction, shifted by the integer part (0 from 2^−17 on).
#[inline]
pub fn exp2_neg_q16(y: i64) -> u32 {
    exp2_neg_q16_u32(y.clamp(0, 17 << 16) as u32)
}

/// [`exp2_neg_q16`] of a non-negative exponent (32-bit arithmetic only; `0` from
/// `17·2¹⁶` on, as there).
#[inline]
pub fn exp2_neg_q16_u32(y: u32) -> u32 {
    if y >= 17 << 16 {
        return 0;
    }
    let i = y >> 16;
    let f = y & 0xFFFF;
    let idx = (f >> 8) as usize;
    let fr = f & 0xFF;
    let a = EXP2_Q16[idx];
    let b = EXP2_Q16[idx + 1];
    let v = a - (((a - b) * fr + 128) >> 8);
    if i == 0 {
        v
    } else {
        (v + (1 << (i - 1))) >> i
    }
}

/// `sin(2π · phase / 2³²)` in Q15 (32767 = 1): table [`SIN_Q15`] interpolated.
#[inline]
pub fn sin_q15(phase: u32) -> i32 {
    let idx = (phase >> 24) as usize;
    let fr = ((phase >> 8) & 0xFFFF) as i32;
    let a = SIN_Q15[idx] as i32;
    let b = SIN_Q15[idx + 1] as i32;
    a + (((b - a) * fr + (1 << 15)) >> 16)
}

/// GELU of a Q12 argument, Q12 result: identity from 8 on, 0 below −8, else table
/// [`GELU_Q12`] interpolated over steps of 1/32.
#[inline]
pub fn gelu_q12(z: i32) -> i32 {
    const LO: i32 = -8 << 12;
    if z >= 8 << 12 {
        return z;
    }
    if z < LO {
        return 0;
    }
    let t = z - LO;
    let idx = (t >> 7) as usize;
    let fr = t & 127;
    let a = GELU_Q12[idx];
    let b = GELU_Q12[idx + 1];
    a + (((b - a) * fr + 64) >> 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift64 stream from `seed`.
    fn xorshift64(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The 32-bit path of `requant32` equals the 64-bit formula: every shift, random and
    /// extreme values and multipliers.
    #[test]
    fn requant32_equals_the_64_bit_formula() {
        let reference = |v: i32, m: i32, s: i32| rshift(v as i64 * m as i64, (31 + s) as u32);
        let mut next = xorshift64(0x9E37_79B9_7F4A_7C15u64);
        let edges = [
            0,
            1,
            -1,
            2,
            -2,
            i32::MAX,
            -i32::MAX,
            1 << 30,
            -(1 << 30),
            12345,
            -54321,
        ];
        for s in -31..=31 {
            for &v in &edges {
                for &m in &edges {
                    assert_eq!(requant32(v, m, s), reference(v, m, s), "{v} {m} {s}");
                }
            }
            for _ in 0..20_000 {
                let r = next();
                let v = (r as i32).max(-i32::MAX) >> (r >> 59);
                let m = ((r >> 32) as i32) >> ((r >> 27) & 31);
                assert_eq!(requant32(v, m, s), reference(v, m, s), "{v} {m} {s}");
            }
        }
    }

    /// `requant_clamp` is the 64-bit clamp of `add + requant32` for every shift.
    #[test]
    fn requant_clamp_equals_the_64_bit_expression() {
        let mut next = xorshift64(0x2545_F491_4F6C_DD1Du64);
        let bounds = [
            (i16::MIN as i32, i16::MAX as i32),
            (-128, 127),
            (-(1 << 30), 1 << 30),
        ];
        for s in -31..=31 {
            for _ in 0..5_000 {
                let r = next();
                let v = (r as i32).max(-i32::MAX) >> (r >> 59);
                let m = ((r >> 32) as i32) >> ((r >> 27) & 31);
                let add = [0, (r >> 7) as i16 as i32, 1 << 30, -(1 << 30)][(r >> 3) as usize & 3];
                for (lo, hi) in bounds {
                    let want = (add as i64 + requant32(v, m, s)).clamp(lo as i64, hi as i64);
                    assert_eq!(
                        requant_clamp(v, m, s, add, lo, hi) as i64,
                        want,
                        "{v} {m} {s} {add}"
                    );
                }
            }
        }
    }

    #[test]
    fn rshift_sat16_equals_the_64_bit_expression() {
        let vs = [
            0,
            1,
            -1,
            2,
            -3,
            4095,
            -4096,
            32767,
            -32768,
            1 << 20,
            -(1 << 20),
            1 << 30,
            -(1 << 30),
        ];
        for n in 0..=40 {
            for &v in &vs {
                for dv in [-1, 0, 1] {
                    let v: i32 = (v + dv).clamp(-(1 << 30), 1 << 30);
                    assert_eq!(rshift_sat16(v, n), sat16(rshift(v as i64, n)), "{v} {n}");
                }
            }
        }
    }

    #[test]
    fn pow2_div_and_div_round_equal_the_64_bit_divisions() {
        let mut next = xorshift64(0x9E37_79B9_7F4A_7C15u64);
        for k in 0..=63 {
            let ds = [
                1,
                2,
                3,
                5,
                7,
                1 << 15,
                (1 << 16) + 1,
                (1 << 31) - 1,
                1 << 31,
                1 << 40,
                u64::MAX,
            ];
            for &d in &ds {
                assert_eq!(pow2_div(k, d), (1u64 << k) / d, "2^{k} / {d}");
            }
            for _ in 0..2000 {
                let d = (next() >> (next() % 64)).max(1);
                assert_eq!(pow2_div(k, d), (1u64 << k) / d, "2^{k} / {d}");
            }
        }
        for _ in 0..200_000 {
            let r = next();
            let a = (r as i64) >> (r >> 58);
            let b = ((r >> 20) as i64 & 0x3FFF_FFFF) >> ((r >> 8) % 31);
            let b = b.max(1);
            assert_eq!(
                div_round(a, b),
                (2 * a as i128 + b as i128).div_euclid(2 * b as i128) as i64,
                "{a} {b}"
            );
        }
    }

    #[test]
    fn rshift_and_requant_round_half_up() {
        assert_eq!(rshift(5, 1), 3);
        assert_eq!(rshift(-5, 1), -2);
        assert_eq!(rshift(7, 0), 7);
        // R(v, 2^30, 0) = v / 2
        assert_eq!(requant(10, 1 << 30, 0), 5);
        assert_eq!(
            requant(i64::MAX, i32::MAX, -31),
            (i32::MAX as i64) * (i32::MAX as i64)
        );
        assert_eq!(requant(i64::MIN, i32::MAX, 31), -1);
        assert_eq!(div_round(7, 2), 4);
        assert_eq!(div_round(-7, 2), -3);
        assert_eq!(div_round(-5, 3), -2);
    }

    #[test]
    fn isqrt_is_the_floor_root() {
        for n in [
            0u64,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            1 << 40,
            u64::MAX,
            (1 << 62) - 1,
        ] {
            let r = isqrt(n) as u128;
            assert!(r * r <= n as u128 && (r + 1) * (r + 1) > n as u128, "{n}");
        }
        for n in [0u128, 99, 1 << 70, u128::MAX >> 6] {
            let r = isqrt128(n) as f64;
            let want = (n as f64).sqrt();
            assert!((r - want).abs() <= want * 1e-9 + 1.0, "{n}: {r} vs {want}");
        }
    }

    #[test]
    fn f32_conversions_agree_with_float_arithmetic() {
        let mut x = 0x1234_5678u32;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let u = f32::from_bits(x);
            if !u.is_finite() {
                continue;
            }
            for e in [-20, -3, 0, 7, 16, 40] {
                let want = (u as f64 * (e as f64).exp2()).abs();
                let want = if want.fract() == 0.5 {
                    want + 0.5
                } else {
                    want.round()
                }
                .min(SAT30 as f64)
                    * if u < 0.0 { -1.0 } else { 1.0 };
                assert_eq!(f32_to_fixed(x, e) as f64, want, "{u} e {e}");
            }
            let q = x as i32;
            for shift in [0u32, 5, 17, 30] {
                let want = (q as f32) * (-(shift as f32)).exp2();
                assert_eq!(
                    fixed_to_f32(q, shift).to_bits(),
                    want.to_bits(),
                    "{q} {shift}"
                );
            }
        }
        assert_eq!(fixed_to_f32(0, 3).to_bits(), 0);
        assert_eq!(fixed_to_f32(i32::MIN, 0), -2147483648.0);
        assert_eq!(f32_to_fixed(f32::MIN_POSITIVE.to_bits(), 126), 1);
        assert_eq!(f32_to_fixed(1.0e-45f32.to_bits(), 0), 0);
    }

    #[test]
    fn lut_functions_track_their_formulas() {
        for y in (0..18 << 16).step_by(977) {
            let want = 65536.0 * (-(y as f64) / 65536.0).exp2();
            assert!((exp2_neg_q16(y) as f64 - want).abs() <= 1.0, "exp2 {y}");
        }
        assert_eq!(exp2_neg_q16(0), 65536);
        assert_eq!(exp2_neg_q16(1 << 40), 0);
        for p in (0..u32::MAX).step_by(7_919_111) {
            let want = 32767.0 * (2.0 * core::f64::consts::PI * p as f64 / 4294967296.0).sin();
            assert!((sin_q15(p) as f64 - want).abs() <= 4.0, "sin {p}");
        }
        let gelu = |z: f64| {
            0.5 * z
                * (1.0 + ((2.0 / core::f64::consts::PI).sqrt() * (z + 0.044715 * z * z * z)).tanh())
        };
        for z in (-12 << 12..12 << 12).step_by(37) {
            let want = 4096.0 * gelu(z as f64 / 4096.0);
            assert!((gelu_q12(z) as f64 - want).abs() <= 2.0, "gelu {z}");
        }
    }
}
