//! `Tensor3`: a row-major `[seq][heads][dim]` f32 tensor, and the borrowed views
//! [`TensorRef`] / [`TensorMut`] the allocation-free entry points take, so a caller
//! lends a slice it already owns instead of moving its buffer into a `Tensor3` and back.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::{KernelError, Result};

/// A row-major `[seq][heads][dim]` tensor of f32: the layout of q, k, v and outputs.
///
/// `seq` may be zero (an empty sequence); `heads` and `dim` must be positive.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor3 {
    data: Vec<f32>,
    seq: usize,
    heads: usize,
    dim: usize,
}

/// `seq * heads * dim` with overflow and zero-dimension checks.
pub(crate) fn checked_len(seq: usize, heads: usize, dim: usize) -> Result<usize> {
    if heads == 0 {
        return Err(KernelError::ZeroDim { what: "heads" });
    }
    if dim == 0 {
        return Err(KernelError::ZeroDim { what: "dim" });
    }
    seq.checked_mul(heads)
        .and_then(|x| x.checked_mul(dim))
        .ok_or(KernelError::Overflow { what: "tensor" })
}

impl Tensor3 {
    /// Wraps `data` as `[seq][heads][dim]`; its length must be `seq * heads * dim`.
    pub fn from_vec(data: Vec<f32>, seq: usize, heads: usize, dim: usize) -> Result<Self> {
        check_data_len(data.len(), seq, heads, dim)?;
        Ok(Self {
            data,
            seq,
            heads,
            dim,
        })
    }

    /// A zero-filled tensor of the given shape.
    pub fn zeros(seq: usize, heads: usize, dim: usize) -> Result<Self> {
        let len = checked_len(seq, heads, dim)?;
        Ok(Self {
            data: vec![0.0; len],
            seq,
            heads,
            dim,
        })
    }

    /// `(seq, heads, dim)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.seq, self.heads, self.dim)
    }

    /// Sequence length.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Per-head dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The whole buffer, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The whole buffer, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its buffer.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// All heads of position `t` (`heads * dim` values), or `None` when out of range.
    pub fn row(&self, t: usize) -> Option<&[f32]> {
        let w = self.heads * self.dim;
        self.data.get(t * w..(t + 1) * w)
    }

    /// Mutable row of position `t`, or `None` when out of range.
    pub fn row_mut(&mut self, t: usize) -> Option<&mut [f32]> {
        let w = self.heads * self.dim;
        self.data.get_mut(t * w..(t + 1) * w)
    }

    /// Head `h` of position `t` (`dim` values), or `None` when out of range.
    pub fn head(&self, t: usize, h: usize) -> Option<&[f32]> {
        if h >= self.heads {
            return None;
        }
        let start = (t * self.heads + h) * self.dim;
        self.data.get(start..start + self.dim)
    }

    /// Index of the first non-finite element, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        self.data.iter().position(|x| !x.is_finite())
    }
}

impl Tensor3 {
    /// A borrowed view of the whole tensor.
    pub fn view(&self) -> TensorRef<'_> {
        TensorRef {
            data: &self.data,
            seq: self.seq,
            heads: self.heads,
            dim: self.dim,
        }
    }

    /// A mutable borrowed view of the whole tensor.
    pub fn view_mut(&mut self) -> TensorMut<'_> {
        TensorMut {
            data: &mut self.data,
            seq: self.seq,
            heads: self.heads,
            dim: self.dim,
        }
    }
}

/// A borrowed row-major `[seq][heads][dim]` view of f32 data (checked like [`Tensor3`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorRef<'a> {
    data: &'a [f32],
    seq: usize,
    heads: usize,
    dim: usize,
}

impl<'a> TensorRef<'a> {
    /// Views `data` as `[seq][heads][dim]`; its length must be `seq * heads * dim`.
    pub fn new(data: &'a [f32], seq: usize, heads: usize, dim: usize) -> Result<Self> {
        check_data_len(data.len(), seq, heads, dim)?;
        Ok(Self {
            data,
            seq,
            heads,
            dim,
        })
    }

    /// `(seq, heads, dim)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.seq, self.heads, self.dim)
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// The viewed data, row-major.
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }
}

impl<'a> From<&'a Tensor3> for TensorRef<'a> {
    fn from(t: &'a Tensor3) -> Self {
        t.view()
    }
}

/// A mutable borrowed row-major `[seq][heads][dim]` view of f32 data (an output).
#[derive(Debug, PartialEq)]
pub struct TensorMut<'a> {
    data: &'a mut [f32],
    seq: usize,
    heads: usize,
    dim: usize,
}

impl<'a> TensorMut<'a> {
    /// Views `data` as `[seq][heads][dim]`; its length must be `seq * heads * dim`.
    pub fn new(data: &'a mut [f32], seq: usize, heads: usize, dim: usize) -> Result<Self> {
        check_data_len(data.len(), seq, heads, dim)?;
        Ok(Self {
            data,
            seq,
            heads,
            dim,
        })
    }

    /// `(seq, heads, dim)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.seq, self.heads, self.dim)
    }

    /// The viewed data, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        self.data
    }
}

impl<'a> From<&'a mut Tensor3> for TensorMut<'a> {
    fn from(t: &'a mut Tensor3) -> Self {
        t.view_mut()
    }
}

/// `Ok` when `len == seq * heads * dim` (positive heads and dim, no overflow).
fn check_data_len(len: usize, seq: usize, heads: usize, dim: usize) -> Result<()> {
    let expected = checked_len(seq, heads, dim)?;
    if len != expected {
        return Err(KernelError::ShapeMismatch {
            what: "tensor data",
            expected,
            got: len,
        });
    }
    Ok(())
}

/// `Ok` when every `(what, expected, got)` agrees; else a [`KernelError::ShapeMismatch`]
/// naming the first that does not.
pub(crate) fn check_lens(checks: &[(&'static str, usize, usize)]) -> Result<()> {
    match checks.iter().find(|(_, expected, got)| expected != got) {
        Some(&(what, expected, got)) => Err(KernelError::ShapeMismatch {
            what,
            expected,
            got,
        }),
        None => Ok(()),
    }
}

/// Checks that q, k, v form a valid attention problem and returns `(seq, q_heads, kv_heads, dim)`.
///
/// k and v must share shape; q must have the same `seq` and `dim`; `k.heads` must divide `q.heads`.
pub fn check_qkv(q: &Tensor3, k: &Tensor3, v: &Tensor3) -> Result<(usize, usize, usize, usize)> {
    check_views(q.view(), k.view(), v.view())
}

/// [`check_qkv`] on borrowed views.
pub(crate) fn check_views(
    q: TensorRef<'_>,
    k: TensorRef<'_>,
    v: TensorRef<'_>,
) -> Result<(usize, usize, usize, usize)> {
    let (n, hq, d) = q.shape();
    let (nk, hk, dk) = k.shape();
    let (nv, hv, dv) = v.shape();
    if nk != n {
        return Err(KernelError::ShapeMismatch {
            what: "k.seq",
            expected: n,
            got: nk,
        });
    }
    if nv != n {
        return Err(KernelError::ShapeMismatch {
            what: "v.seq",
            expected: n,
            got: nv,
        });
    }
    if dk != d {
        return Err(KernelError::ShapeMismatch {
            what: "k.dim",
            expected: d,
            got: dk,
        });
    }
    if dv != d {
        return Err(KernelError::ShapeMismatch {
            what: "v.dim",
            expected: d,
            got: dv,
        });
    }
    if hv != hk {
        return Err(KernelError::ShapeMismatch {
            what: "v.heads",
            expected: hk,
            got: hv,
        });
    }
    if hq % hk != 0 {
        return Err(KernelError::HeadsNotDivisible {
            q_heads: hq,
            kv_heads: hk,
        });
    }
    Ok((n, hq, hk, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_validates_length_and_dims() {
        assert!(Tensor3::from_vec(vec![0.0; 6], 1, 2, 3).is_ok());
        assert!(Tensor3::from_vec(vec![], 0, 2, 3).is_ok());
        assert_eq!(
            Tensor3::from_vec(vec![0.0; 5], 1, 2, 3),
            Err(KernelError::ShapeMismatch {
                what: "tensor data",
                expected: 6,
                got: 5
            })
        );
        assert_eq!(
            Tensor3::from_vec(vec![], 1, 0, 3),
            Err(KernelError::ZeroDim { what: "heads" })
        );
        assert_eq!(
            Tensor3::from_vec(vec![], 1, 2, 0),
            Err(KernelError::ZeroDim { what: "dim" })
        );
        assert_eq!(
            Tensor3::zeros(usize::MAX, 2, 2),
            Err(KernelError::Overflow { what: "tensor" })
        );
    }

    #[test]
    fn views_check_like_from_vec() {
        let mut buf = [0.0f32; 8];
        assert!(TensorRef::new(&buf[..6], 1, 2, 3).is_ok());
        assert!(TensorRef::new(&buf[..0], 0, 2, 3).is_ok());
        assert_eq!(
            TensorRef::new(&buf[..5], 1, 2, 3),
            Err(KernelError::ShapeMismatch {
                what: "tensor data",
                expected: 6,
                got: 5
            })
        );
        assert_eq!(
            TensorMut::new(&mut buf[..0], 1, 0, 3),
            Err(KernelError::ZeroDim { what: "heads" })
        );
        assert_eq!(
            TensorRef::new(&buf, usize::MAX, 2, 2),
            Err(KernelError::Overflow { what: "tensor" })
        );
        let t = Tensor3::from_vec((0..6).map(|x| x as f32).collect(), 3, 1, 2).unwrap();
        assert_eq!(t.view().shape(), (3, 1, 2));
        assert_eq!(t.view().as_slice(), t.as_slice());
    }

    #[test]
    fn rows_and_heads_are_row_major() {
        let t = Tensor3::from_vec((0..12).map(|x| x as f32).collect(), 2, 3, 2).unwrap();
        assert_eq!(t.row(1).unwrap(), &[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(t.head(1, 2).unwrap(), &[10.0, 11.0]);
        assert!(t.row(2).is_none());
        assert!(t.head(0, 3).is_none());
    }

    #[test]
    fn check_qkv_reports_gqa_and_mismatches() {
        let q = Tensor3::zeros(4, 4, 8).unwrap();
        let k = Tensor3::zeros(4, 2, 8).unwrap();
        assert_eq!(check_qkv(&q, &k, &k), Ok((4, 4, 2, 8)));
        let k3 = Tensor3::zeros(4, 3, 8).unwrap();
        assert_eq!(
            check_qkv(&q, &k3, &k3),
            Err(KernelError::HeadsNotDivisible {
                q_heads: 4,
                kv_heads: 3
            })
        );
        let short = Tensor3::zeros(3, 2, 8).unwrap();
        assert!(matches!(
            check_qkv(&q, &short, &short),
            Err(KernelError::ShapeMismatch { what: "k.seq", .. })
        ));
    }
}
