//! `aether inspect FILE [--json]`: version, dtype, dims, architecture, pattern, pooling,
//! names, tensors (shape, bytes, offset), parameter count and CRC status of a `.rvne`
//! (v1 or v2) or safetensors file. A bad file exits non-zero with a one-line reason.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use aether_rvne::{BlobView, DType, ModelFile, QuantModelFile, QuantRecord, MAGIC};
use anyhow::{anyhow, Context, Result};
use serde_json::json;

use crate::fsutil::read_model_file;
use aether_pipeline::model_formats::{load_any, meta_to_json, MissingMetadata};

/// Arguments of `aether inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The file to describe.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

struct Row {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    bytes: usize,
    offset: Option<usize>,
}

/// Runs `aether inspect`.
pub fn run(a: Args) -> Result<()> {
    let mut out = String::new();
    macro_rules! w {
        ($($t:tt)*) => {{
            let _ = writeln!(out, $($t)*);
        }};
    }
    let bytes = read_model_file(&a.file)?;
    let is_rvne =
        bytes.len() >= 4 && u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == MAGIC;
    let mut int8 = None;
    let (format, crc, rows, model, defaults) = if is_rvne {
        let v = BlobView::parse(&bytes).with_context(|| a.file.display().to_string())?;
        int8 = v.quant().map(|q| QuantRecord::from_view(&q));
        let rows = v
            .tensors()
            .map(|t| Row {
                name: t.name().to_string(),
                dtype: t.dtype().to_string(),
                shape: t.shape().as_slice().to_vec(),
                bytes: t.bytes().len(),
                offset: Some(t.offset()),
            })
            .collect::<Vec<_>>();
        let m = if v.is_int8() {
            // The description of an int8 model (its tensors are listed from the table).
            let q = QuantModelFile::from_view(&v)?;
            ModelFile {
                meta: q.meta,
                dtype: DType::F32,
                class_names: q.class_names,
                feature_names: q.feature_names,
                metadata: q.metadata,
                tensors: Vec::new(),
            }
        } else {
            ModelFile::from_view(&v)?
        };
        (
            format!("rvne v{}", v.version()),
            Some(v.crc()),
            rows,
            m,
            v.meta().defaults_assumed,
        )
    } else {
        let m = load_any(&bytes, false).map_err(|e| {
            let hint = if e.is::<MissingMetadata>() {
                format!(
                    "; inspect needs it: add one with `aether convert {} OUT.rvne --meta MODEL.json`",
                    a.file.display()
                )
            } else {
                String::new()
            };
            anyhow!("{}: {e:#}{hint}", a.file.display())
        })?;
        let rows = m
            .tensors
            .iter()
            .map(|t| Row {
                name: t.name.clone(),
                dtype: m.dtype.to_string(),
                shape: t.shape.clone(),
                bytes: t.data.len() * m.dtype.size(),
                offset: None,
            })
            .collect();
        ("safetensors".to_string(), None, rows, m, false)
    };
    let params = model.meta.parameter_count();
    let dtypes: Vec<&str> = {
        let mut d: Vec<&str> = rows.iter().map(|r| r.dtype.as_str()).collect();
        d.sort();
        d.dedup();
        d
    };
    if a.json {
        let mut doc = meta_to_json(&model);
        let o = doc.as_object_mut().expect("meta_to_json returns an object");
        o.insert("file".into(), json!(a.file.display().to_string()));
        o.insert("bytes".into(), json!(bytes.len()));
        o.insert("format".into(), json!(format));
        o.insert("dtype".into(), json!(dtypes.join(",")));
        o.insert("defaults_assumed".into(), json!(defaults));
        o.insert(
            "crc".into(),
            match crc {
                Some(c) => json!({"status": "ok", "value": format!("0x{c:08X}")}),
                None => json!({"status": "none"}),
            },
        );
        o.insert("parameter_count".into(), json!(params));
        if let Some(q) = &int8 {
            o.insert(
                "int8".into(),
                json!({
                    "scheme": aether_rvne::QUANT_SCHEME,
                    "logit_shift": q.logit_shift,
                    "ln_eps": q.ln_eps,
                    "pe_mult": q.pe_mult,
                    "pe_shift": q.pe_shift,
                    "layers": q.layers.iter().map(|l| json!({"att_mult": l.att_mult, "att_shift": l.att_shift, "gelu_shift": l.gelu_shift})).collect::<Vec<_>>(),
                    "activation_scales": q.scales,
                }),
            );
        }
        o.insert(
            "tensors".into(),
            json!(rows
                .iter()
                .map(|r| json!({"name": r.name, "dtype": r.dtype, "shape": r.shape, "bytes": r.bytes, "offset": r.offset}))
                .collect::<Vec<_>>()),
        );
        let text = serde_json::to_string_pretty(&doc)? + "\n";
        return emit(&text);
    }
    let m = &model.meta;
    let d = &m.dims;
    let ar = &m.arch;
    let p = &m.pattern;
    let yn = |b: bool| if b { "yes" } else { "no" };
    w!("file:         {} ({} bytes)", a.file.display(), bytes.len());
    w!(
        "format:       {format}{}",
        if defaults {
            " (architecture, pattern and pooling not recorded: documented defaults assumed)"
        } else {
            ""
        }
    );
    match crc {
        Some(c) => w!("crc:          ok (0x{c:08X})"),
        None => w!("crc:          none (format has no checksum)"),
    }
    w!("dtype:        {}", dtypes.join(", "));
    if let Some(q) = &int8 {
        w!(
            "int8:         scheme {} (i8 weights per output channel, i16 activations, i8 KV caches; docs/int8.md), logits q·2^-{}, {} activation scales",
            aether_rvne::QUANT_SCHEME,
            q.logit_shift,
            q.scales.len()
        );
    }
    w!(
        "dims:         F={} D={} Hq={} Hkv={} dh={} L={} C={} H={}",
        d.input_dim,
        d.d_model,
        d.q_heads,
        d.kv_heads,
        d.head_dim,
        d.layers,
        d.classes,
        d.mlp_hidden
    );
    w!(
        "architecture: running_norm={} input_norm={} embed={} positional={} pre_norm={} biases={} final_norm={} attention={}",
        yn(ar.running_norm), yn(ar.input_norm), yn(ar.embed), lower(ar.positional), yn(ar.pre_norm), yn(ar.biases), yn(ar.final_norm), lower(ar.attention)
    );
    w!("pooling:      {}", lower(ar.pooling));
    w!(
        "pattern:      window={} block_size={} globals={:?} causal={} log_stride={} landmarks={}",
        p.window,
        p.block_size,
        p.globals(),
        yn(p.causal),
        yn(p.log_stride),
        yn(p.landmarks)
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "(unnamed)".to_string()
        } else {
            v.join(", ")
        }
    };
    w!("classes:      {} — {}", d.classes, list(&model.class_names));
    w!(
        "features:     {} — {}",
        d.input_dim,
        list(&model.feature_names)
    );
    for (k, v) in &model.metadata {
        w!("meta:         {k} = {v}");
    }
    w!("tensors:      {} ({params} parameters)", rows.len());
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in &rows {
        let shape = format!("{:?}", r.shape);
        match r.offset {
            Some(o) => w!(
                "  {:w$}  {}  {:14}  {:>9} bytes @ {o}",
                r.name,
                r.dtype,
                shape,
                r.bytes
            ),
            None => w!(
                "  {:w$}  {}  {:14}  {:>9} bytes",
                r.name,
                r.dtype,
                shape,
                r.bytes
            ),
        }
    }
    emit(&out)
}

fn lower(x: impl std::fmt::Debug) -> String {
    format!("{x:?}").to_lowercase()
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
