//! `aether eval --model M --data DIR [--json]`: score a `.rvne` model on a dataset.
//!
//! The model runs through the inference head (`TemporalHead`, the code a node runs; an
//! int8 model from `aether quantize` through the integer head, `aether_quant::QuantHead`),
//! over windows of the length and stride stored in the model (`data.window`,
//! `data.stride`; `--window` / `--stride` override, and a model without them — v1 —
//! classifies each recording whole). `accuracy` is per recording: the windows of a
//! recording vote with their averaged logits; window-level figures are reported beside.
//! `--json` prints one object: `accuracy`, `macro_f1`, `confusion` (rows truth),
//! `classes`, `per_class` (precision / recall / F1 / support), `recordings`, and
//! `windows` (the same figures per window, with `loss` and `count`). Entries of the
//! dataset folder that are not read (hidden, not `.csv`, header only, …) are listed on
//! stderr, as `train` lists them.

use std::path::PathBuf;

use aether_head::Backend;
use aether_pipeline::model_io::{scoring_window, WHOLE_RECORDING};
use aether_pipeline::{
    evaluate, evaluation_json, load, print_skipped, report_text, select_groups, Attention,
    LoadedModel,
};
use anyhow::{bail, Result};

use super::plural;
use crate::values;

/// Arguments of `aether eval`.
#[derive(clap::Args)]
pub struct Args {
    /// The model (.rvne v1 or v2).
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset folder or `.npy` directory with the model's classes and features.
    #[arg(long)]
    pub data: PathBuf,
    /// Window length, 1..=8192 (default: the model's `data.window`; whole recordings without it).
    #[arg(long, value_parser = values::count(1, values::MAX_WINDOW))]
    pub window: Option<usize>,
    /// Window stride, 1..=1000000 (default: the model's `data.stride`, else the window length).
    #[arg(long, value_parser = values::count(1, values::MAX_STRIDE))]
    pub stride: Option<usize>,
    /// Evaluate only recordings of these groups (see --group-field).
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Which `_`-separated field of a recording's name is its group, 0..=15 (0: the prefix).
    #[arg(long, default_value_t = 0, value_parser = values::count(0, 15))]
    pub group_field: usize,
    /// Also report accuracy, macro-F1 and confusion per group (domain).
    #[arg(long)]
    pub by_group: bool,
    /// Override the attention backend stored in the model.
    #[arg(long, value_enum)]
    pub backend: Option<Attention>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `aether eval`.
pub fn run(args: Args) -> Result<()> {
    let m = LoadedModel::read(&args.model)?;
    let (ds, skipped) = load(&args.data)?;
    print_skipped(&args.data, &skipped);
    let name = args.data.display();
    if (m.named_classes && ds.classes != m.classes) || ds.classes.len() != m.classes.len() {
        bail!(
            "{name}: classes [{}] differ from the model's [{}]",
            ds.classes.join(", "),
            m.classes.join(", ")
        );
    }
    if !m.features.is_empty() && ds.feature_names != m.features {
        let i = ds
            .feature_names
            .iter()
            .zip(&m.features)
            .position(|(a, b)| a != b)
            .unwrap_or(ds.feature_names.len().min(m.features.len()));
        bail!(
            "{name}: {} features, the model takes {}; first difference at column {}: {:?} vs the model's {:?}",
            ds.dim(),
            m.features.len(),
            i + 1,
            ds.feature_names.get(i).map_or("", |s| s.as_str()),
            m.features.get(i).map_or("", |s| s.as_str())
        );
    }
    let head_features = m.feature_dim;
    if ds.dim() != head_features {
        bail!(
            "{name}: {} features, the model takes {head_features}",
            ds.dim()
        );
    }
    let indices = select_groups(&ds, &args.groups, args.group_field)?;
    let window = scoring_window(args.window, args.stride, m.window);
    if window.len == 0 || window.stride == 0 {
        bail!("--window and --stride must be positive");
    }
    let backend = args.backend.map(Backend::from);
    let e = evaluate(&ds, &indices, window, |w| m.logits(backend, w))?;
    let mut by_group = Vec::new();
    if args.by_group {
        for (g, ix) in ds.groups_by(args.group_field)? {
            let ix: Vec<usize> = ix
                .into_iter()
                .filter(|i| indices.binary_search(i).is_ok())
                .collect();
            if !ix.is_empty() {
                by_group.push((g, evaluate(&ds, &ix, window, |w| m.logits(backend, w))?));
            }
        }
    }
    if args.json {
        let mut j = evaluation_json(&e, &ds.classes);
        let o = j.as_object_mut().expect("object");
        o.insert("model".into(), args.model.display().to_string().into());
        o.insert("data".into(), args.data.display().to_string().into());
        if window.len < WHOLE_RECORDING {
            o.insert("window".into(), window.len.into());
            o.insert("stride".into(), window.stride.into());
        }
        if args.by_group {
            let groups: Vec<serde_json::Value> = by_group
                .iter()
                .map(|(g, ge)| {
                    let mut v = evaluation_json(ge, &ds.classes);
                    v.as_object_mut()
                        .expect("object")
                        .insert("group".into(), g.clone().into());
                    v
                })
                .collect();
            o.insert("group_field".into(), args.group_field.into());
            o.insert("by_group".into(), groups.into());
        }
        println!("{j}");
    } else {
        println!(
            "{}: {}, {}",
            args.data.display(),
            plural(e.n_recordings, "recording"),
            plural(e.n_windows, "window")
        );
        println!(
            "accuracy {:.4} per recording (windows vote with averaged logits), macro-F1 {:.4}",
            e.recordings.accuracy, e.recordings.macro_f1
        );
        println!(
            "window level: accuracy {:.4}, macro-F1 {:.4}, loss {:.4}",
            e.windows.accuracy, e.windows.macro_f1, e.loss
        );
        println!("per recording:");
        print!("{}", report_text(&e.recordings, &ds.classes));
        if args.by_group {
            let w = by_group
                .iter()
                .map(|(g, _)| g.chars().count())
                .max()
                .unwrap_or(5)
                .max(5);
            println!("by group (field {}):", args.group_field);
            println!(
                "{:<w$}  {:>10}  {:>8}  {:>8}  {:>9}",
                "group", "recordings", "accuracy", "macro-F1", "windows"
            );
            for (g, ge) in &by_group {
                println!(
                    "{g:<w$}  {:>10}  {:>8.4}  {:>8.4}  {:>9.4}",
                    ge.n_recordings,
                    ge.recordings.accuracy,
                    ge.recordings.macro_f1,
                    ge.windows.accuracy
                );
            }
            for (g, ge) in &by_group {
                println!("group {g}:");
                print!("{}", report_text(&ge.recordings, &ds.classes));
            }
        }
    }
    Ok(())
}
