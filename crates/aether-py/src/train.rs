//! Training and evaluation through `aether-pipeline`: the very functions, options and
//! defaults of `aether train`, `aether train --kfold` and `aether eval`.
//!
//! Options arrive as the command line's own arguments (`["--epochs", "3", …]`, built by
//! `aether/__init__.py` from keyword arguments) and are parsed by the CLI's `TrainOpts`
//! parser, so every default, range check and message is the command line's.

use aether_pipeline::{
    data_hash, derive_arch, evaluate as pl_evaluate, evaluation_json, fit_progress, fitted_json,
    model_bytes, model_logits, plan_runs, run_protocol, select_groups, Progress, Protocol,
    ProtocolSettings, Silent, StderrLines, TrainOpts,
};
use clap::Parser;
use pyo3::prelude::*;
use serde_json::json;

use crate::data::Dataset;
use aether_pipeline::model_io::{scoring_window, spread};
use aether_pipeline::WindowSet;
use aether_rvne::ModelFile;

use crate::errors::{ConfigError, DataError, FormatError, TrainError};
use crate::model::{json_to_py, Model};

/// The `TrainOpts` of `aether train`, parsed from its arguments.
#[derive(Parser)]
#[command(name = "aether train", no_binary_name = true, disable_help_flag = true)]
struct OptsArgs {
    #[command(flatten)]
    opts: TrainOpts,
}

fn parse_opts(args: Vec<String>) -> PyResult<TrainOpts> {
    let opts = OptsArgs::try_parse_from(args)
        .map_err(|e| ConfigError::new_err(e.render().to_string().trim().to_string()))?
        .opts;
    opts.check()
        .map_err(|e| ConfigError::new_err(format!("{e:#}")))?;
    Ok(opts)
}

/// An `anyhow` error of the pipeline as a Python exception: dataset errors as
/// `DataError`, everything else as `TrainError`.
fn pipeline_err(e: anyhow::Error) -> PyErr {
    if e.downcast_ref::<aether_data::DataError>().is_some() {
        DataError::new_err(format!("{e:#}"))
    } else {
        TrainError::new_err(format!("{e:#}"))
    }
}

/// An option the data refuses (an unknown group, a missing group field).
fn option_err(e: anyhow::Error) -> PyErr {
    ConfigError::new_err(format!("{e:#}"))
}

fn progress(quiet: bool) -> Box<dyn Progress + Send> {
    if quiet {
        Box::new(Silent)
    } else {
        Box::new(StderrLines)
    }
}

/// Trains a model as `aether train --data DS --out M.rvne [--format F] [--f16] ARGS`
/// does; returns the model and the report `aether train` writes beside it.
#[pyfunction]
#[pyo3(signature = (ds, args, format="v2", f16=false, quiet=true))]
pub fn _train<'py>(
    py: Python<'py>,
    ds: &Dataset,
    args: Vec<String>,
    format: &str,
    f16: bool,
    quiet: bool,
) -> PyResult<(Model, Bound<'py, PyAny>)> {
    let mut opts = parse_opts(args)?;
    let v1 = match format {
        "v1" => true,
        "v2" => false,
        o => {
            return Err(ConfigError::new_err(format!(
                "format {o:?}: expected \"v1\" or \"v2\""
            )))
        }
    };
    let d = &ds.inner;
    let pool = select_groups(d, &opts.groups, opts.group_field).map_err(option_err)?;
    let (bytes, report) = py
        .detach(|| -> anyhow::Result<(Vec<u8>, serde_json::Value)> {
            let hash = data_hash(d);
            if v1 && opts.arch == "full" {
                opts.arch = "bare v1".into();
            }
            if v1 && !derive_arch(&opts, d.dim(), d.classes.len())?.is_v1_compatible() {
                anyhow::bail!("--format v1 needs the bare v1 architecture (use --arch 'bare v1')");
            }
            let fitted = fit_progress(d, &pool, &opts, progress(quiet).as_mut())?;
            let val = if fitted.val_recordings.is_empty() {
                None
            } else {
                Some(pl_evaluate(
                    d,
                    &fitted.val_recordings,
                    fitted.window,
                    model_logits(&fitted.outcome.model),
                )?)
            };
            let bytes = model_bytes(&fitted, d, &hash, v1, f16)?;
            let mut report = fitted_json(&fitted, d, val.as_ref());
            if let Some(o) = report.as_object_mut() {
                o.insert("data_sha256".into(), json!(hash));
                o.insert("classes".into(), json!(d.classes));
                o.insert("features".into(), json!(d.feature_names));
                o.insert("format".into(), json!(format));
                o.insert("model_bytes".into(), json!(bytes.len()));
            }
            Ok((bytes, report))
        })
        .map_err(pipeline_err)?;
    let model = Model::from_vec(bytes)?;
    Ok((model, json_to_py(py, &report)?))
}

/// Cross-validates as `aether train --data DS --kfold K | --kfold-groups |
/// --test-groups G --out cv.json [--seeds S] [--int8] ARGS`; returns its report.
#[pyfunction]
#[pyo3(signature = (ds, args, kfold=None, kfold_groups=false, test_groups=Vec::new(), seeds=1, int8=false, quiet=true))]
#[allow(clippy::too_many_arguments)]
pub fn _cross_validate<'py>(
    py: Python<'py>,
    ds: &Dataset,
    args: Vec<String>,
    kfold: Option<usize>,
    kfold_groups: bool,
    test_groups: Vec<String>,
    seeds: usize,
    int8: bool,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let opts = parse_opts(args)?;
    let modes = usize::from(kfold.is_some())
        + usize::from(kfold_groups)
        + usize::from(!test_groups.is_empty());
    if modes != 1 {
        return Err(ConfigError::new_err(
            "choose one protocol: kfold=K, kfold_groups=True or test_groups=[...]",
        ));
    }
    if let Some(k) = kfold {
        crate::errors::in_range("kfold", k, 2, crate::limits::MAX_FOLDS)?;
    }
    crate::errors::in_range("seeds", seeds, 1, crate::limits::MAX_SEEDS)?;
    let d = &ds.inner;
    let pool = select_groups(d, &opts.groups, opts.group_field).map_err(option_err)?;
    let report = py
        .detach(|| -> anyhow::Result<serde_json::Value> {
            let hash = data_hash(d);
            let plan = plan_runs(
                d,
                &pool,
                &Protocol {
                    kfold,
                    kfold_groups,
                    test_groups: &test_groups,
                    group_field: opts.group_field,
                    seed: opts.seed,
                },
            )?;
            let settings = ProtocolSettings {
                opts: &opts,
                seeds,
                int8,
            };
            let mut sink = |line: &str| {
                if !quiet {
                    eprintln!("{line}");
                }
            };
            let out = run_protocol(
                d,
                &hash,
                &plan,
                &settings,
                progress(quiet).as_mut(),
                &mut sink,
            )?;
            Ok(out.report)
        })
        .map_err(pipeline_err)?;
    json_to_py(py, &report)
}

/// Scores a model on a dataset as `aether eval --model M --data DS --json [--window W]
/// [--stride S] [--groups G] [--group-field F]` does; returns its JSON object (without
/// the `model` and `data` paths).
#[pyfunction]
#[pyo3(signature = (model, ds, window=None, stride=None, groups=Vec::new(), group_field=0))]
pub fn evaluate<'py>(
    py: Python<'py>,
    model: &Model,
    ds: &Dataset,
    window: Option<usize>,
    stride: Option<usize>,
    groups: Vec<String>,
    group_field: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let d = &ds.inner;
    let classes = model.class_list();
    if (model.named_classes() && d.classes != classes) || d.classes.len() != classes.len() {
        return Err(DataError::new_err(format!(
            "classes [{}] differ from the model's [{}]",
            d.classes.join(", "),
            classes.join(", ")
        )));
    }
    let features = model.feature_name_list();
    if !features.is_empty() && d.feature_names != features {
        let i = d
            .feature_names
            .iter()
            .zip(&features)
            .position(|(a, b)| a != b)
            .unwrap_or(d.feature_names.len().min(features.len()));
        return Err(DataError::new_err(format!(
            "{} features, the model takes {}; first difference at column {}: {:?} vs the model's {:?}",
            d.dim(),
            features.len(),
            i + 1,
            d.feature_names.get(i).map_or("", |s| s.as_str()),
            features.get(i).map_or("", |s| s.as_str())
        )));
    }
    if d.dim() != model.feature_count() {
        return Err(DataError::new_err(format!(
            "{} features, the model takes {}",
            d.dim(),
            model.feature_count()
        )));
    }
    let cfg = scoring_window(window, stride, model.stored_window());
    if cfg.len == 0 || cfg.stride == 0 {
        return Err(ConfigError::new_err("window and stride must be positive"));
    }
    let indices = select_groups(d, &groups, group_field).map_err(option_err)?;
    let j = py
        .detach(|| -> anyhow::Result<serde_json::Value> {
            let e = pl_evaluate(d, &indices, cfg, |w| {
                model
                    .head
                    .logits_batch(w)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })?;
            let mut j = evaluation_json(&e, &d.classes);
            if cfg.len != aether_pipeline::model_io::WHOLE_RECORDING {
                if let Some(o) = j.as_object_mut() {
                    o.insert("window".into(), cfg.len.into());
                    o.insert("stride".into(), cfg.stride.into());
                }
            }
            Ok(j)
        })
        .map_err(pipeline_err)?;
    json_to_py(py, &j)
}

/// Quantises a float model to int8 as `aether quantize --model M --calib DS --out M8
/// [--window W] [--stride S] [--calib-windows N] [--groups G]` does (the same calibration
/// windows, spread evenly; the same bytes when `source` is the path given as `--model`,
/// which the int8 model records as `int8.float_model`).
#[pyfunction]
#[pyo3(signature = (model, calib, calib_windows=512, window=None, stride=None, groups=Vec::new(), group_field=0, source=None))]
#[allow(clippy::too_many_arguments)]
pub fn quantize(
    py: Python<'_>,
    model: &Model,
    calib: &Dataset,
    calib_windows: usize,
    window: Option<usize>,
    stride: Option<usize>,
    groups: Vec<String>,
    group_field: usize,
    source: Option<String>,
) -> PyResult<Model> {
    crate::errors::in_range(
        "calib_windows",
        calib_windows,
        1,
        crate::limits::MAX_CALIB_WINDOWS,
    )?;
    if model.is_int8_model() {
        return Err(FormatError::new_err("already an int8 model"));
    }
    let d = &calib.inner;
    let float = ModelFile::from_bytes(model.bytes()).map_err(crate::errors::rvne)?;
    if d.dim() != float.meta.dims.input_dim {
        return Err(DataError::new_err(format!(
            "calibration data: {} features, the model takes {}",
            d.dim(),
            float.meta.dims.input_dim
        )));
    }
    if !float.feature_names.is_empty() && d.feature_names != float.feature_names {
        return Err(DataError::new_err(
            "calibration data: feature names differ from the model's",
        ));
    }
    let indices = select_groups(d, &groups, group_field).map_err(option_err)?;
    let cfg = scoring_window(window, stride, model.stored_window());
    let source = source.unwrap_or_else(|| model.source().to_string());
    let out = py
        .detach(|| -> anyhow::Result<Vec<u8>> {
            let set = WindowSet::new(d, &indices, cfg)?;
            if set.is_empty() {
                anyhow::bail!("no calibration windows");
            }
            let slices = set.slices();
            let calib: Vec<&[f32]> = spread(slices.len(), calib_windows)
                .iter()
                .map(|&i| slices[i])
                .collect();
            let (mut q, _) = aether_quant::quantize::quantize(
                &float,
                &calib,
                &aether_quant::quantize::QuantizeOptions::default(),
            )?;
            q.metadata.push(("int8.float_model".into(), source));
            Ok(q.to_v2_bytes()?)
        })
        .map_err(pipeline_err)?;
    Model::from_vec(out)
}
