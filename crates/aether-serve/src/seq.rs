//! Sequence numbers of one node: gaps, duplicates, reordering and restarts.
//!
//! A node numbers its packets (`u32` raw CSI and classification, `u16` feature state,
//! wrapping). [`SeqTracker::check`] classifies each new number against the newest seen:
//! forward by one is the next frame; forward by more is a gap (the missing frames are
//! counted; a gap above the bound resets the stream, see docs/serve.md); a number seen
//! among the last [`REORDER_WINDOW`] is a duplicate; an unseen number within that window
//! behind the newest arrived late (reordered) and is dropped, since a causal stream
//! cannot take a frame after its successor; a jump further back is a restart of the node
//! (it rebooted), which resets the stream.

/// How far behind the newest number a packet still counts as reordered (or duplicate)
/// rather than a node restart.
pub const REORDER_WINDOW: u32 = 63;

/// What a sequence number means for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// The node's first packet (or the first after a reset).
    First,
    /// The next number: take the frame.
    Next,
    /// `lost` numbers were skipped; take the frame and continue the stream.
    Gap {
        /// Missing packets.
        lost: u32,
    },
    /// More than the allowed gap: take the frame as the first of a new stream.
    GapReset {
        /// Missing packets.
        lost: u32,
    },
    /// Seen before: drop.
    Duplicate,
    /// Behind the newest by at most [`REORDER_WINDOW`], not seen: drop.
    Late,
    /// Far behind the newest: the node restarted; take the frame as the first of a new stream.
    Restart,
}

impl SeqVerdict {
    /// Whether the frame goes into the stream.
    pub fn accepted(self) -> bool {
        !matches!(self, SeqVerdict::Duplicate | SeqVerdict::Late)
    }

    /// Whether the stream starts anew with this frame.
    pub fn resets(self) -> bool {
        matches!(self, SeqVerdict::GapReset { .. } | SeqVerdict::Restart)
    }
}

/// Tracks one node's sequence numbers of one packet kind (`bits` wide).
#[derive(Debug, Clone)]
pub struct SeqTracker {
    modulus: u64,
    newest: Option<u32>,
    /// Bit `i` set: number `newest − i` was seen (bit 0 is `newest`).
    seen: u64,
}

impl SeqTracker {
    /// A tracker for numbers of `bits` bits (16 or 32).
    pub fn new(bits: u32) -> Self {
        Self {
            modulus: 1u64 << bits.clamp(8, 32),
            newest: None,
            seen: 0,
        }
    }

    /// Forgets every number.
    pub fn reset(&mut self) {
        self.newest = None;
        self.seen = 0;
    }

    /// The newest number accepted.
    pub fn newest(&self) -> Option<u32> {
        self.newest
    }

    /// Classifies `seq` and records it; `max_gap` is the largest gap (in missing
    /// packets) that keeps the stream going.
    pub fn check(&mut self, seq: u32, max_gap: u32) -> SeqVerdict {
        let m = self.modulus;
        let seq = (u64::from(seq) % m) as u32;
        let Some(newest) = self.newest else {
            self.newest = Some(seq);
            self.seen = 1;
            return SeqVerdict::First;
        };
        let fwd = (u64::from(seq) + m - u64::from(newest)) % m;
        if fwd == 0 {
            return SeqVerdict::Duplicate;
        }
        if fwd < m / 2 {
            self.newest = Some(seq);
            self.seen = if fwd >= 64 { 1 } else { (self.seen << fwd) | 1 };
            let lost = (fwd - 1) as u32;
            return match lost {
                0 => SeqVerdict::Next,
                l if l > max_gap => SeqVerdict::GapReset { lost: l },
                l => SeqVerdict::Gap { lost: l },
            };
        }
        let back = m - fwd;
        if back <= u64::from(REORDER_WINDOW) {
            let bit = 1u64 << back;
            if self.seen & bit != 0 {
                return SeqVerdict::Duplicate;
            }
            self.seen |= bit;
            return SeqVerdict::Late;
        }
        self.newest = Some(seq);
        self.seen = 1;
        SeqVerdict::Restart
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn verdicts() {
        let mut s = SeqTracker::new(32);
        assert_eq!(s.check(10, 5), SeqVerdict::First);
        assert_eq!(s.check(11, 5), SeqVerdict::Next);
        assert_eq!(s.check(11, 5), SeqVerdict::Duplicate);
        assert_eq!(s.check(14, 5), SeqVerdict::Gap { lost: 2 });
        assert_eq!(s.check(12, 5), SeqVerdict::Late);
        assert_eq!(s.check(12, 5), SeqVerdict::Duplicate);
        assert_eq!(s.check(10, 5), SeqVerdict::Duplicate);
        assert_eq!(s.check(13, 5), SeqVerdict::Late);
        assert_eq!(s.check(15, 5), SeqVerdict::Next);
        assert_eq!(s.check(22, 5), SeqVerdict::GapReset { lost: 6 });
        assert_eq!(s.check(0, 5), SeqVerdict::Late);
        assert_eq!(s.check(23, 5), SeqVerdict::Next);
        assert_eq!(
            s.check(1_000_000, 5),
            SeqVerdict::GapReset { lost: 999_976 }
        );
        assert_eq!(s.check(3, 5), SeqVerdict::Restart);
        assert_eq!(s.check(4, 5), SeqVerdict::Next);
        assert_eq!(s.newest(), Some(4));
        s.reset();
        assert_eq!(s.check(9, 5), SeqVerdict::First);
    }

    #[test]
    fn wraps() {
        let mut s = SeqTracker::new(16);
        assert_eq!(s.check(65_534, 0), SeqVerdict::First);
        assert_eq!(s.check(65_535, 0), SeqVerdict::Next);
        assert_eq!(s.check(0, 0), SeqVerdict::Next);
        assert_eq!(s.check(65_535, 0), SeqVerdict::Duplicate);
        assert_eq!(s.check(2, 1), SeqVerdict::Gap { lost: 1 });
        assert_eq!(s.check(1, 1), SeqVerdict::Late);
        let mut s = SeqTracker::new(32);
        assert_eq!(s.check(u32::MAX, 0), SeqVerdict::First);
        assert_eq!(s.check(0, 0), SeqVerdict::Next);
    }

    proptest! {
        /// Any permutation of a window of numbers with repeats: every number is
        /// taken at most once, and the newest is the maximum taken.
        #[test]
        fn each_number_taken_once(start in any::<u32>(), order in proptest::collection::vec(0u32..40, 1..120)) {
            let mut s = SeqTracker::new(32);
            let mut taken = std::collections::HashSet::new();
            for &o in &order {
                let seq = start.wrapping_add(o);
                let v = s.check(seq, 100);
                prop_assert!(!v.resets());
                if v.accepted() {
                    prop_assert!(taken.insert(o), "{} taken twice", o);
                }
            }
        }
    }
}
