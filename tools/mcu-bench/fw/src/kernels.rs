//! On-target checks of the kernels that have target-specific code (hard-float ARM
//! `vldmia` blocks, ARMv7E-M DSP `smlad` kernels): each against a plain loop with the
//! same arithmetic, over many shapes and random data, before anything is measured. The
//! host's unit tests cannot reach these paths (they exist only on the node), and the
//! end-to-end comparison covers only the default head's shapes.

use alloc::vec;
use alloc::vec::Vec;

use aether_kernel::simd::{matvec_i8, scores_i8, vec_mat, vec_mat_add, weighted_i8};

/// xorshift32.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn f32(&mut self) -> f32 {
        (self.next() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
}

/// Runs every check; returns how many outputs were compared, or the failing kernel.
///
/// Buffers are allocated once at their largest size (the firmware's arena is a bump
/// allocator that never reuses memory).
pub fn check(say: fn(&str)) -> Result<usize, &'static str> {
    let mut r = Rng(0x9E37_79B9);
    let mut n_checked = 0;
    const ROWS: usize = 20;
    const COLS: [usize; 12] = [1, 3, 8, 15, 16, 17, 31, 32, 33, 48, 64, 130];
    let (mut xb, mut wb, mut bb, mut gb) = (
        vec![0.0f32; ROWS],
        vec![0.0f32; ROWS * 130],
        vec![0.0f32; 130],
        vec![0.0f32; 130],
    );
    say("vec_mat");
    // vec_mat (f32): out = x·W + b, then += x·W (rows ascending, multiply then add).
    for rows in 0..ROWS {
        for cols in COLS {
            let x = &mut xb[..rows];
            x.iter_mut().for_each(|v| *v = r.f32());
            let w = &mut wb[..rows * cols];
            w.iter_mut().for_each(|v| *v = r.f32());
            let b = &mut bb[..cols];
            b.iter_mut().for_each(|v| *v = r.f32());
            let (x, w, b) = (&*x, &*w, &*b);
            let got = &mut gb[..cols];
            vec_mat(x, w, Some(b), got);
            vec_mat_add(x, w, None, got);
            for (o, g) in got.iter().enumerate() {
                let mut want = b[o];
                for i in 0..rows {
                    want += x[i] * w[i * cols + o];
                }
                for i in 0..rows {
                    want += x[i] * w[i * cols + o];
                }
                if g.to_bits() != want.to_bits() {
                    return Err("vec_mat");
                }
                n_checked += 1;
            }
        }
    }
    say("matvec_i8");
    // matvec_i8: i32 sums of i16 × i8.
    for rows in 0..12 {
        for cols in 1..14 {
            let x: Vec<i16> = (0..rows).map(|_| r.next() as i16).collect();
            let w: Vec<i8> = (0..rows * cols).map(|_| r.next() as i8).collect();
            let mut acc = vec![7; cols];
            matvec_i8(&x, &w, &mut acc);
            for (o, a) in acc.iter().enumerate() {
                let want: i32 = (0..rows).map(|i| x[i] as i32 * w[i * cols + o] as i32).sum();
                if *a != want {
                    return Err("matvec_i8");
                }
                n_checked += 1;
            }
        }
    }
    say("scores/weighted");
    // scores_i8 / weighted_i8 over row offsets, odd counts, tails, the 2¹⁵ weight.
    for len in (1..14).chain([32, 40]) {
        for nc in (0..8).chain([33, 65]) {
            let (width, lo, n_rows) = (len + 5, 3, 9usize);
            let rows: Vec<i8> = (0..n_rows * width).map(|_| r.next() as i8).collect();
            let offs: Vec<u32> = (0..nc)
                .map(|_| (r.next() % n_rows as u32) * width as u32)
                .collect();
            let q: Vec<i16> = (0..len).map(|_| r.next() as i16).collect();
            let row = |o: u32| &rows[o as usize + lo..o as usize + lo + len];
            let mut out = vec![0; nc];
            scores_i8(&q, &rows, &offs, lo, &mut out);
            for (c, s) in out.iter().enumerate() {
                let want: i32 = q.iter().zip(row(offs[c])).map(|(&a, &b)| a as i32 * b as i32).sum();
                if *s != want {
                    return Err("scores_i8");
                }
                n_checked += 1;
            }
            let top = if nc == 5 { 1 << 15 } else { (1 << 15) - 1 };
            let wts: Vec<i32> = (0..nc).map(|_| (r.next() % (top + 1)) as i32).collect();
            let mut acc: Vec<i32> = (0..len).map(|d| d as i32 - 4).collect();
            let mut want = acc.clone();
            for (c, &wt) in wts.iter().enumerate() {
                for (a, &v) in want.iter_mut().zip(row(offs[c])) {
                    *a += wt * v as i32;
                }
            }
            weighted_i8(&wts, &rows, &offs, lo, &mut acc);
            if acc != want {
                return Err("weighted_i8");
            }
            n_checked += len;
        }
    }
    Ok(n_checked)
}
