//! One crafted byte file per rejection path: each must be refused with its own variant
//! (and never panic).

mod common;

use aether_rvne::{BlobView, DType, Error, ModelFile, ModelMeta, PatternSpec, MAX_GLOBALS};
use common::*;

/// A payload and the check its error must pass.
type Case = (Vec<u8>, fn(&Error) -> bool);

fn v1() -> Vec<u8> {
    tiny_v1_model().to_v1_bytes(DType::F32).unwrap()
}

fn raw() -> Raw {
    Raw::from_model(&full_model(), DType::F32)
}

fn err(b: &[u8]) -> Error {
    BlobView::parse(b).expect_err("must be refused")
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

// ---- v1 ---------------------------------------------------------------------------

#[test]
fn raw_encoder_agrees_with_writer() {
    let m = full_model();
    for dt in [DType::F32, DType::F16] {
        assert_eq!(Raw::from_model(&m, dt).encode(), m.to_v2_bytes(dt).unwrap());
    }
    BlobView::parse(&v1()).unwrap();
}

#[test]
fn empty_and_short_inputs() {
    assert!(matches!(err(&[]), Error::Truncated { what: "magic", .. }));
    assert!(matches!(err(&[0x45, 0x4E, 0x56]), Error::Truncated { .. }));
    assert!(matches!(
        err(&[0x45, 0x4E, 0x56, 0x52, 1]),
        Error::Truncated {
            what: "version",
            ..
        }
    ));
    let b = v1();
    assert!(matches!(
        err(&b[..20]),
        Error::Truncated {
            what: "v1 header and footer",
            ..
        }
    ));
}

#[test]
fn bad_magic() {
    let mut b = v1();
    b[0] = b'X';
    assert!(matches!(err(&b), Error::BadMagic { .. }));
}

#[test]
fn unsupported_versions() {
    for v in [0u16, 3, 0xFFFF] {
        let mut b = v1();
        set_u16(&mut b, 4, v);
        assert_eq!(err(&b), Error::UnsupportedVersion { got: v });
    }
}

#[test]
fn v1_unknown_flags() {
    let mut b = v1();
    b[6] = 0b10;
    fix_crc(&mut b);
    assert_eq!(err(&b), Error::UnknownV1Flags { bits: 0b10 });
}

#[test]
fn v1_reserved_byte() {
    let mut b = v1();
    b[7] = 9;
    fix_crc(&mut b);
    assert!(matches!(err(&b), Error::ReservedNotZero { got: 9, .. }));
}

#[test]
fn v1_truncated_payload() {
    let b = v1();
    let e = err(&b[..b.len() - 1]);
    assert_eq!(
        e,
        Error::LengthMismatch {
            declared: b.len() as u64,
            actual: b.len() - 1
        }
    );
}

#[test]
fn v1_crc_mismatch() {
    let mut b = v1();
    b[30] ^= 1;
    assert!(matches!(err(&b), Error::CrcMismatch { .. }));
}

#[test]
fn v1_zero_dims() {
    for (at, field) in [
        (8, "input_dim"),
        (10, "q_heads"),
        (12, "kv_heads"),
        (14, "head_dim"),
        (16, "layers"),
        (18, "classes"),
    ] {
        let mut b = v1();
        set_u16(&mut b, at, 0);
        fix_crc(&mut b);
        assert_eq!(err(&b), Error::ZeroDim { field }, "{field}");
    }
}

#[test]
fn v1_one_class() {
    let mut b = v1();
    set_u16(&mut b, 18, 1);
    fix_crc(&mut b);
    assert_eq!(err(&b), Error::TooFewClasses { got: 1 });
}

#[test]
fn v1_heads_not_divisible() {
    let mut b = v1();
    set_u16(&mut b, 10, 3);
    set_u16(&mut b, 12, 2);
    fix_crc(&mut b);
    assert_eq!(
        err(&b),
        Error::HeadsNotDivisible {
            q_heads: 3,
            kv_heads: 2
        }
    );
}

#[test]
fn v1_dims_disagree_with_payload() {
    // Valid header and CRC, but 3 layers declared over a 2-layer payload.
    let mut b = v1();
    let declared = b.len() as u64 - 28;
    set_u16(&mut b, 16, 3);
    fix_crc(&mut b);
    let e = err(&b);
    // F=2, Hq=2, Hkv=1, dh=2: per layer 8+4+4+8 = 24 weights, classifier 4.
    let implied = (3 * 24 + 4) * 4;
    assert_eq!(e, Error::WeightsLength { declared, implied });
    let msg = e.to_string();
    assert!(
        msg.contains(&declared.to_string()) && msg.contains(&implied.to_string()),
        "{msg}"
    );
}

#[test]
fn v1_f16_flag_on_f32_payload() {
    let mut b = v1();
    b[6] = 1;
    fix_crc(&mut b);
    assert!(matches!(err(&b), Error::WeightsLength { .. }));
}

#[test]
fn v1_huge_weights_len() {
    let mut b = v1();
    set_u32(&mut b, 20, u32::MAX);
    assert!(matches!(err(&b), Error::LengthMismatch { .. }));
}

// ---- v2 header and sections -------------------------------------------------------

#[test]
fn v2_truncated() {
    let b = raw().encode();
    assert!(matches!(
        err(&b[..43]),
        Error::Truncated {
            what: "v2 header and footer",
            ..
        }
    ));
}

#[test]
fn v2_header_len() {
    let mut r = raw();
    r.header_len = 48;
    assert_eq!(err(&r.encode()), Error::HeaderLength { got: 48 });
}

#[test]
fn v2_file_len() {
    let b = raw().encode();
    assert!(matches!(
        err(&b[..b.len() - 4]),
        Error::LengthMismatch { .. }
    ));
    let mut longer = b.clone();
    longer.push(0);
    assert!(matches!(err(&longer), Error::LengthMismatch { .. }));
}

#[test]
fn v2_crc() {
    let mut b = raw().encode();
    let n = b.len();
    b[n - 10] ^= 0x40;
    assert!(matches!(err(&b), Error::CrcMismatch { .. }));
}

#[test]
fn v2_reserved() {
    let mut r = raw();
    r.reserved = 1;
    assert!(matches!(
        err(&r.encode()),
        Error::ReservedNotZero { got: 1, .. }
    ));
}

#[test]
fn v2_unknown_required_feature() {
    let mut r = raw();
    r.required |= 1 << 11;
    assert_eq!(
        err(&r.encode()),
        Error::UnknownRequiredFeatures { bits: 1 << 11 }
    );
}

#[test]
fn v2_unknown_optional_flags_ignored() {
    let mut r = raw();
    r.optional = 0xFFFF_FFFF;
    let b = r.encode();
    assert_eq!(BlobView::parse(&b).unwrap().optional_flags(), 0xFFFF_FFFF);
}

#[test]
fn v2_meta_len_out_of_bounds() {
    let mut b = raw().encode();
    set_u32(&mut b, 16, 0x7FFF_FFFF);
    fix_crc(&mut b);
    assert!(matches!(
        err(&b),
        Error::SectionOutOfBounds {
            section: "metadata",
            ..
        }
    ));
}

#[test]
fn v2_table_len_out_of_bounds() {
    let mut b = raw().encode();
    set_u32(&mut b, 20, 0x7FFF_FFFF);
    fix_crc(&mut b);
    assert!(matches!(
        err(&b),
        Error::SectionOutOfBounds {
            section: "tensor table",
            ..
        }
    ));
}

#[test]
fn v2_data_offset() {
    let mut b = raw().encode();
    let d = u32::from_le_bytes(b[28..32].try_into().unwrap());
    set_u32(&mut b, 28, d + 16);
    fix_crc(&mut b);
    assert!(matches!(err(&b), Error::DataOffset { .. }));
}

#[test]
fn v2_nonzero_table_padding() {
    let mut r = raw();
    r.table_pad_fill = 0xAA;
    // The sample's table end is not 16-aligned, so there is padding to poison.
    assert!(matches!(err(&r.encode()), Error::NonZeroPadding { .. }));
}

#[test]
fn v2_nonzero_tensor_padding() {
    let mut r = raw();
    r.tensor_pad_fill = 0xAA;
    assert!(matches!(err(&r.encode()), Error::NonZeroPadding { .. }));
}

// ---- v2 metadata records ----------------------------------------------------------

#[test]
fn record_truncated() {
    let mut r = raw();
    let last = r.records.len() - 1;
    r.records[last].truncate(5);
    assert!(matches!(err(&r.encode()), Error::RecordTruncated { .. }));
    let mut r = raw();
    set_u32(&mut r.records[last], 4, 1000);
    assert!(matches!(
        err(&r.encode()),
        Error::RecordTruncated { tag: 5, .. }
    ));
}

#[test]
fn unknown_required_record() {
    let mut r = raw();
    r.records.push(rec(0x0777, 1, b"future"));
    assert_eq!(
        err(&r.encode()),
        Error::UnknownRequiredRecord { tag: 0x0777 }
    );
}

#[test]
fn unknown_optional_record_skipped() {
    let mut r = raw();
    r.records.insert(1, rec(0x0777, 0, b"future"));
    let b = r.encode();
    let v = BlobView::parse(&b).unwrap();
    let m = ModelFile::from_view(&v).unwrap();
    assert_eq!(m, full_model());
}

#[test]
fn record_reserved_flags() {
    let mut r = raw();
    r.records.push(rec(0x0777, 2, b""));
    assert!(matches!(
        err(&r.encode()),
        Error::ReservedNotZero {
            field: "metadata record flags",
            ..
        }
    ));
}

#[test]
fn too_many_records() {
    let mut r = raw();
    for _ in 0..aether_rvne::MAX_RECORDS {
        r.records.push(rec(0x0777, 0, b""));
    }
    assert!(matches!(err(&r.encode()), Error::TooManyRecords { .. }));
}

#[test]
fn duplicate_records() {
    for i in [0usize, 1, 2, 3] {
        let mut r = raw();
        let dup = r.records[i].clone();
        r.records.push(dup);
        assert!(
            matches!(err(&r.encode()), Error::DuplicateRecord { .. }),
            "record {i}"
        );
    }
}

#[test]
fn missing_records() {
    let mut r = raw();
    r.records.remove(0);
    assert_eq!(err(&r.encode()), Error::MissingRecord { record: "DIMS" });
    let mut r = raw();
    r.records.remove(1);
    assert_eq!(err(&r.encode()), Error::MissingRecord { record: "PATTERN" });
}

#[test]
fn dims_record_length() {
    let mut r = raw();
    r.records[0] = rec(1, 1, &u32s(&[3, 4, 2, 1, 3, 2, 3]));
    assert!(matches!(
        err(&r.encode()),
        Error::RecordLength {
            record: "DIMS",
            expected: 32,
            got: 28
        }
    ));
}

#[test]
fn pattern_record_errors() {
    let cases: Vec<Case> = vec![
        (pattern_payload(8, 4, [2, 1, 0, 0], &[0]), |e| {
            matches!(
                e,
                Error::InvalidBool {
                    field: "pattern.causal",
                    got: 2
                }
            )
        }),
        (pattern_payload(8, 4, [1, 1, 0, 3], &[0]), |e| {
            matches!(e, Error::ReservedNotZero { got: 3, .. })
        }),
        (pattern_payload(8, 0, [1, 1, 0, 0], &[0]), |e| {
            matches!(e, Error::ZeroBlockSize)
        }),
        (
            pattern_payload(8, 4, [1, 1, 0, 0], &[0; MAX_GLOBALS + 1]),
            |e| matches!(e, Error::TooManyGlobals { .. }),
        ),
        (
            pattern_payload(8, 4, [1, 1, 0, 0], &[0])[..14].to_vec(),
            |e| {
                matches!(
                    e,
                    Error::RecordLength {
                        record: "PATTERN",
                        ..
                    }
                )
            },
        ),
        (
            {
                let mut p = pattern_payload(8, 4, [1, 1, 0, 0], &[0]);
                p.extend_from_slice(&[0; 4]);
                p
            },
            |e| {
                matches!(
                    e,
                    Error::RecordLength {
                        record: "PATTERN",
                        expected: 20,
                        got: 24
                    }
                )
            },
        ),
    ];
    for (i, (payload, check)) in cases.into_iter().enumerate() {
        let mut r = raw();
        r.records[1] = rec(2, 1, &payload);
        let e = err(&r.encode());
        assert!(check(&e), "case {i}: {e}");
    }
}

#[test]
fn class_name_errors() {
    let cases: Vec<Case> = vec![
        (names_payload(&[b"a", b"b"]), |e| {
            matches!(
                e,
                Error::NameCount {
                    got: 2,
                    expected: 3,
                    ..
                }
            )
        }),
        (names_payload(&[b"a", b"\xFF", b"c"]), |e| {
            matches!(e, Error::NotUtf8 { index: 1, .. })
        }),
        (names_payload(&[b"a", b"", b"c"]), |e| {
            matches!(e, Error::EmptyName { index: 1, .. })
        }),
        (names_payload(&[b"a", b"b", b"a"]), |e| {
            matches!(e, Error::DuplicateName { .. })
        }),
        (
            {
                let mut p = names_payload(&[b"a", b"b", b"c"]);
                p.push(0);
                p
            },
            |e| matches!(e, Error::RecordLength { .. }),
        ),
        (names_payload(&[b"a", b"b", b"c"])[..9].to_vec(), |e| {
            matches!(e, Error::RecordLength { .. })
        }),
        ((5000u32).to_le_bytes().to_vec(), |e| {
            matches!(e, Error::TooManyNames { got: 5000, .. })
        }),
    ];
    for (i, (payload, check)) in cases.into_iter().enumerate() {
        let mut r = raw();
        r.records[2] = rec(3, 0, &payload);
        let e = err(&r.encode());
        assert!(check(&e), "case {i}: {e}");
    }
}

#[test]
fn feature_name_count() {
    let mut r = raw();
    r.records[3] = rec(4, 0, &names_payload(&[b"x", b"y", b"z", b"w"]));
    assert!(matches!(
        err(&r.encode()),
        Error::NameCount {
            list: "feature names",
            got: 4,
            expected: 3
        }
    ));
}

#[test]
fn key_value_errors() {
    let cases: Vec<Case> = vec![
        (kv_payload(b"trained_by", b"again"), |e| {
            matches!(
                e,
                Error::DuplicateName {
                    what: "metadata keys",
                    ..
                }
            )
        }),
        (kv_payload(b"", b"v"), |e| {
            matches!(e, Error::EmptyName { .. })
        }),
        (kv_payload(b"k\xC3", b"v"), |e| {
            matches!(
                e,
                Error::NotUtf8 {
                    what: "metadata key",
                    ..
                }
            )
        }),
        (kv_payload(b"k", b"\xC3"), |e| {
            matches!(
                e,
                Error::NotUtf8 {
                    what: "metadata value",
                    ..
                }
            )
        }),
        (vec![9], |e| {
            matches!(
                e,
                Error::RecordLength {
                    record: "KEY_VALUE",
                    ..
                }
            )
        }),
        (vec![9, 0, b'a'], |e| {
            matches!(
                e,
                Error::RecordLength {
                    record: "KEY_VALUE",
                    ..
                }
            )
        }),
    ];
    for (i, (payload, check)) in cases.into_iter().enumerate() {
        let mut r = raw();
        r.records.push(rec(5, 0, &payload));
        let e = err(&r.encode());
        assert!(check(&e), "case {i}: {e}");
    }
}

#[test]
fn mlp_flag_mismatch() {
    let mut r = raw();
    r.required &= !aether_rvne::feature::MLP;
    assert_eq!(
        err(&r.encode()),
        Error::MlpFlagMismatch {
            flag: false,
            mlp_hidden: 5
        }
    );
}

#[test]
fn width_without_embed() {
    let mut r = raw();
    r.required &= !aether_rvne::feature::EMBED;
    assert_eq!(
        err(&r.encode()),
        Error::WidthWithoutEmbed {
            input_dim: 3,
            d_model: 4
        }
    );
}

#[test]
fn v2_dims_overflow() {
    let mut r = raw();
    r.records[0] = rec(1, 1, &u32s(&[3, 4, u32::MAX, 1, u32::MAX, u32::MAX, 3, 5]));
    let e = err(&r.encode());
    assert!(matches!(e, Error::Overflow { .. }), "{e}");
}

#[test]
fn v2_zero_dim() {
    let mut r = raw();
    r.records[0] = rec(1, 1, &u32s(&[3, 4, 2, 1, 0, 2, 3, 5]));
    assert_eq!(err(&r.encode()), Error::ZeroDim { field: "head_dim" });
}

// ---- v2 tensor table --------------------------------------------------------------

#[test]
fn tensor_count() {
    let mut r = raw();
    r.n_tensors_override = Some(r.entries.len() as u32 + 1);
    assert!(matches!(err(&r.encode()), Error::TensorCount { .. }));
    let mut r = raw();
    r.entries.pop();
    assert!(matches!(err(&r.encode()), Error::TensorCount { .. }));
}

#[test]
fn tensor_order_and_names() {
    let mut r = raw();
    let i = r
        .entries
        .iter()
        .position(|e| e.name == b"layers.0.wk")
        .unwrap();
    r.entries.swap(i, i + 1);
    let e = err(&r.encode());
    assert!(matches!(e, Error::UnexpectedTensor { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("tensor #{i} is layers.0.wv, architecture implies layers.0.wk there")
    );

    let mut r = raw();
    r.entries[0].name = b"input.avg".to_vec();
    assert!(matches!(
        err(&r.encode()),
        Error::UnexpectedTensor { index: 0, .. }
    ));

    let mut r = raw();
    r.entries[1].name = r.entries[0].name.clone();
    assert!(matches!(
        err(&r.encode()),
        Error::UnexpectedTensor { index: 1, .. }
    ));
}

#[test]
fn tensor_name_utf8_and_length() {
    let mut r = raw();
    r.entries[0].name = b"input.\xFFmean".to_vec();
    assert!(matches!(
        err(&r.encode()),
        Error::NotUtf8 {
            what: "tensor name",
            index: 0
        }
    ));
    let mut r = raw();
    r.entries[0].name = vec![b'a'; 65];
    assert_eq!(err(&r.encode()), Error::NameTooLong { index: 0, len: 65 });
}

#[test]
fn tensor_dtype_and_rank() {
    let mut r = raw();
    r.entries[0].dtype = 7;
    assert!(matches!(
        err(&r.encode()),
        Error::UnknownDType { code: 7, .. }
    ));
    for rank in [0usize, 5] {
        let mut r = raw();
        r.entries[0].shape = vec![1; rank];
        assert!(
            matches!(err(&r.encode()), Error::BadRank { .. }),
            "rank {rank}"
        );
    }
}

#[test]
fn tensor_shape_message() {
    // A model whose layers.1.wk is [16, 32] (D 16, Hkv 1, dh 32), written as [16, 64].
    let m = aether_rvne::reference_init(
        &ModelMeta::new(
            aether_rvne::Dims::AETHER_DEFAULT,
            aether_rvne::Architecture::V1,
            PatternSpec::default(),
        ),
        1,
        DType::F32,
    )
    .unwrap();
    let mut r = Raw::from_model(&m, DType::F32);
    let e = r
        .entries
        .iter_mut()
        .find(|e| e.name == b"layers.1.wk")
        .unwrap();
    e.shape = vec![16, 64];
    let e = err(&r.encode());
    assert_eq!(
        e.to_string(),
        "tensor layers.1.wk: shape [16, 64], dims imply [16, 32]"
    );
}

#[test]
fn tensor_length() {
    let mut r = raw();
    r.entries[0].len_override = Some(8);
    assert!(matches!(
        err(&r.encode()),
        Error::TensorLength {
            got: 8,
            expected: 12,
            ..
        }
    ));
}

#[test]
fn tensor_offsets() {
    for delta in [-16i64, -4, 4, 16] {
        let mut r = raw();
        r.entries[2].offset_delta = delta;
        assert!(
            matches!(err(&r.encode()), Error::TensorOffset { .. }),
            "delta {delta}"
        );
    }
}

#[test]
fn data_end() {
    let mut r = raw();
    r.trailing = vec![0; 16];
    assert!(matches!(err(&r.encode()), Error::DataEnd { .. }));
}

#[test]
fn table_length() {
    let mut r = raw();
    r.extra_table = vec![0; 3];
    assert!(
        matches!(err(&r.encode()), Error::TableLength { used, declared } if declared == used + 3)
    );
}

#[test]
fn truncated_table_entry() {
    // table_len too small for the entries: the walk runs out of table.
    let mut b = raw().encode();
    let t = u32::from_le_bytes(b[20..24].try_into().unwrap());
    set_u32(&mut b, 20, t - 20);
    fix_crc(&mut b);
    assert!(matches!(
        err(&b),
        Error::DataOffset { .. } | Error::Truncated { .. }
    ));
    // An entry whose name length runs past the end of the table.
    let mut r = raw();
    r.entries.last_mut().unwrap().name_len_override = Some(60);
    assert!(matches!(
        err(&r.encode()),
        Error::Truncated {
            what: "tensor table entry",
            ..
        }
    ));
}

// ---- accessors and writer refusals -------------------------------------------------

#[test]
fn output_length() {
    let b = v1();
    let v = BlobView::parse(&b).unwrap();
    let t = v.tensor("layers.0.wq").unwrap();
    let mut out = vec![0.0; t.len() + 1];
    assert_eq!(
        t.read_f32_into(&mut out),
        Err(Error::OutputLength {
            expected: t.len(),
            got: t.len() + 1
        })
    );
}

#[test]
fn writer_refusals() {
    let full = full_model();
    assert!(matches!(
        full.to_v1_bytes(DType::F32),
        Err(Error::NotV1Expressible { .. })
    ));
    let mut m = tiny_v1_model();
    m.class_names = vec!["a".into(), "b".into()];
    assert!(matches!(
        m.to_v1_bytes(DType::F32),
        Err(Error::NotV1Expressible { .. })
    ));
    let mut m = tiny_v1_model();
    m.meta.pattern.window = 4;
    assert!(matches!(
        m.to_v1_bytes(DType::F32),
        Err(Error::NotV1Expressible { .. })
    ));

    let mut m = full_model();
    m.tensors.pop();
    assert!(matches!(
        m.to_v2_bytes(DType::F32),
        Err(Error::MissingTensor { .. })
    ));
    let mut m = full_model();
    m.tensors[0].data.push(1.0);
    assert!(matches!(
        m.to_v2_bytes(DType::F32),
        Err(Error::WriterTensor { .. })
    ));
    let mut m = full_model();
    let extra = m.tensors[0].clone();
    m.tensors.push(extra);
    assert!(matches!(
        m.to_v2_bytes(DType::F32),
        Err(Error::UnexpectedTensor { .. })
    ));
    let mut m = full_model();
    m.class_names[1] = "wave".into();
    assert!(matches!(
        m.to_v2_bytes(DType::F32),
        Err(Error::DuplicateName { .. })
    ));
    let mut m = full_model();
    m.tensors[0].shape = vec![1, 3];
    assert!(matches!(
        m.to_v2_bytes(DType::F32),
        Err(Error::TensorShape { .. })
    ));
}

#[test]
fn every_error_displays() {
    // Display never panics and is one line, for a spread of variants.
    let samples = [
        err(&[]),
        err(b"XXXXXXXX"),
        Error::ZeroBlockSize,
        Error::TooLarge { bytes: 1 << 40 },
        Error::StringTooLong {
            what: "name",
            len: 70000,
        },
    ];
    for e in samples {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{s}");
    }
}

#[test]
fn tensor_data_past_end() {
    // Consistent header, table and CRC, but the file stops inside the last tensor.
    let mut b = raw().encode();
    let n = b.len() - 4 - 8;
    b.truncate(n);
    b.extend_from_slice(&[0; 4]);
    let len = b.len() as u32;
    set_u32(&mut b, 32, len);
    fix_crc(&mut b);
    assert!(matches!(
        err(&b),
        Error::SectionOutOfBounds {
            section: "tensor data",
            ..
        }
    ));
}

#[test]
fn writer_string_too_long() {
    let mut m = full_model();
    m.class_names[0] = "x".repeat(70_000);
    assert!(matches!(
        m.to_v2_bytes(DType::F32),
        Err(Error::StringTooLong {
            what: "name",
            len: 70_000
        })
    ));
    let mut m = full_model();
    m.metadata.push(("k".repeat(70_000), "v".into()));
    assert!(matches!(
        m.to_v2_bytes(DType::F32),
        Err(Error::StringTooLong {
            what: "metadata key",
            ..
        })
    ));
}

// ---- int8 models (feature bit 10, QUANT record, integer tables) ----------------------

fn q8() -> aether_rvne::QuantModelFile {
    int8_full_model()
}

fn qraw() -> Raw {
    Raw::from_quant(&q8())
}

/// Index of the QUANT record in a raw int8 model.
fn quant_rec(r: &Raw) -> usize {
    r.records
        .iter()
        .position(|x| x[0..2] == [6, 0])
        .expect("QUANT record")
}

/// Mutates the QUANT payload at byte `at` (record header is 8 bytes).
fn with_quant(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut r = qraw();
    let i = quant_rec(&r);
    let mut payload = r.records[i][8..].to_vec();
    f(&mut payload);
    r.records[i] = rec(6, 1, &payload);
    r.encode()
}

fn entry(r: &mut Raw, name: &str) -> usize {
    r.entries
        .iter()
        .position(|e| e.name == name.as_bytes())
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

#[test]
fn int8_raw_encoder_agrees_with_writer_and_round_trips() {
    let q = q8();
    let bytes = q.to_v2_bytes().unwrap();
    assert_eq!(qraw().encode(), bytes);
    let view = BlobView::parse(&bytes).unwrap();
    assert!(view.is_int8() && view.quant().is_some());
    assert_eq!(view.dtype(), None, "i8, i32 and f32 tensors mixed");
    assert_eq!(view.tensor("layers.1.wq").unwrap().dtype(), DType::I8);
    assert_eq!(
        view.tensor("layers.1.wq.rq").unwrap().shape().as_slice(),
        &[6, 3]
    );
    let back = aether_rvne::QuantModelFile::from_view(&view).unwrap();
    assert_eq!(back, q);
    assert_eq!(back.to_v2_bytes().unwrap(), bytes);
    // every option of docs/model.md, with and without running norm and MLP
    for rn in [false, true] {
        let mut m = full_model().meta;
        m.arch.running_norm = rn;
        m.arch.attention = aether_rvne::AttentionBackend::Dense;
        m.dims.mlp_hidden = 0;
        let q = int8_model_of(m);
        let b = q.to_v2_bytes().unwrap();
        assert_eq!(aether_rvne::QuantModelFile::from_bytes(&b).unwrap(), q);
    }
    let v1q = int8_model_of(ModelMeta::v1_defaults(aether_rvne::Dims::AETHER_DEFAULT));
    BlobView::parse(&v1q.to_v2_bytes().unwrap()).unwrap();
}

#[test]
fn int8_missing_duplicate_and_stray_quant_records() {
    let mut r = qraw();
    let i = quant_rec(&r);
    r.records.remove(i);
    assert_eq!(err(&r.encode()), Error::MissingRecord { record: "QUANT" });

    let mut r = qraw();
    let dup = r.records[quant_rec(&r)].clone();
    r.records.push(dup);
    assert_eq!(err(&r.encode()), Error::DuplicateRecord { tag: 6 });

    // a float model carrying a QUANT record
    let mut r = raw();
    r.records.push(rec(6, 1, &q8().quant.to_bytes()));
    assert_eq!(
        err(&r.encode()),
        Error::RecordWithoutFeature { record: "QUANT" }
    );
}

#[test]
fn int8_quant_record_layout() {
    let b = with_quant(|p| p.push(0));
    assert!(matches!(
        err(&b),
        Error::RecordLength {
            record: "QUANT",
            ..
        }
    ));
    let b = with_quant(|p| p[0] = 2);
    assert_eq!(err(&b), Error::UnknownQuantScheme { got: 2 });
    let b = with_quant(|p| p[2] = 1);
    assert!(matches!(
        err(&b),
        Error::ReservedNotZero {
            field: "QUANT reserved bytes",
            ..
        }
    ));
}

#[test]
fn int8_quant_record_fields_out_of_range() {
    let field = |at: usize, v: u32| with_quant(|p| p[at..at + 4].copy_from_slice(&v.to_le_bytes()));
    let check = |b: Vec<u8>, name: &str| match err(&b) {
        Error::QuantParam { field, .. } => assert_eq!(field, name),
        e => panic!("{name}: {e:?}"),
    };
    check(field(4, 31), "logit_shift");
    check(
        with_quant(|p| p[8..16].copy_from_slice(&0u64.to_le_bytes())),
        "ln_eps",
    );
    check(field(16, i32::MIN as u32), "pe_mult");
    check(field(20, 32), "pe_shift");
    check(field(24, 3), "n_layers");
    // layer 1: att_mult, att_shift, gelu_shift at 28 + 12
    check(field(40, 0), "att_mult");
    check(field(44, (-32i32) as u32), "att_shift");
    check(field(48, 16), "gelu_shift");
    check(field(28 + 24, 99), "n_scales");
    // no positional signal: pe fields must be 0
    let mut m = full_model().meta;
    m.arch.positional = aether_rvne::Positional::None;
    let mut q = int8_model_of(m);
    q.quant.pe_mult = 5;
    let mut r = Raw::from_quant(&q);
    let i = quant_rec(&r);
    r.records[i] = rec(6, 1, &q.quant.to_bytes());
    assert!(matches!(
        err(&r.encode()),
        Error::QuantParam {
            field: "pe_mult",
            min: 0,
            max: 0,
            ..
        }
    ));
}

#[test]
fn int8_scales_must_be_finite_and_positive() {
    for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let b = with_quant(|p| {
            let at = p.len() - 4;
            p[at..].copy_from_slice(&bad.to_bits().to_le_bytes())
        });
        assert!(
            matches!(err(&b), Error::QuantScale { index: 12, .. }),
            "{bad}"
        );
        let mut r = qraw();
        let i = entry(&mut r, "layers.0.wk.scale");
        r.entries[i].data[4..8].copy_from_slice(&bad.to_bits().to_le_bytes());
        match err(&r.encode()) {
            Error::QuantScale { what, index: 1, .. } => assert_eq!(what, "layers.0.wk.scale"),
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn int8_tensor_dtypes() {
    // an int8 model's matrix stored as f32
    let mut r = qraw();
    let i = entry(&mut r, "layers.0.wv");
    r.entries[i].dtype = 0;
    let n = r.entries[i].data.len() * 4;
    r.entries[i].data = vec![0; n];
    match err(&r.encode()) {
        Error::TensorDType {
            tensor,
            got: DType::F32,
            expected: Some(DType::I8),
        } => assert_eq!(tensor, "layers.0.wv"),
        e => panic!("{e:?}"),
    }
    // a float model with an i8 tensor
    let mut r = raw();
    let i = entry(&mut r, "layers.0.wq");
    r.entries[i].dtype = 2;
    let n = r.entries[i].data.len() / 4;
    r.entries[i].data.truncate(n);
    assert!(matches!(
        err(&r.encode()),
        Error::TensorDType {
            got: DType::I8,
            expected: None,
            ..
        }
    ));
    // dtype code 4 is unknown
    let mut r = qraw();
    let i = entry(&mut r, "layers.0.wv");
    r.entries[i].dtype = 4;
    assert!(matches!(
        err(&r.encode()),
        Error::UnknownDType { code: 4, .. }
    ));
}

#[test]
fn int8_table_values_out_of_range() {
    let set = |name: &str, index: usize, v: i32| {
        let mut r = qraw();
        let i = entry(&mut r, name);
        r.entries[i].data[4 * index..4 * index + 4].copy_from_slice(&v.to_le_bytes());
        err(&r.encode())
    };
    let check = |e: Error, name: &str, col: &str, idx: usize| match e {
        Error::QuantValue {
            tensor,
            column,
            index,
            ..
        } => {
            assert_eq!((tensor.as_str(), column, index), (name, col, idx));
        }
        e => panic!("{name}.{col}: {e:?}"),
    };
    // rq: (bias, mult, shift) rows
    check(set("layers.1.wo.rq", 5, 32), "layers.1.wo.rq", "shift", 5);
    check(
        set("layers.1.wo.rq", 4, i32::MIN),
        "layers.1.wo.rq",
        "mult",
        4,
    );
    // a bias may be anything
    BlobView::parse(&{
        let mut r = qraw();
        let i = entry(&mut r, "classifier.w.rq");
        r.entries[i].data[..4].copy_from_slice(&i32::MIN.to_le_bytes());
        r.encode()
    })
    .unwrap();
    // input.q: (exp, mult, shift, offset, floor)
    check(set("input.q", 5, 127), "input.q", "exp", 5);
    check(set("input.q", 7, -40), "input.q", "shift", 7);
    check(set("input.q", 4, 1), "input.q", "floor", 4); // no running norm: floor 0
                                                        // layer norm: (mult, shift, offset)
    check(set("layers.0.ln2.q", 1, -32), "layers.0.ln2.q", "shift", 1);
    check(set("final_ln.q", 0, i32::MIN), "final_ln.q", "mult", 0);
}

#[test]
fn int8_names_follow_the_int8_catalogue() {
    let mut r = qraw();
    let i = entry(&mut r, "layers.0.wq.rq");
    r.entries[i].name = b"layers.0.wq.xx".to_vec();
    assert!(matches!(err(&r.encode()), Error::UnexpectedTensor { .. }));
    // the float tensors are not part of an int8 model
    let mut r = qraw();
    let i = entry(&mut r, "layers.0.ln1.q");
    r.entries[i].name = b"layers.0.ln1.g".to_vec();
    assert!(matches!(err(&r.encode()), Error::UnexpectedTensor { .. }));
}

#[test]
fn int8_tensors_are_not_read_as_floats() {
    let bytes = q8().to_v2_bytes().unwrap();
    let view = BlobView::parse(&bytes).unwrap();
    let wq = view.tensor("layers.0.wq").unwrap();
    let mut out = vec![0.0f32; wq.len()];
    assert!(matches!(
        wq.read_f32_into(&mut out),
        Err(Error::DTypeAccess {
            dtype: DType::I8,
            ..
        })
    ));
    assert_eq!(wq.get(0), None);
    assert_eq!(wq.get_i32(1), Some(37));
    assert!(matches!(
        ModelFile::from_view(&view),
        Err(Error::DTypeAccess { .. })
    ));
    let float = full_model();
    assert!(matches!(
        float.to_v2_bytes(DType::I8),
        Err(Error::DTypeAccess { .. })
    ));
    assert!(matches!(
        aether_rvne::QuantModelFile::from_bytes(&float.to_v2_bytes(DType::F32).unwrap()),
        Err(Error::DTypeAccess { .. })
    ));
    let mut ints = [0i32; 6];
    let fview = float.to_v2_bytes(DType::F32).unwrap();
    let fview = BlobView::parse(&fview).unwrap();
    assert!(matches!(
        fview
            .tensor("input.mean")
            .unwrap()
            .read_i32_into(&mut ints[..3]),
        Err(Error::DTypeAccess { .. })
    ));
    // v1 cannot hold an int8 model
    let mut meta = ModelMeta::v1_defaults(aether_rvne::Dims::AETHER_DEFAULT).with_int8(true);
    assert!(meta.v1_expressible().is_err());
    meta.int8 = false;
    assert!(meta.v1_expressible().is_ok());
}
