//! AdamW, the warmup + cosine learning-rate schedule and global-norm clipping.
//!
//! AdamW (decoupled decay, Loshchilov & Hutter), per scalar, at step `t ≥ 1`:
//! `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`,
//! `θ ← θ − lr·(m̂/(√v̂ + ε) + λ·θ)` with `λ` the weight decay on weight matrices
//! only (never biases, layer-norm gains or shifts).
//!
//! Schedule over `S` steps with `W` warmup steps: `lr(s) = peak·(s+1)/W` for `s < W`,
//! then `min + (peak − min)·½(1 + cos(π·(s − W)/(S − W)))`.

use super::params::{Layout, ParamKind};

/// Linear warmup then cosine decay to `min_lr`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub peak: f32,
    /// Final learning rate.
    pub min_lr: f32,
    /// Warmup steps.
    pub warmup: usize,
    /// Total steps.
    pub total: usize,
}

impl Schedule {
    /// Learning rate of 0-based step `s`.
    pub fn lr(&self, s: usize) -> f32 {
        if s < self.warmup {
            return self.peak * (s + 1) as f32 / self.warmup as f32;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let prog = ((s - self.warmup) as f64 / span as f64).min(1.0);
        let cos = 0.5 * (1.0 + (core::f64::consts::PI * prog).cos());
        (f64::from(self.min_lr) + f64::from(self.peak - self.min_lr) * cos) as f32
    }
}

/// Scales `g` so its L2 norm is at most `max_norm`; returns the norm before clipping.
/// A `max_norm` that is not finite and positive disables clipping.
pub fn clip_global_norm(g: &mut [f32], max_norm: f32) -> f32 {
    let norm = g
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt() as f32;
    if max_norm.is_finite() && max_norm > 0.0 && norm > max_norm {
        let s = max_norm / norm;
        g.iter_mut().for_each(|x| *x *= s);
    }
    norm
}

/// AdamW state over a flat parameter vector.
#[derive(Debug, Clone)]
pub struct AdamW {
    m: Vec<f32>,
    v: Vec<f32>,
    decay: Vec<bool>,
    t: u32,
    /// `β₁`.
    pub beta1: f32,
    /// `β₂`.
    pub beta2: f32,
    /// `ε`.
    pub eps: f32,
    /// Decoupled weight decay `λ`.
    pub weight_decay: f32,
}

impl AdamW {
    /// Zero moments for `layout`; decay applies to [`ParamKind::Weight`] tensors only.
    pub fn new(layout: &Layout, beta1: f32, beta2: f32, eps: f32, weight_decay: f32) -> Self {
        let mut decay = vec![false; layout.total()];
        for s in layout.specs() {
            if s.kind == ParamKind::Weight {
                decay[s.range()].iter_mut().for_each(|d| *d = true);
            }
        }
        Self {
            m: vec![0.0; layout.total()],
            v: vec![0.0; layout.total()],
            decay,
            t: 0,
            beta1,
            beta2,
            eps,
            weight_decay,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.t
    }

    /// One update of `params` with gradient `g` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], g: &[f32], lr: f32) {
        self.t = self.t.saturating_add(1);
        let t = self.t as i32;
        let bc1 = 1.0 - f64::from(self.beta1).powi(t);
        let bc2 = 1.0 - f64::from(self.beta2).powi(t);
        let (b1, b2) = (self.beta1, self.beta2);
        let step = (f64::from(lr) / bc1) as f32;
        let inv_bc2 = (1.0 / bc2) as f32;
        for i in 0..params.len() {
            let gi = g[i];
            let m = b1 * self.m[i] + (1.0 - b1) * gi;
            let v = b2 * self.v[i] + (1.0 - b2) * gi * gi;
            self.m[i] = m;
            self.v[i] = v;
            let mut upd = step * m / ((v * inv_bc2).sqrt() + self.eps);
            if self.decay[i] {
                upd += lr * self.weight_decay * params[i];
            }
            params[i] -= upd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::Architecture;

    #[test]
    fn schedule_warms_up_then_decays() {
        let s = Schedule {
            peak: 1.0,
            min_lr: 0.1,
            warmup: 4,
            total: 20,
        };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert!((s.lr(4) - 1.0).abs() < 1e-6);
        assert!((s.lr(12) - 0.55).abs() < 1e-6);
        assert!((s.lr(20) - 0.1).abs() < 1e-6);
        assert!((s.lr(100) - 0.1).abs() < 1e-6);
        let mono: Vec<f32> = (4..20).map(|i| s.lr(i)).collect();
        assert!(mono.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn clipping_caps_the_norm() {
        let mut g = vec![3.0, 4.0];
        assert_eq!(clip_global_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        let mut h = vec![3.0, 4.0];
        clip_global_norm(&mut h, 0.0);
        assert_eq!(h, vec![3.0, 4.0]);
    }

    #[test]
    fn adamw_first_step_and_decay_mask() {
        let arch = Architecture::trainable(2, 2);
        let layout = Layout::new(&arch);
        let mut opt = AdamW::new(&layout, 0.9, 0.999, 1e-8, 0.5);
        let mut p = vec![1.0f32; layout.total()];
        let g = vec![0.2f32; layout.total()];
        opt.step(&mut p, &g, 0.1);
        // First bias-corrected step is lr·sign(g) (plus decay on weights).
        let w = layout.spec("layers.0.wq").unwrap().offset;
        let b = layout.spec("layers.0.bq").unwrap().offset;
        let gain = layout.spec("final_ln.g").unwrap().offset;
        assert!((p[w] - (1.0 - 0.1 - 0.05)).abs() < 1e-5);
        assert!((p[b] - 0.9).abs() < 1e-5);
        assert!((p[gain] - 0.9).abs() < 1e-5);
        assert_eq!(opt.steps(), 1);
    }
}
