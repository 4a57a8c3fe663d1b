//! The C ABI from Rust: results equal `TemporalHead::forward` on the last
//! `min(pushed, window)` frames, every misuse gives its code, and no input — random
//! bytes, mutated blobs with a fixed-up CRC, random dims, NaN/Inf/huge frames, random
//! push/classify sequences — reaches a panic (`panics_caught()` stays 0) or leaves
//! `*out_ctx` set on failure.

mod common;

use std::collections::VecDeque;
use std::ptr;

use aether_ffi::*;
use aether_head::TemporalHead;
use proptest::prelude::*;

const CODES: [i32; 9] = [
    ESP_OK,
    ESP_FAIL,
    ESP_ERR_NO_MEM,
    ESP_ERR_INVALID_ARG,
    ESP_ERR_INVALID_STATE,
    ESP_ERR_INVALID_SIZE,
    ESP_ERR_NOT_SUPPORTED,
    ESP_ERR_INVALID_CRC,
    ESP_ERR_INVALID_VERSION,
];

/// init through the C ABI; asserts the `*out_ctx` contract.
fn init(blob: &[u8], f: u32, w: u32, c: u32) -> (i32, *mut ruv_temporal_ctx) {
    let mut ctx = ptr::dangling_mut::<ruv_temporal_ctx>(); // not NULL on purpose
                                                           // SAFETY: `blob` is live for the call (and for the context's life in every caller).
    let err = unsafe { ruv_temporal_init(blob.as_ptr(), blob.len(), f, w, c, &mut ctx) };
    assert!(CODES.contains(&err), "unknown code {err:#x}");
    assert_eq!(
        err == ESP_OK,
        !ctx.is_null(),
        "out_ctx contract, code {err:#x}"
    );
    (err, ctx)
}

fn push(ctx: *mut ruv_temporal_ctx, frame: &[f32]) -> i32 {
    // SAFETY: `ctx` is live; `frame` holds F floats (callers pass F-wide frames).
    unsafe { ruv_temporal_push(ctx, frame.as_ptr()) }
}

fn classify(ctx: *mut ruv_temporal_ctx, out: &mut [f32]) -> i32 {
    // SAFETY: `ctx` is live; `out` has `out.len()` writable floats.
    unsafe { ruv_temporal_classify(ctx, out.as_mut_ptr(), out.len() as u32) }
}

fn destroy(ctx: *mut ruv_temporal_ctx) {
    // SAFETY: `ctx` is NULL or live and not used afterwards.
    unsafe { ruv_temporal_destroy(ctx) }
}

/// Rewrites the CRC footer so a mutated blob reaches the content checks.
fn fix_crc(b: &mut [u8]) {
    if b.len() >= 4 {
        let n = b.len() - 4;
        let crc = aether_rvne::crc32(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
    }
}

#[test]
fn null_arguments_and_codes() {
    let blob = common::Aligned::new(&common::seeded_v1());
    let b = blob.bytes();
    // SAFETY: NULL out_ctx is checked before anything is written.
    let e = unsafe { ruv_temporal_init(b.as_ptr(), b.len(), 16, 8, 4, ptr::null_mut()) };
    assert_eq!(e, ESP_ERR_INVALID_ARG);
    let mut ctx = ptr::dangling_mut::<ruv_temporal_ctx>();
    // SAFETY: NULL weights are checked after *out_ctx is cleared.
    let e = unsafe { ruv_temporal_init(ptr::null(), 10, 16, 8, 4, &mut ctx) };
    assert_eq!((e, ctx), (ESP_ERR_INVALID_ARG, ptr::null_mut()));
    // SAFETY: a length above isize::MAX is refused before a slice is formed.
    let e = unsafe { ruv_temporal_init(b.as_ptr(), usize::MAX, 16, 8, 4, &mut ctx) };
    assert_eq!((e, ctx), (ESP_ERR_INVALID_SIZE, ptr::null_mut()));
    assert_eq!(init(b, 16, 0, 4).0, ESP_ERR_INVALID_ARG);
    assert_eq!(init(b, 16, MAX_WINDOW + 1, 4).0, ESP_ERR_INVALID_ARG);
    assert_eq!(init(b, 15, 8, 4).0, ESP_ERR_INVALID_ARG);
    assert_eq!(init(b, 16, 8, 5).0, ESP_ERR_INVALID_ARG);
    assert_eq!(init(&b[..b.len() - 1], 16, 8, 4).0, ESP_ERR_INVALID_SIZE);
    let mut bad = b.to_vec();
    bad[1000] ^= 0x10;
    assert_eq!(init(&bad, 16, 8, 4).0, ESP_ERR_INVALID_CRC);
    let mut bad = b.to_vec();
    bad[4] = 9;
    assert_eq!(init(&bad, 16, 8, 4).0, ESP_ERR_INVALID_VERSION);
    let mut bad = b.to_vec();
    bad[6] = 0x80; // unknown v1 flag bit: a newer writer's feature
    assert_eq!(init(&bad, 16, 8, 4).0, ESP_ERR_NOT_SUPPORTED);
    let mut bad = b.to_vec();
    bad[16] = 0; // zero layers, CRC fixed: a well-formed file of an invalid model
    fix_crc(&mut bad);
    assert!([ESP_ERR_INVALID_ARG, ESP_ERR_INVALID_SIZE].contains(&init(&bad, 16, 8, 4).0));

    let (e, ctx) = init(b, 16, 8, 4);
    assert_eq!(e, ESP_OK);
    let mut out = [7.0f32; 4];
    assert_eq!(classify(ctx, &mut out), ESP_ERR_INVALID_STATE);
    assert_eq!(out, [7.0; 4]);
    // SAFETY: NULL arguments are checked before any dereference.
    unsafe {
        assert_eq!(
            ruv_temporal_push(ptr::null_mut(), out.as_ptr()),
            ESP_ERR_INVALID_ARG
        );
        assert_eq!(ruv_temporal_push(ctx, ptr::null()), ESP_ERR_INVALID_ARG);
        assert_eq!(
            ruv_temporal_classify(ptr::null_mut(), out.as_mut_ptr(), 4),
            ESP_ERR_INVALID_ARG
        );
        assert_eq!(
            ruv_temporal_classify(ctx, ptr::null_mut(), 4),
            ESP_ERR_INVALID_ARG
        );
        // A misaligned logits pointer is refused, not dereferenced.
        let mut raw = [0u8; 4 * 5];
        let mis = raw.as_mut_ptr().add(1).cast::<f32>();
        assert_eq!(push(ctx, &[0.5; 16]), ESP_OK);
        assert_eq!(ruv_temporal_classify(ctx, mis, 4), ESP_ERR_INVALID_ARG);
        ruv_temporal_destroy(ptr::null_mut());
    }
    assert_eq!(classify(ctx, &mut out[..3]), ESP_ERR_INVALID_ARG);
    assert_eq!(classify(ctx, &mut out), ESP_OK);
    destroy(ctx);
    assert_eq!(ruv_temporal_kernel_self_test(), ESP_OK);
    assert_eq!(panics_caught(), 0);
}

#[test]
fn aligned_blobs_are_borrowed_and_misaligned_ones_copied() {
    let blob = common::seeded_v1();
    let aligned = common::Aligned::new(&blob);
    let ctx = Context::new(aligned.bytes(), 16, 32, 4).unwrap();
    assert!(
        ctx.head().unwrap().is_zero_copy(),
        "4-aligned f32 v1 blob must be used in place"
    );
    let mut store = vec![0u8; blob.len() + 1];
    store[1..].copy_from_slice(&blob);
    let mis = &store[1..];
    if !(mis.as_ptr() as usize).is_multiple_of(4) {
        let c2 = Context::new(mis, 16, 32, 4).unwrap();
        assert!(!c2.head().unwrap().is_zero_copy());
        assert_eq!(c2.head().unwrap().weights(), ctx.head().unwrap().weights());
    }
    for (_, v2, f, c) in common::trained_cases() {
        let a = common::Aligned::new(&v2);
        let ctx = Context::new(a.bytes(), f as u32, 8, c as u32).unwrap();
        assert!(
            ctx.head().unwrap().is_zero_copy(),
            "16-aligned v2 tensors must be used in place"
        );
    }
}

/// Pushes `frames`, classifying after each push, against the Rust forward of the last
/// `min(pushed, window)` frames.
fn check_against_forward(blob: &[u8], f: usize, c: usize, window: usize, frames: &[f32]) {
    let head = TemporalHead::from_blob(blob).unwrap();
    let (e, ctx) = init(blob, f as u32, window as u32, c as u32);
    assert_eq!(e, ESP_OK);
    let mut held: VecDeque<&[f32]> = VecDeque::new();
    let mut out = vec![0.0f32; c];
    for fr in frames.chunks(f) {
        assert_eq!(push(ctx, fr), ESP_OK);
        held.push_back(fr);
        if held.len() > window {
            held.pop_front();
        }
        let seq: Vec<f32> = held.iter().flat_map(|r| r.iter().copied()).collect();
        let want = head.forward(&seq).unwrap();
        assert_eq!(classify(ctx, &mut out), ESP_OK);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5, "{out:?} vs {want:?}");
        }
    }
    destroy(ctx);
}

#[test]
fn classify_equals_the_head_forward_on_the_last_window() {
    let seeded = common::Aligned::new(&common::seeded_v1());
    check_against_forward(seeded.bytes(), 16, 4, 7, &common::frames(25, 16, 1));
    check_against_forward(seeded.bytes(), 16, 4, 1, &common::frames(4, 16, 2));
    for (_, blob, f, c) in common::trained_cases() {
        check_against_forward(&blob, f, c, 9, &common::frames(30, f, 3));
    }
    // The golden input of aether-head: 64 frames, window 64, committed logits.
    let golden: Vec<f32> = include_str!("../../aether-head/testdata/golden_v1_logits.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let (e, ctx) = init(seeded.bytes(), 16, 64, 4);
    assert_eq!(e, ESP_OK);
    for t in 0..64 {
        let fr: Vec<f32> = (0..16)
            .map(|k| (0.1 * t as f32 + 0.3 * k as f32).sin() + 0.05 * k as f32)
            .collect();
        assert_eq!(push(ctx, &fr), ESP_OK);
    }
    let mut out = [0.0f32; 4];
    assert_eq!(classify(ctx, &mut out), ESP_OK);
    for (a, b) in out.iter().zip(&golden) {
        assert!((a - b).abs() <= 1e-5, "{out:?} vs golden {golden:?}");
    }
    destroy(ctx);
}

/// `aether classify --window N` classifies through aether-head's `RollingWindow` (default
/// workspace): the C ABI gives the same logits after every push.
#[test]
fn classify_equals_the_rolling_window_of_aether_classify() {
    for (_, blob, f, c) in common::trained_cases() {
        let head = TemporalHead::from_blob(&blob).unwrap();
        let window = 11;
        let mut rw = aether_head::RollingWindow::new(&head, window).unwrap();
        let (e, ctx) = init(&blob, f as u32, window as u32, c as u32);
        assert_eq!(e, ESP_OK);
        let (mut a, mut b) = (vec![0.0f32; c], vec![0.0f32; c]);
        for fr in common::frames(40, f, 9).chunks(f) {
            rw.push(fr).unwrap();
            assert_eq!(push(ctx, fr), ESP_OK);
            rw.classify(&head, &mut a).unwrap();
            assert_eq!(classify(ctx, &mut b), ESP_OK);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-5, "{a:?} vs {b:?}");
            }
        }
        destroy(ctx);
    }
}

#[test]
fn huge_finite_frames_give_esp_fail_not_nan() {
    let blob = common::Aligned::new(&common::seeded_v1());
    let (_, ctx) = init(blob.bytes(), 16, 4, 4);
    assert_eq!(push(ctx, &[3.0e38; 16]), ESP_OK);
    let mut out = [1.5f32; 4];
    let e = classify(ctx, &mut out);
    assert!(e == ESP_OK || e == ESP_FAIL);
    if e == ESP_OK {
        assert!(out.iter().all(|x| x.is_finite()));
    } else {
        assert_eq!(out, [1.5; 4], "logits untouched on error");
    }
    destroy(ctx);
    assert_eq!(panics_caught(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                magic in any::<bool>(), f in 0u32..40, w in 0u32..70, c in 0u32..9) {
        let mut b = bytes;
        if magic && b.len() >= 6 {
            b[..4].copy_from_slice(&0x5256_4E45u32.to_le_bytes());
            b[4] = 1 + (b[4] & 1);
            b[5] = 0;
            fix_crc(&mut b);
        }
        let (e, ctx) = init(&b, f, w, c);
        prop_assert!(e != ESP_OK || !ctx.is_null());
        destroy(ctx);
        prop_assert_eq!(panics_caught(), 0);
    }

    #[test]
    fn mutated_blobs_never_panic(which in 0usize..3, pos in any::<prop::sample::Index>(),
                                 val in any::<u8>(), fix in any::<bool>(), cut in 0usize..8,
                                 w in 1u32..40) {
        let (blob, f, c) = match which {
            0 => (common::seeded_v1(), 16, 4),
            1 => (common::seeded_v1_f16(), 16, 4),
            _ => { let (_, b, f, c) = common::trained_cases().remove(0); (b, f, c) }
        };
        let mut b = blob.clone();
        // Mutate a header or table byte most of the time: that is where the checks are.
        let span = if pos.index(4) == 0 { b.len() } else { b.len().min(160) };
        let i = pos.index(span);
        b[i] = val;
        if cut > 0 { let n = b.len().saturating_sub(cut * 3); b.truncate(n); }
        if fix { fix_crc(&mut b); }
        let (e, ctx) = init(&b, f as u32, w, c as u32);
        if e == ESP_OK {
            // Whatever model the mutation left, the calls stay well-defined.
            let frame = vec![0.5f32; f];
            prop_assert_eq!(push(ctx, &frame), ESP_OK);
            let mut out = vec![0.0f32; c];
            let r = classify(ctx, &mut out);
            prop_assert!(r == ESP_OK || r == ESP_FAIL, "classify gave {:#x}", r);
        }
        destroy(ctx);
        prop_assert_eq!(panics_caught(), 0);
    }

    #[test]
    fn random_call_sequences_match_a_model(window in 1usize..12,
                                           ops in proptest::collection::vec((0u8..10, any::<u32>()), 1..60)) {
        let blob = common::Aligned::new(&common::trained_cases().remove(1).1);
        let (f, c) = (5usize, 4usize);
        let head = TemporalHead::from_blob(blob.bytes()).unwrap();
        let (e, ctx) = init(blob.bytes(), f as u32, window as u32, c as u32);
        prop_assert_eq!(e, ESP_OK);
        let mut held: VecDeque<Vec<f32>> = VecDeque::new();
        for (k, (op, r)) in ops.into_iter().enumerate() {
            let mut fr = common::frames(1, f, k as u64 + r as u64);
            match op {
                0..=5 => {
                    prop_assert_eq!(push(ctx, &fr), ESP_OK);
                    held.push_back(fr);
                    if held.len() > window { held.pop_front(); }
                }
                6 => {
                    fr[r as usize % f] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][r as usize % 3];
                    prop_assert_eq!(push(ctx, &fr), ESP_ERR_INVALID_ARG);
                }
                7 => {
                    let mut out = vec![0.0f32; c + 1 + (r as usize % 3)];
                    prop_assert_eq!(classify(ctx, &mut out), ESP_ERR_INVALID_ARG);
                }
                _ => {
                    let mut out = vec![0.0f32; c];
                    let e = classify(ctx, &mut out);
                    if held.is_empty() {
                        prop_assert_eq!(e, ESP_ERR_INVALID_STATE);
                    } else {
                        prop_assert_eq!(e, ESP_OK);
                        let seq: Vec<f32> = held.iter().flatten().copied().collect();
                        let want = head.forward(&seq).unwrap();
                        for (a, b) in out.iter().zip(&want) {
                            prop_assert!((a - b).abs() <= 1e-5);
                        }
                    }
                }
            }
        }
        destroy(ctx);
        prop_assert_eq!(panics_caught(), 0);
    }
}

/// int8 blobs (`aether quantize` output) run on the integer head: every classify equals
/// `QuantHead::forward` over the window, bit for bit, as f32 `q · 2^−shift`; aligned
/// blobs are used in place, misaligned ones copy their i32 tables and give the same bits.
#[test]
fn int8_blobs_classify_with_the_integer_head() {
    for (name, blob, f, c) in common::int8_cases() {
        let a = common::Aligned::new(&blob);
        let window = 9usize;
        let mut ctx = Context::new(a.bytes(), f as u32, window as u32, c as u32).unwrap();
        assert!(ctx.is_int8() && ctx.head().is_none() && ctx.workspace().is_none());
        let q = aether_quant::QuantHead::from_blob(a.bytes()).unwrap();
        assert_eq!(q.owned_bytes(), 0, "{name}: aligned tables are borrowed");
        let mut store = vec![0u8; blob.len() + 1];
        store[1..].copy_from_slice(&blob);
        let mut mis = Context::new(&store[1..], f as u32, window as u32, c as u32).unwrap();
        let frames = common::frames(31, f, 3);
        let mut out = vec![0.0f32; c];
        let mut out2 = vec![0.0f32; c];
        for (k, fr) in frames.chunks(f).enumerate() {
            ctx.push(fr).unwrap();
            mis.push(fr).unwrap();
            ctx.classify(&mut out).unwrap();
            mis.classify(&mut out2).unwrap();
            let lo = (k + 1).saturating_sub(window);
            let want_q = q.forward(&frames[lo * f..(k + 1) * f]).unwrap();
            let mut want = vec![0.0f32; c];
            q.logits_to_f32(&want_q, &mut want);
            assert_eq!(out, want, "{name}: after push {k}");
            assert_eq!(out2, want, "{name}: misaligned blob, push {k}");
        }
        assert!(
            mis.buffer_bytes() > ctx.buffer_bytes(),
            "{name}: misaligned copies tables"
        );
        // the float head refuses the int8 blob; the context takes either
        assert!(aether_head::TemporalHead::from_blob(&blob).is_err());
        // a wrong class count is still refused
        assert_eq!(
            Context::new(a.bytes(), f as u32, 4, c as u32 + 1)
                .unwrap_err()
                .status(),
            ESP_ERR_INVALID_ARG
        );
    }
}
