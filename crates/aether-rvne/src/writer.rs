//! Owned model file and the v1 / v2 writers (feature `alloc`).
//!
//! Writers emit the canonical layout only (documented in docs/rvne-format.md), so every
//! blob has exactly one encoding and v1 ↔ v2 ↔ owned round trips are bit-exact. Every
//! blob is parsed back with [`BlobView::parse`] before it is returned: the writer never
//! produces a file the reader refuses.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, Result};
use crate::meta::{DType, ModelMeta, Shape, TensorSpec};
use crate::name::Name;
use crate::quant::QuantRecord;
use crate::view::{
    align_up, crc32, tag, BlobView, FOOTER_LEN, MAGIC, V1_HEADER_LEN, V2_HEADER_LEN,
};

/// One named tensor held as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// docs/model.md name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A whole model held in memory: what a v2 file records.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile {
    /// Dims, architecture and pattern.
    pub meta: ModelMeta,
    /// Storage dtype of the file it came from (a default for writing).
    pub dtype: DType,
    /// Class names (empty, or one per class).
    pub class_names: Vec<String>,
    /// Feature names (empty, or one per input feature).
    pub feature_names: Vec<String>,
    /// Free key/value strings (training provenance, …), unique keys, in order.
    pub metadata: Vec<(String, String)>,
    /// Tensors in canonical order ([`ModelMeta::tensor_specs`]).
    pub tensors: Vec<Tensor>,
}

impl ModelFile {
    /// Copies a validated blob into memory (f16 converted to f32 exactly).
    pub fn from_view(view: &BlobView<'_>) -> Result<Self> {
        let mut tensors = Vec::with_capacity(view.tensor_count());
        for t in view.tensors() {
            let mut data = alloc::vec![0.0f32; t.len()];
            t.read_f32_into(&mut data)?;
            tensors.push(Tensor {
                name: t.name().into(),
                shape: t.shape().as_slice().to_vec(),
                data,
            });
        }
        let d = view.meta().dims;
        Ok(Self {
            meta: *view.meta(),
            dtype: view.dtype().unwrap_or(DType::F32),
            class_names: (0..d.classes)
                .map_while(|i| view.class_name(i).map(String::from))
                .collect(),
            feature_names: (0..d.input_dim)
                .map_while(|i| view.feature_name(i).map(String::from))
                .collect(),
            metadata: view
                .metadata()
                .map(|(k, v)| (String::from(k), String::from(v)))
                .collect(),
            tensors,
        })
    }

    /// Parses and copies `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_view(&BlobView::parse(bytes)?)
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor called `name`, mutably.
    pub fn tensor_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.tensors.iter_mut().find(|t| t.name == name)
    }

    /// Checks the tensors against the architecture: same names in canonical order, shapes
    /// and element counts as the dims imply. An int8 model cannot be held as f32
    /// ([`Error::DTypeAccess`]; see [`QuantModelFile`]).
    pub fn check_tensors(&self) -> Result<()> {
        self.meta.validate()?;
        if self.meta.int8 {
            return Err(Error::DTypeAccess {
                tensor: Name::new("(int8 model)"),
                dtype: DType::I8,
                wanted: "f32 (hold an int8 model as a QuantModelFile)",
            });
        }
        check_list(
            &self.meta,
            self.tensors
                .iter()
                .map(|t| (t.name.as_str(), t.shape.as_slice(), t.data.len(), None)),
        )
    }

    /// Writes the v1 layout (docs/rvne-format.md); refuses a model v1 cannot express.
    pub fn to_v1_bytes(&self, dtype: DType) -> Result<Vec<u8>> {
        if !dtype.is_float() {
            return Err(Error::DTypeAccess {
                tensor: Name::new("(all tensors)"),
                dtype,
                wanted: "a float storage dtype (f32 or f16)",
            });
        }
        self.meta
            .v1_expressible()
            .map_err(|reason| Error::NotV1Expressible { reason })?;
        if !self.class_names.is_empty()
            || !self.feature_names.is_empty()
            || !self.metadata.is_empty()
        {
            return Err(Error::NotV1Expressible {
                reason: "v1 cannot record class names, feature names or free metadata",
            });
        }
        self.check_tensors()?;
        let d = &self.meta.dims;
        let weights_len = (self.meta.parameter_count() as u64) * dtype.size() as u64;
        let total = weights_len + (V1_HEADER_LEN + FOOTER_LEN) as u64;
        if weights_len > u32::MAX as u64 {
            return Err(Error::TooLarge { bytes: total });
        }
        let mut out = Vec::with_capacity(total as usize);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.push(if dtype == DType::F16 { 1 } else { 0 });
        out.push(0);
        for v in [
            d.input_dim,
            d.q_heads,
            d.kv_heads,
            d.head_dim,
            d.layers,
            d.classes,
        ] {
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        out.extend_from_slice(&(weights_len as u32).to_le_bytes());
        for t in &self.tensors {
            push_data(&mut out, &t.data, dtype);
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        BlobView::parse(&out)?;
        Ok(out)
    }

    /// Writes the v2 layout (docs/rvne-format.md) with every tensor stored as `dtype`
    /// (f32 or f16; an integer dtype is [`Error::DTypeAccess`]).
    pub fn to_v2_bytes(&self, dtype: DType) -> Result<Vec<u8>> {
        if !dtype.is_float() {
            return Err(Error::DTypeAccess {
                tensor: Name::new("(all tensors)"),
                dtype,
                wanted: "a float storage dtype (f32 or f16)",
            });
        }
        self.check_tensors()?;
        let mut bytes = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let mut b = Vec::with_capacity(t.data.len() * dtype.size());
            push_data(&mut b, &t.data, dtype);
            bytes.push(b);
        }
        let tensors = self
            .tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| (t.name.as_str(), t.shape.as_slice(), dtype, b.as_slice()));
        encode_v2(
            &self.meta,
            &self.class_names,
            &self.feature_names,
            &self.metadata,
            None,
            tensors,
        )
    }
}

/// Checks a tensor list (name, shape, element count, dtype when known) against `meta`'s
/// canonical catalogue.
fn check_list<'t>(
    meta: &ModelMeta,
    tensors: impl Iterator<Item = (&'t str, &'t [usize], usize, Option<DType>)>,
) -> Result<()> {
    let mut have = tensors;
    for (index, spec) in meta.tensor_specs().enumerate() {
        let (name, shape, len, dtype) = have.next().ok_or(Error::MissingTensor {
            tensor: spec.name(),
        })?;
        check_one(&spec, index, name, shape, len, dtype)?;
    }
    if let Some((name, ..)) = have.next() {
        return Err(Error::UnexpectedTensor {
            index: meta.tensor_count(),
            got: Name::new(name),
            expected: Name::new("(end of tensor list)"),
        });
    }
    Ok(())
}

fn check_one(
    spec: &TensorSpec,
    index: usize,
    name: &str,
    shape: &[usize],
    len: usize,
    dtype: Option<DType>,
) -> Result<()> {
    if !spec.name_is(name) {
        return Err(Error::UnexpectedTensor {
            index,
            got: Name::new(name),
            expected: spec.name(),
        });
    }
    let got = Shape::from_slice(shape).ok_or(Error::BadRank {
        tensor: spec.name(),
        rank: shape.len().min(255) as u8,
    })?;
    if got != spec.shape {
        return Err(Error::TensorShape {
            tensor: spec.name(),
            got,
            expected: spec.shape,
        });
    }
    let n = spec.numel().unwrap_or(usize::MAX);
    if len != n {
        return Err(Error::WriterTensor {
            tensor: spec.name(),
            got: len,
            expected: n,
        });
    }
    if let (Some(got), Some(want)) = (dtype, spec.dtype) {
        if got != want {
            return Err(Error::TensorDType {
                tensor: spec.name(),
                got,
                expected: Some(want),
            });
        }
    }
    Ok(())
}

/// The canonical v2 encoding: records (DIMS, PATTERN, names, key/values, then QUANT when
/// given), the table, 16-aligned data, CRC; parsed back before it is returned.
fn encode_v2<'t>(
    m: &ModelMeta,
    class_names: &[String],
    feature_names: &[String],
    metadata: &[(String, String)],
    quant: Option<&[u8]>,
    tensors: impl Iterator<Item = (&'t str, &'t [usize], DType, &'t [u8])> + Clone,
) -> Result<Vec<u8>> {
    let d = &m.dims;
    let u32f = |what: &'static str, v: usize| -> Result<u32> {
        u32::try_from(v).map_err(|_| Error::StringTooLong { what, len: v })
    };

    let mut meta = Vec::new();
    let mut dims = Vec::with_capacity(32);
    for v in [
        d.input_dim,
        d.d_model,
        d.q_heads,
        d.kv_heads,
        d.head_dim,
        d.layers,
        d.classes,
        d.mlp_hidden,
    ] {
        dims.extend_from_slice(&u32f("dimension", v)?.to_le_bytes());
    }
    push_record(&mut meta, tag::DIMS, tag::FLAG_REQUIRED, &dims)?;
    let p = &m.pattern;
    let mut pat = Vec::new();
    pat.extend_from_slice(&u32f("pattern.window", p.window)?.to_le_bytes());
    pat.extend_from_slice(&u32f("pattern.block_size", p.block_size)?.to_le_bytes());
    pat.extend_from_slice(&[p.causal as u8, p.log_stride as u8, p.landmarks as u8, 0]);
    pat.extend_from_slice(&(p.globals().len() as u32).to_le_bytes());
    for &g in p.globals() {
        pat.extend_from_slice(&u32f("global token", g)?.to_le_bytes());
    }
    push_record(&mut meta, tag::PATTERN, tag::FLAG_REQUIRED, &pat)?;
    for (t, names) in [
        (tag::CLASS_NAMES, class_names),
        (tag::FEATURE_NAMES, feature_names),
    ] {
        if names.is_empty() {
            continue;
        }
        let mut rec = Vec::new();
        rec.extend_from_slice(&(names.len() as u32).to_le_bytes());
        for n in names {
            let len = u16::try_from(n.len()).map_err(|_| Error::StringTooLong {
                what: "name",
                len: n.len(),
            })?;
            rec.extend_from_slice(&len.to_le_bytes());
            rec.extend_from_slice(n.as_bytes());
        }
        push_record(&mut meta, t, 0, &rec)?;
    }
    for (k, v) in metadata {
        let len = u16::try_from(k.len()).map_err(|_| Error::StringTooLong {
            what: "metadata key",
            len: k.len(),
        })?;
        let mut rec = Vec::with_capacity(2 + k.len() + v.len());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(k.as_bytes());
        rec.extend_from_slice(v.as_bytes());
        push_record(&mut meta, tag::KEY_VALUE, 0, &rec)?;
    }
    if let Some(q) = quant {
        push_record(&mut meta, tag::QUANT, tag::FLAG_REQUIRED, q)?;
    }

    // Table: offsets depend only on the table length, which the entries fix.
    let table_len: usize = tensors
        .clone()
        .map(|(name, shape, _, _)| 12 + 4 * shape.len() + name.len())
        .sum();
    let data_offset = align_up(V2_HEADER_LEN + meta.len() + table_len).ok_or(Error::Overflow {
        what: "data_offset",
    })?;
    let mut table = Vec::with_capacity(table_len);
    let mut offset = data_offset as u64;
    let mut end = offset;
    let mut count = 0usize;
    for (name, shape, dtype, bytes) in tensors.clone() {
        let len = bytes.len() as u64;
        table.extend_from_slice(&(name.len() as u16).to_le_bytes());
        table.push(dtype.code());
        table.push(shape.len() as u8);
        for &s in shape {
            table.extend_from_slice(&u32f("shape", s)?.to_le_bytes());
        }
        table.extend_from_slice(&(offset as u32).to_le_bytes());
        table.extend_from_slice(&(len as u32).to_le_bytes());
        table.extend_from_slice(name.as_bytes());
        end = offset + len;
        offset = end.div_ceil(16) * 16;
        count += 1;
        if end > u32::MAX as u64 {
            return Err(Error::TooLarge { bytes: end });
        }
    }
    let file_len = end + FOOTER_LEN as u64;
    if file_len > u32::MAX as u64 {
        return Err(Error::TooLarge { bytes: file_len });
    }

    let mut out = Vec::with_capacity(file_len as usize);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&(V2_HEADER_LEN as u16).to_le_bytes());
    for v in [
        m.feature_bits(),
        0,
        meta.len() as u32,
        table_len as u32,
        count as u32,
        data_offset as u32,
        file_len as u32,
        0,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&meta);
    out.extend_from_slice(&table);
    for (_, _, _, bytes) in tensors {
        out.resize(align_up(out.len()).unwrap_or(out.len()), 0);
        out.extend_from_slice(bytes);
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    BlobView::parse(&out)?;
    Ok(out)
}

/// The values of one tensor of an int8 model, in its storage type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// f32 values (an int8 model's per-channel scales).
    F32(Vec<f32>),
    /// i8 values (quantised matrices).
    I8(Vec<i8>),
    /// i32 values (integer tables).
    I32(Vec<i32>),
}

impl TensorData {
    /// The storage dtype.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::I8(_) => DType::I8,
            TensorData::I32(_) => DType::I32,
        }
    }

    /// Element count.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I32(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Little-endian bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// The i32 values (`None` for other types).
    pub fn as_i32(&self) -> Option<&[i32]> {
        match self {
            TensorData::I32(v) => Some(v),
            _ => None,
        }
    }

    /// The i8 values (`None` for other types).
    pub fn as_i8(&self) -> Option<&[i8]> {
        match self {
            TensorData::I8(v) => Some(v),
            _ => None,
        }
    }

    /// The f32 values (`None` for other types).
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }
}

/// One named tensor of an int8 model.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantTensor {
    /// Name (docs/int8.md catalogue).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values in their storage type.
    pub data: TensorData,
}

/// An int8 (quantised) model held in memory: what a v2 file with feature bit 10 records.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantModelFile {
    /// Dims, architecture and pattern (`meta.int8 == true`).
    pub meta: ModelMeta,
    /// Class names (empty, or one per class).
    pub class_names: Vec<String>,
    /// Feature names (empty, or one per input feature).
    pub feature_names: Vec<String>,
    /// Free key/value strings, unique keys, in order.
    pub metadata: Vec<(String, String)>,
    /// The QUANT record.
    pub quant: QuantRecord,
    /// Tensors in canonical order ([`ModelMeta::tensor_specs`] of the int8 model).
    pub tensors: Vec<QuantTensor>,
}

impl QuantModelFile {
    /// Copies a validated int8 blob into memory (a float blob is [`Error::DTypeAccess`]).
    pub fn from_view(view: &BlobView<'_>) -> Result<Self> {
        let Some(q) = view.quant() else {
            return Err(Error::DTypeAccess {
                tensor: Name::new("(float model)"),
                dtype: view.dtype().unwrap_or(DType::F32),
                wanted: "an int8 model",
            });
        };
        let mut tensors = Vec::with_capacity(view.tensor_count());
        for t in view.tensors() {
            let data = match t.dtype() {
                DType::I8 => TensorData::I8(t.as_i8().unwrap_or(&[]).to_vec()),
                DType::I32 => {
                    let mut v = alloc::vec![0i32; t.len()];
                    t.read_i32_into(&mut v)?;
                    TensorData::I32(v)
                }
                DType::F32 | DType::F16 => {
                    let mut v = alloc::vec![0.0f32; t.len()];
                    t.read_f32_into(&mut v)?;
                    TensorData::F32(v)
                }
            };
            tensors.push(QuantTensor {
                name: t.name().into(),
                shape: t.shape().as_slice().to_vec(),
                data,
            });
        }
        let d = view.meta().dims;
        Ok(Self {
            meta: *view.meta(),
            class_names: (0..d.classes)
                .map_while(|i| view.class_name(i).map(String::from))
                .collect(),
            feature_names: (0..d.input_dim)
                .map_while(|i| view.feature_name(i).map(String::from))
                .collect(),
            metadata: view
                .metadata()
                .map(|(k, v)| (String::from(k), String::from(v)))
                .collect(),
            quant: QuantRecord::from_view(&q),
            tensors,
        })
    }

    /// Parses and copies `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_view(&BlobView::parse(bytes)?)
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&QuantTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Checks the tensors against the int8 catalogue: names in canonical order, shapes,
    /// element counts and dtypes.
    pub fn check_tensors(&self) -> Result<()> {
        self.meta.validate()?;
        if !self.meta.int8 {
            return Err(Error::DTypeAccess {
                tensor: Name::new("(float model)"),
                dtype: DType::F32,
                wanted: "an int8 model (meta.int8 must be set)",
            });
        }
        check_list(
            &self.meta,
            self.tensors.iter().map(|t| {
                (
                    t.name.as_str(),
                    t.shape.as_slice(),
                    t.data.len(),
                    Some(t.data.dtype()),
                )
            }),
        )
    }

    /// Writes the v2 layout with the QUANT record; the blob is parsed back (every value
    /// range checked) before it is returned.
    pub fn to_v2_bytes(&self) -> Result<Vec<u8>> {
        self.check_tensors()?;
        let quant = self.quant.to_bytes();
        let bytes: Vec<Vec<u8>> = self.tensors.iter().map(|t| t.data.to_bytes()).collect();
        let tensors = self.tensors.iter().zip(&bytes).map(|(t, b)| {
            (
                t.name.as_str(),
                t.shape.as_slice(),
                t.data.dtype(),
                b.as_slice(),
            )
        });
        encode_v2(
            &self.meta,
            &self.class_names,
            &self.feature_names,
            &self.metadata,
            Some(&quant),
            tensors,
        )
    }
}

fn push_record(out: &mut Vec<u8>, t: u16, flags: u16, payload: &[u8]) -> Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::StringTooLong {
        what: "metadata record",
        len: payload.len(),
    })?;
    out.extend_from_slice(&t.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

fn push_data(out: &mut Vec<u8>, data: &[f32], dtype: DType) {
    match dtype {
        // Callers only pass float dtypes.
        DType::I8 | DType::I32 => {}
        DType::F32 => {
            for v in data {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        DType::F16 => {
            for v in data {
                out.extend_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
    }
}
