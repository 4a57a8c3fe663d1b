//! The integer head against its naive reference (bit for bit), streaming against the
//! whole-window forward (bit for bit), over every docs/model.md option.

mod common;

use aether_quant::{QLiveStream, QStream, QWorkspace, QuantHead};
use aether_rvne::{PatternSpec, QuantModelFile};
use common::*;
use proptest::prelude::*;

#[test]
fn fast_forward_equals_the_naive_reference_for_every_option() {
    for (name, meta) in variants() {
        let (_, blob) = quantized(&meta, 3);
        let head = QuantHead::from_blob(&blob).unwrap();
        let q = QuantModelFile::from_bytes(&blob).unwrap();
        for (i, n) in [1usize, 2, 7, 23, 40].into_iter().enumerate() {
            let fr = frames(n, meta.dims.input_dim, 100 + i as u64);
            let fast = head.forward(&fr).unwrap();
            assert_eq!(fast, naive::logits(&q, &fr), "{name}, n {n}");
        }
    }
}

#[test]
fn bidirectional_patterns_run_whole_windows_only() {
    for dense in [false, true] {
        let (_, mut meta) = variants().remove(0);
        meta.pattern = PatternSpec::new(3, 4, &[2], false, true, true).unwrap();
        if dense {
            meta.arch.attention = aether_rvne::AttentionBackend::Dense;
        }
        let (_, blob) = quantized(&meta, 5);
        let head = QuantHead::from_blob(&blob).unwrap();
        let q = QuantModelFile::from_bytes(&blob).unwrap();
        for n in [1usize, 5, 17, 30] {
            let fr = frames(n, meta.dims.input_dim, n as u64);
            assert_eq!(head.forward(&fr).unwrap(), naive::logits(&q, &fr), "n {n}");
        }
        assert!(!head.can_stream());
        assert!(matches!(
            QStream::new(&head, 8),
            Err(aether_quant::QuantError::NotCausal)
        ));
    }
}

#[test]
fn stream_equals_the_whole_window_forward_bit_for_bit() {
    for (name, meta) in variants() {
        let (_, blob) = quantized(&meta, 11);
        let head = QuantHead::from_blob(&blob).unwrap();
        let n = 45;
        let fr = frames(n, meta.dims.input_dim, 7);
        let f = meta.dims.input_dim;
        let mut s = QStream::new(&head, n).unwrap();
        for i in 0..n {
            let got = s.push(&head, &fr[i * f..(i + 1) * f]).unwrap().to_vec();
            let want = head.forward(&fr[..(i + 1) * f]).unwrap();
            assert_eq!(got, want, "{name}: after push {i}");
        }
        // reset: the next push is position 0 again
        s.reset();
        let got = s.push(&head, &fr[f..2 * f]).unwrap().to_vec();
        assert_eq!(got, head.forward(&fr[f..2 * f]).unwrap(), "{name}: reset");
    }
}

#[test]
fn live_stream_outputs_are_forwards_over_their_context() {
    let (_, meta) = variants().remove(0);
    let (_, blob) = quantized(&meta, 2);
    let head = QuantHead::from_blob(&blob).unwrap();
    let f = meta.dims.input_dim;
    let n = 40;
    let fr = frames(n, f, 9);
    for h in [2usize, 6, 9] {
        let mut live = QLiveStream::new(&head, h).unwrap();
        for t in 0..n {
            let got = live.push(&head, &fr[t * f..(t + 1) * f]).unwrap().to_vec();
            let ctx = live.context();
            assert!(ctx >= 1 && ctx <= h.max(t + 1));
            if t + 1 >= h {
                assert!(ctx > h / 2 && ctx <= h, "h {h} t {t} ctx {ctx}");
            }
            let want = head.forward(&fr[(t + 1 - ctx) * f..(t + 1) * f]).unwrap();
            assert_eq!(got, want, "h {h} t {t}");
            assert!(live.is_exact());
        }
        // resuming from the last h frames gives the same outputs afterwards
        let t0 = (n - h) as u64;
        let mut resumed = QLiveStream::resume_at(&head, h, t0).unwrap();
        for t in (n - h)..n {
            resumed.push(&head, &fr[t * f..(t + 1) * f]).unwrap();
        }
        let mut next_a = live.clone();
        let extra = frames(1, f, 77);
        assert_eq!(
            next_a.push(&head, &extra).unwrap(),
            resumed.push(&head, &extra).unwrap(),
            "h {h}"
        );
    }
    assert!(QLiveStream::new(&head, 1).is_err());
    assert!(QLiveStream::new(&head, 0).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_models_and_frames_stream_forward_and_naive_agree(
        variant in 0usize..13,
        seed in 0u64..1000,
        n in 1usize..30,
    ) {
        let (name, meta) = variants().swap_remove(variant);
        let (_, blob) = quantized(&meta, seed);
        let head = QuantHead::from_blob(&blob).unwrap();
        let q = QuantModelFile::from_bytes(&blob).unwrap();
        let f = meta.dims.input_dim;
        let fr = frames(n, f, seed ^ 0x55);
        let whole = head.forward(&fr).unwrap();
        prop_assert_eq!(&whole, &naive::logits(&q, &fr), "{}", name);
        // The size query is what the workspace allocates.
        prop_assert_eq!(
            QWorkspace::bytes_for(&head, n).unwrap(),
            QWorkspace::new(&head, n).unwrap().bytes(),
            "{}", name
        );
        let mut s = QStream::new(&head, n).unwrap();
        let mut last = Vec::new();
        for i in 0..n {
            last = s.push(&head, &fr[i * f..(i + 1) * f]).unwrap().to_vec();
        }
        prop_assert_eq!(last, whole, "{}", name);
    }
}
