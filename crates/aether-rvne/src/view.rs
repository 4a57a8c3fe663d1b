//! Zero-copy, allocation-free reader: [`BlobView::parse`] validates a whole `.rvne` blob
//! (v1 or v2) before handing out anything, then lends tensors and names from the buffer.
//!
//! Validation order follows safetensors: lengths before use, checked arithmetic, every
//! offset in bounds, data covering the buffer exactly. Parsing is linear in the blob size.
//!
//! ```
//! # use aether_rvne::{BlobView, reference_init_v1_bytes, Dims, DType, REFERENCE_SEED};
//! let bytes = reference_init_v1_bytes(&Dims::AETHER_DEFAULT, REFERENCE_SEED, DType::F32).unwrap();
//! let view = BlobView::parse(&bytes).unwrap();
//! let wq = view.tensor("layers.0.wq").unwrap();
//! assert_eq!(wq.shape().as_slice(), &[16, 128]);
//! let mut w = vec![0.0f32; wq.len()];
//! wq.read_f32_into(&mut w).unwrap();
//! ```

use crate::error::{Error, Result};
use crate::meta::{DType, Dims, ModelMeta, PatternSpec, Shape, TensorSpec, MAX_RANK};
use crate::name::{Name, MAX_NAME_LEN};
use crate::quant::{check_values, QuantView};

/// Magic number of every `.rvne` file (bytes on disk `45 4E 56 52`).
pub const MAGIC: u32 = 0x5256_4E45;
/// v1 header length.
pub const V1_HEADER_LEN: usize = 24;
/// v2 header length.
pub const V2_HEADER_LEN: usize = 40;
/// CRC footer length.
pub const FOOTER_LEN: usize = 4;
/// Alignment of v2 tensor data from the blob start.
pub const ALIGN: usize = 16;

/// Most metadata records a v2 file may hold (bounds the key-uniqueness check).
pub const MAX_RECORDS: usize = 1024;
/// Most entries a class- or feature-name list may hold (bounds the uniqueness check).
pub const MAX_LIST_NAMES: usize = 4096;

/// v2 metadata record tags.
pub mod tag {
    /// Dims: eight u32 (`F, D, Hq, Hkv, dh, L, C, H`).
    pub const DIMS: u16 = 0x0001;
    /// Sparse pattern.
    pub const PATTERN: u16 = 0x0002;
    /// Class names.
    pub const CLASS_NAMES: u16 = 0x0003;
    /// Feature names.
    pub const FEATURE_NAMES: u16 = 0x0004;
    /// One free key/value string pair (may repeat).
    pub const KEY_VALUE: u16 = 0x0005;
    /// Quantisation parameters of an int8 model (required with feature bit 10).
    pub const QUANT: u16 = 0x0006;
    /// Record flag: a reader that does not know the tag must refuse the file.
    pub const FLAG_REQUIRED: u16 = 0x0001;
}

fn rd_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Rounds `x` up to a multiple of [`ALIGN`].
pub const fn align_up(x: usize) -> Option<usize> {
    match x.checked_add(ALIGN - 1) {
        Some(y) => Some(y / ALIGN * ALIGN),
        None => None,
    }
}

/// CRC-32/IEEE (zlib) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

fn check_crc(bytes: &[u8]) -> Result<u32> {
    let split = bytes.len() - FOOTER_LEN;
    let stored = rd_u32(bytes, split).unwrap_or(0);
    let computed = crc32(&bytes[..split]);
    if stored != computed {
        return Err(Error::CrcMismatch { stored, computed });
    }
    Ok(stored)
}

/// v2 sections remembered after validation.
#[derive(Debug, Clone, Copy)]
struct V2Sections<'a> {
    meta: &'a [u8],
    table: &'a [u8],
    class_names: Option<&'a [u8]>,
    feature_names: Option<&'a [u8]>,
    quant: Option<QuantView<'a>>,
    optional_flags: u32,
}

/// A validated `.rvne` blob borrowed from a byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct BlobView<'a> {
    bytes: &'a [u8],
    version: u16,
    meta: ModelMeta,
    v1_dtype: DType,
    crc: u32,
    v2: Option<V2Sections<'a>>,
}

/// One tensor, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    name: Name,
    dtype: DType,
    shape: Shape,
    offset: usize,
    bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The docs/model.md name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Element type as stored.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Element count.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size()
    }

    /// True for an empty tensor.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Offset of the data from the blob start.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The data as `&[f32]` without copying: `Some` when stored as f32, the buffer address
    /// is 4-aligned and the target is little-endian; otherwise use
    /// [`TensorView::read_f32_into`].
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        if self.dtype != DType::F32 || !cfg!(target_endian = "little") {
            return None;
        }
        bytemuck::try_cast_slice(self.bytes).ok()
    }

    /// Element `i` as f32 (`None` out of range).
    pub fn get(&self, i: usize) -> Option<f32> {
        match self.dtype {
            DType::F32 => {
                let at = i.checked_mul(4)?;
                Some(f32::from_bits(rd_u32(self.bytes, at)?))
            }
            DType::F16 => {
                let at = i.checked_mul(2)?;
                Some(half::f16::from_bits(rd_u16(self.bytes, at)?).to_f32())
            }
            DType::I8 | DType::I32 => None,
        }
    }

    /// Element `i` of an integer tensor (i8 widened; `None` out of range or for a float
    /// tensor).
    pub fn get_i32(&self, i: usize) -> Option<i32> {
        match self.dtype {
            DType::I8 => self.bytes.get(i).map(|&b| b as i8 as i32),
            DType::I32 => Some(rd_u32(self.bytes, i.checked_mul(4)?)? as i32),
            DType::F32 | DType::F16 => None,
        }
    }

    /// The data of an i8 tensor as `&[i8]` without copying (`None` for other dtypes).
    pub fn as_i8(&self) -> Option<&'a [i8]> {
        if self.dtype != DType::I8 {
            return None;
        }
        Some(bytemuck::cast_slice(self.bytes))
    }

    /// The data of an i32 tensor as `&[i32]` without copying: `Some` when the buffer
    /// address is 4-aligned and the target little-endian; otherwise use
    /// [`TensorView::read_i32_into`].
    pub fn as_i32(&self) -> Option<&'a [i32]> {
        if self.dtype != DType::I32 || !cfg!(target_endian = "little") {
            return None;
        }
        bytemuck::try_cast_slice(self.bytes).ok()
    }

    /// Copies an integer tensor (i8 widened) into `out`, whose length must equal
    /// [`TensorView::len`]; a float tensor is [`Error::DTypeAccess`].
    pub fn read_i32_into(&self, out: &mut [i32]) -> Result<()> {
        if out.len() != self.len() {
            return Err(Error::OutputLength {
                expected: self.len(),
                got: out.len(),
            });
        }
        match self.dtype {
            DType::I8 => {
                for (o, &b) in out.iter_mut().zip(self.bytes) {
                    *o = b as i8 as i32;
                }
            }
            DType::I32 => {
                for (o, c) in out.iter_mut().zip(self.bytes.chunks_exact(4)) {
                    *o = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            DType::F32 | DType::F16 => {
                return Err(Error::DTypeAccess {
                    tensor: self.name,
                    dtype: self.dtype,
                    wanted: "integers",
                })
            }
        }
        Ok(())
    }

    /// Copies (and converts from f16 if needed) the data into `out`, whose length must
    /// equal [`TensorView::len`]. Works for any buffer alignment. An integer tensor (int8
    /// models) is [`Error::DTypeAccess`]: its values mean nothing without the integer path.
    pub fn read_f32_into(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.len() {
            return Err(Error::OutputLength {
                expected: self.len(),
                got: out.len(),
            });
        }
        match self.dtype {
            DType::F32 => {
                for (o, c) in out.iter_mut().zip(self.bytes.chunks_exact(4)) {
                    *o = f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                }
            }
            DType::F16 => {
                for (o, c) in out.iter_mut().zip(self.bytes.chunks_exact(2)) {
                    *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
                }
            }
            DType::I8 | DType::I32 => {
                return Err(Error::DTypeAccess {
                    tensor: self.name,
                    dtype: self.dtype,
                    wanted: "f32",
                })
            }
        }
        Ok(())
    }
}

impl<'a> BlobView<'a> {
    /// Validates `bytes` as a v1 or v2 `.rvne` blob. Nothing is trusted before it is
    /// checked; no allocation; never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let magic = rd_u32(bytes, 0).ok_or(Error::Truncated {
            what: "magic",
            needed: 4,
            available: bytes.len(),
        })?;
        if magic != MAGIC {
            return Err(Error::BadMagic { got: magic });
        }
        let version = rd_u16(bytes, 4).ok_or(Error::Truncated {
            what: "version",
            needed: 6,
            available: bytes.len(),
        })?;
        match version {
            1 => Self::parse_v1(bytes),
            2 => Self::parse_v2(bytes),
            got => Err(Error::UnsupportedVersion { got }),
        }
    }

    fn parse_v1(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < V1_HEADER_LEN + FOOTER_LEN {
            return Err(Error::Truncated {
                what: "v1 header and footer",
                needed: V1_HEADER_LEN + FOOTER_LEN,
                available: bytes.len(),
            });
        }
        let h = |at| rd_u16(bytes, at).unwrap_or(0) as usize;
        let flags = bytes[6];
        if flags & !1 != 0 {
            return Err(Error::UnknownV1Flags { bits: flags & !1 });
        }
        if bytes[7] != 0 {
            return Err(Error::ReservedNotZero {
                field: "v1 header byte 7",
                got: bytes[7] as u32,
            });
        }
        let weights_len = rd_u32(bytes, 20).unwrap_or(0) as u64;
        let declared = weights_len + (V1_HEADER_LEN + FOOTER_LEN) as u64;
        if declared != bytes.len() as u64 {
            return Err(Error::LengthMismatch {
                declared,
                actual: bytes.len(),
            });
        }
        let crc = check_crc(bytes)?;
        let dims = Dims {
            input_dim: h(8),
            d_model: h(8),
            q_heads: h(10),
            kv_heads: h(12),
            head_dim: h(14),
            layers: h(16),
            classes: h(18),
            mlp_hidden: 0,
        };
        let meta = ModelMeta::v1_defaults(dims);
        meta.validate()?;
        let dtype = if flags & 1 == 1 {
            DType::F16
        } else {
            DType::F32
        };
        let implied = (meta.parameter_count() as u64).saturating_mul(dtype.size() as u64);
        if implied != weights_len {
            return Err(Error::WeightsLength {
                declared: weights_len,
                implied,
            });
        }
        Ok(Self {
            bytes,
            version: 1,
            meta,
            v1_dtype: dtype,
            crc,
            v2: None,
        })
    }

    fn parse_v2(bytes: &'a [u8]) -> Result<Self> {
        let n = bytes.len();
        if n < V2_HEADER_LEN + FOOTER_LEN {
            return Err(Error::Truncated {
                what: "v2 header and footer",
                needed: V2_HEADER_LEN + FOOTER_LEN,
                available: n,
            });
        }
        let h32 = |at| rd_u32(bytes, at).unwrap_or(0);
        let header_len = rd_u16(bytes, 6).unwrap_or(0);
        if header_len as usize != V2_HEADER_LEN {
            return Err(Error::HeaderLength { got: header_len });
        }
        let file_len = h32(32) as u64;
        if file_len != n as u64 {
            return Err(Error::LengthMismatch {
                declared: file_len,
                actual: n,
            });
        }
        let crc = check_crc(bytes)?;
        if h32(36) != 0 {
            return Err(Error::ReservedNotZero {
                field: "v2 header bytes 36..40",
                got: h32(36),
            });
        }
        let required = h32(8);
        let optional_flags = h32(12);
        let (arch, mlp_bit) = ModelMeta::arch_from_bits(required)?;
        let meta_len = h32(16) as usize;
        let table_len = h32(20) as usize;
        let n_tensors = h32(24) as usize;
        let data_offset = h32(28) as usize;
        let footer = n - FOOTER_LEN;

        let meta_end = V2_HEADER_LEN
            .checked_add(meta_len)
            .ok_or(Error::Overflow { what: "meta_len" })?;
        if meta_end > footer {
            return Err(Error::SectionOutOfBounds {
                section: "metadata",
                end: meta_end as u64,
                limit: footer as u64,
            });
        }
        let table_end = meta_end
            .checked_add(table_len)
            .ok_or(Error::Overflow { what: "table_len" })?;
        if table_end > footer {
            return Err(Error::SectionOutOfBounds {
                section: "tensor table",
                end: table_end as u64,
                limit: footer as u64,
            });
        }
        let expected_data = align_up(table_end).ok_or(Error::Overflow {
            what: "data_offset",
        })?;
        if expected_data > footer {
            return Err(Error::SectionOutOfBounds {
                section: "tensor table padding",
                end: expected_data as u64,
                limit: footer as u64,
            });
        }
        if data_offset != expected_data {
            return Err(Error::DataOffset {
                got: data_offset as u64,
                expected: expected_data as u64,
            });
        }
        check_zero(bytes, table_end, data_offset)?;

        let meta_bytes = &bytes[V2_HEADER_LEN..meta_end];
        let table = &bytes[meta_end..table_end];
        let rec = parse_records(meta_bytes, V2_HEADER_LEN)?;
        let dims = rec.dims.ok_or(Error::MissingRecord { record: "DIMS" })?;
        let pattern = rec
            .pattern
            .ok_or(Error::MissingRecord { record: "PATTERN" })?;
        if mlp_bit != (dims.mlp_hidden > 0) {
            return Err(Error::MlpFlagMismatch {
                flag: mlp_bit,
                mlp_hidden: dims.mlp_hidden,
            });
        }
        let int8 = required & crate::meta::feature::INT8 != 0;
        let meta = ModelMeta::new(dims, arch, pattern).with_int8(int8);
        meta.validate()?;
        let quant = match (rec.quant, int8) {
            (Some(p), true) => Some(QuantView::parse(p, &meta)?),
            (None, true) => return Err(Error::MissingRecord { record: "QUANT" }),
            (Some(_), false) => return Err(Error::RecordWithoutFeature { record: "QUANT" }),
            (None, false) => None,
        };
        if let Some(names) = rec.class_names {
            check_names(names, dims.classes, "class names")?;
        }
        if let Some(names) = rec.feature_names {
            check_names(names, dims.input_dim, "feature names")?;
        }

        let expected_count = meta.tensor_count();
        if n_tensors != expected_count {
            return Err(Error::TensorCount {
                declared: n_tensors,
                expected: expected_count,
            });
        }
        let mut pos = 0usize;
        let mut next_offset = data_offset;
        let mut specs = meta.tensor_specs();
        for index in 0..n_tensors {
            let spec = specs.next().ok_or(Error::Overflow {
                what: "tensor enumeration",
            })?;
            let (entry, used) = read_entry(table, pos, index)?;
            pos += used;
            let end = check_entry(&entry, &spec, index, next_offset, footer)?;
            if int8 {
                check_values(&spec, &bytes[entry.offset..end], arch.running_norm)?;
            }
            next_offset = align_up(end).ok_or(Error::Overflow { what: "tensor end" })?;
            check_zero(bytes, end, next_offset.min(footer))?;
            if index + 1 == n_tensors && end != footer {
                return Err(Error::DataEnd {
                    end: end as u64,
                    expected: footer as u64,
                });
            }
        }
        if pos != table_len {
            return Err(Error::TableLength {
                declared: table_len,
                used: pos,
            });
        }
        Ok(Self {
            bytes,
            version: 2,
            meta,
            v1_dtype: DType::F32,
            crc,
            v2: Some(V2Sections {
                meta: meta_bytes,
                table,
                class_names: rec.class_names,
                feature_names: rec.feature_names,
                quant,
                optional_flags,
            }),
        })
    }

    /// Format version (1 or 2).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The model description (v1: documented defaults with `defaults_assumed == true`).
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The whole blob.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The quantisation parameters of an int8 model (`None` for a float model).
    pub fn quant(&self) -> Option<QuantView<'a>> {
        self.v2.and_then(|v| v.quant)
    }

    /// Whether this is an int8 (quantised) model (docs/int8.md).
    pub fn is_int8(&self) -> bool {
        self.meta.int8
    }

    /// The stored (and verified) CRC-32.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// v2 optional flag bits (ignored by this reader); 0 for v1.
    pub fn optional_flags(&self) -> u32 {
        self.v2.map_or(0, |v| v.optional_flags)
    }

    /// The dtype shared by every tensor, or `None` if a v2 file mixes dtypes.
    pub fn dtype(&self) -> Option<DType> {
        let mut it = self.tensors();
        let first = it.next()?.dtype();
        it.all(|t| t.dtype() == first).then_some(first)
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.meta.tensor_count()
    }

    /// The tensor called `name` (docs/model.md names; v1 exposes the same names).
    pub fn tensor(&self, name: &str) -> Option<TensorView<'a>> {
        match self.v2 {
            None => {
                let target = self.meta.spec_by_name(name)?;
                self.tensors()
                    .find(|t| t.name.as_str() == target.name().as_str())
            }
            Some(_) => self.tensors().find(|t| t.name() == name),
        }
    }

    /// Every tensor in canonical order.
    pub fn tensors(&self) -> Tensors<'a> {
        Tensors {
            view: *self,
            specs: self.meta.tensor_specs(),
            specs_index: 0,
            pos: 0,
            next_offset: match self.v2 {
                None => V1_HEADER_LEN,
                Some(_) => 0,
            },
        }
    }

    /// Class name `i` (v2 with a class-name record; `None` otherwise).
    pub fn class_name(&self, i: usize) -> Option<&'a str> {
        nth_name(self.v2?.class_names?, i)
    }

    /// Feature name `i` (v2 with a feature-name record; `None` otherwise).
    pub fn feature_name(&self, i: usize) -> Option<&'a str> {
        nth_name(self.v2?.feature_names?, i)
    }

    /// True when the file carries class names.
    pub fn has_class_names(&self) -> bool {
        self.v2.is_some_and(|v| v.class_names.is_some())
    }

    /// True when the file carries feature names.
    pub fn has_feature_names(&self) -> bool {
        self.v2.is_some_and(|v| v.feature_names.is_some())
    }

    /// Free key/value metadata (training provenance, …) in file order; empty for v1.
    pub fn metadata(&self) -> KeyValues<'a> {
        KeyValues {
            rest: self.v2.map_or(&[][..], |v| v.meta),
        }
    }

    /// The value of free metadata key `key`.
    pub fn metadata_value(&self, key: &str) -> Option<&'a str> {
        self.metadata().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

fn check_zero(bytes: &[u8], from: usize, to: usize) -> Result<()> {
    if let Some(p) = bytes
        .get(from..to)
        .and_then(|s| s.iter().position(|&b| b != 0))
    {
        return Err(Error::NonZeroPadding { offset: from + p });
    }
    Ok(())
}

/// One tensor table entry as read (not yet checked against the spec).
struct Entry<'a> {
    name: &'a [u8],
    dtype: u8,
    rank: u8,
    shape: [u32; MAX_RANK],
    offset: usize,
    len: usize,
}

/// Entry: name_len u16, dtype u8, rank u8, shape u32×rank, offset u32, length u32, name.
fn read_entry(table: &[u8], pos: usize, index: usize) -> Result<(Entry<'_>, usize)> {
    let trunc = |needed: usize| Error::Truncated {
        what: "tensor table entry",
        needed,
        available: table.len().saturating_sub(pos),
    };
    let name_len = rd_u16(table, pos).ok_or(trunc(4))? as usize;
    let dtype = *table.get(pos + 2).ok_or(trunc(4))?;
    let rank = *table.get(pos + 3).ok_or(trunc(4))?;
    let r = (rank as usize).min(MAX_RANK);
    let mut shape = [0u32; MAX_RANK];
    let mut at = pos + 4;
    let fixed = 4 + 4 * r + 8;
    for s in shape.iter_mut().take(r) {
        *s = rd_u32(table, at).ok_or(trunc(fixed))?;
        at += 4;
    }
    if rank == 0 || rank as usize > MAX_RANK {
        // The name follows the shape, whose length we cannot trust: quote what is there.
        return Err(Error::BadRank {
            tensor: Name::empty(),
            rank,
        });
    }
    let offset = rd_u32(table, at).ok_or(trunc(fixed))? as usize;
    let len = rd_u32(table, at + 4).ok_or(trunc(fixed))? as usize;
    at += 8;
    if name_len > MAX_NAME_LEN {
        return Err(Error::NameTooLong {
            index,
            len: name_len,
        });
    }
    let name = table
        .get(at..at + name_len)
        .ok_or(trunc(fixed + name_len))?;
    Ok((
        Entry {
            name,
            dtype,
            rank,
            shape,
            offset,
            len,
        },
        fixed + name_len,
    ))
}

/// Checks an entry against its spec and the running layout; returns the data end.
fn check_entry(
    e: &Entry<'_>,
    spec: &TensorSpec,
    index: usize,
    expected_offset: usize,
    footer: usize,
) -> Result<usize> {
    let name_str = core::str::from_utf8(e.name).map_err(|_| Error::NotUtf8 {
        what: "tensor name",
        index,
    })?;
    let name = Name::new(name_str);
    if !spec.name_is(name_str) {
        return Err(Error::UnexpectedTensor {
            index,
            got: name,
            expected: spec.name(),
        });
    }
    let dtype = DType::from_code(e.dtype).ok_or(Error::UnknownDType {
        tensor: name,
        code: e.dtype,
    })?;
    let dtype_ok = match spec.dtype {
        Some(want) => dtype == want,
        None => dtype.is_float(),
    };
    if !dtype_ok {
        return Err(Error::TensorDType {
            tensor: name,
            got: dtype,
            expected: spec.dtype,
        });
    }
    let mut dims = [0usize; MAX_RANK];
    for (d, s) in dims.iter_mut().zip(e.shape.iter()) {
        *d = *s as usize;
    }
    let shape = Shape::from_slice(&dims[..e.rank as usize]).ok_or(Error::BadRank {
        tensor: name,
        rank: e.rank,
    })?;
    if shape != spec.shape {
        return Err(Error::TensorShape {
            tensor: name,
            got: shape,
            expected: spec.shape,
        });
    }
    let expected_len = shape
        .numel()
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or(Error::Overflow {
            what: "tensor byte length",
        })?;
    if e.len != expected_len {
        return Err(Error::TensorLength {
            tensor: name,
            got: e.len as u64,
            expected: expected_len as u64,
        });
    }
    if e.offset != expected_offset {
        return Err(Error::TensorOffset {
            tensor: name,
            got: e.offset as u64,
            expected: expected_offset as u64,
        });
    }
    let end = e
        .offset
        .checked_add(e.len)
        .ok_or(Error::Overflow { what: "tensor end" })?;
    if end > footer {
        return Err(Error::SectionOutOfBounds {
            section: "tensor data",
            end: end as u64,
            limit: footer as u64,
        });
    }
    Ok(end)
}

#[derive(Default)]
struct Records<'a> {
    dims: Option<Dims>,
    pattern: Option<PatternSpec>,
    class_names: Option<&'a [u8]>,
    feature_names: Option<&'a [u8]>,
    quant: Option<&'a [u8]>,
}

/// Record: tag u16, flags u16, len u32, payload[len].
fn parse_records(meta: &[u8], base: usize) -> Result<Records<'_>> {
    let mut rec = Records::default();
    let mut pos = 0usize;
    let mut seen_keys = 0usize;
    let mut count = 0usize;
    while pos < meta.len() {
        count += 1;
        if count > MAX_RECORDS {
            return Err(Error::TooManyRecords { max: MAX_RECORDS });
        }
        let (Some(t), Some(flags), Some(len)) = (
            rd_u16(meta, pos),
            rd_u16(meta, pos + 2),
            rd_u32(meta, pos + 4),
        ) else {
            return Err(Error::RecordTruncated {
                tag: rd_u16(meta, pos).unwrap_or(0),
                offset: base + pos,
            });
        };
        let start = pos + 8;
        let end = start
            .checked_add(len as usize)
            .filter(|&e| e <= meta.len())
            .ok_or(Error::RecordTruncated {
                tag: t,
                offset: base + pos,
            })?;
        if flags & !tag::FLAG_REQUIRED != 0 {
            return Err(Error::ReservedNotZero {
                field: "metadata record flags",
                got: (flags & !tag::FLAG_REQUIRED) as u32,
            });
        }
        let p = &meta[start..end];
        match t {
            tag::DIMS => {
                if rec.dims.is_some() {
                    return Err(Error::DuplicateRecord { tag: t });
                }
                if p.len() != 32 {
                    return Err(Error::RecordLength {
                        record: "DIMS",
                        expected: 32,
                        got: p.len(),
                    });
                }
                let f = |i: usize| rd_u32(p, 4 * i).unwrap_or(0) as usize;
                rec.dims = Some(Dims {
                    input_dim: f(0),
                    d_model: f(1),
                    q_heads: f(2),
                    kv_heads: f(3),
                    head_dim: f(4),
                    layers: f(5),
                    classes: f(6),
                    mlp_hidden: f(7),
                });
            }
            tag::PATTERN => {
                if rec.pattern.is_some() {
                    return Err(Error::DuplicateRecord { tag: t });
                }
                rec.pattern = Some(parse_pattern(p)?);
            }
            tag::CLASS_NAMES | tag::FEATURE_NAMES => {
                let slot = if t == tag::CLASS_NAMES {
                    &mut rec.class_names
                } else {
                    &mut rec.feature_names
                };
                if slot.is_some() {
                    return Err(Error::DuplicateRecord { tag: t });
                }
                *slot = Some(p);
            }
            tag::QUANT => {
                if rec.quant.is_some() {
                    return Err(Error::DuplicateRecord { tag: t });
                }
                rec.quant = Some(p);
            }
            tag::KEY_VALUE => {
                let (k, _) = split_kv(p, seen_keys)?;
                // Keys are unique: quadratic in the number of pairs only, which the
                // record headers bound by meta_len / 8.
                let mut prev = KeyValues { rest: &meta[..pos] };
                if prev.any(|(pk, _)| pk == k) {
                    return Err(Error::DuplicateName {
                        what: "metadata keys",
                        name: Name::new(k),
                    });
                }
                seen_keys += 1;
            }
            _ if flags & tag::FLAG_REQUIRED != 0 => {
                return Err(Error::UnknownRequiredRecord { tag: t })
            }
            _ => {}
        }
        pos = end;
    }
    Ok(rec)
}

/// Pattern payload: window u32, block_size u32, causal u8, log_stride u8, landmarks u8,
/// reserved u8, n_globals u32, globals u32 × n_globals.
fn parse_pattern(p: &[u8]) -> Result<PatternSpec> {
    let n_globals = rd_u32(p, 12).ok_or(Error::RecordLength {
        record: "PATTERN",
        expected: 16,
        got: p.len(),
    })? as usize;
    if n_globals > crate::MAX_GLOBALS {
        return Err(Error::TooManyGlobals {
            got: n_globals,
            max: crate::MAX_GLOBALS,
        });
    }
    let expected = 16 + 4 * n_globals;
    if p.len() != expected {
        return Err(Error::RecordLength {
            record: "PATTERN",
            expected,
            got: p.len(),
        });
    }
    let b = |i: usize, field: &'static str| -> Result<bool> {
        match p[i] {
            0 => Ok(false),
            1 => Ok(true),
            got => Err(Error::InvalidBool { field, got }),
        }
    };
    let causal = b(8, "pattern.causal")?;
    let log_stride = b(9, "pattern.log_stride")?;
    let landmarks = b(10, "pattern.landmarks")?;
    if p[11] != 0 {
        return Err(Error::ReservedNotZero {
            field: "pattern reserved byte",
            got: p[11] as u32,
        });
    }
    let mut g = [0usize; crate::MAX_GLOBALS];
    for (i, slot) in g.iter_mut().take(n_globals).enumerate() {
        *slot = rd_u32(p, 16 + 4 * i).unwrap_or(0) as usize;
    }
    PatternSpec::new(
        rd_u32(p, 0).unwrap_or(0) as usize,
        rd_u32(p, 4).unwrap_or(0) as usize,
        &g[..n_globals],
        causal,
        log_stride,
        landmarks,
    )
}

/// Key/value payload: key_len u16, key, value (rest). Both UTF-8, key non-empty.
fn split_kv(p: &[u8], index: usize) -> Result<(&str, &str)> {
    let klen = rd_u16(p, 0).ok_or(Error::RecordLength {
        record: "KEY_VALUE",
        expected: 2,
        got: p.len(),
    })? as usize;
    let kb = p.get(2..2 + klen).ok_or(Error::RecordLength {
        record: "KEY_VALUE",
        expected: 2 + klen,
        got: p.len(),
    })?;
    let k = core::str::from_utf8(kb).map_err(|_| Error::NotUtf8 {
        what: "metadata key",
        index,
    })?;
    if k.is_empty() {
        return Err(Error::EmptyName {
            what: "metadata key",
            index,
        });
    }
    let v = core::str::from_utf8(&p[2 + klen..]).map_err(|_| Error::NotUtf8 {
        what: "metadata value",
        index,
    })?;
    Ok((k, v))
}

/// Name list payload: count u32, then count × (len u16, UTF-8 bytes).
fn check_names(p: &[u8], expected: usize, list: &'static str) -> Result<()> {
    let count = rd_u32(p, 0).ok_or(Error::RecordLength {
        record: list,
        expected: 4,
        got: p.len(),
    })? as usize;
    if count > MAX_LIST_NAMES {
        return Err(Error::TooManyNames {
            list,
            got: count,
            max: MAX_LIST_NAMES,
        });
    }
    if count != expected {
        return Err(Error::NameCount {
            list,
            got: count,
            expected,
        });
    }
    let mut pos = 4usize;
    for i in 0..count {
        let len = rd_u16(p, pos).ok_or(Error::RecordLength {
            record: list,
            expected: pos + 2,
            got: p.len(),
        })? as usize;
        let s = p.get(pos + 2..pos + 2 + len).ok_or(Error::RecordLength {
            record: list,
            expected: pos + 2 + len,
            got: p.len(),
        })?;
        let s = core::str::from_utf8(s).map_err(|_| Error::NotUtf8 {
            what: list,
            index: i,
        })?;
        if s.is_empty() {
            return Err(Error::EmptyName {
                what: list,
                index: i,
            });
        }
        pos += 2 + len;
    }
    if pos != p.len() {
        return Err(Error::RecordLength {
            record: list,
            expected: pos,
            got: p.len(),
        });
    }
    // Uniqueness: names are short and few (classes, features); quadratic compare over the
    // validated payload, bounded by its size squared / 4.
    let mut names_a = Names {
        p,
        pos: 4,
        left: count,
    };
    let mut i = 0usize;
    while let Some(a) = names_a.next() {
        i += 1;
        let rest = Names {
            p,
            pos: names_a.pos,
            left: count - i,
        };
        for b in rest {
            if a == b {
                return Err(Error::DuplicateName {
                    what: list,
                    name: Name::new(a),
                });
            }
        }
    }
    Ok(())
}

/// Walks a validated name-list payload.
struct Names<'a> {
    p: &'a [u8],
    pos: usize,
    left: usize,
}

impl<'a> Iterator for Names<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let len = rd_u16(self.p, self.pos)? as usize;
        let s = self.p.get(self.pos + 2..self.pos + 2 + len)?;
        self.pos += 2 + len;
        core::str::from_utf8(s).ok()
    }
}

fn nth_name(p: &[u8], i: usize) -> Option<&str> {
    let count = rd_u32(p, 0)? as usize;
    if i >= count {
        return None;
    }
    let mut pos = 4usize;
    for _ in 0..i {
        pos += 2 + rd_u16(p, pos)? as usize;
    }
    let len = rd_u16(p, pos)? as usize;
    core::str::from_utf8(p.get(pos + 2..pos + 2 + len)?).ok()
}

/// Iterator over the free key/value records of a v2 blob.
#[derive(Debug, Clone)]
pub struct KeyValues<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for KeyValues<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let t = rd_u16(self.rest, 0)?;
            let len = rd_u32(self.rest, 4)? as usize;
            let end = len.checked_add(8)?;
            let p = self.rest.get(8..end)?;
            self.rest = &self.rest[end..];
            if t == tag::KEY_VALUE {
                if let Ok(kv) = split_kv(p, 0) {
                    return Some(kv);
                }
            }
        }
    }
}

/// Iterator over the tensors of a [`BlobView`], in canonical order.
#[derive(Debug, Clone)]
pub struct Tensors<'a> {
    view: BlobView<'a>,
    specs: crate::meta::TensorSpecs,
    specs_index: usize,
    pos: usize,
    next_offset: usize,
}

impl<'a> Iterator for Tensors<'a> {
    type Item = TensorView<'a>;

    fn next(&mut self) -> Option<TensorView<'a>> {
        let bytes = self.view.bytes;
        match self.view.v2 {
            None => {
                let spec = self.specs.next()?;
                self.specs_index += 1;
                let dtype = self.view.v1_dtype;
                let len = spec.numel()? * dtype.size();
                let start = self.next_offset;
                self.next_offset = start + len;
                Some(TensorView {
                    name: spec.name(),
                    dtype,
                    shape: spec.shape,
                    offset: start,
                    bytes: bytes.get(start..start + len)?,
                })
            }
            Some(v2) => {
                if self.specs_index >= self.view.meta.tensor_count() {
                    return None;
                }
                let (e, used) = read_entry(v2.table, self.pos, self.specs_index).ok()?;
                self.pos += used;
                self.specs_index += 1;
                let mut dims = [0usize; MAX_RANK];
                for (d, s) in dims.iter_mut().zip(e.shape.iter()) {
                    *d = *s as usize;
                }
                Some(TensorView {
                    name: Name::new(core::str::from_utf8(e.name).ok()?),
                    dtype: DType::from_code(e.dtype)?,
                    shape: Shape::from_slice(&dims[..e.rank as usize])?,
                    offset: e.offset,
                    bytes: bytes.get(e.offset..e.offset.checked_add(e.len)?)?,
                })
            }
        }
    }
}
