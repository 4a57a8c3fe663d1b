//! `aether quantize --model M.rvne --calib DATA --out M8.rvne`: post-training int8
//! quantisation (docs/int8.md).
//!
//! The float model runs over calibration windows cut from the dataset folder `DATA` (the
//! model's stored window and stride, `--window` / `--stride` override; whole recordings
//! without them), at most `--calib-windows` of them spread evenly over the dataset; the
//! largest magnitude at each activation point fixes the scales, the weights are
//! quantised per output channel, and the integer tables are written as an int8 `.rvne`
//! v2 file (feature bit 10). The report compares the integer head with the float model
//! layer by layer (relative RMS error of the residual stream after the embedding and
//! after each layer, of the logits, and the argmax agreement) on the dataset's other
//! windows (up to `--report-windows`; the calibration windows when there are no others).

use std::path::PathBuf;

use aether_pipeline::model_io::{scoring_window, spread};
use aether_pipeline::{load, print_skipped, select_groups, stored_window, WindowSet};
use aether_quant::quantize::{error_report, quantize, FloatRef, QuantizeOptions};
use aether_quant::QuantHead;
use aether_rvne::{BlobView, ModelFile};
use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::fsutil::{check_output_file, read_model_file, write_atomic};
use crate::values;

/// Largest `--calib-windows` / `--report-windows`.
pub const MAX_CALIB_WINDOWS: usize = 100_000;

/// Arguments of `aether quantize`.
#[derive(clap::Args)]
pub struct Args {
    /// The float model (.rvne v1 or v2, f32 or f16).
    #[arg(long)]
    pub model: PathBuf,
    /// Calibration dataset folder (or `.npy` directory) with the model's features.
    #[arg(long)]
    pub calib: PathBuf,
    /// Output int8 model (.rvne v2).
    #[arg(long)]
    pub out: PathBuf,
    /// Window length, 1..=8192 (default: the model's `data.window`; whole recordings without it).
    #[arg(long, value_parser = values::count(1, values::MAX_WINDOW))]
    pub window: Option<usize>,
    /// Window stride, 1..=1000000 (default: the model's `data.stride`, else the window length).
    #[arg(long, value_parser = values::count(1, values::MAX_STRIDE))]
    pub stride: Option<usize>,
    /// Most calibration windows, 1..=100000 (spread evenly over the dataset's windows).
    #[arg(long, default_value_t = 512, value_parser = values::count(1, MAX_CALIB_WINDOWS))]
    pub calib_windows: usize,
    /// Most windows of the error report, 1..=100000.
    #[arg(long, default_value_t = 256, value_parser = values::count(1, MAX_CALIB_WINDOWS))]
    pub report_windows: usize,
    /// Calibrate on recordings of these session prefixes only (name before the first `_`).
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Report the error on recordings of these session prefixes instead (held-out data).
    #[arg(long, value_delimiter = ',')]
    pub report_groups: Vec<String>,
    /// Which `_`-separated field of a recording's name is its group, 0..=15 (0: the prefix).
    #[arg(long, default_value_t = 0, value_parser = values::count(0, 15))]
    pub group_field: usize,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// Runs `aether quantize`.
pub fn run(args: Args) -> Result<()> {
    check_output_file(&args.out)?;
    let name = args.model.display().to_string();
    let bytes = read_model_file(&args.model)?;
    let view =
        BlobView::parse(&bytes).with_context(|| format!("{name}: not a valid .rvne file"))?;
    if view.is_int8() {
        bail!("{name}: already an int8 model");
    }
    let model =
        ModelFile::from_view(&view).with_context(|| format!("{name}: cannot read the model"))?;
    let (ds, skipped) = load(&args.calib)?;
    print_skipped(&args.calib, &skipped);
    let d = model.meta.dims;
    if ds.dim() != d.input_dim {
        bail!(
            "{}: {} features, the model takes {}",
            args.calib.display(),
            ds.dim(),
            d.input_dim
        );
    }
    if !model.feature_names.is_empty() && ds.feature_names != model.feature_names {
        bail!(
            "{}: feature names differ from the model's",
            args.calib.display()
        );
    }
    let indices = select_groups(&ds, &args.groups, args.group_field)?;
    let cfg = scoring_window(args.window, args.stride, stored_window(&view));
    let set = WindowSet::new(&ds, &indices, cfg)?;
    if set.is_empty() {
        bail!("{}: no calibration windows", args.calib.display());
    }
    let slices = set.slices();
    let calib_ix = spread(slices.len(), args.calib_windows);
    let calib: Vec<&[f32]> = calib_ix.iter().map(|&i| slices[i]).collect();
    let others: Vec<usize> = (0..slices.len())
        .filter(|i| calib_ix.binary_search(i).is_err())
        .collect();
    let (report_ix, held_out) = if others.is_empty() {
        (spread(calib_ix.len(), args.report_windows), false)
    } else {
        let s = spread(others.len(), args.report_windows);
        (s.into_iter().map(|i| others[i]).collect(), true)
    };
    let report_extra;
    let (report_set, held_out): (Vec<&[f32]>, bool) = if !args.report_groups.is_empty() {
        let ix = select_groups(&ds, &args.report_groups, args.group_field)?;
        report_extra = WindowSet::new(&ds, &ix, cfg)?;
        let all = report_extra.slices();
        let take = spread(all.len(), args.report_windows);
        (take.iter().map(|&i| all[i]).collect(), true)
    } else if held_out {
        (report_ix.iter().map(|&i| slices[i]).collect(), true)
    } else {
        (report_ix.iter().map(|&i| calib[i]).collect(), false)
    };
    if report_set.is_empty() {
        bail!("no windows for the error report");
    }

    let (mut q, _) = quantize(&model, &calib, &QuantizeOptions::default())
        .with_context(|| format!("{name}: quantisation"))?;
    q.metadata
        .push(("int8.float_model".into(), args.model.display().to_string()));
    let out = q.to_v2_bytes()?;
    let head = QuantHead::from_blob(&out).context("the int8 model would not load")?;
    let fr = FloatRef::new(&model)?;
    let rep = error_report(&fr, &head, &report_set)?;
    write_atomic(&args.out, &out)?;

    let weights_f32: usize = view.tensors().map(|t| t.bytes().len()).sum();
    let out_view = BlobView::parse(&out)?;
    let weights_i8: usize = out_view.tensors().map(|t| t.bytes().len()).sum();
    if args.json {
        let rows: Vec<_> = rep
            .rows
            .iter()
            .map(|(p, e)| json!({"point": p, "relative_rms_error": e}))
            .collect();
        println!(
            "{}",
            json!({
                "model": args.model.display().to_string(),
                "out": args.out.display().to_string(),
                "bytes": {"float": bytes.len(), "int8": out.len()},
                "tensor_bytes": {"float": weights_f32, "int8": weights_i8},
                "calibration_windows": calib.len(),
                "report_windows": rep.windows,
                "report_held_out": held_out,
                "layers": rows,
                "argmax_agreement": rep.agreement,
            })
        );
    } else {
        println!(
            "wrote {} ({} bytes, int8; the float model is {} bytes), calibrated on {} windows of {}",
            args.out.display(),
            out.len(),
            bytes.len(),
            calib.len(),
            args.calib.display()
        );
        println!(
            "error of the integer head against the float model on {} {} windows (relative RMS):",
            rep.windows,
            if held_out { "other" } else { "calibration" }
        );
        for (p, e) in &rep.rows {
            println!("  {p:<28} {:>8.3} %", e * 100.0);
        }
        println!(
            "  argmax agreement            {:>8.2} %",
            rep.agreement * 100.0
        );
    }
    Ok(())
}
