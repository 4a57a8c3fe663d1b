//! Fallible allocation, shared by the kernel, the head and the integer head: a refused
//! (or overflowing) size is a value the caller maps to its own error, so a node gets an
//! error code instead of the allocation-error handler's abort.

use alloc::vec::Vec;

/// `n` copies of `value` in a vector of exactly that capacity, or `None` when the
/// allocator refuses or `n` elements of `T` overflow.
pub fn try_filled<T: Clone>(n: usize, value: T) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, value);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_or_refuses() {
        assert_eq!(try_filled(3, 7u8), Some(alloc::vec![7, 7, 7]));
        assert_eq!(try_filled::<u64>(0, 1), Some(Vec::new()));
        assert_eq!(try_filled(usize::MAX, 0u32), None);
    }
}
