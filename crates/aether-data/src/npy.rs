//! A minimal, validating `.npy` reader (format versions 1.0, 2.0, 3.0):
//! `"\x93NUMPY"`, major, minor, header length (u16 for v1, u32 for v2/v3),
//! an ASCII dict `{'descr': …, 'fortran_order': …, 'shape': (…)}`, then the
//! C-order little-endian data. Every length is checked before it is used.

/// Why a `.npy` buffer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The buffer does not start with `\x93NUMPY`.
    #[error("not a .npy file (bad magic)")]
    BadMagic,
    /// Format major version other than 1, 2, 3.
    #[error("unsupported .npy format version {0}")]
    UnsupportedVersion(u8),
    /// The buffer ends before the header or data does.
    #[error("truncated: need {needed} bytes, got {got}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The header dict is malformed.
    #[error("malformed header: {0}")]
    BadHeader(String),
    /// A dtype this reader does not handle (big-endian, complex, objects, …).
    #[error(
        "unsupported dtype {0:?} (supported: <f4, <f8, |i1, |u1, <i2, <u2, <i4, <u4, <i8, <u8)"
    )]
    UnsupportedDtype(String),
    /// Fortran (column-major) order.
    #[error("fortran_order arrays are not supported; save with C order")]
    FortranOrder,
    /// The shape's element count overflows.
    #[error("shape {0:?} is too large")]
    ShapeOverflow(Vec<usize>),
    /// Bytes after the data.
    #[error("data has {got} bytes, shape and dtype need {expected}")]
    DataLength {
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
}

/// Element values of an array, widened.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// Floating-point (`<f4`, `<f8`; f8 is kept as f64).
    Float(Vec<f64>),
    /// Integers (any supported width, signed or unsigned ≤ i64::MAX).
    Int(Vec<i64>),
}

/// A decoded array.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape (C order).
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: NpyData,
}

fn field<'a>(h: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let pat = format!("'{key}'");
    let i = h
        .find(&pat)
        .ok_or_else(|| NpyError::BadHeader(format!("missing {pat}")))?;
    let rest = h[i + pat.len()..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| NpyError::BadHeader(format!("no ':' after {pat}")))?;
    Ok(rest.trim_start())
}

/// Parses a `.npy` buffer.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    if bytes.len() < 10 {
        return Err(if bytes.starts_with(&b"\x93NUMPY"[..bytes.len().min(6)]) {
            NpyError::Truncated {
                needed: 10,
                got: bytes.len(),
            }
        } else {
            NpyError::BadMagic
        });
    }
    if &bytes[..6] != b"\x93NUMPY" {
        return Err(NpyError::BadMagic);
    }
    let major = bytes[6];
    let (hlen, hstart): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(NpyError::Truncated {
                    needed: 12,
                    got: bytes.len(),
                });
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(NpyError::UnsupportedVersion(v)),
    };
    let data_start = hstart
        .checked_add(hlen)
        .ok_or(NpyError::BadHeader("header length overflows".into()))?;
    let header = bytes.get(hstart..data_start).ok_or(NpyError::Truncated {
        needed: data_start,
        got: bytes.len(),
    })?;
    let h = std::str::from_utf8(header)
        .map_err(|_| NpyError::BadHeader("header is not UTF-8".into()))?;

    let d = field(h, "descr")?;
    let q = d
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| NpyError::BadHeader("descr is not a string".into()))?;
    let end = d[1..]
        .find(q)
        .ok_or_else(|| NpyError::BadHeader("unterminated descr".into()))?;
    let descr = &d[1..1 + end];

    let fo = field(h, "fortran_order")?;
    if fo.starts_with("True") {
        return Err(NpyError::FortranOrder);
    } else if !fo.starts_with("False") {
        return Err(NpyError::BadHeader("fortran_order is not a bool".into()));
    }

    let s = field(h, "shape")?;
    let s = s
        .strip_prefix('(')
        .ok_or_else(|| NpyError::BadHeader("shape is not a tuple".into()))?;
    let close = s
        .find(')')
        .ok_or_else(|| NpyError::BadHeader("unterminated shape".into()))?;
    let mut shape = Vec::new();
    for part in s[..close].split(',') {
        let p = part.trim().trim_end_matches('L');
        if p.is_empty() {
            continue;
        }
        shape.push(
            p.parse::<usize>()
                .map_err(|_| NpyError::BadHeader(format!("bad shape entry {p:?}")))?,
        );
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| NpyError::ShapeOverflow(shape.clone()))?;

    let width = match descr {
        "<f4" | "<i4" | "<u4" => 4,
        "<f8" | "<i8" | "<u8" => 8,
        "<i2" | "<u2" => 2,
        "|i1" | "|u1" | "<i1" | "<u1" => 1,
        other => return Err(NpyError::UnsupportedDtype(other.to_string())),
    };
    let expected = count
        .checked_mul(width)
        .ok_or_else(|| NpyError::ShapeOverflow(shape.clone()))?;
    let body = &bytes[data_start..];
    if body.len() != expected {
        return Err(NpyError::DataLength {
            expected,
            got: body.len(),
        });
    }
    let mut chunks = body.chunks_exact(width);
    let data = match descr {
        "<f4" => NpyData::Float(
            chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
        ),
        "<f8" => NpyData::Float(
            chunks
                .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")))
                .collect(),
        ),
        "<u8" => {
            let mut v = Vec::with_capacity(count);
            for c in chunks.by_ref() {
                let x = u64::from_le_bytes(c.try_into().expect("8-byte chunk"));
                v.push(i64::try_from(x).unwrap_or(i64::MAX));
            }
            NpyData::Int(v)
        }
        _ => NpyData::Int(
            chunks
                .map(|c| match descr {
                    "<i8" => i64::from_le_bytes(c.try_into().expect("8-byte chunk")),
                    "<i4" => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
                    "<u4" => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
                    "<i2" => i16::from_le_bytes([c[0], c[1]]) as i64,
                    "<u2" => u16::from_le_bytes([c[0], c[1]]) as i64,
                    "|i1" | "<i1" => c[0] as i8 as i64,
                    _ => c[0] as i64,
                })
                .collect(),
        ),
    };
    Ok(NpyArray { shape, data })
}

/// Encodes a little-endian f32 or i64 array as `.npy` v1.0 (used by tests and
/// by tools that export datasets).
pub fn encode_npy(shape: &[usize], data: &NpyData) -> Vec<u8> {
    let descr = match data {
        NpyData::Float(_) => "<f4",
        NpyData::Int(_) => "<i8",
    };
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    match data {
        NpyData::Float(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&(*x as f32).to_le_bytes())),
        NpyData::Int(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_header(h: &str, body: &[u8]) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_numpy_style_headers() {
        let b = with_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }\n",
            &[1, 2, 255],
        );
        let a = parse_npy(&b).unwrap();
        assert_eq!(a.shape, vec![3]);
        assert_eq!(a.data, NpyData::Int(vec![1, 2, 255]));
        let mut body = Vec::new();
        for v in [1.5f32, -2.0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let b = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 1), }",
            &body,
        );
        assert_eq!(parse_npy(&b).unwrap().data, NpyData::Float(vec![1.5, -2.0]));
    }

    #[test]
    fn errors() {
        assert_eq!(parse_npy(b"hello world"), Err(NpyError::BadMagic));
        assert!(matches!(
            parse_npy(b"\x93NUM"),
            Err(NpyError::Truncated { .. })
        ));
        let mut v = encode_npy(&[2], &NpyData::Int(vec![1, 2]));
        v[6] = 9;
        assert_eq!(parse_npy(&v), Err(NpyError::UnsupportedVersion(9)));
        let h = |s: &str| with_header(s, &[0; 4]);
        assert_eq!(
            parse_npy(&h(
                "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }"
            )),
            Err(NpyError::UnsupportedDtype(">f4".into()))
        );
        assert_eq!(
            parse_npy(&h(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }"
            )),
            Err(NpyError::FortranOrder)
        );
        assert!(matches!(
            parse_npy(&h("{'descr': '<f4', 'fortran_order': False, }")),
            Err(NpyError::BadHeader(_))
        ));
        assert!(matches!(
            parse_npy(&h(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (x,), }"
            )),
            Err(NpyError::BadHeader(_))
        ));
        assert_eq!(
            parse_npy(&h(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
            )),
            Err(NpyError::DataLength {
                expected: 8,
                got: 4
            })
        );
        assert!(matches!(
            parse_npy(&h(&format!(
                "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
                usize::MAX,
                4
            ))),
            Err(NpyError::ShapeOverflow(_))
        ));
        let mut t = encode_npy(&[2], &NpyData::Int(vec![1, 2]));
        t[8] = 0xFF;
        t[9] = 0x7F;
        assert!(matches!(parse_npy(&t), Err(NpyError::Truncated { .. })));
    }

    proptest! {
        #[test]
        fn round_trip(n in 0usize..4, m in 1usize..5, seed in any::<u64>()) {
            let mut r = crate::rng::SplitMix64::new(seed);
            let f: Vec<f64> = (0..n * m).map(|_| (r.normal() as f32) as f64).collect();
            let a = parse_npy(&encode_npy(&[n, m], &NpyData::Float(f.clone()))).unwrap();
            prop_assert_eq!(a.shape, vec![n, m]);
            prop_assert_eq!(a.data, NpyData::Float(f));
            let i: Vec<i64> = (0..n).map(|_| r.next_u64() as i64).collect();
            let b = parse_npy(&encode_npy(&[n], &NpyData::Int(i.clone()))).unwrap();
            prop_assert_eq!(b.data, NpyData::Int(i));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend(bytes);
            let _ = parse_npy(&b);
        }

        /// Valid files of every version and dtype with random bytes overwritten,
        /// truncated or extended: never a panic, and any accepted array holds
        /// exactly as many elements as its shape says.
        #[test]
        fn mutated_files_never_panic(
            n in 0usize..4,
            m in 1usize..4,
            ints in any::<bool>(),
            major in 1u8..4,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut in any::<usize>(),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let data = if ints {
                NpyData::Int((0..n * m).map(|i| i as i64 - 3).collect())
            } else {
                NpyData::Float((0..n * m).map(|i| i as f64 * 0.5).collect())
            };
            let mut b = encode_npy(&[n, m], &data);
            if major > 1 {
                // v2/v3: the same header behind a u32 length.
                let hlen = u16::from_le_bytes([b[8], b[9]]) as u32;
                let mut v = b"\x93NUMPY".to_vec();
                v.extend_from_slice(&[major, 0]);
                v.extend_from_slice(&hlen.to_le_bytes());
                v.extend_from_slice(&b[10..]);
                b = v;
            }
            prop_assert!(parse_npy(&b).is_ok());
            for (at, byte) in edits {
                let i = at % b.len();
                b[i] = byte;
            }
            b.truncate(cut % (b.len() + 1));
            b.extend(tail);
            if let Ok(a) = parse_npy(&b) {
                let count: usize = a.shape.iter().product();
                let len = match a.data {
                    NpyData::Float(v) => v.len(),
                    NpyData::Int(v) => v.len(),
                };
                prop_assert_eq!(len, count);
            }
        }
    }
}
