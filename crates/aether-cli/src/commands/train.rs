//! `aether train`: train a head on a dataset folder (or `.npy` directory) and write a
//! `.rvne` model, a JSON report and SVG curves / confusion matrix.
//!
//! The pipeline is the `aether_pipeline` library (shared with `eval`, `gate`, `demo`):
//! 1. read the data (`load`); hash it (`data_hash`, SHA-256 over classes, feature
//!    names and every recording's name, class and f32 bytes);
//! 2. split by recording, stratified and seeded (`--val`, default 0.2);
//! 3. derive the window from the training recordings (`derive_window`): length `p10`
//!    of their lengths if ≤ 512 (segmented events train whole), else 256; stride
//!    `max(1, len/4)`; a shorter recording is one whole (shorter) window;
//! 4. derive the hyper-parameters from the window count (`derive_config`);
//! 5. train with early stopping on the validation recordings (`fit`), progress bar on
//!    stderr unless `--quiet`;
//! 6. write the model (v2 by default, `--format v1` for the bare v1 architecture), the
//!    report and the plots, each atomically.
//!
//! `--kfold K` cross-validates instead (K folds by recording; the JSON report goes to
//! `--out` and no model is written), as do `--kfold-groups` and `--test-groups`
//! (`run_protocol`).

use std::path::{Path, PathBuf};

use aether_pipeline::{
    confusion_svg, curves_svg, data_hash, derive_arch, evaluate, evaluation_json, fit_progress,
    fitted_json, int8_logits, load, model_bytes, model_logits, plan_runs, print_skipped,
    quantize_bytes, run_protocol, select_groups, Dataset, Plan, Protocol, ProtocolSettings,
    TrainOpts, WindowSet,
};
use anyhow::{bail, Result};
use serde_json::json;

use super::plural;
use crate::args::RvneVersion;
use crate::fsutil::{check_output_file, distinct_outputs, write_atomic};
use crate::progress;
use crate::values;

/// Arguments of `aether train`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("evaluation").args(["kfold", "kfold_groups", "test_groups"])))]
pub struct Args {
    /// Dataset folder (`DATA/<class>/<recording>.csv`) or a directory with X.npy and y.npy.
    #[arg(long)]
    pub data: PathBuf,
    /// Output model (.rvne); with --kfold, the JSON report instead.
    #[arg(long)]
    pub out: PathBuf,
    /// Options shared with `gate` and `demo`.
    #[command(flatten)]
    pub opts: TrainOpts,
    /// Output format: v2 (everything) or v1 (bare architecture only).
    #[arg(long, value_enum, default_value = "v2")]
    pub format: RvneVersion,
    /// Store weights as f16.
    #[arg(long)]
    pub f16: bool,
    /// Also quantise the trained head to int8 (docs/int8.md; calibrated on its training
    /// windows) and evaluate it beside the float head: writes OUT's sibling
    /// `<stem>.int8.rvne`; with --kfold, --kfold-groups or --test-groups every run's int8
    /// head is tested too (report key `int8`).
    #[arg(long)]
    pub int8: bool,
    /// Cross-validate with K folds by recording, 2..=1000 (writes the report to --out, no model).
    #[arg(long, value_name = "K", value_parser = values::count(2, values::MAX_FOLDS),
          conflicts_with_all = ["kfold_groups", "test_groups"])]
    pub kfold: Option<usize>,
    /// Leave one group out: train on every other group (of --groups, if given), test on
    /// it, for every group (domain: session, room, person, chip; see --group-field).
    /// Writes the report to --out, no model.
    #[arg(long, conflicts_with = "test_groups")]
    pub kfold_groups: bool,
    /// Train on --groups (or everything else) and test on each of these groups
    /// separately (e.g. `--groups D1 --test-groups D2,D3,D4`). Writes the report to
    /// --out, no model.
    #[arg(long, value_delimiter = ',')]
    pub test_groups: Vec<String>,
    /// With --kfold / --kfold-groups / --test-groups: repeat with this many training
    /// seeds (--seed, --seed + 1, …; the folds stay fixed) and report mean ± sd, 1..=100.
    #[arg(long, default_value_t = 1, value_parser = values::count(1, values::MAX_SEEDS),
          requires = "evaluation")]
    pub seeds: usize,
    /// JSON report path (default: OUT with extension .json; not with the evaluation modes).
    #[arg(long, conflicts_with_all = ["kfold", "kfold_groups", "test_groups"])]
    pub report: Option<PathBuf>,
    /// Do not write the SVG curves and confusion matrix.
    #[arg(long)]
    pub no_plots: bool,
    /// No progress bar, no per-epoch lines; only the final summary.
    #[arg(long)]
    pub quiet: bool,
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{stem}{suffix}"))
}

/// Every file `train` will write, labelled for messages: the model (or, with
/// `--kfold`, the report), the report, the plots.
fn outputs(args: &Args) -> Vec<(String, PathBuf)> {
    if args.evaluation_mode() {
        return vec![("--out".into(), args.out.clone())];
    }
    let mut v = vec![
        ("--out".to_string(), args.out.clone()),
        match &args.report {
            Some(r) => ("--report".into(), r.clone()),
            None => (
                "--report (default: --out with extension .json)".into(),
                args.out.with_extension("json"),
            ),
        },
    ];
    if args.int8 {
        v.push(("the int8 model".into(), sibling(&args.out, ".int8.rvne")));
    }
    if !args.no_plots {
        v.push(("the curves plot".into(), sibling(&args.out, ".curves.svg")));
        v.push((
            "the confusion plot".into(),
            sibling(&args.out, ".confusion.svg"),
        ));
    }
    v
}

impl Args {
    /// Whether this run cross-validates (report to --out, no model).
    fn evaluation_mode(&self) -> bool {
        self.kfold.is_some() || self.kfold_groups || !self.test_groups.is_empty()
    }
}

/// Runs `aether train`.
pub fn run(args: Args) -> Result<()> {
    args.opts.check()?;
    let outs = outputs(&args);
    for (_, p) in &outs {
        check_output_file(p)?;
    }
    distinct_outputs(
        &outs
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_path()))
            .collect::<Vec<_>>(),
    )?;
    let (ds, skipped) = load(&args.data)?;
    if !args.quiet {
        print_skipped(&args.data, &skipped);
    }
    let hash = data_hash(&ds);
    let pool = select_groups(&ds, &args.opts.groups, args.opts.group_field)?;
    if args.evaluation_mode() {
        let plan = plan(&args, &ds, &pool)?;
        return run_plan(&args, &ds, &hash, &plan);
    }
    let v1 = args.format == RvneVersion::V1;
    let mut opts = args.opts.clone();
    if v1 && opts.arch == "full" {
        opts.arch = "bare v1".into();
    }
    if v1 && !derive_arch(&opts, ds.dim(), ds.classes.len())?.is_v1_compatible() {
        bail!("--format v1 needs the bare v1 architecture (use --arch 'bare v1')");
    }
    let fitted = fit_progress(&ds, &pool, &opts, progress::training(args.quiet).as_mut())?;
    let val = if fitted.val_recordings.is_empty() {
        None
    } else {
        Some(evaluate(
            &ds,
            &fitted.val_recordings,
            fitted.window,
            model_logits(&fitted.outcome.model),
        )?)
    };
    let bytes = model_bytes(&fitted, &ds, &hash, v1, args.f16)?;
    write_atomic(&args.out, &bytes)?;
    let int8 = if args.int8 {
        let tr = WindowSet::new(&ds, &fitted.train_recordings, fitted.window)?;
        let q = quantize_bytes(&bytes, &tr.slices())?;
        let path = sibling(&args.out, ".int8.rvne");
        write_atomic(&path, &q)?;
        let e = if fitted.val_recordings.is_empty() {
            None
        } else {
            Some(evaluate(
                &ds,
                &fitted.val_recordings,
                fitted.window,
                int8_logits(&q),
            )?)
        };
        Some((path, q.len(), e))
    } else {
        None
    };
    let mut report = fitted_json(&fitted, &ds, val.as_ref());
    let obj = report.as_object_mut().expect("object");
    obj.insert("data".into(), json!(args.data.display().to_string()));
    obj.insert("data_sha256".into(), json!(hash));
    obj.insert("classes".into(), json!(ds.classes));
    obj.insert("features".into(), json!(ds.feature_names));
    obj.insert(
        "skipped".into(),
        json!(skipped
            .skipped
            .iter()
            .map(|(p, r)| format!("{p}: {r}"))
            .collect::<Vec<_>>()),
    );
    obj.insert("model".into(), json!(args.out.display().to_string()));
    obj.insert("format".into(), json!(args.format.name()));
    obj.insert("model_bytes".into(), json!(bytes.len()));
    if let Some((path, n, e)) = &int8 {
        obj.insert(
            "int8".into(),
            json!({
                "model": path.display().to_string(),
                "model_bytes": n,
                "validation": e.as_ref().map(|e| evaluation_json(e, &ds.classes)),
            }),
        );
    }
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| args.out.with_extension("json"));
    write_atomic(
        &report_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let mut written = vec![args.out.clone(), report_path];
    if let Some((path, _, e)) = &int8 {
        if let Some(e) = e {
            println!(
                "validation, int8 head: accuracy {:.3} per recording, {:.3} per window, macro-F1 {:.3}",
                e.recordings.accuracy, e.windows.accuracy, e.recordings.macro_f1
            );
        }
        written.push(path.clone());
    }
    if !args.no_plots {
        let curves = sibling(&args.out, ".curves.svg");
        write_atomic(&curves, curves_svg(&fitted.outcome.history)?.as_bytes())?;
        written.push(curves);
        if let Some(e) = &val {
            let conf = sibling(&args.out, ".confusion.svg");
            write_atomic(
                &conf,
                confusion_svg(&e.recordings, &ds.classes, "validation recordings")?.as_bytes(),
            )?;
            written.push(conf);
        }
    }
    let h = &fitted.outcome.history;
    let wps = h.iter().map(|s| s.windows_per_sec).sum::<f64>() / h.len().max(1) as f64;
    println!(
        "trained {} (best {}) in {:.1} s, {:.0} windows/s; window {} stride {}",
        plural(h.len(), "epoch"),
        fitted.outcome.best_epoch + 1,
        fitted.seconds,
        wps,
        fitted.window.len,
        fitted.window.stride
    );
    if let Some(e) = &val {
        println!(
            "validation: accuracy {:.3} per recording ({}), {:.3} per window ({}), macro-F1 {:.3}",
            e.recordings.accuracy,
            plural(e.n_recordings, "recording"),
            e.windows.accuracy,
            plural(e.n_windows, "window"),
            e.recordings.macro_f1
        );
    }
    println!(
        "wrote {}",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The trainings of `--kfold`, `--kfold-groups` or `--test-groups` over `pool`.
fn plan(args: &Args, ds: &Dataset, pool: &[usize]) -> Result<Plan> {
    plan_runs(
        ds,
        pool,
        &Protocol {
            kfold: args.kfold,
            kfold_groups: args.kfold_groups,
            test_groups: &args.test_groups,
            group_field: args.opts.group_field,
            seed: args.opts.seed,
        },
    )
}

/// Runs the evaluation protocol `plan` and writes its report to `--out`.
fn run_plan(args: &Args, ds: &Dataset, hash: &str, plan: &Plan) -> Result<()> {
    let settings = ProtocolSettings {
        opts: &args.opts,
        seeds: args.seeds,
        int8: args.int8,
    };
    let mut progress = progress::training(args.quiet);
    let mut out = |line: &str| println!("{line}");
    let outcome = run_protocol(ds, hash, plan, &settings, progress.as_mut(), &mut out)?;
    let mut report = outcome.report.clone();
    report
        .as_object_mut()
        .expect("object")
        .insert("data".into(), json!(args.data.display().to_string()));
    write_atomic(&args.out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    for line in outcome.summary_lines(plan, &args.out) {
        println!("{line}");
    }
    Ok(())
}
