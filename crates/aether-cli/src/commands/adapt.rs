//! `aether adapt`: few-shot adaptation of a trained model to a new room, person or day.
//!
//! `aether adapt --model M --data FEW --out M2` adapts `M` to the labelled recordings in
//! `FEW` (the dataset-folder layout, the model's classes and features) and writes `M2`
//! (the same architecture and names; `adapt.*` provenance added). Modes (`--mode`):
//! - `norm`: re-estimate the input normalisation (`input.mean`, `input.std`) on the new
//!   recordings, nothing else (needs no label);
//! - `head` (default): `norm`, then train the classifier and the final layer norm;
//! - `full`: `norm`, then train every weight with a small learning rate.
//!
//! Training uses the model's own window (`data.window`, `data.stride`), a fixed number of
//! epochs (`--epochs`, no validation: a few recordings leave none to spare) and the
//! training recipe's other defaults. `--shots K` evaluates instead: for each of `--seeds`
//! seeds, K recordings per class of `FEW` (drawn at random) adapt the model and the rest
//! are scored, beside the unadapted model on the same recordings; the JSON report goes to
//! `--report` (docs/results.md, few-shot tables).

use std::ops::ControlFlow;
use std::path::PathBuf;

use aether_data::dataset::{ShortPolicy, WindowConfig};
use aether_data::Dataset;
use aether_head::train::{train_model, ExportInfo, Model, TrainConfig, Window};
use aether_pipeline::{evaluate, load, mean_sd, model_logits, print_skipped, stat_json};
use aether_rvne::{BlobView, DType, ModelFile};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::plural;
use crate::fsutil::{check_output_file, read_model_file, write_atomic};
use crate::values::{self, Ends};

/// What adaptation changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Re-estimate the input normalisation only.
    Norm,
    /// Input normalisation, then the classifier and final layer norm.
    Head,
    /// Input normalisation, then every weight (small learning rate).
    Full,
}

/// Arguments of `aether adapt`.
#[derive(clap::Args)]
pub struct Args {
    /// The trained model (.rvne v2 with input normalisation for `norm`).
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled recordings from the new domain (dataset folder).
    #[arg(long)]
    pub data: PathBuf,
    /// The adapted model to write.
    #[arg(long, required_unless_present = "shots")]
    pub out: Option<PathBuf>,
    /// Evaluate K-shot adaptation on --data instead of writing a model, 1..=1000.
    #[arg(long, value_name = "K", conflicts_with = "out", value_parser = values::count(1, 1000))]
    pub shots: Option<usize>,
    /// With --shots: repeat with this many seeds (different draws), 1..=100.
    #[arg(long, default_value_t = 3, value_parser = values::count(1, values::MAX_SEEDS), requires = "shots")]
    pub seeds: usize,
    /// With --shots: write the JSON report here (default: print it).
    #[arg(long, requires = "shots")]
    pub report: Option<PathBuf>,
    /// What to adapt.
    #[arg(long, value_enum, default_value_t = Mode::Head)]
    pub mode: Mode,
    /// Epochs, 1..=10000.
    #[arg(long, default_value_t = 40, value_parser = values::count(1, values::MAX_EPOCHS))]
    pub epochs: usize,
    /// Peak learning rate (default: 3e-3 for `head`, 3e-4 for `full`), 0 < lr ≤ 1.
    #[arg(long, value_parser = values::real32(0.0, 1.0, Ends::OpenMin))]
    pub lr: Option<f32>,
    /// Seed of the draw (--shots) and of the training order.
    #[arg(long, default_value_t = 0, value_parser = values::seed)]
    pub seed: u64,
    /// Worker threads, 0..=256 (0: all cores).
    #[arg(long, default_value_t = 0, value_parser = values::count(0, values::MAX_THREADS))]
    pub threads: usize,
    /// Only the summary.
    #[arg(long)]
    pub quiet: bool,
}

/// The model file, its trainable form and its window.
struct Source {
    file: ModelFile,
    model: Model,
    window: WindowConfig,
}

fn read_source(path: &std::path::Path) -> Result<Source> {
    let name = path.display().to_string();
    let bytes = read_model_file(path)?;
    let view =
        BlobView::parse(&bytes).with_context(|| format!("{name}: not a valid .rvne file"))?;
    let file =
        ModelFile::from_view(&view).with_context(|| format!("{name}: reading its tensors"))?;
    let model = Model::from_model_file(&file)
        .with_context(|| format!("{name}: cannot train this model"))?;
    let num = |k| {
        view.metadata_value(k)
            .and_then(|v: &str| v.parse::<usize>().ok())
    };
    let window = match (num("data.window"), num("data.stride")) {
        (Some(w), s) if w > 0 => WindowConfig {
            len: w,
            stride: s.filter(|&s| s > 0).unwrap_or(w),
            short: ShortPolicy::Whole,
        },
        _ => WindowConfig {
            len: usize::MAX / 2,
            stride: usize::MAX / 2,
            short: ShortPolicy::Whole,
        },
    };
    Ok(Source {
        file,
        model,
        window,
    })
}

/// Checks the dataset has the model's classes (same names, same order) and features.
fn check_data(src: &Source, ds: &Dataset, data: &std::path::Path) -> Result<()> {
    let f = &src.file;
    if !f.class_names.is_empty() && ds.classes != f.class_names {
        bail!(
            "{}: classes [{}] differ from the model's [{}]",
            data.display(),
            ds.classes.join(", "),
            f.class_names.join(", ")
        );
    }
    if !f.feature_names.is_empty() && ds.feature_names != f.feature_names {
        bail!(
            "{}: its {} feature columns differ from the model's {}",
            data.display(),
            ds.dim(),
            f.feature_names.len()
        );
    }
    if ds.dim() != src.model.arch().features {
        bail!(
            "{}: {} features, the model takes {}",
            data.display(),
            ds.dim(),
            src.model.arch().features
        );
    }
    Ok(())
}

/// The windows of `indices`, as slices, with labels.
fn windows(ds: &Dataset, indices: &[usize], w: WindowConfig) -> Result<Vec<(Vec<f32>, usize)>> {
    let sub = ds.subset(indices);
    let (wins, _) = sub.windows(w)?;
    let mut out = Vec::with_capacity(wins.len());
    let mut buf = Vec::new();
    for win in &wins {
        sub.window_data(win, &mut buf);
        out.push((buf.clone(), sub.recordings[win.recording].class));
    }
    Ok(out)
}

/// Adapts `src` to the recordings `indices` of `ds`.
fn adapt(src: &Source, ds: &Dataset, indices: &[usize], a: &Args, seed: u64) -> Result<Model> {
    let mut model = src.model.clone();
    let data = windows(ds, indices, src.window)?;
    if data.is_empty() {
        bail!("no adaptation windows");
    }
    let wins: Vec<Window> = data
        .iter()
        .map(|(f, l)| Window {
            frames: f,
            label: *l,
        })
        .collect();
    if model.arch().input_norm {
        model.fit_input_norm(&wins)?;
    } else if a.mode == Mode::Norm {
        bail!("--mode norm: the model has no input normalisation to re-estimate");
    }
    if a.mode == Mode::Norm {
        return Ok(model);
    }
    let trainable: Vec<bool> = {
        let layout = model.layout();
        let mut t = vec![a.mode == Mode::Full; layout.total()];
        for spec in layout.specs() {
            let head_part =
                spec.name.starts_with("classifier.") || spec.name.starts_with("final_ln.");
            if head_part {
                t[spec.range()].iter_mut().for_each(|x| *x = true);
            }
        }
        t
    };
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: (wins.len() / 4).clamp(4, 16),
        learning_rate: a
            .lr
            .unwrap_or(if a.mode == Mode::Full { 3e-4 } else { 3e-3 }),
        warmup_fraction: 0.1,
        patience: None,
        seed,
        threads: a.threads,
        trainable: Some(trainable),
        ..TrainConfig::default()
    };
    let out = train_model(model, &cfg, &wins, &[], |_| ControlFlow::Continue(()))?;
    Ok(out.model)
}

/// Runs `aether adapt`.
pub fn run(a: Args) -> Result<()> {
    if let Some(o) = &a.out {
        check_output_file(o)?;
    }
    if let Some(r) = &a.report {
        check_output_file(r)?;
    }
    let src = read_source(&a.model)?;
    let (ds, skipped) = load(&a.data)?;
    if !a.quiet {
        print_skipped(&a.data, &skipped);
    }
    check_data(&src, &ds, &a.data)?;
    match a.shots {
        Some(k) => shots(&a, &src, &ds, k),
        None => {
            let all: Vec<usize> = (0..ds.recordings.len()).collect();
            let model = adapt(&src, &ds, &all, &a, a.seed)?;
            let mut metadata = src.file.metadata.clone();
            metadata.retain(|(k, _)| !k.starts_with("adapt."));
            metadata.extend([
                (
                    "adapt.mode".to_string(),
                    format!("{:?}", a.mode).to_lowercase(),
                ),
                ("adapt.recordings".into(), ds.recordings.len().to_string()),
                ("adapt.epochs".into(), a.epochs.to_string()),
                ("adapt.seed".into(), a.seed.to_string()),
            ]);
            let info = ExportInfo {
                class_names: src.file.class_names.clone(),
                feature_names: src.file.feature_names.clone(),
                metadata,
            };
            let bytes = model.to_v2_bytes(&info, DType::F32)?;
            let out = a.out.as_ref().expect("clap requires --out without --shots");
            write_atomic(out, &bytes)?;
            println!(
                "adapted {} ({} mode) to {} of {}; wrote {}",
                a.model.display(),
                format!("{:?}", a.mode).to_lowercase(),
                plural(ds.recordings.len(), "recording"),
                a.data.display(),
                out.display()
            );
            Ok(())
        }
    }
}

/// `--shots K`: adapt on K recordings per class, score the rest, per seed.
fn shots(a: &Args, src: &Source, ds: &Dataset, k: usize) -> Result<()> {
    let by_class = ds.by_class();
    let (mut zero, mut adapted, mut zero_f1, mut adapted_f1) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tested = 0;
    for s in 0..a.seeds {
        let seed = a.seed.wrapping_add(s as u64);
        let mut rng = aether_head::train::rng::Rng::new(seed ^ 0xADA9_7000_0000_0001);
        let (mut few, mut rest) = (Vec::new(), Vec::new());
        for (c, ix) in by_class.iter().enumerate() {
            let mut ix = ix.clone();
            rng.shuffle(&mut ix);
            if ix.len() <= k {
                bail!(
                    "class {} has {} in {}: --shots {k} leaves none to test",
                    ds.classes[c],
                    plural(ix.len(), "recording"),
                    a.data.display()
                );
            }
            few.extend_from_slice(&ix[..k]);
            rest.extend_from_slice(&ix[k..]);
        }
        few.sort_unstable();
        rest.sort_unstable();
        tested = rest.len();
        let e0 = evaluate(ds, &rest, src.window, model_logits(&src.model))?;
        let m = adapt(src, ds, &few, a, seed)?;
        let e1 = evaluate(ds, &rest, src.window, model_logits(&m))?;
        if !a.quiet {
            println!(
                "seed {seed}: {k}-shot adapted accuracy {:.3} (unadapted {:.3}) on {}",
                e1.recordings.accuracy,
                e0.recordings.accuracy,
                plural(rest.len(), "recording")
            );
        }
        zero.push(e0.recordings.accuracy);
        adapted.push(e1.recordings.accuracy);
        zero_f1.push(e0.recordings.macro_f1);
        adapted_f1.push(e1.recordings.macro_f1);
    }
    let report: Value = json!({
        "model": a.model.display().to_string(),
        "data": a.data.display().to_string(),
        "mode": format!("{:?}", a.mode).to_lowercase(),
        "shots": k,
        "epochs": a.epochs,
        "seeds": (0..a.seeds as u64).map(|s| a.seed.wrapping_add(s)).collect::<Vec<_>>(),
        "tested_recordings": tested,
        "unadapted": {"accuracy": stat_json(&zero), "macro_f1": stat_json(&zero_f1)},
        "adapted": {"accuracy": stat_json(&adapted), "macro_f1": stat_json(&adapted_f1)},
    });
    let (zm, zsd) = mean_sd(&zero);
    let (am, asd) = mean_sd(&adapted);
    println!(
        "{k}-shot {} adaptation over {} seeds: accuracy {am:.3} ± {asd:.3} (unadapted {zm:.3} ± {zsd:.3})",
        format!("{:?}", a.mode).to_lowercase(),
        a.seeds
    );
    match &a.report {
        Some(p) => write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?,
        None => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}
