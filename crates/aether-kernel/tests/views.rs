//! The allocation-free entry points on borrowed views: q, k, v and the output lent as
//! sub-slices of larger caller buffers give the same bits as owned `Tensor3`s, write
//! nothing outside the output rows, and a view of the wrong length is a typed error.

use aether_kernel::{
    dense_attention, dense_attention_into, dense_scratch_len, sparse_attention,
    sparse_attention_into, sparse_scratch_len, KernelError, SparsePattern, Tensor3, TensorMut,
    TensorRef,
};
use proptest::prelude::*;

mod common;

/// `len` values uniform in `[-1, 1)`, deterministic in `seed` (the tests' xorshift).
fn data(len: usize, seed: u64) -> Vec<f32> {
    common::tensor(1, 1, len.max(1), seed, 1.0).into_vec()[..len].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn views_equal_owned_tensors(
        n in 0usize..200, group in 1usize..4, hk in 1usize..3, d in 1usize..40,
        window in 0usize..40, block in 1usize..20, causal: bool, log_stride: bool,
        landmarks: bool, dense: bool, extra in 0usize..50, seed: u64,
    ) {
        let hq = hk * group;
        let (ql, kl) = (n * hq * d, n * hk * d);
        // One caller buffer per tensor, each longer than the view over it.
        let qb = data(ql + extra, seed);
        let kb = data(kl + extra, seed ^ 1);
        let vb = data(kl + extra, seed ^ 2);
        let p = SparsePattern { window, block_size: block, global_tokens: vec![0],
            causal, log_stride, landmarks };
        let owned = |b: &[f32], h| Tensor3::from_vec(b[..n * h * d].to_vec(), n, h, d).unwrap();
        let (q, k, v) = (owned(&qb, hq), owned(&kb, hk), owned(&vb, hk));
        let want = if dense {
            dense_attention(&q, &k, &v, causal).unwrap()
        } else {
            sparse_attention(&p, &q, &k, &v).unwrap()
        };
        let mut out = vec![f32::NAN; ql + extra];
        let need = if dense { dense_scratch_len(n, hk, d) } else { sparse_scratch_len(&p, n, hk, d) };
        let mut scratch = vec![0.0f32; need.unwrap()];
        let tq = TensorRef::new(&qb[..ql], n, hq, d).unwrap();
        let tk = TensorRef::new(&kb[..kl], n, hk, d).unwrap();
        let tv = TensorRef::new(&vb[..kl], n, hk, d).unwrap();
        let to = TensorMut::new(&mut out[..ql], n, hq, d).unwrap();
        if dense {
            dense_attention_into(tq, tk, tv, causal, to, &mut scratch).unwrap();
        } else {
            sparse_attention_into(&p, tq, tk, tv, to, &mut scratch).unwrap();
        }
        let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&out[..ql]), bits(want.as_slice()));
        // `&Tensor3` arguments convert into the same views.
        let mut owned_out = Tensor3::zeros(n, hq, d).unwrap();
        if dense {
            dense_attention_into(&q, &k, &v, causal, &mut owned_out, &mut scratch).unwrap();
        } else {
            sparse_attention_into(&p, &q, &k, &v, &mut owned_out, &mut scratch).unwrap();
        }
        prop_assert_eq!(common::max_diff(&owned_out, &want), 0.0);
        prop_assert!(out[ql..].iter().all(|x| x.is_nan()), "wrote past the output view");
    }
}

#[test]
fn mismatched_views_are_typed_errors() {
    let (q, k) = (vec![0.0f32; 4 * 2 * 8], vec![0.0f32; 4 * 8]);
    let mut out = vec![0.0f32; 3 * 2 * 8];
    let p = SparsePattern::default();
    let mut scratch = vec![0.0f32; sparse_scratch_len(&p, 4, 1, 8).unwrap()];
    let tq = TensorRef::new(&q, 4, 2, 8).unwrap();
    let tk = TensorRef::new(&k, 4, 1, 8).unwrap();
    let to = TensorMut::new(&mut out, 3, 2, 8).unwrap();
    assert_eq!(
        sparse_attention_into(&p, tq, tk, tk, to, &mut scratch),
        Err(KernelError::ShapeMismatch {
            what: "out.seq",
            expected: 4,
            got: 3
        })
    );
}
