//! `push`, the eviction policies (refuse, sliding window, heavy hitter) and the index that
//! maps absolute positions to ring slots.

use super::*;

/// What `push` does when the cache is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Refuse: `push` returns [`KernelError::CapacityExceeded`] and changes nothing.
    #[default]
    Error,
    /// Drop the oldest position (ring buffer, O(1) per push).
    SlidingWindow,
    /// H2O: evict the positions with the lowest cumulative attention mass (summed over
    /// query heads at every decode), never the `recent` newest positions nor a global token
    /// a decode has attended (pinned). Evicts `max(1, capacity / 16)` positions at a time.
    HeavyHitter {
        /// Number of newest positions that are never evicted (must be `< capacity`).
        recent: usize,
    },
}

/// Read-only view of the slot layout used to map absolute positions to slots.
pub(super) struct Index<'a> {
    pub(super) pos: &'a [usize],
    pub(super) head: usize,
    pub(super) len: usize,
    pub(super) cap: usize,
    pub(super) total: usize,
    pub(super) contiguous: bool,
}

impl Index<'_> {
    #[inline]
    pub(super) fn phys(&self, l: usize) -> usize {
        let s = self.head + l;
        if s >= self.cap {
            s - self.cap
        } else {
            s
        }
    }

    /// Physical slot of absolute position `j`, if retained. `hint` is the logical index of
    /// the previous hit (ascending runs such as the local window cost O(1) each).
    #[inline]
    pub(super) fn find(&self, j: usize, hint: &mut usize) -> Option<usize> {
        if j >= self.total || self.len == 0 {
            return None;
        }
        if self.contiguous {
            let first = self.total - self.len;
            return (j >= first).then(|| self.phys(j - first));
        }
        let next = hint.wrapping_add(1);
        if next < self.len && self.pos[self.phys(next)] == j {
            *hint = next;
            return Some(self.phys(next));
        }
        let (mut lo, mut hi) = (0usize, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.pos[self.phys(mid)] < j {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < self.len && self.pos[self.phys(lo)] == j {
            *hint = lo;
            Some(self.phys(lo))
        } else {
            None
        }
    }
}

impl<S: KvElem> KvCacheOf<S> {
    /// Appends one position (`k_row`, `v_row`: `kv_heads · dim` each). On a full cache
    /// applies the eviction policy; on any error nothing changes.
    pub fn push(&mut self, k_row: &[f32], v_row: &[f32]) -> Result<()> {
        self.check_valid()?;
        for (what, r) in [("k_row", k_row), ("v_row", v_row)] {
            if r.len() != self.row {
                return Err(KernelError::ShapeMismatch {
                    what,
                    expected: self.row,
                    got: r.len(),
                });
            }
            if let Some(index) = r.iter().position(|&x| !S::representable(x)) {
                return Err(KernelError::NonFinite { what, index });
            }
        }
        let next_total = self.total.checked_add(1).ok_or(KernelError::Overflow {
            what: "position counter",
        })?;
        if self.len == self.capacity {
            match self.policy {
                EvictionPolicy::Error => {
                    return Err(KernelError::CapacityExceeded {
                        capacity: self.capacity,
                    })
                }
                EvictionPolicy::SlidingWindow => {
                    self.head = self.index().phys(1 % self.capacity);
                    self.len -= 1;
                }
                EvictionPolicy::HeavyHitter { recent } => self.evict_heavy(recent)?,
            }
        }
        let slot = self.index().phys(self.len);
        let r = self.row;
        // f16 rows are converted by F16C unless the scalar level is forced.
        let hw = self.level != simd::SimdLevel::Scalar;
        S::store(k_row, &mut self.k[slot * r..(slot + 1) * r], hw);
        S::store(v_row, &mut self.v[slot * r..(slot + 1) * r], hw);
        if !self.pos.is_empty() {
            self.pos[slot] = self.total;
            self.mass[slot] = 0.0;
            self.flags[slot] = 0;
        }
        self.len += 1;
        // The block sums run in f32 over rows pre-scaled by 2^-k (2^k ≥ block size), which
        // cannot overflow; scaling by a power of two commutes with rounding (outside the
        // subnormal range), so the mean `(Σ 2^-k·x / B)·2^k` has the bits of the whole
        // sequence's `Σ x / B` (`block_means`) whenever that sum is finite. No f64: it is
        // software arithmetic on single-precision FPUs (a Cortex-M4F push spent 12 k
        // instructions on it).
        let (down, up) = block_scales(self.block_size);
        for (a, &x) in self.acc_k.iter_mut().zip(k_row) {
            *a += x * down;
        }
        for (a, &x) in self.acc_v.iter_mut().zip(v_row) {
            *a += x * down;
        }
        self.acc_n += 1;
        if self.acc_n == self.block_size {
            let ls = self.completed % self.lm_slots;
            let cnt = self.acc_n as f32;
            let dst_k = &mut self.lm_k[ls * r..(ls + 1) * r];
            let dst_v = &mut self.lm_v[ls * r..(ls + 1) * r];
            // Convert the means through a tiny f32 buffer, one head at a time.
            let d = self.dim;
            let buf = &mut self.scratch.row;
            for h in 0..self.kv_heads {
                for (b, a) in buf.iter_mut().zip(&self.acc_k[h * d..(h + 1) * d]) {
                    *b = a / cnt * up;
                }
                S::store(&buf[..d], &mut dst_k[h * d..(h + 1) * d], hw);
                for (b, a) in buf.iter_mut().zip(&self.acc_v[h * d..(h + 1) * d]) {
                    *b = a / cnt * up;
                }
                S::store(&buf[..d], &mut dst_v[h * d..(h + 1) * d], hw);
            }
            self.acc_k.iter_mut().for_each(|a| *a = 0.0);
            self.acc_v.iter_mut().for_each(|a| *a = 0.0);
            self.acc_n = 0;
            self.completed += 1;
        }
        self.total = next_total;
        Ok(())
    }

    /// Heavy-hitter eviction of a batch of unprotected, lowest-mass positions, then an
    /// in-place stable compaction of the ring (O(capacity), once per batch).
    fn evict_heavy(&mut self, recent: usize) -> Result<()> {
        let (head, cap) = (self.head, self.capacity);
        let phys = move |l: usize| (head + l) % cap;
        let unprotected = self.len.saturating_sub(recent);
        self.order.clear();
        for l in 0..unprotected {
            let s = phys(l);
            if self.flags[s] & PINNED == 0 {
                self.order.push(s);
            }
        }
        if self.order.is_empty() {
            return Err(KernelError::CapacityExceeded {
                capacity: self.capacity,
            });
        }
        let batch = (self.capacity / 16).max(1).min(self.order.len());
        let (mass, pos) = (&self.mass, &self.pos);
        self.order.select_nth_unstable_by(batch - 1, |&a, &b| {
            mass[a].total_cmp(&mass[b]).then(pos[a].cmp(&pos[b]))
        });
        for &s in &self.order[..batch] {
            self.flags[s] |= VICTIM;
        }
        let r = self.row;
        let mut w = 0usize;
        for l in 0..self.len {
            let s = phys(l);
            if self.flags[s] & VICTIM != 0 {
                continue;
            }
            if w != l {
                let dst = phys(w);
                self.k.copy_within(s * r..(s + 1) * r, dst * r);
                self.v.copy_within(s * r..(s + 1) * r, dst * r);
                self.pos[dst] = self.pos[s];
                self.mass[dst] = self.mass[s];
                self.flags[dst] = self.flags[s];
            }
            w += 1;
        }
        self.len = w;
        self.contiguous = false;
        Ok(())
    }
}

/// `(2^-k, 2^k)` for the smallest `k` with `2^k ≥ block_size` (exact powers of two).
fn block_scales(block_size: usize) -> (f32, f32) {
    let k = block_size
        .checked_next_power_of_two()
        .map_or(usize::BITS, |p| p.trailing_zeros());
    (
        f32::from_bits((127 - k) << 23),
        f32::from_bits((127 + k) << 23),
    )
}
