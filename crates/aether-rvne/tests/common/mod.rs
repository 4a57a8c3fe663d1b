//! An independent raw v2 encoder (straight from docs/rvne-format.md) used to craft
//! byte-exact valid and invalid files, plus small sample models.
#![allow(dead_code)]

use aether_rvne::{
    crc32, quant_scale_count, reference_init, Architecture, AttentionBackend, DType, Dims,
    LayerQuant, ModelFile, ModelMeta, Part, PatternSpec, Pooling, Positional, QuantModelFile,
    QuantRecord, QuantTensor, TensorData, TensorKind,
};

/// A metadata record: tag u16, flags u16, len u32, payload.
pub fn rec(tag: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn u32s(xs: &[u32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn names_payload(names: &[&[u8]]) -> Vec<u8> {
    let mut v = (names.len() as u32).to_le_bytes().to_vec();
    for n in names {
        v.extend_from_slice(&(n.len() as u16).to_le_bytes());
        v.extend_from_slice(n);
    }
    v
}

pub fn kv_payload(k: &[u8], val: &[u8]) -> Vec<u8> {
    let mut v = (k.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(k);
    v.extend_from_slice(val);
    v
}

pub fn pattern_payload(w: u32, b: u32, flags: [u8; 4], globals: &[u32]) -> Vec<u8> {
    let mut v = u32s(&[w, b]);
    v.extend_from_slice(&flags);
    v.extend_from_slice(&(globals.len() as u32).to_le_bytes());
    v.extend_from_slice(&u32s(globals));
    v
}

#[derive(Clone)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub dtype: u8,
    pub shape: Vec<u32>,
    pub data: Vec<u8>,
    pub offset_delta: i64,
    pub len_override: Option<u32>,
    pub name_len_override: Option<u16>,
}

#[derive(Clone)]
pub struct Raw {
    pub header_len: u16,
    pub required: u32,
    pub optional: u32,
    pub reserved: u32,
    pub records: Vec<Vec<u8>>,
    pub entries: Vec<RawEntry>,
    pub n_tensors_override: Option<u32>,
    pub extra_table: Vec<u8>,
    pub table_pad_fill: u8,
    pub tensor_pad_fill: u8,
    pub trailing: Vec<u8>,
}

fn align16(x: usize) -> usize {
    x.div_ceil(16) * 16
}

impl Raw {
    /// Encodes with the canonical layout, applying the overrides; fixes file_len and CRC.
    pub fn encode(&self) -> Vec<u8> {
        let meta: Vec<u8> = self.records.concat();
        let mut table_len = self.extra_table.len();
        for e in &self.entries {
            table_len += 12 + 4 * e.shape.len() + e.name.len();
        }
        let table_end = 40 + meta.len() + table_len;
        let data_offset = align16(table_end);
        let mut offsets = Vec::new();
        let mut off = data_offset;
        let mut end = off;
        for e in &self.entries {
            offsets.push(off);
            end = off + e.data.len();
            off = align16(end);
        }
        let file_len = end + self.trailing.len() + 4;
        let mut b = Vec::new();
        b.extend_from_slice(&0x5256_4E45u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&self.header_len.to_le_bytes());
        b.extend_from_slice(&u32s(&[
            self.required,
            self.optional,
            meta.len() as u32,
            table_len as u32,
            self.n_tensors_override.unwrap_or(self.entries.len() as u32),
            data_offset as u32,
            file_len as u32,
            self.reserved,
        ]));
        b.extend_from_slice(&meta);
        for (e, &o) in self.entries.iter().zip(&offsets) {
            b.extend_from_slice(
                &e.name_len_override
                    .unwrap_or(e.name.len() as u16)
                    .to_le_bytes(),
            );
            b.push(e.dtype);
            b.push(e.shape.len() as u8);
            b.extend_from_slice(&u32s(&e.shape));
            b.extend_from_slice(&((o as i64 + e.offset_delta) as u32).to_le_bytes());
            b.extend_from_slice(&e.len_override.unwrap_or(e.data.len() as u32).to_le_bytes());
            b.extend_from_slice(&e.name);
        }
        b.extend_from_slice(&self.extra_table);
        b.resize(data_offset, self.table_pad_fill);
        for (e, &o) in self.entries.iter().zip(&offsets) {
            b.resize(o, self.tensor_pad_fill);
            b.extend_from_slice(&e.data);
        }
        b.extend_from_slice(&self.trailing);
        let crc = crc32(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The raw form of an owned model (its tensors stored as `dtype`).
    pub fn from_model(m: &ModelFile, dtype: DType) -> Raw {
        let d = &m.meta.dims;
        let p = &m.meta.pattern;
        let mut records = vec![
            rec(
                1,
                1,
                &u32s(&[
                    d.input_dim as u32,
                    d.d_model as u32,
                    d.q_heads as u32,
                    d.kv_heads as u32,
                    d.head_dim as u32,
                    d.layers as u32,
                    d.classes as u32,
                    d.mlp_hidden as u32,
                ]),
            ),
            rec(
                2,
                1,
                &pattern_payload(
                    p.window as u32,
                    p.block_size as u32,
                    [p.causal as u8, p.log_stride as u8, p.landmarks as u8, 0],
                    &p.globals().iter().map(|&g| g as u32).collect::<Vec<_>>(),
                ),
            ),
        ];
        if !m.class_names.is_empty() {
            let n: Vec<&[u8]> = m.class_names.iter().map(|s| s.as_bytes()).collect();
            records.push(rec(3, 0, &names_payload(&n)));
        }
        if !m.feature_names.is_empty() {
            let n: Vec<&[u8]> = m.feature_names.iter().map(|s| s.as_bytes()).collect();
            records.push(rec(4, 0, &names_payload(&n)));
        }
        for (k, v) in &m.metadata {
            records.push(rec(5, 0, &kv_payload(k.as_bytes(), v.as_bytes())));
        }
        let entries = m
            .tensors
            .iter()
            .map(|t| RawEntry {
                name: t.name.as_bytes().to_vec(),
                dtype: dtype.code(),
                shape: t.shape.iter().map(|&s| s as u32).collect(),
                data: match dtype {
                    DType::F32 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    DType::F16 => t
                        .data
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                    DType::I8 | DType::I32 => panic!("a float model has no integer tensors"),
                },
                offset_delta: 0,
                len_override: None,
                name_len_override: None,
            })
            .collect();
        Raw {
            header_len: 40,
            required: m.meta.feature_bits(),
            optional: 0,
            reserved: 0,
            records,
            entries,
            n_tensors_override: None,
            extra_table: Vec::new(),
            table_pad_fill: 0,
            tensor_pad_fill: 0,
            trailing: Vec::new(),
        }
    }
}

impl Raw {
    /// The raw form of an int8 model (records as the writer emits them).
    pub fn from_quant(m: &QuantModelFile) -> Raw {
        let float = ModelFile {
            meta: m.meta.with_int8(false),
            dtype: DType::F32,
            class_names: m.class_names.clone(),
            feature_names: m.feature_names.clone(),
            metadata: m.metadata.clone(),
            tensors: Vec::new(),
        };
        let mut r = Raw::from_model(&float, DType::F32);
        r.required = m.meta.feature_bits();
        r.records.push(rec(6, 1, &m.quant.to_bytes()));
        r.entries = m
            .tensors
            .iter()
            .map(|t| RawEntry {
                name: t.name.as_bytes().to_vec(),
                dtype: t.data.dtype().code(),
                shape: t.shape.iter().map(|&s| s as u32).collect(),
                data: t.data.to_bytes(),
                offset_delta: 0,
                len_override: None,
                name_len_override: None,
            })
            .collect();
        r
    }
}

/// A valid int8 model of `meta` (every value in range, not a trained model): i8
/// matrices, scales 0.01, tables with multiplier 2^30 and shift 0.
pub fn int8_model_of(meta: ModelMeta) -> QuantModelFile {
    let meta = meta.with_int8(true);
    let l = meta.dims.layers;
    let tensors = meta
        .tensor_specs()
        .map(|s| {
            let n = s.numel().unwrap();
            let cols = s.shape.as_slice().get(1).copied().unwrap_or(1);
            let data = match (s.part, s.kind) {
                (Part::Scale, _) => TensorData::F32(vec![0.01; n]),
                (Part::Data, k) if k.is_matrix() => {
                    TensorData::I8((0..n).map(|i| ((i * 37) % 255) as i8).collect())
                }
                (Part::Rq, _) => TensorData::I32(
                    (0..n)
                        .map(|i| match i % cols {
                            0 => (i as i32) - 3,
                            1 => 1 << 30,
                            _ => 0,
                        })
                        .collect(),
                ),
                (_, TensorKind::InputQ) => TensorData::I32(
                    (0..n)
                        .map(|i| match i % cols {
                            0 => 16,
                            1 => 1 << 30,
                            3 => -5,
                            4 if meta.arch.running_norm => 64,
                            _ => 0,
                        })
                        .collect(),
                ),
                (_, TensorKind::PosQ) => {
                    TensorData::I32((0..n).map(|i| (i as i32) * 99_991).collect())
                }
                _ => TensorData::I32(
                    (0..n)
                        .map(|i| match i % cols {
                            0 => 1 << 29,
                            2 => 7,
                            _ => 0,
                        })
                        .collect(),
                ),
            };
            QuantTensor {
                name: s.name().as_str().into(),
                shape: s.shape.as_slice().to_vec(),
                data,
            }
        })
        .collect();
    let positional = meta.arch.positional == Positional::Sinusoidal;
    QuantModelFile {
        meta,
        class_names: Vec::new(),
        feature_names: Vec::new(),
        metadata: vec![("quantized_by".into(), "tests".into())],
        quant: QuantRecord {
            logit_shift: 20,
            ln_eps: 1 << 20,
            pe_mult: if positional { 1 << 30 } else { 0 },
            pe_shift: if positional { -2 } else { 0 },
            layers: (0..l)
                .map(|_| LayerQuant {
                    att_mult: 1 << 30,
                    att_shift: 3,
                    gelu_shift: if meta.dims.mlp_hidden > 0 { 1 } else { 0 },
                })
                .collect(),
            scales: (0..quant_scale_count(l)).map(|i| 0.01 + i as f32).collect(),
        },
        tensors,
    }
}

/// The int8 form of [`full_model`]'s architecture (every option on, names kept).
pub fn int8_full_model() -> QuantModelFile {
    let f = full_model();
    let mut q = int8_model_of(f.meta);
    q.class_names = f.class_names;
    q.feature_names = f.feature_names;
    q
}

/// Every architecture option on, tiny odd dims, names and provenance.
pub fn full_model() -> ModelFile {
    let dims = Dims {
        input_dim: 3,
        d_model: 4,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 3,
        layers: 2,
        classes: 3,
        mlp_hidden: 5,
    };
    let arch = Architecture {
        input_norm: true,
        embed: true,
        positional: Positional::Sinusoidal,
        pre_norm: true,
        biases: true,
        final_norm: true,
        pooling: Pooling::Last,
        attention: AttentionBackend::Sparse,
        running_norm: false,
    };
    let pattern = PatternSpec::new(8, 4, &[0, 7], true, true, false).unwrap();
    let mut m = reference_init(&ModelMeta::new(dims, arch, pattern), 42, DType::F32).unwrap();
    m.class_names = vec!["wave".into(), "circle".into(), "none".into()];
    m.feature_names = vec!["amp0".into(), "amp1".into(), "φ".into()];
    m.metadata = vec![
        ("trained_by".into(), "aether train".into()),
        ("epochs".into(), "12".into()),
    ];
    m
}

/// The smallest v1-expressible model.
pub fn tiny_v1_model() -> ModelFile {
    reference_init(
        &ModelMeta::v1_defaults(Dims {
            input_dim: 2,
            d_model: 2,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 2,
            layers: 2,
            classes: 2,
            mlp_hidden: 0,
        }),
        7,
        DType::F32,
    )
    .unwrap()
}

/// Recomputes the CRC footer in place.
pub fn fix_crc(b: &mut [u8]) {
    let n = b.len();
    let crc = crc32(&b[..n - 4]);
    b[n - 4..].copy_from_slice(&crc.to_le_bytes());
}
