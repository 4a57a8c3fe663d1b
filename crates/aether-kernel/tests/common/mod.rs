//! Helpers shared by the kernel's integration tests.

use aether_kernel::Tensor3;

/// A `[n][h][d]` tensor of xorshift values uniform in `[-amp, amp)`, deterministic in `seed`.
pub fn tensor(n: usize, h: usize, d: usize, seed: u64, amp: f32) -> Tensor3 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..n * h * d)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect();
    Tensor3::from_vec(data, n, h, d).unwrap()
}

/// Largest absolute element difference of two tensors of the same shape.
pub fn max_diff(a: &Tensor3, b: &Tensor3) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.as_slice()
        .iter()
        .zip(b.as_slice())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
