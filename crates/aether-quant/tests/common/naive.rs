//! A straightforward integer reference of docs/int8.md, written from the document and
//! not from the crate: i128 arithmetic, allocating candidate lists, the owned
//! `QuantModelFile` tables, every sequence recomputed from scratch. The fast paths must
//! equal it bit for bit.

use aether_quant::lut::{EXP2_Q16, GELU_Q12, SIN_Q15};
use aether_rvne::{AttentionBackend, Pooling, Positional, QuantModelFile};

fn t32<'a>(q: &'a QuantModelFile, name: &str) -> &'a [i32] {
    q.tensor(name)
        .unwrap_or_else(|| panic!("{name}"))
        .data
        .as_i32()
        .unwrap()
}

fn t8<'a>(q: &'a QuantModelFile, name: &str) -> &'a [i8] {
    q.tensor(name).unwrap().data.as_i8().unwrap()
}

/// floor((x + 2^(n−1)) / 2^n), n ≥ 0.
fn rshift(x: i128, n: u32) -> i128 {
    if n == 0 {
        x
    } else {
        (x + (1i128 << (n - 1))).div_euclid(1i128 << n)
    }
}

fn r(v: i128, m: i32, s: i32) -> i128 {
    let v = v.clamp(-(i32::MAX as i128), i32::MAX as i128);
    rshift(v * m as i128, (31 + s) as u32)
}

fn sat(v: i128, lo: i128, hi: i128) -> i128 {
    v.clamp(lo, hi)
}

fn s16(v: i128) -> i128 {
    sat(v, -32768, 32767)
}

fn s8(v: i128) -> i128 {
    sat(v, -128, 127)
}

fn div_round(a: i128, b: i128) -> i128 {
    (2 * a + b).div_euclid(2 * b)
}

fn isqrt(n: u128) -> u128 {
    // Newton from above, exact floor root.
    if n < 2 {
        return n;
    }
    let mut x = n;
    let mut y = x.div_ceil(2);
    while y < x {
        x = y;
        y = (x + n / x) / 2;
    }
    x
}

/// ⌊√(V / 4^k)⌋ · 2^k, k the smallest with V / 4^k < 2^62 (docs/int8.md).
fn approx_sqrt(v: u128) -> u128 {
    let mut k = 0;
    while (v >> (2 * k)) >= 1u128 << 62 {
        k += 1;
    }
    isqrt(v >> (2 * k)) << k
}

fn matvec(q: &QuantModelFile, name: &str, x: &[i128]) -> Vec<i128> {
    let w = t8(q, name);
    let rq = t32(q, &format!("{name}.rq"));
    let n = rq.len() / 3;
    (0..n)
        .map(|o| {
            let acc: i128 = x
                .iter()
                .enumerate()
                .map(|(i, &xi)| xi * w[i * n + o] as i128)
                .sum();
            assert!(acc.abs() < 1 << 31, "accumulator bound");
            r(acc + rq[3 * o] as i128, rq[3 * o + 1], rq[3 * o + 2])
        })
        .collect()
}

fn layer_norm(q: &QuantModelFile, name: &str, x: &[i128]) -> Vec<i128> {
    let tab = t32(q, name);
    let d = x.len() as i128;
    let s: i128 = x.iter().sum();
    let c: Vec<i128> = x.iter().map(|&v| d * v - s).collect();
    let ss: i128 = c.iter().map(|c| c * c).sum();
    let var = (ss / d) as u128 + q.quant.ln_eps as u128;
    let sd6 = if var < 1 << 50 {
        isqrt(var << 12)
    } else {
        isqrt(var) << 6
    };
    let inv = ((1u128 << 52) / sd6.max(1)) as i128;
    c.iter()
        .enumerate()
        .map(|(i, &ci)| {
            let y = rshift(ci * inv, 30);
            s16(r(y, tab[3 * i], tab[3 * i + 1]) + tab[3 * i + 2] as i128)
        })
        .collect()
}

fn table_interp(a: i128, b: i128, fr: i128, bits: u32) -> i128 {
    a + ((b - a) * fr + (1 << (bits - 1))).div_euclid(1 << bits)
}

fn exp2neg(y: i128) -> i128 {
    if y >= 17 << 16 {
        return 0;
    }
    let i = (y >> 16) as u32;
    let f = y & 0xFFFF;
    let (a, b) = (
        EXP2_Q16[(f >> 8) as usize] as i128,
        EXP2_Q16[(f >> 8) as usize + 1] as i128,
    );
    // a − round((a − b)·fr / 256), a ≥ b
    let v = a - ((a - b) * (f & 0xFF) + 128) / 256;
    rshift(v, i)
}

fn gelu(z: i128) -> i128 {
    if z >= 8 << 12 {
        return z;
    }
    if z < -(8 << 12) {
        return 0;
    }
    let t = z + (8 << 12);
    let idx = (t >> 7) as usize;
    table_interp(GELU_Q12[idx] as i128, GELU_Q12[idx + 1] as i128, t & 127, 7)
}

fn sin_q15(phase: u64) -> i128 {
    let idx = (phase >> 24) as usize;
    let fr = ((phase >> 8) & 0xFFFF) as i128;
    table_interp(SIN_Q15[idx] as i128, SIN_Q15[idx + 1] as i128, fr, 16)
}

/// The logits of `frames` (`n·F`) through the integer head of docs/int8.md.
pub fn logits(q: &QuantModelFile, frames: &[f32]) -> Vec<i32> {
    let m = &q.meta;
    let d = &m.dims;
    let a = &m.arch;
    let f = d.input_dim;
    let n = frames.len() / f;
    let input = t32(q, "input.q");
    // Input stage.
    let (mut cnt, mut s1, mut s2) = (0i128, vec![0i128; f], vec![0i128; f]);
    let mut xs: Vec<Vec<i128>> = Vec::new();
    for t in 0..n {
        let mut v: Vec<i128> = (0..f)
            .map(|c| {
                let u = frames[t * f + c] as f64 * 2f64.powi(input[5 * c]);
                (u.round() as i128).clamp(-(1 << 30), 1 << 30)
            })
            .collect();
        if a.running_norm {
            cnt += 1;
            for c in 0..f {
                let x = v[c];
                s1[c] += x;
                s2[c] += x * x;
                let num = cnt * x - s1[c];
                let var = (cnt * s2[c] - s1[c] * s1[c]) as u128;
                let sd = approx_sqrt(var) as i128;
                let fl = (cnt * input[5 * c + 4] as i128) >> 8;
                let den = sd.max(fl).max(1);
                let bits = 128 - den.leading_zeros();
                let tt = bits.saturating_sub(31);
                let z = div_round(rshift(num, tt) * 65536, den >> tt);
                v[c] = z.clamp(-(1 << 30), 1 << 30);
            }
        }
        let u: Vec<i128> = (0..f)
            .map(|c| s16(r(v[c], input[5 * c + 1], input[5 * c + 2]) + input[5 * c + 3] as i128))
            .collect();
        let mut x = if a.embed {
            matvec(q, "embed.w", &u).into_iter().map(s16).collect()
        } else {
            u
        };
        if a.positional == Positional::Sinusoidal {
            let pos = t32(q, "pos.q");
            for (i, xi) in x.iter_mut().enumerate() {
                let phase = ((t as u64 % (1 << 32)) * pos[2 * i] as u32 as u64
                    + pos[2 * i + 1] as u32 as u64)
                    % (1 << 32);
                *xi = s16(*xi + r(sin_q15(phase), q.quant.pe_mult, q.quant.pe_shift));
            }
        }
        xs.push(x);
    }
    // Layers.
    let p = &m.pattern;
    let pat = aether_kernel::SparsePattern {
        window: p.window,
        block_size: p.block_size,
        global_tokens: p.globals().to_vec(),
        causal: p.causal,
        log_stride: p.log_stride,
        landmarks: p.landmarks,
    };
    let (dh, group) = (d.head_dim, d.q_heads / d.kv_heads);
    for l in 0..d.layers {
        let lq = q.quant.layers[l];
        let name = |s: &str| format!("layers.{l}.{s}");
        let h: Vec<Vec<i128>> = xs
            .iter()
            .map(|x| {
                if a.pre_norm {
                    layer_norm(q, &name("ln1.q"), x)
                } else {
                    x.clone()
                }
            })
            .collect();
        let k: Vec<Vec<i128>> = h
            .iter()
            .map(|h| matvec(q, &name("wk"), h).into_iter().map(s8).collect())
            .collect();
        let v: Vec<Vec<i128>> = h
            .iter()
            .map(|h| matvec(q, &name("wv"), h).into_iter().map(s8).collect())
            .collect();
        let bs = p.block_size;
        let mean = |rows: &[Vec<i128>], b: usize| -> Vec<i128> {
            let (lo, hi) = (b * bs, ((b + 1) * bs).min(n));
            (0..rows[0].len())
                .map(|j| {
                    s8(div_round(
                        (lo..hi).map(|t| rows[t][j]).sum(),
                        (hi - lo) as i128,
                    ))
                })
                .collect()
        };
        let mut next = xs.clone();
        for t in 0..n {
            let qv: Vec<i128> = matvec(q, &name("wq"), &h[t]).into_iter().map(s16).collect();
            let (keys, vals): (Vec<Vec<i128>>, Vec<Vec<i128>>) = match a.attention {
                AttentionBackend::Sparse => {
                    let mut ks: Vec<Vec<i128>> = pat
                        .token_candidates(t, n)
                        .iter()
                        .map(|&j| k[j].clone())
                        .collect();
                    let mut vs: Vec<Vec<i128>> = pat
                        .token_candidates(t, n)
                        .iter()
                        .map(|&j| v[j].clone())
                        .collect();
                    if p.landmarks {
                        for b in pat.landmark_candidates(t, n) {
                            ks.push(mean(&k, b));
                            vs.push(mean(&v, b));
                        }
                    }
                    (ks, vs)
                }
                AttentionBackend::Dense => {
                    let last = if p.causal { t + 1 } else { n };
                    (k[..last].to_vec(), v[..last].to_vec())
                }
            };
            let mut att = vec![0i128; d.q_heads * dh];
            for hq in 0..d.q_heads {
                let lo = (hq / group) * dh;
                let qh = &qv[hq * dh..(hq + 1) * dh];
                let s: Vec<i128> = keys
                    .iter()
                    .map(|kk| qh.iter().zip(&kk[lo..lo + dh]).map(|(a, b)| a * b).sum())
                    .collect();
                let mx = *s.iter().max().unwrap();
                let pr: Vec<i128> = s
                    .iter()
                    .map(|&x| exp2neg(r((mx - x).min(i32::MAX as i128), lq.att_mult, lq.att_shift)))
                    .collect();
                let z: i128 = pr.iter().sum();
                let rr = (1i128 << 47) / z.max(1);
                for j in 0..dh {
                    let o: i128 = pr
                        .iter()
                        .zip(&vals)
                        .map(|(&pc, vv)| ((pc * rr + (1 << 31)) >> 32) * vv[lo + j])
                        .sum();
                    att[hq * dh + j] = s16(rshift(o, 7));
                }
            }
            let x = &mut next[t];
            for (xi, u) in x.iter_mut().zip(matvec(q, &name("wo"), &att)) {
                *xi = s16(*xi + u);
            }
            if d.mlp_hidden > 0 {
                let h2 = if a.pre_norm {
                    layer_norm(q, &name("ln2.q"), x)
                } else {
                    x.clone()
                };
                let hid: Vec<i128> = matvec(q, &name("mlp.w1"), &h2)
                    .into_iter()
                    .map(|z| s16(rshift(gelu(z.clamp(-(1 << 30), 1 << 30)), lq.gelu_shift)))
                    .collect();
                for (xi, u) in x.iter_mut().zip(matvec(q, &name("mlp.w2"), &hid)) {
                    *xi = s16(*xi + u);
                }
            }
        }
        xs = next;
    }
    let fin = |x: &Vec<i128>| {
        if a.final_norm {
            layer_norm(q, "final_ln.q", x)
        } else {
            x.clone()
        }
    };
    let pooled: Vec<i128> = match a.pooling {
        Pooling::Last => fin(&xs[n - 1]),
        Pooling::Mean => {
            let rows: Vec<Vec<i128>> = xs.iter().map(fin).collect();
            (0..d.d_model)
                .map(|j| s16(div_round(rows.iter().map(|r| r[j]).sum(), n as i128)))
                .collect()
        }
    };
    matvec(q, "classifier.w", &pooled)
        .into_iter()
        .map(|v| sat(v, -(1 << 30), 1 << 30) as i32)
        .collect()
}
